"""The operator's own metrics (prometheus_client), served on their own port (`--metrics-port`, default 8081).

docs/metrics.md lists every family with its labels ("The operator"); tests/unit/test_operator_metrics.py checks
that the list and this module agree. Everything lives in one registry of its own (REGISTRY), so tests and
several operators in one process never collide with the default one.

Hooks, one line each where they are called: `tick_timer` (handlers.scale), `record_tick` (explain._tell),
`record_tiers` (explain.explain), `prometheus_query` (prometheus.Prometheus._query), `kube_request` (kube.Kube._call),
`set_leader` (whoever decides leadership; 1 while this process acts), `forget` (a ScaledApp is gone).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)
from pydantic.alias_generators import to_camel

from scaledapp import tiers as registry

DEFAULT_PORT = 8081

# The *_created series double the exposition and no query uses them (as in demo_app.metrics).
disable_created_metrics()  # type: ignore[no-untyped-call]
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

_OBJ = ("namespace", "scaledapp")

INFO = Gauge("scaledapp_operator_info", "The operator's version (always 1).", ["version"], registry=REGISTRY)
LEADER = Gauge("scaledapp_operator_leader", "1 while this process is the one that acts (the leader), else 0.",
               registry=REGISTRY)
PRESSURE = Gauge("scaledapp_operator_tier_pressure",
                 "A tier's pressure at the last tick (1.0 = at target); NaN when unknown.",
                 [*_OBJ, "tier"], registry=REGISTRY)
BOTTLENECK = Gauge("scaledapp_operator_bottleneck",
                   "1 for the tier that is the bottleneck at the last tick, 0 for the others.",
                   [*_OBJ, "tier"], registry=REGISTRY)
DESIRED = Gauge("scaledapp_operator_tier_desired_replicas", "Replicas a tier's workload asks for.",
                [*_OBJ, "tier"], registry=REGISTRY)
READY = Gauge("scaledapp_operator_tier_ready_replicas", "Replicas of a tier that are ready.",
              [*_OBJ, "tier"], registry=REGISTRY)
DECISIONS = Counter("scaledapp_operator_decisions_total",
                    "Decisions that were not a hold, by tier, direction (widen, narrow) and whether they were "
                    "applied (Auto) or only recommended.",
                    [*_OBJ, "tier", "direction", "applied"], registry=REGISTRY)
VERDICTS = Counter("scaledapp_operator_step_verdicts_total",
                   "Verify-after-act verdicts on applied steps: effective or ineffective.",
                   [*_OBJ, "tier", "direction", "verdict"], registry=REGISTRY)
TICKS = Counter("scaledapp_operator_ticks_total",
                "Scaler ticks by the reason of their outcome (the Scaling condition's reason: Widened, Cooldown, "
                "ScaleUpWindow, WithinTarget, MetricsUnavailable, ...).",
                [*_OBJ, "reason"], registry=REGISTRY)
TICK_SECONDS = Histogram("scaledapp_operator_tick_duration_seconds",
                         "One scaler tick: observe, decide, act, explain.", _OBJ, registry=REGISTRY,
                         buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
PROM_QUERIES = Counter("scaledapp_operator_prometheus_queries_total",
                       "Instant queries sent to Prometheus by result: ok, unknown (answered without one usable "
                       "value), error (no answer: refused, timeout, HTTP error).",
                       ["result"], registry=REGISTRY)
PROM_SECONDS = Histogram("scaledapp_operator_prometheus_query_duration_seconds",
                         "Latency of one instant query to Prometheus, answered or not.", registry=REGISTRY,
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
KUBE_REQUESTS = Counter("scaledapp_operator_kube_requests_total",
                        "Kubernetes API requests the operator made (kopf's own watches excluded), by HTTP method, "
                        "status code (`error` when no answer came) and the work they served (reconcile, resync, "
                        "tick, guard, repair, other).",
                        ["method", "code", "work"], registry=REGISTRY)
KUBE_SECONDS = Histogram("scaledapp_operator_kube_request_duration_seconds",
                         "Latency of one Kubernetes API request.", ["method"], registry=REGISTRY,
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))

_PER_OBJECT = (PRESSURE, BOTTLENECK, DESIRED, READY, DECISIONS, VERDICTS, TICKS, TICK_SECONDS)
_server_lock = threading.Lock()
_server: Any = None


class _Evidence(Protocol):
    tier: str
    pressure: float | None


class _Action(Protocol):
    tier: str
    kind: str
    applied: bool
    verdict: str


class _Decision(Protocol):
    """What record_tick reads of a scaledapp.decide.Decision (a protocol: no import of the decision module)."""

    @property
    def bottleneck(self) -> str | None: ...
    @property
    def pressures(self) -> list[Any]: ...
    @property
    def action(self) -> Any: ...
    @property
    def verified(self) -> Any: ...
    @property
    def reason(self) -> str | None: ...


def _ref(body: Mapping[str, Any]) -> tuple[str, str]:
    meta = body.get("metadata") or {}
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


def serve(port: int = DEFAULT_PORT, addr: str = "0.0.0.0", version: str = "") -> int:
    """Start the /metrics HTTP server in a thread (once); returns the port it listens on."""
    global _server
    with _server_lock:
        if _server is None:
            try:
                _server, _thread = start_http_server(port, addr=addr, registry=REGISTRY)
            except OSError as exc:  # the port is taken: run without metrics rather than not at all
                logging.getLogger(__name__).warning("metrics: cannot listen on %s:%d (%s); no /metrics",
                                                    addr, port, exc)
                return 0
            INFO.labels(version=version or _version()).set(1)
            LEADER.set(1)  # standalone: this process acts; leader election overrides with set_leader
        return int(_server.server_port)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("scaledapp")
    except PackageNotFoundError:
        return "unknown"


def set_leader(leader: bool) -> None:
    LEADER.set(1 if leader else 0)


@contextmanager
def tick_timer(body: Mapping[str, Any]) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        TICK_SECONDS.labels(*_ref(body)).observe(time.perf_counter() - start)


def record_tiers(body: Mapping[str, Any], tiers: Any) -> None:
    """Desired and ready replicas per tier, from api.TiersStatus (a model or its dict)."""
    namespace, name = _ref(body)
    counts = tiers.model_dump() if hasattr(tiers, "model_dump") else dict(tiers)
    for field, value in counts.items():
        tier = _tier_of(field)
        if tier is None or not isinstance(value, Mapping):
            continue
        DESIRED.labels(namespace, name, tier).set(float(value.get("desired") or 0))
        READY.labels(namespace, name, tier).set(float(value.get("ready") or 0))


def _tier_of(status_field: str) -> str | None:
    """The tier whose status.tiers entry is `status_field` (either spelling)."""
    return next((t.name for t in registry.TIERS if status_field in (t.status_field, to_camel(t.status_field))), None)


def record_tick(body: Mapping[str, Any], decision: _Decision) -> None:
    """Pressure and bottleneck per tier, the tick's reason, a decision, a verdict."""
    namespace, name = _ref(body)
    TICKS.labels(namespace, name, decision.reason or "Unknown").inc()
    seen: set[str] = set()
    for evidence in decision.pressures:
        seen.add(evidence.tier)
        pressure = evidence.pressure
        PRESSURE.labels(namespace, name, evidence.tier).set(float("nan") if pressure is None else float(pressure))
    for tier in seen | {decision.bottleneck or ""} - {""}:
        BOTTLENECK.labels(namespace, name, tier).set(1.0 if tier == decision.bottleneck else 0.0)
    for tier in registry.ladder():  # a tier that is no longer judged (switched off, mode Off) has no pressure
        if tier not in seen:
            _remove(PRESSURE, (namespace, name, tier))
            _remove(BOTTLENECK, (namespace, name, tier))
    action = decision.action
    if action is not None and action.kind in ("widen", "narrow"):
        DECISIONS.labels(namespace, name, action.tier, action.kind,
                         "true" if action.applied else "false").inc()
    verified = decision.verified
    if verified is not None and verified.verdict in ("effective", "ineffective"):
        VERDICTS.labels(namespace, name, verified.tier, verified.kind, verified.verdict).inc()


