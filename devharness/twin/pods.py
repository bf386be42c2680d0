"""Per-pod series of the twin: each ready pod's share of its role's counters (cumulative from the pod's
start, as a real process's are) and its gauges now, rendered as Prometheus text exposition."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from demo_app.metrics import ERROR_KINDS, OPERATIONS
from devharness.twin import families as f
from devharness.twin.params import TwinParams
from devharness.twin.plant import TickResult
from scaledapp import api
from scaledapp.quantity import parse_cpu_millicores
from scaledapp.sizes import Sizes


class PlantView(Protocol):
    """What a pod's gauges read from the twin besides the last tick (the model provides it; this module
    does not import the model, so the twin's modules form no cycle)."""

    @property
    def params(self) -> TwinParams: ...

    @property
    def spec(self) -> api.ScaledAppSpec: ...

    @property
    def sizes(self) -> Sizes: ...


SERVER = "localhost:5432"  # postgres_exporter's DSN host:port in the sidecar
WORKER_CPU_LIMIT_CORES = 0.5


def zero_app() -> dict[str, float]:
    """The series an app process has before its first event (demo_app.metrics.init_*_series)."""
    out: dict[str, float] = {"process_cpu_seconds_total": 0.0}
    for hist in f.HTTP_HIST.values():
        hist.zero(out)
    out.update(dict.fromkeys(f.HTTP_COUNT.values(), 0.0))
    for hist in f.DEPENDENCY_HIST.values():
        hist.zero(out)
    for hist in f.POOL_WAIT_HIST.values():
        hist.zero(out)
    out.update(dict.fromkeys(f.ERRORS.values(), 0.0))
    out.update(dict.fromkeys(f.CACHE_RESULT.values(), 0.0))
    return out


def zero_workers() -> dict[str, float]:
    out: dict[str, float] = {"process_cpu_seconds_total": 0.0}
    for op in OPERATIONS["queue"]:
        f.DEPENDENCY_HIST["queue", op].zero(out)
    f.POOL_WAIT_HIST["queue"].zero(out)
    out.update({f.ERRORS["queue", kind]: 0.0 for kind in ERROR_KINDS})
    f.JOB_HIST.zero(out)
    out[f.JOBS_DONE] = out[f.JOBS_FAILED] = 0.0
    return out


def zero_cache() -> dict[str, float]:
    return dict.fromkeys(("redis_keyspace_hits_total", "redis_keyspace_misses_total", "redis_evicted_keys_total",
                          "redis_cpu_user_seconds_total", "redis_cpu_sys_seconds_total",
                          "redis_commands_processed_total"), 0.0)


def zero_pg() -> dict[str, float]:
    return {f.key("pg_stat_database_xact_commit", f.DATABASE): 0.0}


class TierSeries(Protocol):
    """What PodSeries needs of a tier (devharness.twin.tiers.TwinTier provides it)."""

    def zero(self) -> dict[str, float]: ...

    def increments(self, result: TickResult) -> Mapping[str, float]: ...


class PodSeries:
    """Cumulative counters per pod; a tick's increments are shared evenly by the tier's ready pods."""

    def __init__(self) -> None:
        self._counters: dict[str, dict[str, float]] = {}

    def add(self, result: TickResult, ready: Mapping[TierSeries, Sequence[str]]) -> None:
        for tier, names in ready.items():
            if not names:
                continue
            increments = tier.increments(result)
            share = 1.0 / len(names)
            for name in names:
                counters = self._counters.get(name)
                if counters is None:
                    counters = self._counters[name] = tier.zero()
                for sample, value in increments.items():
                    counters[sample] = counters.get(sample, 0.0) + value * share
        alive = {name for names in ready.values() for name in names}
        for gone in [n for n in self._counters if n not in alive]:
            del self._counters[gone]  # a deleted pod's counters go with it; a new pod starts at zero

    def render(self, tier: TierSeries, name: str, gauges: Mapping[str, float]) -> str:
        counters = self._counters.get(name) or tier.zero()
        return f.render([*gauges.items(), *counters.items()])


