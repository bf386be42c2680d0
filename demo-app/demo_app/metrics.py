"""Every metric the app and the worker export. Names and labels are documented in docs/metrics.md,
which a test checks against what a live process really serves: change both together."""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram, disable_created_metrics

# The *_created series double the exposition and no query here uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]

DEPENDENCIES: Final = ("cache", "db-read", "db-write", "queue")
ERROR_KINDS: Final = ("timeout", "unavailable", "circuit_open", "pool_exhausted", "error")
CACHE_RESULTS: Final = ("hit", "miss", "bypass")
JOB_STATUSES: Final = ("done", "failed", "dead")  # failed: queued again; dead: out of attempts
# The operations each dependency is called for (pre-registered so rate() has a zero to start from).
OPERATIONS: Final = {
    "cache": ("get", "set", "invalidate"),
    "db-read": ("get_item", "ping"),
    "db-write": ("get_item", "put_item", "create_item", "ping", "schema"),
    "queue": ("enqueue", "get_order", "dequeue", "update_order", "depth"),
}

HTTP_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
DEPENDENCY_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
JOB_BUCKETS: Final = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# --- app: HTTP (probes and /metrics are not counted: they are not user traffic)
HTTP_REQUESTS = Counter(
    "scaledapp_http_requests", "HTTP requests served", ["route", "method", "status"]
)
HTTP_DURATION = Histogram(
    "scaledapp_http_request_duration_seconds",
    "HTTP request latency, from first byte in to last byte out",
    ["route", "method"],
    buckets=HTTP_BUCKETS,
)
HTTP_IN_FLIGHT = Gauge("scaledapp_http_requests_in_flight", "HTTP requests being served right now")

# --- app and worker: the CPU budget, so utilization = rate(process_cpu_seconds_total) / this
CPU_LIMIT = Gauge("scaledapp_cpu_limit_cores", "CPU limit of this container in cores (downward API)")

# --- app and worker: each dependency, measured client-side
DEP_DURATION = Histogram(
    "scaledapp_dependency_duration_seconds",
    "Latency of one call to a dependency as the caller sees it, pool wait included",
    ["dependency", "operation"],
    buckets=DEPENDENCY_BUCKETS,
)
DEP_POOL_WAIT = Histogram(
    "scaledapp_dependency_pool_wait_seconds",
    "Time spent obtaining a connection from the dependency's client pool",
    ["dependency"],
    buckets=DEPENDENCY_BUCKETS,
)
DEP_ERRORS = Counter(
    "scaledapp_dependency_errors", "Failed dependency calls by kind", ["dependency", "kind"]
)
CIRCUIT_STATE = Gauge(
    "scaledapp_circuit_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open", ["dependency"]
)
CACHE_REQUESTS = Counter(
    "scaledapp_cache_requests", "Cache lookups: hit, miss, or bypass (cache off or unavailable)", ["result"]
)

# --- worker: the queue and the jobs
QUEUE_DEPTH = Gauge("scaledapp_queue_depth", "Jobs waiting in the queue (not yet taken by a worker)")
QUEUE_OLDEST_AGE = Gauge("scaledapp_queue_oldest_age_seconds", "Age of the oldest waiting job (0 if none)")
JOB_DURATION = Histogram(
    "scaledapp_worker_job_duration_seconds",
    "Time a worker spent processing one job",
    buckets=JOB_BUCKETS,
)
JOBS = Counter("scaledapp_worker_jobs", "Jobs finished by the worker", ["status"])
JOBS_IN_PROGRESS = Gauge("scaledapp_worker_jobs_in_progress", "Jobs this worker is processing right now")
WORKER_CONCURRENCY = Gauge("scaledapp_worker_concurrency", "Jobs this worker can process at once")


def init_dependency_series(dependencies: tuple[str, ...]) -> None:
    """Create every finite label combination at zero, so series exist before the first event."""
    for dep in dependencies:
        DEP_POOL_WAIT.labels(dep)
        CIRCUIT_STATE.labels(dep).set(0)
        for kind in ERROR_KINDS:
            DEP_ERRORS.labels(dep, kind)
        for op in OPERATIONS[dep]:
            DEP_DURATION.labels(dep, op)


def init_app_series(cpu_limit_cores: float) -> None:
    init_dependency_series(DEPENDENCIES)
    CPU_LIMIT.set(cpu_limit_cores)
    for result in CACHE_RESULTS:
        CACHE_REQUESTS.labels(result)


def init_worker_series(cpu_limit_cores: float, concurrency: int) -> None:
    init_dependency_series(("queue",))
    CPU_LIMIT.set(cpu_limit_cores)
    WORKER_CONCURRENCY.set(concurrency)
    for status in JOB_STATUSES:
        JOBS.labels(status)
