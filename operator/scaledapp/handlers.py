"""kopf handlers: thin wiring of the loop in docs/architecture.md (reconcile; observe, judge, decide, act, explain)."""

from __future__ import annotations

import logging
import random
from typing import Any

import kopf

from scaledapp import api, dbguard, metrics, reconciler, scaler
from scaledapp.kube import Kube, KubeError
from scaledapp.resources.names import INSTANCE_LABEL, MANAGED_BY, TIER_LABEL

CHILD_KINDS = [
    ("apps", "v1", "deployments"),
    ("apps", "v1", "statefulsets"),
    ("", "v1", "services"),
    ("", "v1", "configmaps"),
    ("", "v1", "secrets"),
    ("policy", "v1", "poddisruptionbudgets"),
    ("networking.k8s.io", "v1", "networkpolicies"),
]
OWNED = {"app.kubernetes.io/managed-by": MANAGED_BY}


class _QuietDriftHandlers(logging.Filter):
    """kopf logs every successful event handler; drift checks run on every child event, so drop those."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.getMessage().startswith("Handler 'drift-") and record.levelno <= logging.INFO)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Our own prefix for kopf's bookkeeping, so it never collides with another kopf operator.
    settings.persistence.finalizer = f"{api.GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=api.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=api.GROUP, key="last-handled-configuration"
    )
    settings.posting.level = 40  # kopf's own Events only for errors; decisions post their own
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.networking.request_timeout = 30
    settings.execution.max_workers = 8  # threads for the blocking Kubernetes and Prometheus clients
    for handler in logging.getLogger().handlers:
        handler.addFilter(_QuietDriftHandlers())
    memo.kube = Kube()


@kopf.on.probe(id="apiRequests")
async def api_requests(memo: kopf.Memo, **_: Any) -> int:
    """Shown on the liveness endpoint: how many Kubernetes API calls the operator has made."""
    kube: Kube | None = getattr(memo, "kube", None)
    return kube.requests if kube else 0


@kopf.on.cleanup()
async def goodbye(memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    kube: Kube | None = getattr(memo, "kube", None)
    logger.info("operator stopping after %d Kubernetes API calls", kube.requests if kube else 0)


@kopf.on.create(api.GROUP, api.VERSION, api.PLURAL)
@kopf.on.update(api.GROUP, api.VERSION, api.PLURAL, field="spec")
@kopf.on.resume(api.GROUP, api.VERSION, api.PLURAL)
async def reconcile(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    """Build every child from the spec and server-side apply it; report in status and Events."""
    await reconciler.reconcile(memo.kube, dict(body), logger)


def _owner_name(body: kopf.Body) -> str | None:
    for ref in body.get("metadata", {}).get("ownerReferences", []):
        if ref.get("kind") == api.KIND and ref.get("apiVersion", "").startswith(api.GROUP):
            return str(ref["name"])
    return None


def _register_drift_handler(group: str, version: str, plural: str) -> None:
    @kopf.on.event(group, version, plural, labels=OWNED, id=f"drift-{plural}")
    async def repair(event: kopf.RawEvent, body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
        """A child was deleted or edited: put back what the reconciler owns (a no-op when nothing drifted)."""
        owner = _owner_name(body)
        kube: Kube = memo.kube
        drift = kube.seen.drifted(event["type"], dict(body))
        if event["type"] == "DELETED":
            kube.seen.forget(body.metadata.uid)
            kube.cache.forget(dict(body))
        else:
            kube.seen.record(dict(body))
            kube.cache.remember(dict(body))
        if owner and drift:
            try:
                await reconciler.repair_child(memo.kube, dict(body), owner, logger,
                                              deleted=event["type"] == "DELETED")
            except KubeError as exc:  # e.g. the namespace is being deleted: the next event or resume retries
                logger.warning("could not repair %s/%s: %s", body.get("kind"), body.metadata.name, exc.message)


for _group, _version, _plural in CHILD_KINDS:
    _register_drift_handler(_group, _version, _plural)


@kopf.daemon(
    api.GROUP, api.VERSION, api.PLURAL,
    initial_delay=lambda **_: random.uniform(1, 5),  # spread many ScaledApps' ticks apart
    cancellation_timeout=10,
)
async def scale(body: kopf.Body, stopped: kopf.DaemonStopped, memo: kopf.Memo, logger: kopf.Logger,
                **_: Any) -> None:
    """Every spec.scaling.interval: observe, judge, decide, act, explain."""
    while not stopped:
        with metrics.tick_timer(body):
            interval = await scaler.tick(memo.kube, dict(body), logger)
        await stopped.wait(interval)
    metrics.forget(body)  # deleted, or no longer served by this process: its series go too


def _is_db_tier(value: str | None, **_: Any) -> bool:
    return value in dbguard.DB_TIERS


@kopf.index("", "v1", "pods", labels={"app.kubernetes.io/managed-by": MANAGED_BY, TIER_LABEL: _is_db_tier})
async def db_pods(body: kopf.Body, namespace: str | None, labels: kopf.Labels, **_: Any) -> dict[Any, Any]:
    """The Postgres pods of every ScaledApp, kept current by the watch: the failover guard reads them each
    second without an API call."""
    return {(namespace, labels.get(INSTANCE_LABEL)): dbguard.pod_summary(body)}


@kopf.daemon(api.GROUP, api.VERSION, api.PLURAL, id="failover-guard", cancellation_timeout=10)
async def guard_write_role(body: kopf.Body, stopped: kopf.DaemonStopped, memo: kopf.Memo, logger: kopf.Logger,
                           **kwargs: Any) -> None:
    """Each second: who holds the Postgres write role; failover, switchover home, slot sweep (dbguard.py)."""
    db_pods: kopf.Index[Any, Any] = kwargs["db_pods"]  # kopf passes indexes by name (its types cannot say so)
    key = (body.metadata.namespace, body.metadata.name)
    await dbguard.run_guard(memo.kube, body, lambda: list(db_pods.get(key, [])), logger, stopped)
