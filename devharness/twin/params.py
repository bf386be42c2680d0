"""The twin's inputs: offered load, and the physical constants of the demo service (with why each has
the value it has). Sizes (replicas, cache memory, primary CPU) are not here: they are
`scaledapp.sizes.Sizes`, set on the model by whoever plays the scaler."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from demo_app.profiles import Profile

MIB = 2**20


@dataclass(frozen=True)
class Load:
    """Offered load, requests per second (open loop: it arrives whether or not it is served)."""

    reads_per_second: float = 0.0
    writes_per_second: float = 0.0
    orders_per_second: float = 0.0

    @property
    def total(self) -> float:
        return self.reads_per_second + self.writes_per_second + self.orders_per_second

    def scaled(self, factor: float) -> Load:
        return Load(self.reads_per_second * factor, self.writes_per_second * factor, self.orders_per_second * factor)

    def plus(self, other: Load) -> Load:
        return Load(self.reads_per_second + other.reads_per_second, self.writes_per_second + other.writes_per_second,
                    self.orders_per_second + other.orders_per_second)


def load_from_profile(profile: Profile, mix: Mapping[str, float], t: float) -> Load:
    """The load at time t of a demo_app.profiles.Profile split by a request mix (demo_app.profiles.parse_mix),
    exactly what the load generator would offer on average."""
    rate = profile.rate_at(t)
    return Load(rate * mix.get("read", 0.0), rate * mix.get("write", 0.0), rate * mix.get("order", 0.0))


@dataclass(frozen=True)
class TwinParams:
    """Physical constants. Defaults describe the demo app on a small node; knobs named like the demo
    app's settings (cpu_work_ms, read_query_cost_rows, job_duration_seconds) do what they do there."""

    # app: FastAPI + pydantic + two client calls per request cost a few ms of one core in CPython.
    app_cpu_seconds_per_request: float = 0.003
    cpu_work_ms: float = 0.0  # APP_CPU_WORK_MS: extra busy CPU per request
    client_timeout_seconds: float = 5.0  # the load generator's timeout
    app_ready_seconds: float = 10.0  # image cached, uvicorn start, readiness probe period
    # cache: a catalogue whose hot part outgrows the initial 64Mi cache at a few hundred reads/s;
    # ~2 KiB JSON values plus Redis' per-key overhead. Zipf 1.0: between uniform and the load
    # generator's default 1.1 (at 1.1 a 1000-key demo never misses for capacity).
    keys: int = 200_000
    zipf_s: float = 1.0
    item_bytes: int = 2500
    cache_base_bytes: int = 2 * MIB  # an empty Redis' own memory
    redis_cpu_seconds_per_command: float = 20e-6  # GET/SET of small values
    cache_call_seconds: float = 0.0005  # loopback-ish round trip in a cluster
    recent_write_window_seconds: float = 5.0  # APP_RECENT_WRITE_WINDOW_SECONDS: fresh reads go to the primary
    # database: an indexed point read, a single-row UPDATE with its WAL, a commit's fsync
    read_cpu_seconds: float = 0.001
    read_query_cost_rows: int = 0  # APP_READ_QUERY_COST_ROWS
    read_cpu_seconds_per_row: float = 1e-6
    read_base_seconds: float = 0.002
    write_cpu_seconds: float = 0.002
    write_base_seconds: float = 0.003
    coherency: float = 0.01  # USL kappa: each extra active session adds 1 % CPU per write (lock/WAL contention)
    replay_cpu_seconds_per_write: float = 0.0008  # replay skips planning and the client protocol
    max_connections: int = 100  # Postgres default
    read_pool_size: int = 10  # the demo app's db_read_pool_size
    write_pool_size: int = 5  # db_write_pool_size
    pool_timeout_seconds: float = 1.0  # db_pool_timeout: a call waiting longer fails (pool_exhausted)
    replica_bootstrap_seconds: float = 60.0  # pg_basebackup of a small database + start-up
    basebackup_cores: float = 0.1  # the primary's CPU spent streaming a base backup
    resize_seconds: float = 10.0  # in-place resize of the primary's CPU until the kubelet applies it
    # queue and workers
    job_duration_seconds: float = 0.5  # APP_JOB_DURATION_SECONDS
    worker_concurrency: int = 1  # APP_WORKER_CONCURRENCY
    worker_ready_seconds: float = 10.0
    queue_call_seconds: float = 0.001
    # offered load: Poisson arrivals, so a tick's count has relative noise 1/sqrt(rate * dt)
    poisson_noise: bool = True

    def with_(self, **changes: float | int | bool) -> TwinParams:
        return replace(self, **changes)  # type: ignore[arg-type]
