"""The only module that talks to the Kubernetes API.

The official client is synchronous: every call runs in a worker thread (never on kopf's event loop)
and carries a request timeout. Children are written with server-side apply, each writer under its own
field manager, so the reconciler and the scaler never fight over a field (as HPA owns `replicas`).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as dt
import functools
import heapq
import itertools
import json
import logging
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kubernetes
import orjson
import urllib3
from kubernetes.client import ApiClient, ApiException

from scaledapp import api, metrics
from scaledapp.kubestate import EventLimiter, Seen, WatchCache

log = logging.getLogger(__name__)
REQUEST_TIMEOUT = 10.0  # seconds, on every request: a hung API server must not hang a handler
POOL_THREADS = 16
RECONCILES_AT_ONCE = 32  # two requests in flight each on average: enough to keep every thread busy
_POOL = ThreadPoolExecutor(max_workers=POOL_THREADS, thread_name_prefix="kube")

# Whose work a request is, for the order in which waiting requests get a thread (lower first, then in arrival
# order). The failover guard, the scaler and drift repairs run at URGENT; a ScaledApp's reconcile at
# (RECONCILE, its creation time and name): oldest ScaledApp first. An Event goes with the work it tells of:
# the reconcile awaits it, so a lower priority held the reconcile's slot until every other reconcile's
# requests were served (N=200: all workloads ready in 471 s against 301 s without slots).
Priority = tuple[int, str, str]
URGENT, RECONCILE = 0, 1
_PRIORITY: contextvars.ContextVar[Priority] = contextvars.ContextVar("scaledapp_kube_priority",
                                                                     default=(URGENT, "", ""))


# Which work a request serves, a label of the operator's request counter: which work still makes calls once
# every ScaledApp is Ready (the ticks should make none; the periodic resync makes a few).
WORKS = ("reconcile", "resync", "tick", "guard", "repair")
_WORK: contextvars.ContextVar[str] = contextvars.ContextVar("scaledapp_kube_work", default="other")


@contextlib.contextmanager
def work(kind: str) -> Iterator[None]:
    """The requests made inside (and in tasks started inside) serve `kind` (one of WORKS)."""
    if kind not in WORKS:
        raise ValueError(f"unknown work {kind!r}: one of {', '.join(WORKS)}")
    token = _WORK.set(kind)
    try:
        yield
    finally:
        _WORK.reset(token)


def current_priority() -> Priority:
    return _PRIORITY.get()


@contextlib.contextmanager
def reconcile_priority(owner: Mapping[str, Any]) -> Iterator[Priority]:
    """The requests made inside (and in tasks started inside) belong to `owner`'s reconcile: while many
    ScaledApps reconcile at once, an older one's requests go first. First come, first served, 500 new
    ScaledApps progressed in lockstep - every Secret, then every ConfigMap, ..., every workload last - so the
    controllers' work on pods and volume claims only began at the end (bench/results/scale.md); this way the
    first ScaledApps are whole while later ones are still being applied, as with `kubectl apply` file by file."""
    meta = owner.get("metadata") or {}
    order = f"{meta.get('creationTimestamp') or ''}/{meta.get('namespace') or ''}"
    priority: Priority = (RECONCILE, order, str(meta.get("name") or ""))
    token = _PRIORITY.set(priority)
    try:
        yield priority
    finally:
        _PRIORITY.reset(token)


class Slots:
    """At most `size` requests in flight (the thread pool's size); the others wait, ordered by priority,
    then by arrival. A plain executor queue is first come, first served."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.busy = 0
        self._waiting: list[tuple[Priority, int, asyncio.Future[None]]] = []
        self._arrival = itertools.count()

    async def acquire(self, priority: Priority) -> None:
        if self.busy < self.size and not self._waiting:
            self.busy += 1
            return
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (priority, next(self._arrival), granted))
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release()  # handed the slot just as it was cancelled: pass it on
            raise

    def release(self) -> None:
        while self._waiting:
            _, _, waiter = heapq.heappop(self._waiting)
            if not waiter.done():  # the slot moves to the next waiter: busy stays
                waiter.set_result(None)
                return
        self.busy -= 1

    @contextlib.asynccontextmanager
    async def slot(self, priority: Priority) -> Any:
        await self.acquire(priority)
        try:
            yield
        finally:
            self.release()


# Worth retrying soon, with backoff: no answer at all (None, or 0: a timeout, a refused connection), a request
# timeout, a conflict, throttling, and the server's own failures. Anything else (403 until RBAC is fixed, 422)
# is retried slowly: kopf after 300 s (handlers.reconcile), the loops on their next full resync (runner).
RETRYABLE = frozenset({0, 408, 409, 429, 500, 502, 503, 504})


