"""kopf handlers: thin wiring of the loop in docs/architecture.md (reconcile; observe, judge, decide, act)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

import kopf

from scaledapp import api, conditions, dbguard, fastjson, malloc, metrics, reconciler, runner, scaler
from scaledapp.kube import Kube, KubeError, work
from scaledapp.resources.names import INSTANCE_LABEL, MANAGED_BY, TIER_LABEL
from scaledapp.tiers.base import workload_counts

# The children the drift handlers watch. Not Secrets: the operator never lists or watches Secrets (RBAC gives it
# get and create only); the resync puts a deleted Secret back (by name): periodically, and soon after a workload
# of the ScaledApp falls short of ready pods (a new pod that mounts a deleted Secret cannot start).
CHILD_KINDS = [
    ("apps", "v1", "deployments"),
    ("apps", "v1", "statefulsets"),
    ("", "v1", "services"),
    ("", "v1", "configmaps"),
    ("policy", "v1", "poddisruptionbudgets"),
    ("networking.k8s.io", "v1", "networkpolicies"),
]
RESYNC_SECONDS = float(os.environ.get("SCALEDAPP_RESYNC_SECONDS", "300"))
REPAIR_ATTEMPTS = 8  # with backoff 1, 2, 4, ... 30 s: about two minutes, then the ScaledApp is marked for resync
OWNED = {"app.kubernetes.io/managed-by": MANAGED_BY}


def watch_selectors() -> dict[tuple[str, str, str], str]:
    """Label selectors the API server applies to the operator's watches: only our children, and of the pods
    only the Postgres ones (the failover guard's index). The handlers' `labels=` filters alone let every pod
    and ConfigMap in the namespace (or the cluster) come down the stream, be decoded and be dropped: at 500
    ScaledApps five pods in seven are the app's, the workers' and the cache's."""
    owned = ",".join(f"{key}={value}" for key, value in OWNED.items())
    selectors = {kind: owned for kind in CHILD_KINDS}
    selectors["", "v1", "pods"] = f"{owned},{TIER_LABEL} in ({','.join(sorted(dbguard.DB_TIERS))})"
    return selectors


# Left out of the ScaledApp bodies the loops keep (one per ScaledApp, for as long as it lives): who manages which
# field (a tree of empty maps for every status field, most of the body as Python objects) and the copies of the
# spec that kubectl and kopf keep in annotations. Nothing the scaler or the failover guard reads.
DIFFBASE_KEY = "last-handled-configuration"  # kopf's annotation f"{api.GROUP}/{DIFFBASE_KEY}": the spec last handled
BULKY_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration", f"{api.GROUP}/{DIFFBASE_KEY}")


def kept(body: kopf.Body) -> dict[str, Any]:
    """The ScaledApp's body as the scaler loop and the failover guard keep it between events."""
    meta = {k: v for k, v in body["metadata"].items() if k != "managedFields"}
    if meta.get("annotations"):
        meta["annotations"] = {k: v for k, v in meta["annotations"].items() if k not in BULKY_ANNOTATIONS}
    return {**body, "metadata": meta}


class _QuietDriftHandlers(logging.Filter):
    """kopf logs every successful event handler; drift checks and the scaler loop's bookkeeping run on every
    event, so drop those."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        quiet = ("Handler 'drift-", "Handler 'scaler-loop'", "Handler 'failover-guard'")
        return not (message.startswith(quiet) and record.levelno <= logging.INFO)


class ScaledAppDiffBase(kopf.AnnotationsDiffBaseStorage):
    """The last-handled configuration in an annotation, as kopf keeps it, but only for ScaledApps. kopf builds
    the essence of every watched object (a deep copy of its whole body) on every event, to find changes for
    on.create/update handlers, which only ScaledApps have: for the children's and pods' events (thousands at
    500 ScaledApps, every status update of every workload and pod) that copy was a fifth of the operator's CPU."""

    def build(self, *, body: kopf.Body, extra_fields: Iterable[kopf.FieldSpec] | None = None) -> kopf.BodyEssence:
        if body.get("kind") != api.KIND:
            return kopf.BodyEssence()
        return super().build(body=body, extra_fields=extra_fields)

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return super().fetch(body=body) if body.get("kind") == api.KIND else None


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    # Our own prefix for kopf's bookkeeping, so it never collides with another kopf operator.
    settings.persistence.finalizer = f"{api.GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=api.GROUP)
    settings.persistence.diffbase_storage = ScaledAppDiffBase(prefix=api.GROUP, key=DIFFBASE_KEY)
    settings.posting.level = 40  # kopf's own Events only for errors; decisions post their own
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    for resource, selector in watch_selectors().items():
        settings.watching.label_selectors[resource] = selector
    if not fastjson.decode_kopf_watches():
        logger.info("kopf reads its watch streams elsewhere than %s: they are decoded by json, not orjson",
                    fastjson.KOPF_STREAM_MODULE)
    settings.networking.request_timeout = 30
    settings.execution.max_workers = 8  # threads for the blocking Kubernetes and Prometheus clients
    # kopf keeps a worker (and the last body it handled) per object for this long after its last event (default
    # 5 s): at 500 ScaledApps, thousands of children and pods get events within seconds of each other.
    settings.queueing.idle_timeout = 1.0
    for handler in logging.getLogger().handlers:
        handler.addFilter(_QuietDriftHandlers())
    kube = Kube()
    memo.kube = kube
    memo.present = set()  # (kind, namespace, name) of every child the watches currently show

    async def tick(body: dict[str, Any], logger: runner.Logger) -> float:
        with metrics.tick_timer(body), work("tick"):
            return await scaler.tick(kube, body, logger)

    async def resync(body: dict[str, Any], logger: runner.Logger, full: bool) -> None:
        with work("resync"):
            async with kube.reconciling(body):
                await reconciler.resync(kube, body, lambda kind, ns, name: (kind, ns, name) in memo.present,
                                        logger, full=full)

    memo.runner = runner.Runner(tick, resync, resync_seconds=RESYNC_SECONDS, settled=conditions.is_ready)
    memo.guards = runner.Daemons()  # one failover guard per ScaledApp (dbguard.py), also without a finalizer
    memo.trimmer = asyncio.create_task(malloc.trim_periodically())  # resident memory back after bursts


@kopf.on.probe(id="apiRequests")
async def api_requests(memo: kopf.Memo, **_: Any) -> int:
    """Shown on the liveness endpoint: how many Kubernetes API calls the operator has made."""
    kube: Kube | None = getattr(memo, "kube", None)
    return kube.requests if kube else 0


@kopf.on.cleanup()
async def goodbye(memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    loops: runner.Runner | None = getattr(memo, "runner", None)
    if loops is not None:
        await loops.stop()
    guards: runner.Daemons | None = getattr(memo, "guards", None)
    if guards is not None:
        await guards.stop_all()
    trimmer: asyncio.Task[None] | None = getattr(memo, "trimmer", None)
    if trimmer is not None:
        trimmer.cancel()
    kube: Kube | None = getattr(memo, "kube", None)
    logger.info("operator stopping after %d Kubernetes API calls", kube.requests if kube else 0)


@kopf.on.create(api.GROUP, api.VERSION, api.PLURAL)
@kopf.on.update(api.GROUP, api.VERSION, api.PLURAL, field="spec")
@kopf.on.resume(api.GROUP, api.VERSION, api.PLURAL)
async def reconcile(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, retry: int, **_: Any) -> None:
    """Build every child from the spec and server-side apply it; report in status and Events.

    A failure worth retrying (`KubeError.retryable`: kube.UnavailableError, ThrottledError, ConflictError) is
    retried by kopf with exponential backoff; any other (kube.RejectedError: 403 until RBAC is fixed, 422) slowly,
    after 300 s, and the periodic resync tries again too."""
    try:
        async with memo.kube.reconciling(body):  # the oldest ScaledApps' first (kube.Slots)
            with work("reconcile"):
                await reconciler.reconcile(memo.kube, dict(body), logger)
    except KubeError as exc:
        delay = runner.backoff(retry, cap=60.0) if exc.retryable else 300.0
        raise kopf.TemporaryError(f"reconcile failed: {exc.message}; retrying", delay=delay) from exc


def _owner_name(body: kopf.Body) -> str | None:
    for ref in body.get("metadata", {}).get("ownerReferences", []):
        if ref.get("kind") == api.KIND and ref.get("apiVersion", "").startswith(api.GROUP):
            return str(ref["name"])
    return None


def _owner_uids(child: Mapping[str, Any]) -> list[str]:
    return [str(ref["uid"]) for ref in (child.get("metadata") or {}).get("ownerReferences") or []
            if ref.get("kind") == api.KIND and ref.get("uid")]


def short_of_ready(child: Mapping[str, Any]) -> bool:
    """A Deployment or StatefulSet with fewer ready pods than it wants (a pod lost, or new ones starting)."""
    if child.get("kind") not in reconciler.WORKLOADS:
        return False
    counts = workload_counts(dict(child))
    return counts.ready < counts.desired


def _register_drift_handler(group: str, version: str, plural: str) -> None:
    @kopf.on.event(group, version, plural, labels=OWNED, id=f"drift-{plural}")
    async def repair(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
        """A child was deleted or edited: put back what the reconciler owns (a no-op when nothing drifted)."""
        owner = _owner_name(body)
        kube: Kube = memo.kube
        if event["type"] == "MODIFIED":
            await kube.seen.settled(dict(body))
        drift = kube.seen.drifted(event["type"], dict(body))
        key = (body.get("kind"), body.metadata.namespace, body.metadata.name)
        if event["type"] == "DELETED":
            kube.seen.forget(body.metadata.uid)
            kube.cache.forget(dict(body))
            memo.present.discard(key)
        else:
            kube.seen.record(dict(body))
            kube.cache.remember(dict(body))
            memo.present.add(key)
        if event["type"] == "MODIFIED" and short_of_ready(body):
            for uid in _owner_uids(body):
                memo.runner.hurry(uid)
        if owner and drift:
            await _repair_with_retries(memo, dict(body), owner, logger, deleted=event["type"] == "DELETED")


async def _repair_with_retries(memo: kopf.Memo, child: dict[str, Any], owner: str, logger: kopf.Logger, *,
                               deleted: bool) -> None:
    """Event handlers are not retried by kopf: retry here, with backoff, while the failure is worth it
    (no answer, 408, 409, 429, 5xx); then leave it to the owner's resync (marked dirty: soon)."""
    kind, name = child.get("kind"), child["metadata"]["name"]
    for attempt in range(REPAIR_ATTEMPTS):
        try:
            with work("repair"):
                await reconciler.repair_child(memo.kube, child, owner, logger, deleted=deleted)
            if attempt:
                logger.info("repaired %s/%s after %d retries", kind, name, attempt)
            return
        except KubeError as exc:
            if not exc.retryable or attempt == REPAIR_ATTEMPTS - 1:
                logger.warning("could not repair %s/%s: %s; left to the periodic resync", kind, name, exc.message)
                break
            delay = runner.backoff(attempt, cap=30.0)
            logger.info("repair of %s/%s failed (%s %s); retry in %.1f s", kind, name, exc.status, exc.message,
                        delay)
            await asyncio.sleep(delay)
    for uid in _owner_uids(child):
        memo.runner.mark_dirty(uid)


for _group, _version, _plural in CHILD_KINDS:
    _register_drift_handler(_group, _version, _plural)


@kopf.on.event(api.GROUP, api.VERSION, api.PLURAL, id="scaler-loop")
async def scale(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """Keep one scaler loop per ScaledApp (observe, judge, decide, act, explain every spec.scaling.interval),
    fed the newest body. Not a kopf daemon: daemons put a finalizer on the ScaledApp (see runner.py)."""
    loops: runner.Runner = memo.runner
    if event["type"] == "DELETED":
        loops.gone(body.metadata.uid)
        scaler.forget(body.metadata.uid)
        metrics.forget(body)  # its series go with it
    else:
        loops.seen(kept(body), logger)


def _is_db_tier(value: str | None, **_: Any) -> bool:
    return value in dbguard.DB_TIERS


@kopf.index("", "v1", "pods", labels={**OWNED, TIER_LABEL: _is_db_tier})
async def db_pods(body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any) -> dict[Any, Any]:
    """The Postgres pods of every ScaledApp, kept current by the watch: the failover guard reads them each
    second without an API call."""
    return {(namespace, labels.get(INSTANCE_LABEL)): dbguard.pod_summary(body)}


async def draining_nodes(name: str, body: kopf.Body, **_: Any) -> dict[Any, Any]:
    """Which nodes are cordoned (a drain begins so): the failover guard moves the write role off them."""
    return {name: dbguard.node_draining(body)}


def watch_nodes() -> None:
    """Index the nodes (called before kopf starts, when the operator may list and watch them: the cluster-wide
    install). Without it no node ever counts as draining, and a drain waits on the primary's budget."""
    kopf.index("", "v1", "nodes", id="draining_nodes")(draining_nodes)


@kopf.on.event(api.GROUP, api.VERSION, api.PLURAL, id="failover-guard")
async def guard_write_role(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger,
                           **kwargs: Any) -> None:
    """One failover guard per ScaledApp, each second: who holds the Postgres write role; failover, switchover
    home, planned switchover, slot sweep (dbguard.py). Not a kopf daemon, for the same reason as the scaler."""
    guards: runner.Daemons = memo.guards
    if event["type"] == "DELETED":
        await guards.stop(body.metadata.uid)
        return
    index: kopf.Index[Any, Any] = kwargs["db_pods"]  # kopf passes indexes by name (its types cannot say so)
    key = (body.metadata.namespace, body.metadata.name)

    nodes: Any = kwargs.get("draining_nodes") or {}  # absent unless watch_nodes() registered it

    def pods_now() -> list[Any]:
        return list(index.get(key, []))

    def draining() -> frozenset[str]:
        return frozenset(node for node in nodes if any(nodes.get(node, [])))

    with work("guard"):  # the guard's task is started inside: its requests count as the guard's
        guards.ensure(kept(body), lambda live, stopped: dbguard.run_guard(memo.kube, live, pods_now, logger,
                                                                         stopped, draining))
