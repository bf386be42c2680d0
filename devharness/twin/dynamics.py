"""One tick of the twin's physics: offered load + what is running -> what each tier served, its delays,
the metric increments every role of pod exports, and the ground truth. Each tier's stage is in its module
in tiers/ (its physics and its model); this module runs them along a request's way and keeps what couples
them: the app's view of its dependencies, the end user's latency, the ground truth of every tier. See
model.py for the model as a whole and the reasons behind each constant.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from devharness.twin import families as f
from devharness.twin.params import Load
from devharness.twin.physics import mixture_quantile
from devharness.twin.plant import Counters, PlantState, Running, TickContext, TickResult
from devharness.twin.tiers import app as app_tier
from devharness.twin.tiers import cache as cache_tier
from devharness.twin.tiers import db_read as db_read_tier
from devharness.twin.tiers import db_write as db_write_tier
from devharness.twin.tiers import workers as workers_tier
from devharness.twin.tiers.app import AppStage
from devharness.twin.tiers.cache import CacheStage
from devharness.twin.tiers.db_read import ReplicaStage
from devharness.twin.tiers.db_write import PrimaryStage
from devharness.twin.tiers.workers import QueueStage
from scaledapp.sizes import TierName
from scaledapp.tiers import db_read, db_write

__all__ = ["PlantState", "Running", "TickContext", "TickResult", "tick"]


def tick(c: TickContext, load: Load) -> TickResult:
    """One tick, tier by tier along a request's path, then the series every pod exports and the truth. `c`:
    the carried state (the stages update it), what runs, the parameters, the key space, the time and dt."""
    app = app_tier.stage(c, load)  # one Python process per pod, at most one core, CFS-throttled to its limit
    cache = cache_tier.stage(c, app)  # Zipf keys, LRU + TTL; reads of keys written recently go to the primary
    replicas = db_read_tier.stage(c, app, cache)  # each replays all the WAL, then serves reads with the CPU left
    primary = db_write_tier.stage(c, app, cache, replicas)  # writes and fresh reads; CPU (USL) and row locks
    queue = workers_tier.stage(c, app)  # the order queue and the workers draining it
    classes = _read_classes(app, cache, replicas, primary)
    counters = TickCounters(
        app=_app_series(c, app, cache, replicas, primary, classes),
        worker=workers_tier.series(c, queue),
        cache=cache.counters,
        primary={f.key("pg_stat_database_xact_commit", f.DATABASE): (primary.ops - primary.write_errors) * c.dt},
        replica={f.key("pg_stat_database_xact_commit", f.DATABASE): replicas.served.throughput * c.dt},
    )
    return _result(c, Stages(app, cache, replicas, primary, queue, classes), counters)


ReadClasses = tuple[tuple[float, float], ...]  # (reads per second, mean seconds) by where they were served


def _read_classes(app: AppStage, cache: CacheStage, replicas: ReplicaStage, primary: PrimaryStage) -> ReadClasses:
    own, call = app.self_seconds, cache.call_seconds
    return ((cache.hits, own + call),
            (max(0.0, cache.to_replicas - replicas.served.dropped), own + call + replicas.client_seconds + call),
            (max(0.0, cache.primary_reads - primary.read_errors), own + call + primary.read_client_seconds + call))


def _app_series(c: TickContext, app: AppStage, cache: CacheStage, replicas: ReplicaStage, primary: PrimaryStage,
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
    out[f.ERRORS[db_read.DEPENDENCY, "pool_exhausted"]] = read_errors * dt
    out[f.ERRORS[db_write.DEPENDENCY, "pool_exhausted"]] = (write_errors + primary.read_errors) * dt
    out[f.CACHE_RESULT["hit"]] = cache.hits * dt
    out[f.CACHE_RESULT["miss"]] = cache.misses * dt
    out[f.CACHE_RESULT["bypass"]] = cache.bypass * dt
    return out


def _dependency_series(c: TickContext, app: AppStage, cache: CacheStage, replicas: ReplicaStage, primary: PrimaryStage,
                       out: Counters) -> None:
    """The app's client-side timings of its dependencies (calls and pool waits), into `out`."""
    dt, dep, call = c.dt, f.DEPENDENCY_HIST, cache.call_seconds
    reads, writes, orders = app.reads, app.writes, app.orders
    if c.run.cache_enabled:
        dep["cache", "get"].observe(out, reads * dt, call)
        dep["cache", "set"].observe(out, cache.misses * dt, call)
        dep["cache", "invalidate"].observe(out, writes * dt, call)
        f.POOL_WAIT_HIST["cache"].observe(out, (reads + cache.misses + writes) * dt, 0.0, waiting=0.0)
    dep[db_read.DEPENDENCY, "get_item"].observe(out, cache.to_replicas * dt, replicas.client_seconds)
    dep[db_write.DEPENDENCY, "get_item"].observe(out, cache.primary_reads * dt, primary.read_client_seconds)
    dep[db_write.DEPENDENCY, "put_item"].observe(out, writes * dt, primary.client_seconds)
    dep["queue", "enqueue"].observe(out, orders * dt, c.p.queue_call_seconds)
    wait_given = replicas.wait_seconds / replicas.wait_share if replicas.wait_share > 0 else 0.0
    f.POOL_WAIT_HIST[db_read.DEPENDENCY].observe(out, cache.to_replicas * dt, wait_given, waiting=replicas.wait_share)
    wait_given = primary.wait_seconds / primary.wait_share if primary.wait_share > 0 else 0.0
    f.POOL_WAIT_HIST[db_write.DEPENDENCY].observe(out, primary.ops * dt, wait_given, waiting=primary.wait_share)
    f.POOL_WAIT_HIST["queue"].observe(out, orders * dt, 0.0, waiting=0.0)


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


def _utilization(s: Stages) -> dict[TierName, float]:
    """The ground truth: how busy each tier really is (each stage says), by the operator's tier names."""
    return {app_tier.TWIN.name: s.app.utilization, cache_tier.TWIN.name: s.cache.utilization,
            db_read_tier.TWIN.name: s.replicas.utilization, workers_tier.TWIN.name: s.queue.utilization,
            db_write_tier.TWIN.name: s.primary.utilization}


def _result(c: TickContext, s: Stages, counters: TickCounters) -> TickResult:
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
        utilization=_utilization(s),
        p95_seconds=mixture_quantile(classes, 0.95),
        served_per_second=app.served.throughput - dropped + app.served.dropped,
        errors_per_second=dropped,
        hit_ratio=s.cache.hit_ratio,
    )