def _remove(metric: Any, labels: tuple[str, ...]) -> None:
    with suppress(KeyError):
        metric.remove(*labels)


def forget(body: Mapping[str, Any]) -> None:
    """Drop every series of one ScaledApp (it was deleted, or this operator stopped serving it)."""
    namespace, name = _ref(body)
    for metric in _PER_OBJECT:
        for labels in list(metric._metrics):  # prometheus_client keeps children by label values
            if labels[:2] == (namespace, name):
                _remove(metric, tuple(labels))


@contextmanager
def prometheus_query() -> Iterator[list[str]]:
    """Time one query; the caller appends its result ("ok", "unknown", "error") to the yielded list."""
    outcome: list[str] = []
    start = time.perf_counter()
    try:
        yield outcome
    except BaseException:
        outcome.append("error")
        raise
    finally:
        PROM_SECONDS.observe(time.perf_counter() - start)
        PROM_QUERIES.labels(outcome[-1] if outcome else "error").inc()


def query_result(value: float | None, answered: bool) -> str:
    return "error" if not answered else "ok" if value is not None else "unknown"


@contextmanager
def kube_request(method: str, work: str = "other") -> Iterator[None]:
    """Count and time one Kubernetes API request; the status code comes from the exception, if any."""
    start = time.perf_counter()
    code = "2xx"
    try:
        yield
    except BaseException as exc:
        status = getattr(exc, "status", None)
        code = str(status) if isinstance(status, int) and status else "error"
        raise
    finally:
        KUBE_SECONDS.labels(method).observe(time.perf_counter() - start)
        KUBE_REQUESTS.labels(method, code, work).inc()
