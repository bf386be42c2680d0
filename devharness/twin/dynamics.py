"""One tick of the twin's physics: offered load + what is running -> what each tier served, its delays,
the metric increments every role of pod exports, and the ground truth. See model.py for the model as
a whole and the reasons behind each constant.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from devharness.twin import families as f
from devharness.twin.params import Load, TwinParams
from devharness.twin.physics import KeySpace, Served, Station, mixture_quantile, pool_wait, quantize, sojourn

Counters = dict[str, float]
_EPS = 1e-12
WORKER_CPU_SECONDS_PER_JOB = 0.0005  # a job is a wait elsewhere; the worker only moves it


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
    """What runs and is ready this tick (the model derives it from its pods and sizes)."""

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


def tick(
    state: PlantState, run: Running, p: TwinParams, keys: KeySpace, load: Load, now: float, dt: float
) -> TickResult:
    """One tick, tier by tier along a request's path, then the series every pod exports and the truth."""
    c = _Tick(state, run, p, keys, now, dt)
    app = _app(c, load)  # one Python process per pod, at most one core, CFS-throttled to its limit
    cache = _cache(c, app)  # Zipf keys, LRU + TTL; reads of keys written recently go to the primary
    replicas = _replicas(c, app, cache)  # each replays all the WAL, then serves reads with the CPU left
    primary = _primary(c, app, cache, replicas)  # writes and fresh reads; CPU (USL) and row locks
    queue = _queue(c, app)  # the order queue and the workers draining it
    classes = _read_classes(app, cache, replicas, primary)
    counters = TickCounters(
        app=_app_series(c, app, cache, replicas, primary, classes),
        worker=_worker_series(c, queue),
        cache=cache.counters,
        primary={f.key("pg_stat_database_xact_commit", f.DATABASE): (primary.ops - primary.write_errors) * dt},
        replica={f.key("pg_stat_database_xact_commit", f.DATABASE): replicas.served.throughput * dt},
    )
    return _result(c, Stages(app, cache, replicas, primary, queue, classes), counters)


@dataclass(frozen=True)
class _Tick:
    """What every stage of one tick reads: the carried state (stages update it), what runs, the
    parameters, the key space, the time and the tick's length."""

    state: PlantState
    run: Running
    p: TwinParams
    keys: KeySpace
    now: float
    dt: float


@dataclass(frozen=True)
class AppStage:
    served: Served
    reads: float  # admitted per second, by class
    writes: float
    orders: float
    self_seconds: float  # the app's own time per request
    behind: float  # the wait behind the app's backlog (FIFO, the same for every request)
    cpu_seconds: float  # the increment of process_cpu_seconds_total


def _app(c: _Tick, load: Load) -> AppStage:
    p, run = c.p, c.run
    requests = load.reads_per_second + load.writes_per_second + load.orders_per_second
    pod_cores = min(run.app_cpu_cores, 1.0)
    cpu_per_request = p.app_cpu_seconds_per_request + p.cpu_work_ms / 1000.0
    app = c.state.app.serve(requests, run.app_pods * pod_cores / cpu_per_request, c.dt, p.client_timeout_seconds)
    share = min(1.0, app.throughput / requests) if requests > 0 else 0.0
    if run.app_pods == 0:  # nothing is served (every request fails): no latency to speak of
        self_seconds, behind = p.client_timeout_seconds, 0.0
    else:
        # Waiting behind the app's backlog is the same for every request (FIFO), then its own sojourn.
        self_seconds, behind = sojourn(cpu_per_request / pod_cores, app.busy), app.queue_delay
    return AppStage(app, load.reads_per_second * share, load.writes_per_second * share,
                    load.orders_per_second * share, self_seconds, behind,
                    app.throughput * cpu_per_request * c.dt)