class KubeError(RuntimeError):
    """An API call failed for a reason worth reporting (status code and the server's message). Its type says
    what the failure is, the way kopf's errors.py types its own: NotFoundError, ConflictError, ThrottledError,
    UnavailableError, RejectedError (`KubeError.of` picks it from the status). `retryable` says whether to
    retry soon (RETRYABLE); handlers.reconcile tells kopf so, the drift repair and the loops retry by it."""

    def __init__(self, what: str, status: int | None, message: str) -> None:
        super().__init__(f"{what}: {status} {message}")
        self.status = status
        self.message = message

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status in RETRYABLE

    @staticmethod
    def of(what: str, status: int | None, message: str) -> KubeError:
        """The error of a failed call, typed by its status."""
        return _ERROR_TYPES.get(status, RejectedError)(what, status, message)


class NotFoundError(KubeError):
    """404: the object is not there (most calls take that as an answer; these are the ones that cannot)."""


class ConflictError(KubeError):
    """409: someone else changed or created it first; retried soon."""


class ThrottledError(KubeError):
    """429 (too many requests) or 408 (request timeout): the server asks to come back later; retried soon."""


class UnavailableError(KubeError):
    """No answer (a timeout, a refused connection) or a server failure (500, 502, 503, 504); retried soon."""


class RejectedError(KubeError):
    """The request itself was refused (400, 403, 405, 422, ...): retrying soon would not help."""


_ERROR_TYPES: dict[int | None, type[KubeError]] = {
    None: UnavailableError, 0: UnavailableError, 404: NotFoundError, 409: ConflictError,
    408: ThrottledError, 429: ThrottledError,
    **dict.fromkeys((500, 502, 503, 504), UnavailableError),
}


def load_config() -> ApiClient:
    """In a pod: the service account. Elsewhere: the current kubeconfig context."""
    try:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()  # type: ignore[no-untyped-call]
    configuration = kubernetes.client.Configuration.get_default_copy()
    # One pooled connection per worker thread (the default is 5 per CPU: connections were thrown away).
    configuration.connection_pool_maxsize = POOL_THREADS
    return ApiClient(configuration)


# The kinds the operator reads and writes, by (apiVersion, kind): their URL plural. A static table instead of
# discovery: the operator only ever touches these, and the dynamic client's discovery and object wrapping
# cost more CPU per request than the request itself (profiled at scale).
PLURALS: dict[tuple[str, str], str] = {
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Event"): "events",
    ("v1", "Pod"): "pods",
    ("v1", "Secret"): "secrets",
    ("v1", "Service"): "services",
    ("apps/v1", "Deployment"): "deployments",
    ("apps/v1", "StatefulSet"): "statefulsets",
    ("policy/v1", "PodDisruptionBudget"): "poddisruptionbudgets",
    ("networking.k8s.io/v1", "NetworkPolicy"): "networkpolicies",
    (api.API_VERSION, api.KIND): api.PLURAL,
}
APPLY = "application/apply-patch+yaml"  # JSON is YAML: apply bodies are sent as JSON


