"""The twin's cache tier: its stage of the tick (Redis in front of the replicas) and its model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from devharness.twin import families as f
from devharness.twin import pods as pod_series
from devharness.twin import signals as sig
from devharness.twin.physics import quantize, sojourn
from devharness.twin.plant import Counters, TickContext, TickResult
from devharness.twin.tiers.app import AppStage
from devharness.twin.tiers.base import LiveObjects, SignalInputs, TwinTier
from scaledapp.quantity import parse_bytes
from scaledapp.resources.cache import MAXMEMORY_KEY
from scaledapp.resources.names import ChildNames
from scaledapp.sizes import Sizes
from scaledapp.tiers import cache as op_tier
from scaledapp.tiers.cache import TIER


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
    utilization: float  # the bytes the keys of one TTL need over maxmemory


def stage(c: TickContext, app: AppStage) -> CacheStage:
    """Zipf keys, LRU + TTL; reads of keys written recently go to the primary."""
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
    utilization = ((p.cache_base_bytes + working_set * p.item_bytes) / max(1, run.cache_memory_bytes)
                   if run.cache_enabled else 0.0)
    return CacheStage(hits, misses, bypass, cache_call, hit_ratio, memory_used, working_set, to_replicas,
                      primary_reads, counters, utilization)


def _fill(c: TickContext, normal: float) -> tuple[float, bool]:
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


def _redis(c: TickContext, app: AppStage, misses: float, evicting: bool, counters: Counters) -> tuple[float, float]:
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


def _signals(w: sig.Window, app_ready: int, memory_used: float, memory_max: float) -> sig.Signals:
    lookups = w.app.get(f.CACHE_RESULT["hit"], 0.0) + w.app.get(f.CACHE_RESULT["miss"], 0.0)
    cpu = w.cache.get("redis_cpu_user_seconds_total", 0.0) + w.cache.get("redis_cpu_sys_seconds_total", 0.0)
    seconds = max(w.seconds, 1e-9)
    return {
        op_tier.CPU_CORES: cpu / seconds,
        op_tier.MEMORY_UTILIZATION: memory_used / memory_max if memory_max > 0 else None,
        op_tier.EVICTIONS_PER_SECOND: w.cache.get("redis_evicted_keys_total", 0.0) / seconds,
        op_tier.LOOKUPS_PER_SECOND: lookups / seconds if app_ready else None,
        op_tier.HIT_RATIO: w.app.get(f.CACHE_RESULT["hit"], 0.0) / lookups if lookups > 0 else None,
    }


def _zero() -> dict[str, float]:
    return dict.fromkeys(("redis_keyspace_hits_total", "redis_keyspace_misses_total", "redis_evicted_keys_total",
                          "redis_cpu_user_seconds_total", "redis_cpu_sys_seconds_total",
                          "redis_commands_processed_total"), 0.0)


def _gauges(pod: pod_series.PodState, model: pod_series.PlantView, maxmemory: float) -> dict[str, float]:
    last = pod.last
    return {
        "redis_up": 1.0,
        "redis_memory_used_bytes": last.cache_memory_used if last else float(model.params.cache_base_bytes),
        "redis_memory_max_bytes": maxmemory,
        "redis_connected_clients": float(pod.app_ready * 10 + 1),
        "redis_blocked_clients": 0.0,
    }


class CacheTwin(TwinTier):
    tier = TIER
    missing = "cache maxmemory"

    def pod_base(self, child: ChildNames) -> str:
        return child.cache

    def zero(self) -> dict[str, float]:
        return _zero()

    def increments(self, result: TickResult) -> Mapping[str, float]:
        return result.cache

    def gauges(self, pod: pod_series.PodState, model: pod_series.PlantView) -> dict[str, float]:
        return _gauges(pod, model, float(TIER.size(model.sizes)))

    def signals(self, inputs: SignalInputs) -> sig.Signals:
        memory = float(TIER.size(inputs.sizes))
        return _signals(inputs.window, inputs.app_ready, inputs.last.cache_memory_used, memory)

    def read_size(self, live: LiveObjects, previous: Sizes) -> object | None:
        value = ((live.cache_config or {}).get("data") or {}).get(MAXMEMORY_KEY)
        return parse_bytes(str(value)) if value else None


TWIN = CacheTwin()
