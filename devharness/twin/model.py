"""The twin: a deterministic, discrete-time model of the demo service's tiers, fed by offered load and
the sizes the scaler sets, producing (a) the operator's tier signals as its PromQL would compute them
(`snapshot()`, so `decide()` runs in simulated time) and (b) the metric families every simulated pod
would expose (`pod_metrics()`, `exposition()`), plus the ground truth a benchmark needs.

The physics (formulas in physics.py, constants with their reasons in params.py):

- Requests arrive open-loop (Poisson noise from the seed). Every request costs the app CPU
  (`app_cpu_seconds_per_request` + the `cpu_work_ms` knob); a pod is one Python process, at most one
  core, throttled to its CPU limit. The app tier is a fluid queue: below capacity a request spends the
  M/M/1 sojourn time in the app; above it a backlog grows and is shed after the client timeout.
  Whatever the app does not serve never reaches the tiers behind it: widening the app moves load on.
- Reads go to Redis first. The hit ratio follows from the cache size and the key distribution (Zipf
  over `keys` keys of `item_bytes`): Che's approximation for LRU when the keys asked for within one
  TTL do not fit (then every fill evicts a key), the TTL renewal model when they do. A bigger cache
  warms up one key per miss; a smaller one loses its keys at once. Reads of keys written in the last
  few seconds skip the cache and the replicas and read the primary, as the demo app does.
- Misses go to the read replicas (the primary if none is ready). Each replica replays all the WAL
  (CPU per write), serves reads with what is left, and lags when writes outrun its single replay
  process. A new replica is not ready for `replica_bootstrap_seconds` (pg_basebackup, which costs the
  primary CPU) and comes up behind by the WAL written meanwhile.
- Writes go to the primary through each app pod's write pool. Its CPU per write grows with the number
  of active sessions (the Universal Scalability Law's coherency term: lock and WAL contention), and a
  write waits for row locks held by others in proportion to the chance two writes touch the same key
  (sum of p_k^2 for the Zipf keys). So more app pods mean more sessions on the primary and slower,
  not faster, writes once it is busy; more primary CPU shortens every lock hold.
- Client pools are M/M/c queues (Sakasegawa); a call that waits longer than the pool timeout fails.
- Orders go to a FIFO queue; workers drain `concurrency / job_duration` jobs per second each; the
  depth and the age of the oldest job follow.
- Pods come and go with the replica counts and become ready after a per-tier delay; only ready pods
  take traffic and report (simplification: a starting app pod is not scraped before it is ready).

Ground truth: each tier's utilization is its offered demand over its physical capacity (the cache's:
the bytes the keys of one TTL need over maxmemory). A tier at or above SATURATED is saturated; the
bottleneck is the most saturated tier. A widening step is defensible when its tier was at least LOADED.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from devharness.twin import signals as sig
from devharness.twin.dynamics import PlantState, Running, TickResult, tick
from devharness.twin.params import Load, TwinParams
from devharness.twin.physics import KeySpace
from devharness.twin.pods import PodSeries, gauges_for
from scaledapp import api
from scaledapp.observation import Snapshot
from scaledapp.quantity import parse_cpu_millicores
from scaledapp.resources.names import ChildNames
from scaledapp.sizes import Sizes, TierName
from scaledapp.tiers import initial_sizes
from scaledapp.tiers.base import ONSET_WINDOW

EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
RATE_WINDOW_SECONDS = sig.window_seconds()  # the tiers' RATE_WINDOW ("1m"), not a copy
ONSET_WINDOW_SECONDS = sig.window_seconds(ONSET_WINDOW)  # the tiers' ONSET_WINDOW ("30s")
SATURATED = 0.9
LOADED = 0.7
UTILIZATION_SECONDS = 5.0
POD_TIERS: tuple[TierName, ...] = ("app", "cache", "db-read", "workers", "db-write")


@dataclass(frozen=True)
class Pod:
    name: str
    tier: TierName
    ready: bool


@dataclass(frozen=True)
class Observation:
    """One tick as the end user and an omniscient observer see it."""

    time: float  # seconds since the start
    load: Load  # offered
    p95_seconds: float  # end-user latency, inf when more than 5 % of requests failed
    served_per_second: float
    errors_per_second: float
    utilization: Mapping[TierName, float]  # demand / physical capacity per tier
    bottleneck: TierName | None  # the most saturated tier, None when none is
    sizes: Sizes  # what the scaler asked for
    ready: Mapping[TierName, int]  # ready pods per tier
    hit_ratio: float | None
    queue_depth: float
    replica_lag_seconds: float
    app_cpu_utilization: float = 0.0  # this tick: CPU the ready app pods used / their CPU limits

    def saturated(self, tier: TierName) -> bool:
        return self.utilization.get(tier, 0.0) >= SATURATED

    def loaded(self, tier: TierName) -> bool:
        return self.utilization.get(tier, 0.0) >= LOADED


@dataclass
class _Pod:
    name: str
    tier: TierName
    ready_at: float


@dataclass(frozen=True)
class _Record:
    time: float
    dt: float
    result: TickResult
    app_core_seconds: float
    in_flight_per_pod: float


def _accumulate(totals: dict[str, float], increments: Mapping[str, float], sign: float) -> None:
    for sample, value in increments.items():
        total = totals.get(sample, 0.0) + sign * value
        # Adding and later subtracting the same increments leaves float residue (1e-15) where the real
        # window holds nothing; rate() of a counter that did not move is exactly 0 ("evicting" is > 0).
        totals[sample] = total if total > 1e-9 else 0.0


class TwinModel:
    """The simulated data plane of one ScaledApp. Deterministic for a given seed and call sequence."""

    def __init__(
        self,
        spec: api.ScaledAppSpec | None = None,
        *,
        params: TwinParams | None = None,
        seed: int = 0,
        sizes: Sizes | None = None,
        name: str = "demo",
        start: datetime = EPOCH,
        pod_series: bool = False,
        rate_window_seconds: float = RATE_WINDOW_SECONDS,
    ) -> None:
        """`pod_series`: keep per-pod counters for `exposition()` (a live server needs them; a
        benchmark that only asks `snapshot()` runs faster without). `rate_window_seconds`: the window
        `snapshot()` rates over, the tiers' RATE_WINDOW unless the queries run with a shorter one (a
        Prometheus on loopback scraping every second)."""
        self.spec = spec or api.ScaledAppSpec()
        self.params = params or TwinParams()
        self.children = ChildNames(name)
        self.start = start
        self._rng = random.Random(seed)
        self._keys = KeySpace(self.params.keys, self.params.zipf_s)
        self._now = 0.0
        self._state = PlantState()
        self._window: deque[_Record] = deque()
        self.rate_window_seconds = rate_window_seconds
        # Running sums of the window's counter increments (added when a tick enters, removed when it leaves).
        self._totals_app: dict[str, float] = {}
        self._totals_cache: dict[str, float] = {}
        self._totals_worker: dict[str, float] = {}
        self._pods: dict[TierName, list[_Pod]] = {tier: [] for tier in POD_TIERS}
        self._serial = 0
        self._series: PodSeries | None = PodSeries() if pod_series else None
        self._primary_cpu_pending: list[tuple[float, int]] = []
        first = sizes or initial_sizes(self.spec)
        self._primary_cpu = first.db_write_cpu_millicores
        self._sizes = first
        self.set_sizes(first)
        for pods in self._pods.values():  # the service starts warm: every initial pod is ready
            for pod in pods:
                pod.ready_at = -math.inf
        self._last: TickResult | None = None
        self._utilization: dict[TierName, float] = {}
        self.last: Observation | None = None

    # ------------------------------------------------------------------------------------------ time

    @property
    def now(self) -> float:
        """Simulated seconds since the start."""
        return self._now

    @property
    def time(self) -> datetime:
        return self.start + timedelta(seconds=self._now)

    # ------------------------------------------------------------------------------------------ sizes and pods

    @property
    def sizes(self) -> Sizes:
        return self._sizes

    def set_sizes(self, sizes: Sizes, pods: Mapping[TierName, Sequence[str]] | None = None) -> None:
        """The sizes the workloads now ask for. `pods` (optional, per tier): the pod names that exist
        (e.g. read from a real API server); otherwise the model names them. New pods become ready after
        their tier's delay; the cache's maxmemory applies at once (CONFIG SET), the primary's CPU after
        an in-place resize."""
        if sizes.db_write_cpu_millicores != self._sizes.db_write_cpu_millicores:
            self._primary_cpu_pending.append((self._now + self.params.resize_seconds, sizes.db_write_cpu_millicores))
        self._sizes = sizes
        wanted: dict[TierName, int] = {
            "app": sizes.app_replicas,
            "cache": 1 if self.spec.cache.enabled else 0,
            "db-read": sizes.db_read_replicas,
            "workers": sizes.workers_replicas if self.spec.workers.enabled else 0,
            "db-write": 1,
        }
        for tier in POD_TIERS:
            if pods is not None and tier in pods:
                self._adopt(tier, list(pods[tier]))
            else:
                self._resize(tier, wanted[tier])

    def _delay(self, tier: TierName) -> float:
        p = self.params
        return {"app": p.app_ready_seconds, "workers": p.worker_ready_seconds,
                "db-read": p.replica_bootstrap_seconds}.get(tier, 0.0)

    def _pod_name(self, tier: TierName, index: int) -> str:
        c = self.children
        if tier == "db-read":
            return f"{c.db_replicas}-{index}"
        if tier == "db-write":
            return f"{c.db_primary}-0"
        self._serial += 1
        base = {"app": c.app, "cache": c.cache, "workers": c.workers}[tier]
        return f"{base}-twin-{self._serial:05d}"

    def _resize(self, tier: TierName, count: int) -> None:
        pods = self._pods[tier]
        while len(pods) < count:
            pods.append(_Pod(self._pod_name(tier, len(pods)), tier, self._now + self._delay(tier)))
        if len(pods) > count:
            # A StatefulSet removes its highest ordinal; a ReplicaSet prefers pods not yet ready, then the newest.
            keep = pods[:count] if tier == "db-read" else sorted(pods, key=lambda p: p.ready_at)[:count]
            self._pods[tier] = [p for p in pods if p in keep]

    def _adopt(self, tier: TierName, names: list[str]) -> None:
        known = {p.name: p for p in self._pods[tier]}
        self._pods[tier] = [known.get(n) or _Pod(n, tier, self._now + self._delay(tier)) for n in names]

    def _ready(self, tier: TierName) -> list[_Pod]:
        return [p for p in self._pods[tier] if p.ready_at <= self._now]

    def pods(self, tier: TierName | None = None) -> list[Pod]:
        tiers = POD_TIERS if tier is None else (tier,)
        return [Pod(p.name, p.tier, p.ready_at <= self._now) for t in tiers for p in self._pods[t]]

    def settling(self) -> frozenset[TierName]:
        """Tiers still rolling out their last change (ready < desired, or a resize not applied yet),
        what the scaler shell passes to decide() as `settling`."""
        out = {t for t in ("app", "db-read", "workers") if len(self._ready(t)) < len(self._pods[t])}
        if self._primary_cpu_pending:
            out.add("db-write")
        return frozenset(out)  # type: ignore[arg-type]

    # ------------------------------------------------------------------------------------------ the tick

    def _noisy(self, load: Load, dt: float) -> Load:
        if not self.params.poisson_noise:
            return load

        def one(rate: float) -> float:
            if rate <= 0:
                return 0.0
            return max(0.0, rate * (1.0 + self._rng.gauss(0.0, 1.0 / math.sqrt(rate * dt))))

        return Load(one(load.reads_per_second), one(load.writes_per_second), one(load.orders_per_second))

    def step(self, load: Load, dt: float = 1.0) -> Observation:
        """Advance by dt seconds under the offered load; returns what happened in that tick."""
        self._now += dt
        due = [c for at, c in self._primary_cpu_pending if at <= self._now]
        if due:
            self._primary_cpu = due[-1]
            self._primary_cpu_pending = [(at, c) for at, c in self._primary_cpu_pending if at > self._now]
        app_ready = self._ready("app")
        replicas = self._ready("db-read")
        cpu_limit = parse_cpu_millicores(self.spec.app.resources.cpu) / 1000.0
        running = Running(
            app_pods=len(app_ready),
            app_cpu_cores=cpu_limit,
            cache_enabled=self.spec.cache.enabled,
            cache_memory_bytes=self._sizes.cache_memory_bytes,
            cache_ttl_seconds=float(self.spec.cache.ttl_seconds),
            replicas=tuple(p.name for p in replicas),
            replicas_total=len(self._pods["db-read"]),
            bootstrapping=len(self._pods["db-read"]) - len(replicas),
            replica_cpu_cores=parse_cpu_millicores(self.spec.database.resources.initial.cpu) / 1000.0,
            primary_cpu_cores=self._primary_cpu / 1000.0,
            workers=len(self._ready("workers")),
            workers_enabled=self.spec.workers.enabled,
        )
        offered = self._noisy(load, dt)
        result = tick(self._state, running, self.params, self._keys, offered, self._now, dt)
        self._last = result
        per_pod = result.in_flight / len(app_ready) if app_ready else 0.0
        self._window.append(_Record(self._now, dt, result, len(app_ready) * cpu_limit * dt, per_pod * dt))
        _accumulate(self._totals_app, result.app, 1.0)
        _accumulate(self._totals_cache, result.cache, 1.0)
        _accumulate(self._totals_worker, result.worker, 1.0)
        while self._window and self._window[0].time <= self._now - self.rate_window_seconds:
            gone = self._window.popleft()
            _accumulate(self._totals_app, gone.result.app, -1.0)
            _accumulate(self._totals_cache, gone.result.cache, -1.0)
            _accumulate(self._totals_worker, gone.result.worker, -1.0)
        if self._series is not None:
            self._series.add(result, {t: [p.name for p in self._ready(t)] for t in POD_TIERS})
        # Utilization over the last ~5 s (an exponential average), as any utilization is measured over an
        # interval: one tick's Poisson noise (an order more or less) is not saturation.
        smoothing = min(1.0, dt / UTILIZATION_SECONDS)
        for t in POD_TIERS:
            previous = self._utilization.get(t, result.utilization[t])
            self._utilization[t] = previous + (result.utilization[t] - previous) * smoothing
        utilization: dict[TierName, float] = dict(self._utilization)
        if not self.spec.cache.enabled:
            del utilization["cache"]
        if not self.spec.workers.enabled:
            del utilization["workers"]
        hot = [t for t in api.LADDER if utilization.get(t, 0.0) >= SATURATED]
        bottleneck: TierName | None = None
        for tier in hot:  # the most saturated; ties go to the cheaper rung
            if bottleneck is None or utilization[tier] > utilization[bottleneck]:
                bottleneck = tier
        self.last = Observation(
            time=self._now,
            load=load,
            p95_seconds=result.p95_seconds,
            served_per_second=result.served_per_second,
            errors_per_second=result.errors_per_second,
            utilization=utilization,
            bottleneck=bottleneck,
            sizes=self._sizes,
            ready={t: len(self._ready(t)) for t in POD_TIERS},
            hit_ratio=result.hit_ratio,
            queue_depth=result.queue_depth,
            replica_lag_seconds=max(result.replica_lag.values(), default=0.0),
            app_cpu_utilization=result.app["process_cpu_seconds_total"] / (len(app_ready) * cpu_limit * dt)
            if app_ready else 0.0,
        )
        return self.last

    # ------------------------------------------------------------------------------------------ outputs

    def snapshot(self, time: datetime | None = None) -> Snapshot:
        """Every enabled tier's signals now, as the operator's queries would compute them."""
        moment = time or self.time
        if self._last is None:
            return Snapshot(time=moment, signals={})
        records = list(self._window)
        window = sig.Window(
            seconds=sum(r.dt for r in records),
            app=self._totals_app,
            cache=self._totals_cache,
            worker=self._totals_worker,
            app_core_seconds=sum(r.app_core_seconds for r in records),
            in_flight_per_pod_seconds=sum(r.in_flight_per_pod for r in records),
        )
        # The onset window: the same signals over the last ONSET_WINDOW_SECONDS of the rate window.
        recent = [r for r in records if r.time > self._now - ONSET_WINDOW_SECONDS]
        totals: tuple[dict[str, float], dict[str, float], dict[str, float]] = ({}, {}, {})
        for r in recent:
            for into, increments in zip(totals, (r.result.app, r.result.cache, r.result.worker), strict=True):
                _accumulate(into, increments, 1.0)
        onset = sig.Window(
            seconds=sum(r.dt for r in recent),
            app=totals[0],
            cache=totals[1],
            worker=totals[2],
            app_core_seconds=sum(r.app_core_seconds for r in recent),
            in_flight_per_pod_seconds=sum(r.in_flight_per_pod for r in recent),
        )
        return Snapshot(time=moment, signals=self._signals(window), onset=self._signals(onset))

    def _signals(self, window: sig.Window) -> dict[TierName, sig.Signals]:
        """Every enabled tier's signals over one window (gauges are this tick's, whatever the window)."""
        assert self._last is not None
        last = self._last
        app_ready = len(self._ready("app"))
        replicas = self._ready("db-read")
        max_conn = float(self.params.max_connections)
        per_replica = last.replica_active / len(replicas) if replicas else 0.0
        reporting_queue = app_ready + len(self._ready("workers"))
        signals: dict[TierName, sig.Signals] = {
            "app": sig.app_signals(window, app_ready),
            "cache": sig.cache_signals(
                window, app_ready, last.cache_memory_used, float(self._sizes.cache_memory_bytes)
            ),
            "db-read": sig.db_read_signals(
                window,
                app_ready,
                {p.name: (per_replica, max_conn, last.replica_lag.get(p.name, 0.0)) for p in replicas},
            ),
            "db-write": sig.db_write_signals(window, app_ready, last.lock_waits, last.primary_connections, max_conn),
            "workers": sig.workers_signals(
                window,
                last.queue_depth if reporting_queue else None,
                last.oldest_age if reporting_queue else None,
                len(self._ready("workers")),
            ),
        }
        return sig.complete(sig.enabled(signals, self.spec.cache.enabled, self.spec.workers.enabled))

    def pod_metrics(self, tier: TierName) -> list[tuple[str, str]]:
        """(pod name, Prometheus text exposition) of every ready pod of a tier. Needs pod_series=True."""
        return [(p.name, self.exposition(p.name)) for p in self._ready(tier)]

    def exposition(self, pod_name: str) -> str:
        """One pod's /metrics (the app's or worker's own, or its exporter sidecar's). Needs pod_series=True."""
        if self._series is None:
            raise RuntimeError("TwinModel(pod_series=True) keeps the per-pod counters exposition() renders")
        pod = next((p for t in POD_TIERS for p in self._pods[t] if p.name == pod_name), None)
        if pod is None:
            raise KeyError(pod_name)
        ready_counts = {t: len(self._ready(t)) for t in POD_TIERS}
        gauges = gauges_for(pod.tier, pod.name, pod.ready_at <= self._now, self._last, self, ready_counts)
        return self._series.render(pod.tier, pod.name, gauges)

    def with_sizes(self, **changes: int) -> Sizes:
        """The current sizes with some fields changed (a convenience for tests and scripts)."""
        return replace(self._sizes, **changes)
