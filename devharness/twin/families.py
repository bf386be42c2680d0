"""The metric families the twin's pods expose: the names, labels and histogram buckets of
docs/metrics.md, as sample keys (`name{label="value",...}`) and Prometheus text exposition.

The demo app's bucket boundaries are imported from demo_app.metrics, so a twin histogram has exactly
the `le` values of the real one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field

from demo_app import metrics as app_metrics
from demo_app.metrics import CACHE_RESULTS, ERROR_KINDS, OPERATIONS
from devharness.twin.physics import bucket_counts

HTTP_BUCKETS: tuple[float, ...] = tuple(app_metrics.HTTP_BUCKETS)
DEPENDENCY_BUCKETS: tuple[float, ...] = tuple(app_metrics.DEPENDENCY_BUCKETS)
JOB_BUCKETS: tuple[float, ...] = tuple(app_metrics.JOB_BUCKETS)

Labels = tuple[tuple[str, str], ...]

# family -> (type, help); histograms by base name, counters by their full name (with _total).
FAMILIES: dict[str, tuple[str, str]] = {
    "scaledapp_http_requests_total": ("counter", "HTTP requests served"),
    "scaledapp_http_request_duration_seconds": ("histogram", "HTTP request latency"),
    "scaledapp_http_requests_in_flight": ("gauge", "HTTP requests being served right now"),
    "process_cpu_seconds_total": ("counter", "Total user and system CPU time spent in seconds."),
    "scaledapp_cpu_limit_cores": ("gauge", "CPU limit of this container in cores"),
    "scaledapp_dependency_duration_seconds": ("histogram", "Latency of one call to a dependency"),
    "scaledapp_dependency_pool_wait_seconds": ("histogram", "Time spent obtaining a pooled connection"),
    "scaledapp_dependency_errors_total": ("counter", "Failed dependency calls by kind"),
    "scaledapp_circuit_state": ("gauge", "Circuit breaker state: 0 closed, 1 half-open, 2 open"),
    "scaledapp_cache_requests_total": ("counter", "Cache lookups: hit, miss, or bypass"),
    "scaledapp_queue_depth": ("gauge", "Jobs waiting in the queue"),
    "scaledapp_queue_oldest_age_seconds": ("gauge", "Age of the oldest waiting job"),
    "scaledapp_worker_job_duration_seconds": ("histogram", "Time a worker spent processing one job"),
    "scaledapp_worker_jobs_total": ("counter", "Jobs finished by the worker"),
    "scaledapp_worker_jobs_in_progress": ("gauge", "Jobs this worker is processing right now"),
    "scaledapp_worker_concurrency": ("gauge", "Jobs this worker can process at once"),
    "redis_up": ("gauge", "Information about the Redis instance"),
    "redis_keyspace_hits_total": ("counter", "keyspace_hits metric"),
    "redis_keyspace_misses_total": ("counter", "keyspace_misses metric"),
    "redis_evicted_keys_total": ("counter", "evicted_keys metric"),
    "redis_memory_used_bytes": ("gauge", "memory_used metric"),
    "redis_memory_max_bytes": ("gauge", "memory_max metric"),
    "redis_cpu_user_seconds_total": ("counter", "used_cpu_user metric"),
    "redis_cpu_sys_seconds_total": ("counter", "used_cpu_sys metric"),
    "redis_commands_processed_total": ("counter", "commands_processed metric"),
    "redis_connected_clients": ("gauge", "connected_clients metric"),
    "redis_blocked_clients": ("gauge", "blocked_clients metric"),
    "redis_commands_total": ("counter", "Total number of calls per command"),
    "redis_commands_duration_seconds_total": ("counter", "Total amount of time in seconds spent per command"),
    "pg_up": ("gauge", "Whether the last scrape of metrics from PostgreSQL was able to connect to the server"),
    "pg_stat_activity_count": ("gauge", "number of connections in this state"),
    "pg_settings_max_connections": ("gauge", "Sets the maximum number of concurrent connections."),
    "pg_stat_database_xact_commit": ("counter", "Number of transactions in this database that have been committed"),
    "pg_locks_waiting_count": ("gauge", "Backends waiting to acquire a lock"),
    "pg_locks_waiting_max_seconds": ("gauge", "Longest-running statement among lock waiters"),
    "pg_replication_is_replica": ("gauge", "Indicates if the server is a replica"),
    "pg_replication_lag_seconds": ("gauge", "Replication lag behind master in seconds"),
    "pg_replication_last_replay_seconds": ("gauge", "Age of last replay in seconds"),
}


def key(name: str, labels: Labels = ()) -> str:
    if not labels:
        return name
    inner = ",".join(f'{k}="{v}"' for k, v in labels)
    return f"{name}{{{inner}}}"


def _le(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else repr(float(bound))


@dataclass(frozen=True)
class Hist:
    """One histogram series (fixed labels): its sample keys, precomputed."""

    name: str
    labels: Labels
    bounds: tuple[float, ...]
    bucket_keys: tuple[str, ...] = field(init=False)
    sum_key: str = field(init=False)
    count_key: str = field(init=False)
    inf_key: str = field(init=False)

    def __post_init__(self) -> None:
        buckets = tuple(key(f"{self.name}_bucket", (*self.labels, ("le", _le(b)))) for b in self.bounds)
        object.__setattr__(self, "bucket_keys", buckets)
        object.__setattr__(self, "sum_key", key(f"{self.name}_sum", self.labels))
        object.__setattr__(self, "count_key", key(f"{self.name}_count", self.labels))
        object.__setattr__(self, "inf_key", key(f"{self.name}_bucket", (*self.labels, ("le", "+Inf"))))

    def observe(
        self, into: MutableMapping[str, float], count: float, mean: float, waiting: float = 1.0, shift: float = 0.0
    ) -> None:
        """Add `count` observations, a share `waiting` of them `shift` + exponential around `mean`, the rest 0."""
        counts = bucket_counts(count, mean, self.bounds, waiting, shift)
        for bucket, value in zip(self.bucket_keys, counts, strict=True):
            into[bucket] = into.get(bucket, 0.0) + value
        into[self.inf_key] = into.get(self.inf_key, 0.0) + count
        into[self.sum_key] = into.get(self.sum_key, 0.0) + count * (mean + shift) * waiting
        into[self.count_key] = into.get(self.count_key, 0.0) + count

    def observe_fixed(self, into: MutableMapping[str, float], count: float, value: float) -> None:
        """Add `count` observations that all took `value` seconds (e.g. a job that sleeps)."""
        for bucket, bound in zip(self.bucket_keys, self.bounds, strict=True):
            into[bucket] = into.get(bucket, 0.0) + (count if value <= bound else 0.0)
        into[self.inf_key] = into.get(self.inf_key, 0.0) + count
        into[self.sum_key] = into.get(self.sum_key, 0.0) + count * value
        into[self.count_key] = into.get(self.count_key, 0.0) + count

    def zero(self, into: MutableMapping[str, float]) -> None:
        self.observe(into, 0.0, 0.0)

    def cumulative(self, totals: Mapping[str, float]) -> tuple[list[float], float]:
        """(cumulative count per finite bound, total count) from summed samples."""
        return [totals.get(k, 0.0) for k in self.bucket_keys], totals.get(self.count_key, 0.0)


# --- the app's series
ROUTES = {  # request class -> (route, method, status)
    "read": ("/items/{item_id}", "GET", "200"),
    "write": ("/items/{item_id}", "PUT", "200"),
    "order": ("/orders", "POST", "202"),
}
HTTP_HIST = {cls: Hist("scaledapp_http_request_duration_seconds", (("route", r), ("method", m)), HTTP_BUCKETS)
             for cls, (r, m, _) in ROUTES.items()}
HTTP_COUNT = {cls: key("scaledapp_http_requests_total", (("route", r), ("method", m), ("status", s)))
              for cls, (r, m, s) in ROUTES.items()}
HTTP_UNAVAILABLE = {cls: key("scaledapp_http_requests_total", (("route", r), ("method", m), ("status", "503")))
                    for cls, (r, m, _) in ROUTES.items()}
DEPENDENCY_HIST = {
    (dep, op): Hist("scaledapp_dependency_duration_seconds", (("dependency", dep), ("operation", op)),
                    DEPENDENCY_BUCKETS)
    for dep, ops in OPERATIONS.items() for op in ops
}
POOL_WAIT_HIST = {dep: Hist("scaledapp_dependency_pool_wait_seconds", (("dependency", dep),), DEPENDENCY_BUCKETS)
                  for dep in OPERATIONS}
ERRORS = {(dep, kind): key("scaledapp_dependency_errors_total", (("dependency", dep), ("kind", kind)))
          for dep in OPERATIONS for kind in ERROR_KINDS}
CIRCUIT = {dep: key("scaledapp_circuit_state", (("dependency", dep),)) for dep in OPERATIONS}
CACHE_RESULT = {result: key("scaledapp_cache_requests_total", (("result", result),)) for result in CACHE_RESULTS}
JOB_HIST = Hist("scaledapp_worker_job_duration_seconds", (), JOB_BUCKETS)
JOBS_DONE = key("scaledapp_worker_jobs_total", (("status", "done"),))
JOBS_FAILED = key("scaledapp_worker_jobs_total", (("status", "failed"),))

# --- postgres_exporter label sets
DATABASE = (("datid", "16384"), ("datname", "app"))


def activity_key(state: str, server: str) -> str:
    return key("pg_stat_activity_count", (
        ("datname", "app"), ("state", state), ("usename", "app"), ("application_name", ""),
        ("backend_type", "client backend"), ("wait_event_type", ""), ("wait_event", ""), ("server", server),
    ))


def family_of(sample_key: str) -> str:
    name = sample_key.split("{", 1)[0]
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if base != name and FAMILIES.get(base, ("", ""))[0] == "histogram":
            return base
    return name


def render(samples: Iterable[tuple[str, float]]) -> str:
    """Prometheus text exposition (format 0.0.4) of the samples, grouped by family with HELP/TYPE."""
    grouped: dict[str, list[tuple[str, float]]] = {}
    for sample_key, value in samples:
        grouped.setdefault(family_of(sample_key), []).append((sample_key, value))
    lines: list[str] = []
    for family, entries in grouped.items():
        kind, help_text = FAMILIES.get(family, ("untyped", ""))
        lines.append(f"# HELP {family} {help_text}")
        lines.append(f"# TYPE {family} {kind}")
        lines.extend(f"{sample_key} {_value(value)}" for sample_key, value in entries)
    return "\n".join(lines) + "\n"


def _value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))