@dataclass(frozen=True)
class CacheStage:
    hits: float
    misses: float
    bypass: float
    call_seconds: float
    hit_ratio: float | None
    memory_used: float
    working_set: float
    to_replicas: float  # reads per second the replicas get
    primary_reads: float  # reads per second the primary gets (fresh keys, or no ready replica)
    counters: Counters


def _cache(c: _Tick, app: AppStage) -> CacheStage:
    p, run, keys, reads, writes = c.p, c.run, c.keys, app.reads, app.writes
    fresh = reads * keys.recently_written_share(quantize(writes), p.recent_write_window_seconds)
    normal = reads - fresh
    hits = misses = bypass = 0.0
    cache_call = p.cache_call_seconds
    hit_ratio: float | None = None
    counters: Counters = {}
    memory_used = float(p.cache_base_bytes)
    working_set = keys.working_set(quantize(normal), run.cache_ttl_seconds) if normal > 0 else 0.0
    if run.cache_enabled:
        hit_ratio, evicting = _fill(c, normal)
        hits = normal * hit_ratio
        misses = reads - hits
        counters["redis_keyspace_hits_total"] = hits * c.dt
        cache_call, memory_used = _redis(c, app, misses, evicting, counters)
    else:
        bypass = reads
    to_replicas = normal - hits if run.cache_enabled else normal
    primary_reads = fresh
    if not run.replicas:  # no ready replica: the app falls back to the primary
        primary_reads, to_replicas = primary_reads + to_replicas, 0.0
    return CacheStage(hits, misses, bypass, cache_call, hit_ratio, memory_used, working_set, to_replicas,
                      primary_reads, counters)


