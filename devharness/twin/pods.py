"""Per-pod series of the twin: each ready pod's share of its role's counters (cumulative from the pod's
start, as a real process's are) and its gauges now, rendered as Prometheus text exposition."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from demo_app.metrics import ERROR_KINDS, OPERATIONS
from devharness.twin import families as f
from devharness.twin.dynamics import TickResult
from devharness.twin.params import TwinParams
from scaledapp import api
from scaledapp.quantity import parse_cpu_millicores
from scaledapp.sizes import Sizes, TierName


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


def _zero(tier: TierName) -> dict[str, float]:
    """The series a process has before its first event (demo_app.metrics.init_*_series)."""
    out: dict[str, float] = {}
    if tier == "app":
        out["process_cpu_seconds_total"] = 0.0
        for hist in f.HTTP_HIST.values():
            hist.zero(out)
        out.update(dict.fromkeys(f.HTTP_COUNT.values(), 0.0))
        for hist in f.DEPENDENCY_HIST.values():
            hist.zero(out)
        for hist in f.POOL_WAIT_HIST.values():
            hist.zero(out)
        out.update(dict.fromkeys(f.ERRORS.values(), 0.0))
        out.update(dict.fromkeys(f.CACHE_RESULT.values(), 0.0))
    elif tier == "workers":
        out["process_cpu_seconds_total"] = 0.0
        for op in OPERATIONS["queue"]:
            f.DEPENDENCY_HIST["queue", op].zero(out)
        f.POOL_WAIT_HIST["queue"].zero(out)
        out.update({f.ERRORS["queue", kind]: 0.0 for kind in ERROR_KINDS})
        f.JOB_HIST.zero(out)
        out[f.JOBS_DONE] = out[f.JOBS_FAILED] = 0.0
    elif tier == "cache":
        for name in ("redis_keyspace_hits_total", "redis_keyspace_misses_total", "redis_evicted_keys_total",
                     "redis_cpu_user_seconds_total", "redis_cpu_sys_seconds_total", "redis_commands_processed_total"):
            out[name] = 0.0
    else:
        out[f.key("pg_stat_database_xact_commit", f.DATABASE)] = 0.0
    return out


def _increments(tier: TierName, result: TickResult) -> Mapping[str, float]:
    return {"app": result.app, "workers": result.worker, "cache": result.cache,
            "db-write": result.primary, "db-read": result.replica}[tier]


class PodSeries:
    """Cumulative counters per pod; a tick's increments are shared evenly by the tier's ready pods."""

    def __init__(self) -> None:
        self._counters: dict[str, dict[str, float]] = {}

    def add(self, result: TickResult, ready: Mapping[TierName, Sequence[str]]) -> None:
        for tier, names in ready.items():
            if not names:
                continue
            increments = _increments(tier, result)
            share = 1.0 / len(names)
            for name in names:
                counters = self._counters.get(name)
                if counters is None:
                    counters = self._counters[name] = _zero(tier)
                for sample, value in increments.items():
                    counters[sample] = counters.get(sample, 0.0) + value * share
        alive = {name for names in ready.values() for name in names}
        for gone in [n for n in self._counters if n not in alive]:
            del self._counters[gone]  # a deleted pod's counters go with it; a new pod starts at zero

    def render(self, tier: TierName, name: str, gauges: Mapping[str, float]) -> str:
        counters = self._counters.get(name) or _zero(tier)
        return f.render([*gauges.items(), *counters.items()])


def gauges_for(
    tier: TierName, name: str, ready: bool, last: TickResult | None, model: PlantView,
    ready_counts: Mapping[TierName, int],
) -> dict[str, float]:
    """A pod's gauges now. A pod that is not ready has no traffic; a replica that is still
    bootstrapping cannot be queried by its exporter (pg_up 0 and nothing else)."""
    params = model.params
    n = max(1, ready_counts.get(tier, 0))
    share = 1.0 / n if ready else 0.0
    depth = last.queue_depth if last else 0.0
    age = last.oldest_age if last else 0.0
    if tier == "app":
        out = {
            "scaledapp_http_requests_in_flight": (last.in_flight if last else 0.0) * share,
            "scaledapp_cpu_limit_cores": parse_cpu_millicores(model.spec.app.resources.cpu) / 1000.0,
            "scaledapp_queue_depth": depth,
            "scaledapp_queue_oldest_age_seconds": age,
        }
        out.update(dict.fromkeys(f.CIRCUIT.values(), 0.0))
        return out
    if tier == "workers":
        return {
            "scaledapp_cpu_limit_cores": WORKER_CPU_LIMIT_CORES,
            f.CIRCUIT["queue"]: 0.0,
            "scaledapp_queue_depth": depth,
            "scaledapp_queue_oldest_age_seconds": age,
            "scaledapp_worker_jobs_in_progress": (last.jobs_in_progress if last else 0.0) * share,
            "scaledapp_worker_concurrency": float(params.worker_concurrency),
        }
    if tier == "cache":
        return {
            "redis_up": 1.0,
            "redis_memory_used_bytes": last.cache_memory_used if last else float(params.cache_base_bytes),
            "redis_memory_max_bytes": float(model.sizes.cache_memory_bytes),
            "redis_connected_clients": float(ready_counts.get("app", 0) * 10 + 1),
            "redis_blocked_clients": 0.0,
        }
    server = (("server", SERVER),)
    if tier == "db-read" and not ready:
        return {"pg_up": 0.0}
    if tier == "db-write":
        active = last.primary_active if last else 0.0
        connections = last.primary_connections if last else 1.0
        lag = 0.0
        extra = {
            f.key("pg_locks_waiting_count", server): last.lock_waits if last else 0.0,
            f.key("pg_locks_waiting_max_seconds", server): last.lock_wait_max_seconds if last else 0.0,
        }
    else:
        active = (last.replica_active if last else 0.0) * share
        connections = (last.replica_connections if last else 0.0) * share
        lag = last.replica_lag.get(name, 0.0) if last else 0.0
        extra = {"pg_replication_last_replay_seconds": lag}
    return {
        "pg_up": 1.0,
        f.activity_key("active", SERVER): active,
        f.activity_key("idle", SERVER): max(0.0, connections - active),
        f.key("pg_settings_max_connections", server): float(params.max_connections),
        "pg_replication_is_replica": 0.0 if tier == "db-write" else 1.0,
        "pg_replication_lag_seconds": lag,
        **extra,
    }