def resource_path(api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
    """The REST path of a collection (no name) or of one object."""
    try:
        plural = PLURALS[(api_version, kind)]
    except KeyError:
        raise KubeError(f"{kind} ({api_version})", None, "not a kind this operator manages") from None
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"
    return f"{path}/{name}" if name else path


class Kube:
    """Async facade over the REST API (plain JSON in, plain dicts out). One instance per operator process."""

    def __init__(self, client: ApiClient | None = None) -> None:
        self._client = client or load_config()
        self.requests = 0  # API calls made through this facade (reported on the liveness probe)
        self.seen = Seen()  # what we wrote: our own writes echoed by the watch are not drift
        self.cache = WatchCache()
        self.events = EventLimiter()
        self.slots = Slots(POOL_THREADS)
        self.reconciles = Slots(RECONCILES_AT_ONCE)

    @contextlib.asynccontextmanager
    async def reconciling(self, owner: Mapping[str, Any]) -> Any:
        """A reconcile of `owner`: its requests in its ScaledApp's place (reconcile_priority), and at most
        RECONCILES_AT_ONCE reconciles under way, the oldest ScaledApps' first. Each holds every child it builds
        (about 165 KiB per ScaledApp as Python objects) until its last apply: 500 new ScaledApps all at once
        held them all while their requests queued."""
        with reconcile_priority(owner) as priority:
            async with self.reconciles.slot(priority):
                yield

    async def _call(self, method: str, path: str, *, query: list[tuple[str, str]] | None = None,
                    body: Any = None, content_type: str = "application/json") -> Any:
        """One request in the Kubernetes thread pool (never on kopf's event loop), with a timeout.
        Raises ApiException for any non-2xx answer."""
        self.requests += 1
        log.debug("API %s %s", method, path)
        async with self.slots.slot(_PRIORITY.get()):
            with metrics.kube_request(method, _WORK.get()):
                return await asyncio.get_running_loop().run_in_executor(
                    _POOL, functools.partial(self._call_blocking, method, path, query, body, content_type))

    def _call_blocking(self, method: str, path: str, query: list[tuple[str, str]] | None, body: Any,
                       content_type: str) -> Any:
        # Auth (bearer token refresh included) and the URL come from the client; the body is already plain
        # JSON types, so it skips the generated client's serialization walk.
        _, url, headers, _, _ = self._client.param_serialize(
            method, path, query_params=query or [], auth_settings=["BearerToken"],
            header_params={"Accept": "application/json", "Content-Type": content_type})
        try:
            response = self._client.call_api(method, url, header_params=headers, body=body,
                                             _request_timeout=REQUEST_TIMEOUT)
            data = response.read()  # type: ignore[no-untyped-call]
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            # No answer at all (timeout, refused, reset): status 0, which callers treat as worth a retry.
            raise ApiException(status=0, reason=f"no answer: {type(exc).__name__}") from exc
        if not 200 <= response.status <= 299:
            raise ApiException(http_resp=response)
        return orjson.loads(data) if data else None  # about twice as fast as json (fastjson.py)

    async def apply(self, body: dict[str, Any], manager: str) -> dict[str, Any]:
        """Server-side apply `body` as `manager`; forced, because each manager owns its fields alone."""
        meta = body["metadata"]
        path = resource_path(body["apiVersion"], body["kind"], meta.get("namespace"), meta["name"])
        try:
            with self.seen.writing(body):
                out: dict[str, Any] = await self._call(
                    "PATCH", path, body=body, content_type=APPLY,
                    query=[("fieldManager", manager), ("force", "true")])
                self.seen.record(out)
        except ApiException as exc:
            raise KubeError.of(f"apply {body['kind']}/{meta['name']}", exc.status, _reason(exc)) from exc
        self.cache.remember(out)
        return out

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None) -> dict[str, Any] | None:
        try:
            out: dict[str, Any] = await self._call("GET", resource_path(api_version, kind, namespace, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise KubeError.of(f"get {kind}/{name}", exc.status, _reason(exc)) from exc
        return out

    async def get_cached(self, api_version: str, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        """From the watch cache when the object is there, else from the API server."""
        return self.cache.get(kind, name, namespace) or await self.get(api_version, kind, name, namespace)

    async def list(self, api_version: str, kind: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        try:
            result = await self._call("GET", resource_path(api_version, kind, namespace),
                                      query=[("labelSelector", label_selector)])
        except ApiException as exc:
            raise KubeError.of(f"list {kind}", exc.status, _reason(exc)) from exc
        return list(result.get("items") or [])

    async def delete(self, api_version: str, kind: str, name: str, namespace: str) -> bool:
        """Delete in the background (dependents go with it); False when it was already gone."""
        try:
            await self._call("DELETE", resource_path(api_version, kind, namespace, name),
                             body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"})
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise KubeError.of(f"delete {kind}/{name}", exc.status, _reason(exc)) from exc
        return True

    async def create_once(self, body: dict[str, Any]) -> bool:
        """Create `body` unless it exists; never overwrites (generated secrets are created exactly once)."""
        try:
            await self._call("POST", resource_path(body["apiVersion"], body["kind"], body["metadata"].get("namespace")),
                             body=body)
        except ApiException as exc:
            if exc.status == 409:
                return False
            # Never echo the body: it may hold a generated secret.
            name = body["metadata"].get("name") or body["metadata"].get("generateName", "")
            raise KubeError.of(f"create {body['kind']}/{name}", exc.status, _reason(exc)) from exc
        return True

    async def add_secret_keys(self, name: str, namespace: str, data: dict[str, str], resource_version: str) -> bool:
        """Add `data` (base64 values) to a Secret whose keys do not include them yet: a JSON merge patch, which
        leaves every key it does not name alone, made only while the Secret is still at `resource_version`
        (optimistic concurrency: a 409 if anyone changed it since the caller read it). False when it changed
        or is gone; the caller reads it again next time. Never echoes the values."""
        body = {"metadata": {"resourceVersion": resource_version}, "data": data}
        try:
            await self._call("PATCH", resource_path("v1", "Secret", namespace, name), body=body,
                             content_type="application/merge-patch+json")
        except ApiException as exc:
            if exc.status in (404, 409):
                return False
            raise KubeError.of(f"add keys to Secret/{name}", exc.status, _reason(exc)) from exc
        return True

    async def apply_status(self, name: str, namespace: str, status: dict[str, Any], manager: str) -> None:
        """Server-side apply the ScaledApp's status fields that `manager` owns.

        The reconciler and the scaler each write their own fields and their own conditions (the CRD
        keys `conditions` by type), so neither can drop the other's, as a merge patch of the whole list
        would when both write at once.
        """
        body = {"apiVersion": api.API_VERSION, "kind": api.KIND,
                "metadata": {"name": name, "namespace": namespace}, "status": without_nulls(status)}
        path = resource_path(api.API_VERSION, api.KIND, namespace, name) + "/status"
        try:
            await self._call("PATCH", path, body=body, content_type=APPLY,
                             query=[("fieldManager", manager), ("force", "true")])
        except ApiException as exc:
            if exc.status == 404:
                log.debug("ScaledApp %s/%s is gone; status not written", namespace, name)
                return
            raise KubeError.of(f"apply status of {namespace}/{name}", exc.status, _reason(exc)) from exc

    async def resize_pod(self, name: str, namespace: str, patch: dict[str, Any]) -> bool:
        """In-place resize through the pods/resize subresource; False where the cluster cannot."""
        try:
            await self._call("PATCH", resource_path("v1", "Pod", namespace, name) + "/resize", body=patch,
                             content_type="application/strategic-merge-patch+json")
        except ApiException as exc:
            if exc.status in (404, 405, 422):
                log.info("in-place resize of %s/%s unavailable: %s", namespace, name, _reason(exc))
                return False
            raise KubeError.of(f"resize pod {namespace}/{name}", exc.status, _reason(exc)) from exc
        return True

    async def label_pod(self, name: str, namespace: str, labels: dict[str, str]) -> bool:
        """Set labels on a pod (a merge patch of metadata.labels only); False when the pod is gone."""
        try:
            await self._call("PATCH", resource_path("v1", "Pod", namespace, name),
                             body={"metadata": {"labels": labels}}, content_type="application/merge-patch+json")
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise KubeError.of(f"label pod {namespace}/{name}", exc.status, _reason(exc)) from exc
        return True

    async def delete_pod(self, name: str, namespace: str, grace_seconds: int | None = None) -> bool:
        """Delete a pod (grace 0: the kubelet kills its containers at once, e.g. to fence a hung primary);
        False when it was already gone."""
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_seconds is not None:
            body["gracePeriodSeconds"] = grace_seconds
        try:
            await self._call("DELETE", resource_path("v1", "Pod", namespace, name), body=body)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise KubeError.of(f"delete pod {namespace}/{name}", exc.status, _reason(exc)) from exc
        return True

    async def post_event(
        self, owner: dict[str, Any], type_: str, reason: str, message: str, component: str = "scaledapp-operator"
    ) -> None:
        """A core/v1 Event about the ScaledApp; best effort (an Event must never fail a handler), rate-limited
        per object and reason (EventLimiter: the log still has every one)."""
        meta = owner["metadata"]
        if not self.events.allow(str(meta.get("uid") or f"{meta['namespace']}/{meta['name']}"), reason):
            log.debug("Event %s on %s/%s suppressed (rate limit)", reason, meta["namespace"], meta["name"])
            return
        now = dt.datetime.now(dt.UTC)
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
            "involvedObject": {
                "apiVersion": api.API_VERSION, "kind": api.KIND, "name": meta["name"],
                "namespace": meta["namespace"], "uid": meta.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": component},
            "firstTimestamp": now.isoformat(),
            "lastTimestamp": now.isoformat(),
            "count": 1,
            "reportingComponent": component,
        }
        try:
            await self.create_once(event)
        except KubeError as exc:
            log.warning("could not post Event %s on %s/%s: %s", reason, meta["namespace"], meta["name"], exc.message)


def without_nulls(value: Any) -> Any:
    """Drop None values and empty maps: in an apply body a field is absent, not null (absent = the writer
    gives it up). Empty maps go too: the API server stores an applied `{}` under a map-typed field as
    null, which its own schema then rejects."""
    if isinstance(value, dict):
        cleaned = {k: without_nulls(v) for k, v in value.items() if v is not None}
        return {k: v for k, v in cleaned.items() if v != {}}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def _reason(exc: ApiException) -> str:
    """The server's message without the request body (which may hold secrets)."""
    try:
        data = json.loads(exc.body or "{}")
        return str(data.get("message") or exc.reason)
    except (ValueError, TypeError):
        return str(exc.reason)
