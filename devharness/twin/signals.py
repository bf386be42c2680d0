"""The operator's tier signals, computed from the twin's series the way the tier queries compute them
from Prometheus (operator/scaledapp/tiers/*.py): rates and histogram quantiles over the last rate
window, ratios of sums, max/sum of gauges over the pods that report them. Unknown stays None.

The constants come from the tier definitions themselves, never copies: the rate window
(tiers.base.RATE_WINDOW, see `window_seconds`), the latency quantile (LATENCY_QUANTILE) and which
dependency calls are request load (NOT_LOAD, the label regexes the queries exclude). If a tier's
queries change those, the twin follows; tests/dataplane/test_twin_promql.py checks that real PromQL over
the twin's pages agrees with `TwinModel.snapshot()`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from devharness.twin import families as f
from devharness.twin.physics import histogram_quantile
from scaledapp.sizes import TierName
from scaledapp.tiers import app, cache, db_read, db_write, tier, workers
from scaledapp.tiers.base import LATENCY_QUANTILE, NOT_LOAD, RATE_WINDOW, Scope

Signals = dict[str, float | None]
QUANTILE = LATENCY_QUANTILE
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}


def window_seconds(duration: str = RATE_WINDOW) -> float:
    """A PromQL range duration ("1m", "10s", "1m30s") in seconds."""
    parts = _DURATION.findall(duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def counts_as_load(hist: f.Hist) -> bool:
    """A dependency series the tier queries count as request load: no NOT_LOAD matcher matches it
    (PromQL's `label!~"re"` keeps a series unless the whole value matches)."""
    labels = dict(hist.labels)
    return not any(re.fullmatch(rx, labels.get(name, "")) for name, rx in NOT_LOAD.items())


def _load_ops(dependency: str) -> tuple[str, ...]:
    return tuple(op for (dep, op), h in f.DEPENDENCY_HIST.items() if dep == dependency and counts_as_load(h))


READ_OPS = _load_ops(db_read.DEPENDENCY)  # db-read operations that are load
WRITE_OPS = _load_ops(db_write.DEPENDENCY)


@dataclass(frozen=True)
class Window:
    """Counter increments summed over the rate window, per pod role, and the window's length."""

    seconds: float
    app: Mapping[str, float]
    cache: Mapping[str, float]
    worker: Mapping[str, float]
    app_core_seconds: float  # ready app pods x CPU limit x time: the denominator of CPU utilization
    in_flight_per_pod_seconds: float  # in-flight per ready pod, integrated over time


def _merged(hists: Sequence[f.Hist], totals: Mapping[str, float]) -> tuple[list[float], float]:
    cumulative = [0.0] * len(hists[0].bounds)
    count = 0.0
    for hist in hists:
        buckets, n = hist.cumulative(totals)
        cumulative = [a + b for a, b in zip(cumulative, buckets, strict=True)]
        count += n
    return cumulative, count


def _quantile(hists: Sequence[f.Hist], totals: Mapping[str, float]) -> float | None:
    cumulative, count = _merged(hists, totals)
    value = histogram_quantile(QUANTILE, hists[0].bounds, cumulative, count)
    return None if value != value else value  # NaN: no observations


def app_signals(w: Window, app_ready: int) -> Signals:
    if app_ready == 0 or w.seconds <= 0:  # no pod reports: every query is empty
        return dict.fromkeys((app.CPU_UTILIZATION, app.IN_FLIGHT_PER_POD, app.REQUESTS_PER_SECOND,
                              app.REQUEST_SECONDS, app.DEPENDENCY_SECONDS))
    count = sum(w.app.get(h.count_key, 0.0) for h in f.HTTP_HIST.values())
    total = sum(w.app.get(h.sum_key, 0.0) for h in f.HTTP_HIST.values())
    dependency = sum(w.app.get(h.sum_key, 0.0) for h in f.DEPENDENCY_HIST.values() if counts_as_load(h))
    return {
        app.CPU_UTILIZATION: w.app.get("process_cpu_seconds_total", 0.0) / w.app_core_seconds
        if w.app_core_seconds > 0 else None,
        app.IN_FLIGHT_PER_POD: w.in_flight_per_pod_seconds / w.seconds,
        app.REQUESTS_PER_SECOND: count / w.seconds,
        app.REQUEST_SECONDS: total / count if count > 0 else None,
        app.DEPENDENCY_SECONDS: dependency / count if count > 0 else None,
    }


def cache_signals(w: Window, app_ready: int, memory_used: float, memory_max: float) -> Signals:
    lookups = w.app.get(f.CACHE_RESULT["hit"], 0.0) + w.app.get(f.CACHE_RESULT["miss"], 0.0)
    cpu = w.cache.get("redis_cpu_user_seconds_total", 0.0) + w.cache.get("redis_cpu_sys_seconds_total", 0.0)
    seconds = max(w.seconds, 1e-9)
    return {
        cache.CPU_CORES: cpu / seconds,
        cache.MEMORY_UTILIZATION: memory_used / memory_max if memory_max > 0 else None,
        cache.EVICTIONS_PER_SECOND: w.cache.get("redis_evicted_keys_total", 0.0) / seconds,
        cache.LOOKUPS_PER_SECOND: lookups / seconds if app_ready else None,
        cache.HIT_RATIO: w.app.get(f.CACHE_RESULT["hit"], 0.0) / lookups if lookups > 0 else None,
    }


def db_read_signals(w: Window, app_ready: int, replicas: Mapping[str, tuple[float, float, float]]) -> Signals:
    """`replicas`: ready replica pod -> (active sessions, max_connections, lag seconds)."""
    reads = [f.DEPENDENCY_HIST[db_read.DEPENDENCY, op] for op in READ_OPS]
    count = sum(w.app.get(h.count_key, 0.0) for h in reads)
    return {
        db_read.READS_PER_SECOND: count / max(w.seconds, 1e-9) if app_ready else None,
        db_read.READ_SECONDS: _quantile(reads, w.app),
        db_read.POOL_WAIT_SECONDS: _quantile([f.POOL_WAIT_HIST[db_read.DEPENDENCY]], w.app),
        db_read.REPLICA_SATURATION: max((a / m for a, m, _ in replicas.values()), default=None),
        db_read.LAG_SECONDS: max((lag for _, _, lag in replicas.values()), default=None),
    }


def db_write_signals(
    w: Window, app_ready: int, lock_waits: float, connections: float, max_connections: float
) -> Signals:
    writes = [f.DEPENDENCY_HIST[db_write.DEPENDENCY, op] for op in WRITE_OPS]
    count = sum(w.app.get(h.count_key, 0.0) for h in writes)
    return {
        db_write.WRITES_PER_SECOND: count / max(w.seconds, 1e-9) if app_ready else None,
        db_write.WRITE_SECONDS: _quantile(writes, w.app),
        db_write.LOCK_WAITS: lock_waits,
        db_write.CONNECTION_UTILIZATION: connections / max_connections,
    }


def workers_signals(w: Window, depth: float | None, oldest_age: float | None, workers_ready: int) -> Signals:
    jobs = w.worker.get(f.JOBS_DONE, 0.0) + w.worker.get(f.JOBS_FAILED, 0.0)
    return {
        workers.QUEUE_DEPTH_SIGNAL: depth,
        workers.OLDEST_AGE_SECONDS: oldest_age,
        workers.JOBS_PER_SECOND: jobs / max(w.seconds, 1e-9) if workers_ready else None,
    }


def complete(signals: dict[TierName, Signals]) -> dict[TierName, Signals]:
    """Fill in the signals a tier borrows from another tier's series (e.g. a database tier that reads
    the app's CPU utilization as `app_cpu_utilization`): every name a tier queries gets a value, and a
    name the twin cannot compute stays None (unknown), so a new query shows up as missing, not as zero."""
    out: dict[TierName, Signals] = {}
    for name, values in signals.items():
        wanted = tier(name).queries(Scope("twin", "twin"))
        filled = dict(values)
        for signal in wanted:
            if signal in filled:
                continue
            owner, _, borrowed = signal.partition("_")
            source = signals.get(owner, {})
            filled[signal] = source.get(borrowed) if borrowed in source else None
        out[name] = filled
    return out
