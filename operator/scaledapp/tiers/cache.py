"""The cache tier: Redis as a read-through cache, widened by raising maxmemory (never by a restart).

Two kinds of pressure:
- CPU: Redis runs commands on one thread, so near one core it is saturated. More memory does not
  help; the tier is then at a hard ceiling and the scaler says so instead of widening anything.
- capacity: the hit ratio under its target. A full cache is normal (that is what LRU is for), and
  misses without evictions are cold or expired keys that more memory would not keep; so misses count
  as capacity pressure only while Redis is evicting. Without evictions the pressure is capped by how
  full the cache is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import ClassVar

from scaledapp import api
from scaledapp.quantity import format_bytes, parse_bytes, scale_bytes
from scaledapp.reasons import Reason
from scaledapp.resources.cache import MAXMEMORY_KEY
from scaledapp.resources.common import Manifest
from scaledapp.resources.names import ChildNames
from scaledapp.resources.scaler import cache_memory_body
from scaledapp.sizes import Blocked, Sizes, Step, clamp
from scaledapp.tiers.base import (
    RATE_WINDOW,
    Scope,
    TierModel,
    TierPressure,
    Workload,
    higher_is_worse,
    lower_is_worse,
    need,
    sized_factor,
    sum_rate,
    zero_if_reporting,
)

# Metric names: redis_exporter (sidecar of the cache pod) and the app's client-side cache counter.
REDIS_CPU_USER = "redis_cpu_user_seconds_total"
REDIS_CPU_SYS = "redis_cpu_sys_seconds_total"
REDIS_MEMORY_USED = "redis_memory_used_bytes"
REDIS_MEMORY_MAX = "redis_memory_max_bytes"
REDIS_EVICTED = "redis_evicted_keys_total"
CACHE_REQUESTS = "scaledapp_cache_requests_total"  # label result="hit"|"miss"|"bypass"

# Signals.
CPU_CORES = "cpu_cores"
MEMORY_UTILIZATION = "memory_utilization"
EVICTIONS_PER_SECOND = "evictions_per_second"
LOOKUPS_PER_SECOND = "lookups_per_second"
HIT_RATIO = "hit_ratio"


class CacheTier(TierModel[int]):
    """Its size is Redis' maxmemory in bytes."""

    name = "cache"
    metrics: ClassVar[frozenset[str]] = frozenset(
        {REDIS_CPU_USER, REDIS_CPU_SYS, REDIS_MEMORY_USED, REDIS_MEMORY_MAX, REDIS_EVICTED, CACHE_REQUESTS}
    )

    status_field = "cache"
    spec_block = "cache"
    settles = False  # maxmemory is taken up live, with no rollout to wait for
    optional = True

    def enabled(self, spec: api.ScaledAppSpec) -> bool:
        return spec.cache.enabled

    def bounds(self, spec: api.ScaledAppSpec) -> tuple[int, int]:
        return parse_bytes(spec.cache.memory.initial), parse_bytes(spec.cache.memory.max)

    def initial(self, spec: api.ScaledAppSpec) -> int:
        return self.bounds(spec)[0]

    def bounded(self, spec: api.ScaledAppSpec, size: int) -> int:
        return clamp(size, self.bounds(spec))

    def workload(self, child: ChildNames) -> Workload:
        return Workload("v1", "ConfigMap", child.cache_config)

    def read_size(self, live: Manifest | None, spec: api.ScaledAppSpec) -> int:
        maxmemory = ((live or {}).get("data") or {}).get(MAXMEMORY_KEY) or spec.cache.memory.initial
        return parse_bytes(str(maxmemory))

    def size_body(self, child: ChildNames, namespace: str, sizes: Sizes) -> Manifest:
        return cache_memory_body(child, namespace, self.size(sizes))

    def status(self, live: Manifest | None, sizes: Sizes) -> api.TierStatus:
        return api.TierStatus(desired=1, ready=1 if live else 0, size=format_bytes(self.size(sizes)))

    def queries(self, scope: Scope, window: str = RATE_WINDOW) -> dict[str, str]:
        cache = scope.selector("cache")
        # "bypass" (cache disabled or down) is not a lookup: it says nothing about the cache's size.
        lookups = sum_rate(CACHE_REQUESTS, scope.selector("app", regex={"result": "hit|miss"}), window)
        hits = zero_if_reporting(sum_rate(CACHE_REQUESTS, scope.selector("app", result="hit"), window), scope, "app")
        return {
            CPU_CORES: f"{sum_rate(REDIS_CPU_USER, cache, window)} + {sum_rate(REDIS_CPU_SYS, cache, window)}",
            # maxmemory 0 means "no limit": the ratio is then unknown rather than infinite.
            MEMORY_UTILIZATION: f"sum({REDIS_MEMORY_USED}{cache}) / (sum({REDIS_MEMORY_MAX}{cache}) > 0)",
            EVICTIONS_PER_SECOND: sum_rate(REDIS_EVICTED, cache, window),
            LOOKUPS_PER_SECOND: zero_if_reporting(lookups, scope, "app"),
            HIT_RATIO: f"({hits}) / {lookups}",
        }

    def pressure(self, signals: Mapping[str, float | None], spec: api.ScaledAppSpec, sizes: Sizes) -> TierPressure:
        targets = spec.scaling.targets
        missing: list[str] = []
        cpu, memory, evictions, lookups = need(
            signals, [CPU_CORES, MEMORY_UTILIZATION, EVICTIONS_PER_SECOND, LOOKUPS_PER_SECOND], missing
        )
        # The hit ratio is 0/0 without lookups; it is needed only when there are some.
        hit_ratio = need(signals, [HIT_RATIO], missing)[0] if not missing and lookups > 0 else None
        if missing:
            return TierPressure(self.name, missing=tuple(missing))
        components = [higher_is_worse(CPU_CORES, cpu, targets.cache_cpu_cores)]
        memory_pressure = higher_is_worse(MEMORY_UTILIZATION, memory, targets.cache_memory_utilization)
        if hit_ratio is None:
            # No lookups: nothing to miss. Show how full it is, as a pressure that cannot make it hot.
            components.append(replace(memory_pressure, pressure=0.0))
        else:
            miss_pressure = lower_is_worse(HIT_RATIO, hit_ratio, targets.cache_hit_ratio)
            evicting = evictions > 0
            components.append(
                miss_pressure if evicting else min(miss_pressure, memory_pressure, key=lambda c: c.pressure)
            )
        return TierPressure(self.name, components=tuple(components))

    def size_text(self, sizes: Sizes) -> str:
        return format_bytes(self.size(sizes))

    def capacity(self, sizes: Sizes) -> float:
        return float(self.size(sizes))

    def widen(self, spec: api.ScaledAppSpec, sizes: Sizes, pressure: TierPressure) -> Step | Blocked:
        dominant = pressure.dominant
        if dominant is not None and dominant.signal == CPU_CORES:
            return Blocked(
                self.name,
                Reason.CACHE_CPU_BOUND,
                f"Redis uses {dominant.value:.2f} cores (target {dominant.target}); it runs commands on one "
                "thread, so more memory would not help",
                at_ceiling=True,
                recommendation="The cache is CPU-bound on its single command thread: cut commands per request "
                "(batch, pipeline, larger values) or split the cache; the scaler will not add app pods for it.",
            )
        low, high = self.bounds(spec)
        current = self.size(sizes)
        if current >= high:
            return Blocked(
                self.name,
                Reason.MAX_MEMORY,
                f"the cache is at its max of {format_bytes(high)}",
                at_ceiling=True,
                recommendation=f"Raise spec.cache.memory.max above {format_bytes(high)} or lower the cache's "
                "working set (shorter TTL, smaller values).",
            )
        factor = sized_factor(pressure.pressure, spec.scaling.steps.memory_factor)
        new = min(high, max(low, scale_bytes(current, factor)))
        return self._step(sizes, "widen", new)

    def narrow(self, spec: api.ScaledAppSpec, sizes: Sizes) -> Step | None:
        low, high = self.bounds(spec)
        current = self.size(sizes)
        if current <= low:
            return None
        new = max(low, min(high, scale_bytes(current, 1 / spec.scaling.steps.memory_factor)))
        return self._step(sizes, "narrow", new)

    def _step(self, sizes: Sizes, kind: str, memory_bytes: int) -> Step:
        after = self.with_size(sizes, memory_bytes)
        return Step(self.name, kind, sizes, after, self.size_text(sizes), self.size_text(after))


TIER = CacheTier()
