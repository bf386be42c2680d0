"""The values one tick of the twin's physics passes around: what carries over between ticks
(PlantState), what runs this tick (Running), what every tier's stage reads (TickContext), and what the
tick produces (TickResult). dynamics.py runs the tick; each tier's stage is in its module in tiers/.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from devharness.twin.params import TwinParams
from devharness.twin.physics import KeySpace, Station
from scaledapp.sizes import Sizes, TierName

Counters = dict[str, float]
EPS = 1e-12


@dataclass
class PlantState:
    """What carries over between ticks: queues, the cache's contents, replica lag, sessions."""

    app: Station = field(default_factory=Station)
    reads: Station = field(default_factory=Station)
    primary: Station = field(default_factory=Station)  # measured in CPU-seconds of work
    cached_keys: float | None = None
    write_sessions: float = 0.0
    queue: deque[list[float]] = field(default_factory=deque)  # FIFO of [enqueued at, jobs]
    replica_lag: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Running:
    """What runs and is ready this tick (the model derives it from its pods and sizes): the facts the five
    tiers' stages read, and every tier's ready pods and applied size."""

    app_pods: int
    app_cpu_cores: float
    cache_enabled: bool
    cache_memory_bytes: int
    cache_ttl_seconds: float
    replicas: tuple[str, ...]  # ready read replicas
    replicas_total: int  # incl. bootstrapping ones (each streams WAL from the primary)
    bootstrapping: int
    replica_cpu_cores: float
    primary_cpu_cores: float
    workers: int
    workers_enabled: bool
    # Every tier's, for a stage that needs no more: ready pods per tier, and the sizes the running pods have
    # (read one typed through its operator tier, `TIER.size(run.sizes)`).
    ready: Mapping[TierName, int] = field(default_factory=dict)
    sizes: Sizes = field(default_factory=Sizes)


@dataclass(frozen=True)
class TickContext:
    """What every stage of one tick reads: the carried state (stages update it), what runs, the
    parameters, the key space, the time and the tick's length."""

    state: PlantState
    run: Running
    p: TwinParams
    keys: KeySpace
    now: float
    dt: float


@dataclass(frozen=True)
class TickResult:
    app: Counters  # increments of the app pods' counters and histograms, all pods together
    worker: Counters
    cache: Counters
    primary: Counters
    replica: Counters
    in_flight: float  # all app pods
    queue_depth: float
    oldest_age: float
    jobs_in_progress: float
    cache_memory_used: float
    primary_active: float
    primary_connections: float
    lock_waits: float
    lock_wait_max_seconds: float
    replica_active: float  # all replicas
    replica_connections: float  # all replicas
    replica_lag: dict[str, float]
    # ground truth and the end user's view
    utilization: dict[str, float]
    p95_seconds: float
    served_per_second: float
    errors_per_second: float
    hit_ratio: float | None
