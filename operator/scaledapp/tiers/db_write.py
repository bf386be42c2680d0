"""The db-write tier: the Postgres primary, the one thing that cannot be cloned.

Pressure: write latency as the app sees it, sessions waiting on locks, and connection saturation on
the primary. Write latency counts only while the app is not CPU-bound (tiers.app.cpu_bound): a
saturated app's event loop inflates its own timings; lock waits and connections are the server's word.
Widening is vertical (CPU and memory times a factor, up to the max). At the max the status says so
and recommends sharding; the scaler never shards.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from scaledapp import api
from scaledapp.quantity import (
    format_bytes,
    format_cpu,
    scale_bytes,
    scale_millicores,
)
from scaledapp.reasons import Reason
from scaledapp.resources.common import Manifest
from scaledapp.resources.database import CONTAINER as PRIMARY_CONTAINER
from scaledapp.resources.names import ChildNames
from scaledapp.resources.scaler import primary_pod_resize_patch, primary_resources_body
from scaledapp.sizes import Blocked, Resources, Sizes, Step, clamp
from scaledapp.tiers.app import CPU_LIMIT, PROCESS_CPU, cpu_bound, cpu_utilization_query
from scaledapp.tiers.base import (
    NOT_LOAD,
    RATE_WINDOW,
    Scope,
    SignalPressure,
    TierModel,
    TierPressure,
    Workload,
    higher_is_worse,
    highest_known,
    histogram_quantile,
    need,
    onset_name,
    sized_factor,
    sum_rate,
    workload_counts,
    zero_if_reporting,
)

# Metric names: the app's client-side dependency histogram and postgres_exporter v0.19 on the primary
# (lock waits come from the custom query in resources/files/postgres-exporter-queries.yaml).
DEPENDENCY_DURATION = "scaledapp_dependency_duration_seconds"  # label dependency="db-write"
PG_ACTIVITY = "pg_stat_activity_count"
PG_MAX_CONNECTIONS = "pg_settings_max_connections"
PG_LOCK_WAITS = "pg_locks_waiting_count"
DEPENDENCY = "db-write"

# Signals.
WRITES_PER_SECOND = "writes_per_second"
WRITE_SECONDS = "write_seconds"  # p95
LOCK_WAITS = "lock_waits"
CONNECTION_UTILIZATION = "connection_utilization"
APP_CPU_UTILIZATION = "app_cpu_utilization"  # the app tier's CPU signal: are the app's timings trustworthy?


class DbWriteTier(TierModel[Resources]):
    """Its size is the primary container's CPU and memory limits."""

    name = "db-write"
    metrics: ClassVar[frozenset[str]] = frozenset(
        {DEPENDENCY_DURATION, PG_ACTIVITY, PG_MAX_CONNECTIONS, PG_LOCK_WAITS, PROCESS_CPU, CPU_LIMIT}
    )
    status_field = "db_write"
    spec_block = "database"
    throughput_signal = WRITES_PER_SECOND

    def bounds(self, spec: api.ScaledAppSpec) -> tuple[Resources, Resources]:
        initial, most = spec.database.resources.initial, spec.database.resources.max
        return Resources.of(initial.cpu, initial.memory), Resources.of(most.cpu, most.memory)

    def initial(self, spec: api.ScaledAppSpec) -> Resources:
        return self.bounds(spec)[0]

    def bounded(self, spec: api.ScaledAppSpec, size: Resources) -> Resources:
        low, high = self.bounds(spec)
        return Resources(clamp(size.cpu_millicores, (low.cpu_millicores, high.cpu_millicores)),
                         clamp(size.memory_bytes, (low.memory_bytes, high.memory_bytes)))

    def workload(self, child: ChildNames) -> Workload:
        return Workload("apps/v1", "StatefulSet", child.db_primary)

    def read_size(self, live: Manifest | None, spec: api.ScaledAppSpec) -> Resources:
        """The postgres container's limits in the StatefulSet template."""
        initial = spec.database.resources.initial
        cpu, memory = initial.cpu, initial.memory
        template = (((live or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
        for container in template.get("containers") or []:
            if container.get("name") == PRIMARY_CONTAINER:
                limits = (container.get("resources") or {}).get("limits") or {}
                cpu, memory = str(limits.get("cpu", cpu)), str(limits.get("memory", memory))
                break
        return Resources.of(cpu, memory)

    def size_body(self, child: ChildNames, namespace: str, sizes: Sizes) -> Manifest:
        size = self.size(sizes)
        return primary_resources_body(child, namespace, size.cpu, size.memory)

    def live_resize(self, child: ChildNames, sizes: Sizes) -> tuple[str, Manifest] | None:
        # The template keeps the size for a restart (OnDelete); the live pod is resized in place.
        size = self.size(sizes)
        return f"{child.db_primary}-0", primary_pod_resize_patch(size.cpu, size.memory)

    def status(self, live: Manifest | None, sizes: Sizes) -> api.TierStatus:
        size = self.size(sizes)
        return workload_counts(live).model_copy(update={"size": f"{size.cpu} CPU, {size.memory}"})

    def queries(self, scope: Scope, window: str = RATE_WINDOW) -> dict[str, str]:
        writes = scope.selector(dependency=DEPENDENCY, exclude=NOT_LOAD)
        primary = scope.selector("db-write")
        write_count = sum_rate(f"{DEPENDENCY_DURATION}_count", writes, window)
        return {
            WRITES_PER_SECOND: zero_if_reporting(write_count, scope, "app"),
            WRITE_SECONDS: histogram_quantile(DEPENDENCY_DURATION, writes, window),
            LOCK_WAITS: f"sum({PG_LOCK_WAITS}{primary})",
            CONNECTION_UTILIZATION: f"sum({PG_ACTIVITY}{primary}) / sum({PG_MAX_CONNECTIONS}{primary})",
            APP_CPU_UTILIZATION: cpu_utilization_query(scope, window),
        }

    def pressure(self, signals: Mapping[str, float | None], spec: api.ScaledAppSpec, sizes: Sizes) -> TierPressure:
        targets = spec.scaling.targets
        missing: list[str] = []
        writes, locks, connections = need(signals, [WRITES_PER_SECOND, LOCK_WAITS, CONNECTION_UTILIZATION], missing)
        components: list[SignalPressure] = []
        if not missing:
            components.append(higher_is_worse(LOCK_WAITS, locks, targets.write_lock_waits))
            components.append(higher_is_worse(CONNECTION_UTILIZATION, connections, targets.db_connection_utilization))
            # The latency quantile is NaN without writes, and the app's own clock when it is CPU-bound.
            app_cpu = highest_known(signals.get(APP_CPU_UTILIZATION), signals.get(onset_name(APP_CPU_UTILIZATION)))
            if writes > 0 and app_cpu is None:
                # Without the app's CPU its timings cannot be told from its own starvation: unknown.
                missing.append(APP_CPU_UTILIZATION)
            elif writes > 0 and not cpu_bound(app_cpu, spec):
                (latency,) = need(signals, [WRITE_SECONDS], missing)
                components.append(higher_is_worse(WRITE_SECONDS, latency, targets.write_latency_seconds))
        if missing:
            return TierPressure(self.name, missing=tuple(missing))
        return TierPressure(self.name, components=tuple(components))

    def size_text(self, sizes: Sizes) -> str:
        size = self.size(sizes)
        return f"cpu={format_cpu(size.cpu_millicores)}, memory={format_bytes(size.memory_bytes)}"

    def capacity(self, sizes: Sizes) -> float:
        return float(self.size(sizes).cpu_millicores)

    def predicted_pressure(self, pressure: float, step: Step) -> float:
        # Pessimistic: the pressure grows by the SQUARE of the larger shrink ratio. The primary's evidence
        # grows faster than its utilization: lock waits with the square of the concurrent writers, write
        # latency as 1 / (1 - utilization). There is no CPU-utilization signal for the primary to
        # predict from, and a linear guess let a primary at half its CPU be halved straight back into
        # saturation (make bench, DB-write-bound scenario: narrowed at pressure 0.4, hot again a minute
        # later). So the primary is narrowed only when it is far from busy.
        before, after = self.size(step.before), self.size(step.after)
        cpu_ratio = before.cpu_millicores / max(after.cpu_millicores, 1)
        memory_ratio = before.memory_bytes / max(after.memory_bytes, 1)
        return pressure * max(cpu_ratio, memory_ratio) ** 2

    def widen(self, spec: api.ScaledAppSpec, sizes: Sizes, pressure: TierPressure) -> Step | Blocked:
        low, high = self.bounds(spec)
        cpu_bounds, memory_bounds = (low.cpu_millicores, high.cpu_millicores), (low.memory_bytes, high.memory_bytes)
        size = self.size(sizes)
        if size.cpu_millicores >= high.cpu_millicores and size.memory_bytes >= high.memory_bytes:
            dominant = pressure.dominant
            why = f" ({dominant.signal} {dominant.value:g} vs target {dominant.target:g})" if dominant else ""
            return Blocked(
                self.name,
                Reason.SHARDING_RECOMMENDED,
                f"the primary is at its max size ({self.size_text(sizes)}) and still the bottleneck{why}",
                at_ceiling=True,
                recommendation="The primary is at its vertical ceiling: shard the writes (split the data by key "
                "across several primaries) or cut write load (batch, queue, fewer indexes). The scaler never "
                "shards, and will not add app pods or workers, which would only add write load.",
            )
        factor = sized_factor(pressure.pressure, spec.scaling.steps.resource_factor)
        cpu = clamp(scale_millicores(size.cpu_millicores, factor), cpu_bounds)
        memory = clamp(scale_bytes(size.memory_bytes, factor), memory_bounds)
        return self._step(sizes, "widen", cpu, memory)

    def narrow(self, spec: api.ScaledAppSpec, sizes: Sizes) -> Step | None:
        low, high = self.bounds(spec)
        cpu_bounds, memory_bounds = (low.cpu_millicores, high.cpu_millicores), (low.memory_bytes, high.memory_bytes)
        size = self.size(sizes)
        if size.cpu_millicores <= low.cpu_millicores and size.memory_bytes <= low.memory_bytes:
            return None
        factor = 1 / spec.scaling.steps.resource_factor
        cpu = clamp(scale_millicores(size.cpu_millicores, factor), cpu_bounds)
        memory = clamp(scale_bytes(size.memory_bytes, factor), memory_bounds)
        return self._step(sizes, "narrow", cpu, memory)

    def _step(self, sizes: Sizes, kind: str, cpu: int, memory: int) -> Step:
        after = self.with_size(sizes, Resources(cpu, memory))
        return Step(self.name, kind, sizes, after, self.size_text(sizes), self.size_text(after))


TIER = DbWriteTier()
