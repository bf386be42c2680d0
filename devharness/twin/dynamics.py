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
from devharness.twin.physics import KeySpace, Station, mixture_quantile, pool_wait, quantize, sojourn

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
    app_c: Counters = {}
    requests = load.reads_per_second + load.writes_per_second + load.orders_per_second
    # --- app: one Python process per pod, at most one core, CFS-throttled to its limit
    pod_cores = min(run.app_cpu_cores, 1.0)
    cpu_per_request = p.app_cpu_seconds_per_request + p.cpu_work_ms / 1000.0
    app = state.app.serve(requests, run.app_pods * pod_cores / cpu_per_request, dt, p.client_timeout_seconds)
    share = min(1.0, app.throughput / requests) if requests > 0 else 0.0
    reads, writes, orders = (load.reads_per_second * share, load.writes_per_second * share,
                             load.orders_per_second * share)
    if run.app_pods == 0:  # nothing is served (every request fails): no latency to speak of
        self_seconds, behind = p.client_timeout_seconds, 0.0
    else:
        # Waiting behind the app's backlog is the same for every request (FIFO), then its own sojourn.
        self_seconds, behind = sojourn(cpu_per_request / pod_cores, app.busy), app.queue_delay
    app_c["process_cpu_seconds_total"] = app.throughput * cpu_per_request * dt

    # --- cache: Zipf keys, LRU + TTL; reads of keys written in the last few seconds go to the primary
    fresh = reads * keys.recently_written_share(quantize(writes), p.recent_write_window_seconds)
    normal = reads - fresh
    hits = misses = bypass = evictions = 0.0
    cache_call = p.cache_call_seconds
    hit_ratio: float | None = None
    cache_c: Counters = {}
    memory_used = float(p.cache_base_bytes)
    working_set = keys.working_set(quantize(normal), run.cache_ttl_seconds) if normal > 0 else 0.0
    if run.cache_enabled:
        capacity_keys = max(0, (run.cache_memory_bytes - p.cache_base_bytes) // p.item_bytes)
        hit_eq, keys_eq, evicting = keys.steady_state(quantize(normal), int(capacity_keys), run.cache_ttl_seconds)
        if state.cached_keys is None:
            state.cached_keys = keys_eq  # the service starts warm
        elif state.cached_keys > capacity_keys:
            state.cached_keys = float(capacity_keys)  # a smaller maxmemory evicts at once
        elif keys_eq < state.cached_keys:  # a colder key set: entries expire over one TTL
            state.cached_keys += (keys_eq - state.cached_keys) * min(1.0, dt / run.cache_ttl_seconds)
        else:  # a bigger cache (or a hotter key set) fills one key per miss
            previous = hit_eq * state.cached_keys / keys_eq if keys_eq > 0 else 0.0
            state.cached_keys = min(keys_eq, state.cached_keys + normal * (1 - previous) * dt)
        hit_ratio = min(hit_eq * state.cached_keys / keys_eq, 1.0) if keys_eq > 0 else 0.0
        hits = normal * hit_ratio
        misses = reads - hits
        evictions = misses if evicting else 0.0  # a full LRU cache evicts one key per fill
        commands = reads + misses + 2 * writes  # GET per read, SET per fill, DEL + marker per write
        redis_cores = commands * p.redis_cpu_seconds_per_command
        cache_call = sojourn(p.cache_call_seconds, redis_cores)
        memory_used = p.cache_base_bytes + state.cached_keys * p.item_bytes
        cache_c["redis_keyspace_hits_total"] = hits * dt
        cache_c["redis_keyspace_misses_total"] = misses * dt
        cache_c["redis_evicted_keys_total"] = evictions * dt
        cache_c["redis_cpu_user_seconds_total"] = 0.8 * redis_cores * dt
        cache_c["redis_cpu_sys_seconds_total"] = 0.2 * redis_cores * dt
        cache_c["redis_commands_processed_total"] = commands * dt
        for cmd, count in (("get", reads), ("set", misses + writes), ("del", writes)):
            cache_c[f.key("redis_commands_total", (("cmd", cmd),))] = count * dt
            cache_c[f.key("redis_commands_duration_seconds_total", (("cmd", cmd),))] = (
                count * p.redis_cpu_seconds_per_command * dt)
    else:
        bypass = reads
    to_replicas = normal - hits if run.cache_enabled else normal
    primary_reads = fresh
    if not run.replicas:  # no ready replica: the app falls back to the primary
        primary_reads, to_replicas = primary_reads + to_replicas, 0.0

    # --- read replicas: each replays all the WAL, then serves reads with the CPU left over
    read_cpu = p.read_cpu_seconds + p.read_query_cost_rows * p.read_cpu_seconds_per_row
    replay_cores = writes * p.replay_cpu_seconds_per_write
    free_cores = max(0.0, run.replica_cpu_cores - replay_cores)
    read_capacity = len(run.replicas) * free_cores / read_cpu
    rd = state.reads.serve(to_replicas, read_capacity, dt, p.pool_timeout_seconds)
    read_server = p.read_base_seconds + sojourn(read_cpu / min(1.0, run.replica_cpu_cores), rd.busy)
    read_pool = run.app_pods * p.read_pool_size
    read_wait_p, read_wait = pool_wait(rd.throughput, read_server, read_pool)
    if rd.queue_delay > 0:
        read_wait_p, read_wait = 1.0, read_wait + rd.queue_delay
    read_client = read_server + read_wait
    replay_rate = min(1.0, run.replica_cpu_cores) / p.replay_cpu_seconds_per_write
    lag: dict[str, float] = {}
    for name in run.replicas:
        # WAL written during the base backup is replayed after the replica comes up.
        start = state.replica_lag.get(name, p.replica_bootstrap_seconds * writes / replay_rate)
        lag[name] = max(0.0, start + (writes / replay_rate - 1.0) * dt)
    state.replica_lag = lag

    # --- primary: writes and fresh reads; CPU (USL coherency per extra session) and row locks
    collision = keys.collision
    primary_ops = writes + primary_reads
    write_pool = run.app_pods * p.write_pool_size
    cores = max(1e-3, run.primary_cpu_cores - run.bootstrapping * p.basebackup_cores)
    wall = 1.0 / min(1.0, run.primary_cpu_cores)  # one session runs on at most one core
    sessions = state.write_sessions
    backlog = state.primary.backlog
    write_server = cpu_demand = cpu_per_write = 0.0
    for _ in range(8):  # fixed point: sessions -> CPU per write and lock waits -> latency -> sessions
        cpu_per_write = p.write_cpu_seconds * (1 + p.coherency * max(0.0, sessions - 1))
        cpu_demand = writes * cpu_per_write + primary_reads * read_cpu
        rho = (cpu_demand + backlog / dt) / cores
        write_server = (p.write_base_seconds + sojourn(cpu_per_write * wall, rho)) * (
            1 + collision * max(0.0, sessions - 1))
        busy_pool = backlog > 0 or rho >= 1
        sessions = float(write_pool) if busy_pool else min(float(write_pool), primary_ops * write_server)
    state.write_sessions = sessions
    offered_cpu = cpu_demand + backlog / dt
    pr = state.primary.serve(cpu_demand, cores, dt, p.pool_timeout_seconds)
    dropped_share = pr.dropped / offered_cpu if offered_cpu > _EPS else 0.0
    write_server = (p.write_base_seconds + sojourn(cpu_per_write * wall, pr.busy)) * (
        1 + collision * max(0.0, sessions - 1))
    write_wait_p, write_wait = pool_wait(primary_ops, write_server, write_pool)
    if pr.queue_delay > 0:
        write_wait_p, write_wait = 1.0, write_wait + pr.queue_delay
    write_client = write_server + write_wait
    primary_read_client = p.read_base_seconds + sojourn(read_cpu * wall, pr.busy) + write_wait
    lock_waits = sessions * (1 - (1 - collision) ** max(0.0, sessions - 1))
    write_errors = writes * dropped_share
    primary_read_errors = primary_reads * dropped_share
    read_errors = rd.dropped

    # --- queue and workers
    queue_call = p.queue_call_seconds
    if orders > 0:
        state.queue.append([now, orders * dt])
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
    oldest = now - state.queue[0][0] if depth >= 0.5 else 0.0
    done_rate = done / dt

    # --- the app's own series
    served_reads = reads - read_errors - primary_read_errors
    read_classes = ((hits, self_seconds + cache_call),
                    (max(0.0, to_replicas - read_errors), self_seconds + cache_call + read_client + cache_call),
                    (max(0.0, primary_reads - primary_read_errors),
                     self_seconds + cache_call + primary_read_client + cache_call))
    for count, mean in read_classes:
        f.HTTP_HIST["read"].observe(app_c, count * dt, mean, shift=behind)
    f.HTTP_HIST["write"].observe(app_c, (writes - write_errors) * dt, self_seconds + write_client + cache_call,
                                 shift=behind)
    f.HTTP_HIST["order"].observe(app_c, orders * dt, self_seconds + queue_call, shift=behind)
    for cls, ok, failed in (("read", served_reads, read_errors + primary_read_errors),
                            ("write", writes - write_errors, write_errors), ("order", orders, 0.0)):
        app_c[f.HTTP_COUNT[cls]] = max(0.0, ok) * dt
        app_c[f.HTTP_UNAVAILABLE[cls]] = failed * dt
    dep = f.DEPENDENCY_HIST
    if run.cache_enabled:
        dep["cache", "get"].observe(app_c, reads * dt, cache_call)
        dep["cache", "set"].observe(app_c, misses * dt, cache_call)
        dep["cache", "invalidate"].observe(app_c, writes * dt, cache_call)
        f.POOL_WAIT_HIST["cache"].observe(app_c, (reads + misses + writes) * dt, 0.0, waiting=0.0)
    dep["db-read", "get_item"].observe(app_c, to_replicas * dt, read_client)
    dep["db-write", "get_item"].observe(app_c, primary_reads * dt, primary_read_client)
    dep["db-write", "put_item"].observe(app_c, writes * dt, write_client)
    dep["queue", "enqueue"].observe(app_c, orders * dt, queue_call)
    wait_given = read_wait / read_wait_p if read_wait_p > 0 else 0.0
    f.POOL_WAIT_HIST["db-read"].observe(app_c, to_replicas * dt, wait_given, waiting=read_wait_p)
    wait_given = write_wait / write_wait_p if write_wait_p > 0 else 0.0
    f.POOL_WAIT_HIST["db-write"].observe(app_c, primary_ops * dt, wait_given, waiting=write_wait_p)
    f.POOL_WAIT_HIST["queue"].observe(app_c, orders * dt, 0.0, waiting=0.0)
    app_c[f.ERRORS["db-read", "pool_exhausted"]] = read_errors * dt
    app_c[f.ERRORS["db-write", "pool_exhausted"]] = (write_errors + primary_read_errors) * dt
    app_c[f.CACHE_RESULT["hit"]] = hits * dt
    app_c[f.CACHE_RESULT["miss"]] = misses * dt
    app_c[f.CACHE_RESULT["bypass"]] = bypass * dt

    worker_c: Counters = {"process_cpu_seconds_total": done_rate * WORKER_CPU_SECONDS_PER_JOB * dt}
    dep["queue", "dequeue"].observe(worker_c, done, queue_call)
    dep["queue", "update_order"].observe(worker_c, done, queue_call)
    f.JOB_HIST.observe_fixed(worker_c, done, p.job_duration_seconds)
    worker_c[f.JOBS_DONE] = done

    primary_c: Counters = {f.key("pg_stat_database_xact_commit", f.DATABASE): (primary_ops - write_errors) * dt}
    replica_c: Counters = {f.key("pg_stat_database_xact_commit", f.DATABASE): rd.throughput * dt}

    # --- the end user's view and the ground truth
    dropped = app.dropped + read_errors + write_errors + primary_read_errors
    classes = [(c, behind, m) for c, m in read_classes if c > 0]
    classes += [(writes - write_errors, behind, self_seconds + write_client + cache_call),
                (orders, behind, self_seconds + queue_call), (dropped, 0.0, math.inf)]
    replica_active = min(float(read_pool), rd.throughput * read_server)
    utilization = {
        "app": app.utilization,
        "cache": (p.cache_base_bytes + working_set * p.item_bytes) / max(1, run.cache_memory_bytes)
        if run.cache_enabled else 0.0,
        "db-read": rd.utilization if run.replicas else (to_replicas + primary_reads) * read_cpu / free_cores,
        "workers": (orders + depth / 60.0) / capacity_jobs if capacity_jobs > 0 else (math.inf if depth else 0.0),
        "db-write": cpu_demand / cores,
    }
    return TickResult(
        app=app_c, worker=worker_c, cache=cache_c, primary=primary_c, replica=replica_c,
        in_flight=app.throughput * self_seconds + state.app.backlog
        + sum(c * (m - self_seconds) for c, m in read_classes) + writes * write_client + orders * queue_call,
        queue_depth=depth,
        oldest_age=oldest,
        jobs_in_progress=min(run.workers * p.worker_concurrency, done_rate * p.job_duration_seconds),
        cache_memory_used=memory_used,
        primary_active=sessions,
        primary_connections=write_pool + run.replicas_total + 1 + run.bootstrapping,
        lock_waits=lock_waits,
        lock_wait_max_seconds=write_server if lock_waits >= 0.5 else 0.0,
        replica_active=replica_active,
        replica_connections=float(read_pool),
        replica_lag=dict(lag),
        utilization=utilization,
        p95_seconds=mixture_quantile(classes, 0.95),
        served_per_second=app.throughput - dropped + app.dropped,
        errors_per_second=dropped,
        hit_ratio=hit_ratio,
    )
