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
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from devharness.twin import signals as sig
from devharness.twin.dynamics import tick
from devharness.twin.params import Load, TwinParams
from devharness.twin.physics import KeySpace
from devharness.twin.plant import PlantState, Running, TickContext, TickResult
from devharness.twin.pods import PodSeries, PodState
from devharness.twin.tiers import TWIN_TIERS, SignalInputs, TwinTier, twin_tier
from scaledapp import api
from scaledapp.observation import Snapshot
from scaledapp.quantity import parse_cpu_millicores
from scaledapp.resources.names import ChildNames
from scaledapp.sizes import Sizes, TierName
from scaledapp.tiers import app, cache, db_read, db_write, initial_sizes, ladder, workers
from scaledapp.tiers.base import ONSET_WINDOW

EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
RATE_WINDOW_SECONDS = sig.window_seconds()  # the tiers' RATE_WINDOW ("1m"), not a copy
ONSET_WINDOW_SECONDS = sig.window_seconds(ONSET_WINDOW)  # the tiers' ONSET_WINDOW ("30s")
SATURATED = 0.9
LOADED = 0.7
UTILIZATION_SECONDS = 5.0
POD_TIERS: tuple[TierName, ...] = tuple(t.name for t in TWIN_TIERS)


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
        scrape_interval_seconds: float = 0.0,
        onset_window_seconds: float = ONSET_WINDOW_SECONDS,
    ) -> None:
        """`pod_series`: keep per-pod counters for `exposition()` (a live server needs them; a
        benchmark that only asks `snapshot()` runs faster without). `rate_window_seconds`: the window
        `snapshot()` rates over, the tiers' RATE_WINDOW unless the queries run with a shorter one (a
        Prometheus on loopback scraping every second). `scrape_interval_seconds`: how far apart the
        samples Prometheus rates over are, when `snapshot()` stands for a query right after a scrape. rate()
        over a window of samples that far apart is their increase over the intervals between the first and
        the last sample, extrapolated to the window: the mean of the last window minus one interval (a 1m
        window at a 15 s scrape holds four samples, 45 s; the 30 s onset window two, 15 s). 0: the whole
        window (a scrape far more often than the window). `onset_window_seconds`: the onset window, the
        tiers' ONSET_WINDOW unless the queries run with a shorter one (as `rate_window_seconds`)."""
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
        self.scrape_interval_seconds = scrape_interval_seconds
        # What snapshot() averages: each window less one scrape interval (see above).
        self._rate_span = rate_window_seconds - scrape_interval_seconds
        self._onset_span = onset_window_seconds - scrape_interval_seconds
        # Running sums of the window's counter increments (added when a tick enters, removed when it leaves).
        self._totals_app: dict[str, float] = {}
        self._totals_cache: dict[str, float] = {}
        self._totals_worker: dict[str, float] = {}
        self._pods: dict[TierName, list[_Pod]] = {tier: [] for tier in POD_TIERS}
        self._serial = 0
        self._series: PodSeries | None = PodSeries() if pod_series else None
        # Sizes that reach the running pods only after a while (an in-place resize): (when, tier, size).
        self._pending: list[tuple[float, TierName, object]] = []
        first = sizes or initial_sizes(self.spec)
        self._applied = first  # the sizes the running pods have
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
        for t in TWIN_TIERS:
            delay = t.resize_seconds(self.params, self._sizes, sizes)
            queued = [at for at, tier, _ in self._pending if tier == t.name]  # a later size waits behind
            if delay is None and not queued:
                self._applied = self._applied.with_size(t.name, sizes[t.name])
            else:
                self._pending.append((max([self._now + (delay or 0.0), *queued]), t.name, sizes[t.name]))
        self._sizes = sizes
        for t in TWIN_TIERS:
            if pods is not None and t.name in pods:
                self._adopt(t, list(pods[t.name]))
            else:
                self._resize(t, t.pods_wanted(self.spec, sizes))

    def _pod_name(self, tier: TwinTier, index: int) -> str:
        if tier.ordinal:
            return f"{tier.pod_base(self.children)}-{index}"
        self._serial += 1
        return f"{tier.pod_base(self.children)}-twin-{self._serial:05d}"

    def _resize(self, tier: TwinTier, count: int) -> None:
        pods = self._pods[tier.name]
        while len(pods) < count:
            pods.append(_Pod(self._pod_name(tier, len(pods)), tier.name, self._now + tier.ready_seconds(self.params)))
        if len(pods) > count:
            # A StatefulSet removes its highest ordinal; a ReplicaSet prefers pods not yet ready, then the newest.
            keep = pods[:count] if tier.ordinal else sorted(pods, key=lambda p: p.ready_at)[:count]
            self._pods[tier.name] = [p for p in pods if p in keep]

    def _adopt(self, tier: TwinTier, names: list[str]) -> None:
        known = {p.name: p for p in self._pods[tier.name]}
        ready_at = self._now + tier.ready_seconds(self.params)
        self._pods[tier.name] = [known.get(n) or _Pod(n, tier.name, ready_at) for n in names]

    def _ready(self, tier: TierName) -> list[_Pod]:
        return [p for p in self._pods[tier] if p.ready_at <= self._now]

    def pods(self, tier: TierName | None = None) -> list[Pod]:
        tiers = POD_TIERS if tier is None else (tier,)
        return [Pod(p.name, p.tier, p.ready_at <= self._now) for t in tiers for p in self._pods[t]]

    def settling(self) -> frozenset[TierName]:
        """Tiers still rolling out their last change (ready < desired, or a resize not applied yet),
        what the scaler shell passes to decide() as `settling`."""
        out = {t.name for t in TWIN_TIERS if t.tier.settles and len(self._ready(t.name)) < len(self._pods[t.name])}
        return frozenset(out | {tier for _, tier, _ in self._pending})

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
        for _, tier, size in (p for p in self._pending if p[0] <= self._now):
            self._applied = self._applied.with_size(tier, size)
        self._pending = [p for p in self._pending if p[0] > self._now]
        running = self._running()
        offered = self._noisy(load, dt)
        result = tick(TickContext(self._state, running, self.params, self._keys, self._now, dt), offered)
        self._last = result
        self._record(result, running, dt)
        if self._series is not None:
            self._series.add(result, {t: [p.name for p in self._ready(t.name)] for t in TWIN_TIERS})
        self.last = self._observe(load, result, running, dt)
        return self.last

    def _app_cpu_limit(self) -> float:
        return parse_cpu_millicores(self.spec.app.resources.cpu) / 1000.0

    def _running(self) -> Running:
        """What runs and is ready now, with the sizes the running pods have."""
        replicas = self._ready(db_read.TIER.name)
        return Running(
            app_pods=len(self._ready(app.TIER.name)),
            app_cpu_cores=self._app_cpu_limit(),
            cache_enabled=self.spec.cache.enabled,
            cache_memory_bytes=cache.TIER.size(self._applied),
            cache_ttl_seconds=float(self.spec.cache.ttl_seconds),
            replicas=tuple(p.name for p in replicas),
            replicas_total=len(self._pods[db_read.TIER.name]),
            bootstrapping=len(self._pods[db_read.TIER.name]) - len(replicas),
            replica_cpu_cores=parse_cpu_millicores(self.spec.database.resources.initial.cpu) / 1000.0,
            primary_cpu_cores=db_write.TIER.size(self._applied).cpu_millicores / 1000.0,
            workers=len(self._ready(workers.TIER.name)),
            workers_enabled=self.spec.workers.enabled,
            ready={t: len(self._ready(t)) for t in POD_TIERS},
            sizes=self._applied,
        )

    def _record(self, result: TickResult, running: Running, dt: float) -> None:
        """The tick enters the rate window (its counters into the running sums); ticks older than it leave."""
        per_pod = result.in_flight / running.app_pods if running.app_pods else 0.0
        self._window.append(_Record(self._now, dt, result, running.app_pods * running.app_cpu_cores * dt, per_pod * dt))
        _accumulate(self._totals_app, result.app, 1.0)
        _accumulate(self._totals_cache, result.cache, 1.0)
        _accumulate(self._totals_worker, result.worker, 1.0)
        while self._window and self._window[0].time <= self._now - self._rate_span:
            gone = self._window.popleft()
            _accumulate(self._totals_app, gone.result.app, -1.0)
            _accumulate(self._totals_cache, gone.result.cache, -1.0)
            _accumulate(self._totals_worker, gone.result.worker, -1.0)

    def _observe(self, load: Load, result: TickResult, running: Running, dt: float) -> Observation:
        """The tick as the end user and an omniscient observer see it."""
        utilization = self._smoothed_utilization(result, dt)
        hot = [t for t in ladder() if utilization.get(t, 0.0) >= SATURATED]
        bottleneck: TierName | None = None
        for tier in hot:  # the most saturated; ties go to the cheaper rung
            if bottleneck is None or utilization[tier] > utilization[bottleneck]:
                bottleneck = tier
        app_cores = running.app_pods * running.app_cpu_cores * dt
        return Observation(
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
            app_cpu_utilization=result.app["process_cpu_seconds_total"] / app_cores if running.app_pods else 0.0,
        )

    def _smoothed_utilization(self, result: TickResult, dt: float) -> dict[TierName, float]:
        """Each enabled tier's utilization over the last ~5 s (an exponential average), as any utilization is
        measured over an interval: one tick's Poisson noise (an order more or less) is not saturation."""
        smoothing = min(1.0, dt / UTILIZATION_SECONDS)
        for t in POD_TIERS:
            previous = self._utilization.get(t, result.utilization[t])
            self._utilization[t] = previous + (result.utilization[t] - previous) * smoothing
        enabled = {t.name for t in TWIN_TIERS if t.enabled(self.spec)}
        return {t: u for t, u in self._utilization.items() if t in enabled}

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
        # The onset window: the same signals over the last onset window of the rate window (less a scrape
        # interval, as the rate window). A window that holds fewer than two scrapes has no rate.
        if self._onset_span <= 0:
            return Snapshot(time=moment, signals=self._signals(window))
        recent = [r for r in records if r.time > self._now - self._onset_span]
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
        inputs = SignalInputs(window, self._last, {t: [p.name for p in self._ready(t)] for t in POD_TIERS},
                              self._sizes, self.params)
        return sig.complete({t.name: t.signals(inputs) for t in TWIN_TIERS if t.enabled(self.spec)})

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
        tier = twin_tier(pod.tier)
        state = PodState(pod.name, pod.ready_at <= self._now, self._last, len(self._ready(pod.tier)),
                         len(self._ready(app.TIER.name)))
        return self._series.render(tier, pod.name, tier.gauges(state, self))

    def with_sizes(self, **changes: object) -> Sizes:
        """The current sizes with some tiers' changed, by tier name with `_` for `-` (a convenience for tests
        and scripts: `with_sizes(app=4, db_read=2)`)."""
        return Sizes({**self._sizes, **{name.replace("_", "-"): size for name, size in changes.items()}})