@dataclass(frozen=True)
class PodState:
    """One pod as its gauges see it: its name, whether it is ready, the last tick, and how many pods of its
    tier (`ready_here`) and of the app (`app_ready`) are ready."""

    name: str
    ready: bool
    last: TickResult | None
    ready_here: int
    app_ready: int

    @property
    def share(self) -> float:
        """Its share of its tier's traffic: none while not ready."""
        return 1.0 / max(1, self.ready_here) if self.ready else 0.0


def app_gauges(pod: PodState, model: PlantView) -> dict[str, float]:
    last = pod.last
    out = {
        "scaledapp_http_requests_in_flight": (last.in_flight if last else 0.0) * pod.share,
        "scaledapp_cpu_limit_cores": parse_cpu_millicores(model.spec.app.resources.cpu) / 1000.0,
        "scaledapp_queue_depth": last.queue_depth if last else 0.0,
        "scaledapp_queue_oldest_age_seconds": last.oldest_age if last else 0.0,
    }
    out.update(dict.fromkeys(f.CIRCUIT.values(), 0.0))
    return out


def worker_gauges(pod: PodState, model: PlantView) -> dict[str, float]:
    last = pod.last
    return {
        "scaledapp_cpu_limit_cores": WORKER_CPU_LIMIT_CORES,
        f.CIRCUIT["queue"]: 0.0,
        "scaledapp_queue_depth": last.queue_depth if last else 0.0,
        "scaledapp_queue_oldest_age_seconds": last.oldest_age if last else 0.0,
        "scaledapp_worker_jobs_in_progress": (last.jobs_in_progress if last else 0.0) * pod.share,
        "scaledapp_worker_concurrency": float(model.params.worker_concurrency),
    }


def cache_gauges(pod: PodState, model: PlantView, maxmemory: float) -> dict[str, float]:
    last = pod.last
    return {
        "redis_up": 1.0,
        "redis_memory_used_bytes": last.cache_memory_used if last else float(model.params.cache_base_bytes),
        "redis_memory_max_bytes": maxmemory,
        "redis_connected_clients": float(pod.app_ready * 10 + 1),
        "redis_blocked_clients": 0.0,
    }


def replica_gauges(pod: PodState, model: PlantView) -> dict[str, float]:
    """A replica that is still bootstrapping cannot be queried by its exporter (pg_up 0 and nothing else)."""
    if not pod.ready:
        return {"pg_up": 0.0}
    last = pod.last
    lag = last.replica_lag.get(pod.name, 0.0) if last else 0.0
    return _pg_gauges(model, (last.replica_active if last else 0.0) * pod.share,
                      (last.replica_connections if last else 0.0) * pod.share, lag,
                      {"pg_replication_last_replay_seconds": lag}, replica=True)


def primary_gauges(pod: PodState, model: PlantView) -> dict[str, float]:
    last, server = pod.last, (("server", SERVER),)
    extra = {
        f.key("pg_locks_waiting_count", server): last.lock_waits if last else 0.0,
        f.key("pg_locks_waiting_max_seconds", server): last.lock_wait_max_seconds if last else 0.0,
    }
    return _pg_gauges(model, last.primary_active if last else 0.0, last.primary_connections if last else 1.0, 0.0,
                      extra, replica=False)


def _pg_gauges(model: PlantView, active: float, connections: float, lag: float, extra: Mapping[str, float], *,
               replica: bool) -> dict[str, float]:
    server = (("server", SERVER),)
    return {
        "pg_up": 1.0,
        f.activity_key("active", SERVER): active,
        f.activity_key("idle", SERVER): max(0.0, connections - active),
        f.key("pg_settings_max_connections", server): float(model.params.max_connections),
        "pg_replication_is_replica": 1.0 if replica else 0.0,
        "pg_replication_lag_seconds": lag,
        **extra,
    }