def _fill(c: _Tick, normal: float) -> tuple[float, bool]:
    """How many keys the cache holds after this tick (state.cached_keys): the hit ratio that gives, and
    whether the cache is evicting."""
    p, run, state = c.p, c.run, c.state
    capacity_keys = max(0, (run.cache_memory_bytes - p.cache_base_bytes) // p.item_bytes)
    hit_eq, keys_eq, evicting = c.keys.steady_state(quantize(normal), int(capacity_keys), run.cache_ttl_seconds)
    if state.cached_keys is None:
        state.cached_keys = keys_eq  # the service starts warm
    elif state.cached_keys > capacity_keys:
        state.cached_keys = float(capacity_keys)  # a smaller maxmemory evicts at once
    elif keys_eq < state.cached_keys:  # a colder key set: entries expire over one TTL
        state.cached_keys += (keys_eq - state.cached_keys) * min(1.0, c.dt / run.cache_ttl_seconds)
    else:  # a bigger cache (or a hotter key set) fills one key per miss
        previous = hit_eq * state.cached_keys / keys_eq if keys_eq > 0 else 0.0
        state.cached_keys = min(keys_eq, state.cached_keys + normal * (1 - previous) * c.dt)
    return (min(hit_eq * state.cached_keys / keys_eq, 1.0) if keys_eq > 0 else 0.0), evicting


def _redis(c: _Tick, app: AppStage, misses: float, evicting: bool, counters: Counters) -> tuple[float, float]:
    """Redis' own series (into `counters`); returns the app's call time and the memory used."""
    p, dt, reads, writes = c.p, c.dt, app.reads, app.writes
    evictions = misses if evicting else 0.0  # a full LRU cache evicts one key per fill
    commands = reads + misses + 2 * writes  # GET per read, SET per fill, DEL + marker per write
    redis_cores = commands * p.redis_cpu_seconds_per_command
    counters["redis_keyspace_misses_total"] = misses * dt
    counters["redis_evicted_keys_total"] = evictions * dt
    counters["redis_cpu_user_seconds_total"] = 0.8 * redis_cores * dt
    counters["redis_cpu_sys_seconds_total"] = 0.2 * redis_cores * dt
    counters["redis_commands_processed_total"] = commands * dt
    for cmd, count in (("get", reads), ("set", misses + writes), ("del", writes)):
        counters[f.key("redis_commands_total", (("cmd", cmd),))] = count * dt
        counters[f.key("redis_commands_duration_seconds_total", (("cmd", cmd),))] = (
            count * p.redis_cpu_seconds_per_command * dt)
    cached_keys = c.state.cached_keys or 0.0
    return sojourn(p.cache_call_seconds, redis_cores), p.cache_base_bytes + cached_keys * p.item_bytes


@dataclass(frozen=True)
class ReplicaStage:
    served: Served
    read_cpu: float  # CPU-seconds per read
    free_cores: float  # per replica, after WAL replay
    server_seconds: float  # a read's time on the replica
    pool: int  # the app pods' read connections, all together
    wait_share: float  # share of reads that waited for a pooled connection
    wait_seconds: float  # mean pool wait per read
    client_seconds: float  # a read's time as the app sees it
    lag: dict[str, float]


def _replicas(c: _Tick, app: AppStage, cache: CacheStage) -> ReplicaStage:
    p, run, dt, writes = c.p, c.run, c.dt, app.writes
    read_cpu = p.read_cpu_seconds + p.read_query_cost_rows * p.read_cpu_seconds_per_row
    replay_cores = writes * p.replay_cpu_seconds_per_write
    free_cores = max(0.0, run.replica_cpu_cores - replay_cores)
    read_capacity = len(run.replicas) * free_cores / read_cpu
    rd = c.state.reads.serve(cache.to_replicas, read_capacity, dt, p.pool_timeout_seconds)
    read_server = p.read_base_seconds + sojourn(read_cpu / min(1.0, run.replica_cpu_cores), rd.busy)
    read_pool = run.app_pods * p.read_pool_size
    read_wait_p, read_wait = pool_wait(rd.throughput, read_server, read_pool)
    if rd.queue_delay > 0:
        read_wait_p, read_wait = 1.0, read_wait + rd.queue_delay
    replay_rate = min(1.0, run.replica_cpu_cores) / p.replay_cpu_seconds_per_write
    lag: dict[str, float] = {}
    for name in run.replicas:
        # WAL written during the base backup is replayed after the replica comes up.
        start = c.state.replica_lag.get(name, p.replica_bootstrap_seconds * writes / replay_rate)
        lag[name] = max(0.0, start + (writes / replay_rate - 1.0) * dt)
    c.state.replica_lag = lag
    return ReplicaStage(rd, read_cpu, free_cores, read_server, read_pool, read_wait_p, read_wait,
                        read_server + read_wait, lag)


@dataclass(frozen=True)
class PrimaryStage:
    ops: float  # writes and reads per second it gets
    pool: int  # the app pods' write connections, all together
    cores: float  # CPU left for queries (base backups of new replicas take some)
    cpu_demand: float
    sessions: float
    server_seconds: float  # a write's time on the primary
    wait_share: float
    wait_seconds: float
    client_seconds: float  # a write's time as the app sees it
    read_client_seconds: float  # a read's time on the primary as the app sees it
    lock_waits: float
    write_errors: float  # per second
    read_errors: float  # per second


def _primary(c: _Tick, app: AppStage, cache: CacheStage, replicas: ReplicaStage) -> PrimaryStage:
    p, run, dt, writes, primary_reads = c.p, c.run, c.dt, app.writes, cache.primary_reads
    collision, read_cpu = c.keys.collision, replicas.read_cpu
    primary_ops = writes + primary_reads
    write_pool = run.app_pods * p.write_pool_size
    cores = max(1e-3, run.primary_cpu_cores - run.bootstrapping * p.basebackup_cores)
    wall = 1.0 / min(1.0, run.primary_cpu_cores)  # one session runs on at most one core
    sessions, cpu_demand, cpu_per_write = _sessions(c, app, cache, read_cpu, cores)
    offered_cpu = cpu_demand + c.state.primary.backlog / dt
    pr = c.state.primary.serve(cpu_demand, cores, dt, p.pool_timeout_seconds)
    dropped_share = pr.dropped / offered_cpu if offered_cpu > _EPS else 0.0
    write_server = (p.write_base_seconds + sojourn(cpu_per_write * wall, pr.busy)) * (
        1 + collision * max(0.0, sessions - 1))
    write_wait_p, write_wait = pool_wait(primary_ops, write_server, write_pool)
    if pr.queue_delay > 0:
        write_wait_p, write_wait = 1.0, write_wait + pr.queue_delay
    return PrimaryStage(
        ops=primary_ops, pool=write_pool, cores=cores, cpu_demand=cpu_demand, sessions=sessions,
        server_seconds=write_server, wait_share=write_wait_p, wait_seconds=write_wait,
        client_seconds=write_server + write_wait,
        read_client_seconds=p.read_base_seconds + sojourn(read_cpu * wall, pr.busy) + write_wait,
        lock_waits=sessions * (1 - (1 - collision) ** max(0.0, sessions - 1)),
        write_errors=writes * dropped_share, read_errors=primary_reads * dropped_share,
    )


def _sessions(c: _Tick, app: AppStage, cache: CacheStage, read_cpu: float, cores: float) -> tuple[float, float, float]:
    """The primary's busy sessions as a fixed point (sessions -> CPU per write and lock waits -> latency ->
    sessions), stored in state.write_sessions; returns (sessions, CPU demand, CPU per write)."""
    p, run, dt, writes, primary_reads = c.p, c.run, c.dt, app.writes, cache.primary_reads
    collision, backlog = c.keys.collision, c.state.primary.backlog
    primary_ops, write_pool = writes + primary_reads, run.app_pods * p.write_pool_size
    wall = 1.0 / min(1.0, run.primary_cpu_cores)
    sessions = c.state.write_sessions
    cpu_demand = cpu_per_write = 0.0
    for _ in range(8):
        cpu_per_write = p.write_cpu_seconds * (1 + p.coherency * max(0.0, sessions - 1))
        cpu_demand = writes * cpu_per_write + primary_reads * read_cpu
        rho = (cpu_demand + backlog / dt) / cores
        write_server = (p.write_base_seconds + sojourn(cpu_per_write * wall, rho)) * (
            1 + collision * max(0.0, sessions - 1))
        busy_pool = backlog > 0 or rho >= 1
        sessions = float(write_pool) if busy_pool else min(float(write_pool), primary_ops * write_server)
    c.state.write_sessions = sessions
    return sessions, cpu_demand, cpu_per_write


@dataclass(frozen=True)
class QueueStage:
    capacity_jobs: float  # per second, all workers
    done: float  # jobs finished this tick
    depth: float
    oldest_age: float

    def done_rate(self, dt: float) -> float:
        return self.done / dt


def _queue(c: _Tick, app: AppStage) -> QueueStage:
    p, run, state, dt = c.p, c.run, c.state, c.dt
    if app.orders > 0:
        state.queue.append([c.now, app.orders * dt])
    capacity_jobs = run.workers * p.worker_concurrency / p.job_duration_seconds if run.workers_enabled else 0.0
    budget = capacity_jobs * dt
    done = 0.0
    while state.queue and budget > _EPS:
        take = min(budget, state.queue[0][1])
        state.queue[0][1] -= take
        budget -= take
        done += take
        if state.queue[0][1] <= _EPS:
            state.queue.popleft()
    depth = sum(chunk[1] for chunk in state.queue)
    oldest = c.now - state.queue[0][0] if depth >= 0.5 else 0.0
    return QueueStage(capacity_jobs, done, depth, oldest)


ReadClasses = tuple[tuple[float, float], ...]  # (reads per second, mean seconds) by where they were served


def _read_classes(app: AppStage, cache: CacheStage, replicas: ReplicaStage, primary: PrimaryStage) -> ReadClasses:
    own, call = app.self_seconds, cache.call_seconds
    return ((cache.hits, own + call),
            (max(0.0, cache.to_replicas - replicas.served.dropped), own + call + replicas.client_seconds + call),
            (max(0.0, cache.primary_reads - primary.read_errors), own + call + primary.read_client_seconds + call))


def _app_series(c: _Tick, app: AppStage, cache: CacheStage, replicas: ReplicaStage, primary: PrimaryStage,
                classes: ReadClasses) -> Counters:
    """The app pods' counters and histograms, all pods together."""
    dt, queue_call, behind = c.dt, c.p.queue_call_seconds, app.behind
    reads, writes, orders, own = app.reads, app.writes, app.orders, app.self_seconds
    read_errors, write_errors = replicas.served.dropped, primary.write_errors
    out: Counters = {"process_cpu_seconds_total": app.cpu_seconds}
    for count, mean in classes:
        f.HTTP_HIST["read"].observe(out, count * dt, mean, shift=behind)
    f.HTTP_HIST["write"].observe(out, (writes - write_errors) * dt, own + primary.client_seconds + cache.call_seconds,
                                 shift=behind)
    f.HTTP_HIST["order"].observe(out, orders * dt, own + queue_call, shift=behind)
    served_reads = reads - read_errors - primary.read_errors
    for cls, ok, failed in (("read", served_reads, read_errors + primary.read_errors),
                            ("write", writes - write_errors, write_errors), ("order", orders, 0.0)):
        out[f.HTTP_COUNT[cls]] = max(0.0, ok) * dt
        out[f.HTTP_UNAVAILABLE[cls]] = failed * dt
    _dependency_series(c, app, cache, replicas, primary, out)
    out[f.ERRORS["db-read", "pool_exhausted"]] = read_errors * dt
    out[f.ERRORS["db-write", "pool_exhausted"]] = (write_errors + primary.read_errors) * dt
    out[f.CACHE_RESULT["hit"]] = cache.hits * dt
    out[f.CACHE_RESULT["miss"]] = cache.misses * dt
    out[f.CACHE_RESULT["bypass"]] = cache.bypass * dt
    return out


def _dependency_series(c: _Tick, app: AppStage, cache: CacheStage, replicas: ReplicaStage, primary: PrimaryStage,
                       out: Counters) -> None:
    """The app's client-side timings of its dependencies (calls and pool waits), into `out`."""
    dt, dep, call = c.dt, f.DEPENDENCY_HIST, cache.call_seconds
    reads, writes, orders = app.reads, app.writes, app.orders
    if c.run.cache_enabled:
        dep["cache", "get"].observe(out, reads * dt, call)
        dep["cache", "set"].observe(out, cache.misses * dt, call)
        dep["cache", "invalidate"].observe(out, writes * dt, call)
        f.POOL_WAIT_HIST["cache"].observe(out, (reads + cache.misses + writes) * dt, 0.0, waiting=0.0)
    dep["db-read", "get_item"].observe(out, cache.to_replicas * dt, replicas.client_seconds)
    dep["db-write", "get_item"].observe(out, cache.primary_reads * dt, primary.read_client_seconds)
    dep["db-write", "put_item"].observe(out, writes * dt, primary.client_seconds)
    dep["queue", "enqueue"].observe(out, orders * dt, c.p.queue_call_seconds)
    wait_given = replicas.wait_seconds / replicas.wait_share if replicas.wait_share > 0 else 0.0
    f.POOL_WAIT_HIST["db-read"].observe(out, cache.to_replicas * dt, wait_given, waiting=replicas.wait_share)
    wait_given = primary.wait_seconds / primary.wait_share if primary.wait_share > 0 else 0.0
    f.POOL_WAIT_HIST["db-write"].observe(out, primary.ops * dt, wait_given, waiting=primary.wait_share)
    f.POOL_WAIT_HIST["queue"].observe(out, orders * dt, 0.0, waiting=0.0)


def _worker_series(c: _Tick, queue: QueueStage) -> Counters:
    dep, done, queue_call = f.DEPENDENCY_HIST, queue.done, c.p.queue_call_seconds
    out: Counters = {"process_cpu_seconds_total": queue.done_rate(c.dt) * WORKER_CPU_SECONDS_PER_JOB * c.dt}
    dep["queue", "dequeue"].observe(out, done, queue_call)
    dep["queue", "update_order"].observe(out, done, queue_call)
    f.JOB_HIST.observe_fixed(out, done, c.p.job_duration_seconds)
    out[f.JOBS_DONE] = done
    return out


@dataclass(frozen=True)
class Stages:
    app: AppStage
    cache: CacheStage
    replicas: ReplicaStage
    primary: PrimaryStage
    queue: QueueStage
    classes: ReadClasses


@dataclass(frozen=True)
class TickCounters:
    app: Counters
    worker: Counters
    cache: Counters
    primary: Counters
    replica: Counters


def _utilization(c: _Tick, s: Stages) -> dict[str, float]:
    """The ground truth: how busy each tier really is."""
    p, run = c.p, c.run
    capacity_jobs, depth = s.queue.capacity_jobs, s.queue.depth
    return {
        "app": s.app.served.utilization,
        "cache": (p.cache_base_bytes + s.cache.working_set * p.item_bytes) / max(1, run.cache_memory_bytes)
        if run.cache_enabled else 0.0,
        "db-read": s.replicas.served.utilization if run.replicas
        else (s.cache.to_replicas + s.cache.primary_reads) * s.replicas.read_cpu / s.replicas.free_cores,
        "workers": (s.app.orders + depth / 60.0) / capacity_jobs if capacity_jobs > 0 else (math.inf if depth else 0.0),
        "db-write": s.primary.cpu_demand / s.primary.cores,
    }


def _result(c: _Tick, s: Stages, counters: TickCounters) -> TickResult:
    """The end user's view and the ground truth, with the counters every role of pod exports."""
    p, run, app, primary, queue_call = c.p, c.run, s.app, s.primary, c.p.queue_call_seconds
    own, write_client, writes, orders = app.self_seconds, primary.client_seconds, app.writes, app.orders
    dropped = app.served.dropped + s.replicas.served.dropped + primary.write_errors + primary.read_errors
    classes = [(n, app.behind, m) for n, m in s.classes if n > 0]
    classes += [(writes - primary.write_errors, app.behind, own + write_client + s.cache.call_seconds),
                (orders, app.behind, own + queue_call), (dropped, 0.0, math.inf)]
    return TickResult(
        app=counters.app, worker=counters.worker, cache=counters.cache, primary=counters.primary,
        replica=counters.replica,
        in_flight=app.served.throughput * own + c.state.app.backlog
        + sum(n * (m - own) for n, m in s.classes) + writes * write_client + orders * queue_call,
        queue_depth=s.queue.depth,
        oldest_age=s.queue.oldest_age,
        jobs_in_progress=min(run.workers * p.worker_concurrency, s.queue.done_rate(c.dt) * p.job_duration_seconds),
        cache_memory_used=s.cache.memory_used,
        primary_active=primary.sessions,
        primary_connections=primary.pool + run.replicas_total + 1 + run.bootstrapping,
        lock_waits=primary.lock_waits,
        lock_wait_max_seconds=primary.server_seconds if primary.lock_waits >= 0.5 else 0.0,
        replica_active=min(float(s.replicas.pool), s.replicas.served.throughput * s.replicas.server_seconds),
        replica_connections=float(s.replicas.pool),
        replica_lag=dict(s.replicas.lag),
        utilization=_utilization(c, s),
        p95_seconds=mixture_quantile(classes, 0.95),
        served_per_second=app.served.throughput - dropped + app.served.dropped,
        errors_per_second=dropped,
        hit_ratio=s.cache.hit_ratio,
    )
