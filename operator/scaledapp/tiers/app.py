"""The app tier: stateless web pods, widened by adding replicas.

Its pressure comes from the app's OWN work only: CPU against its limit, the time a request spends in
the app itself (request time minus dependency time), and in-flight requests scaled by that same share.
Total latency and raw in-flight grow when the database is slow (Little's law: in-flight = rate x
latency); counting them would add app pods exactly when that makes the database worse.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from scaledapp import api
from scaledapp.resources.names import ChildNames
from scaledapp.sizes import Sizes
from scaledapp.tiers.base import (
    NOT_LOAD,
    RATE_WINDOW,
    HorizontalTier,
    Scope,
    SignalPressure,
    TierPressure,
    Workload,
    higher_is_worse,
    need,
    sum_rate,
    zero_if_reporting,
)

# Metric names (docs/metrics.md).
PROCESS_CPU = "process_cpu_seconds_total"
CPU_LIMIT = "scaledapp_cpu_limit_cores"
IN_FLIGHT = "scaledapp_http_requests_in_flight"
REQUEST_DURATION = "scaledapp_http_request_duration_seconds"  # histogram: _sum, _count
DEPENDENCY_DURATION = "scaledapp_dependency_duration_seconds"  # histogram, whole call incl. pool wait

# Signals.
CPU_UTILIZATION = "cpu_utilization"
IN_FLIGHT_PER_POD = "in_flight_per_pod"
REQUESTS_PER_SECOND = "requests_per_second"
REQUEST_SECONDS = "request_seconds"  # mean request time
DEPENDENCY_SECONDS = "dependency_seconds"  # mean dependency time per request
# Derived evidence names.
SELF_SECONDS = "self_seconds"
OWN_IN_FLIGHT_PER_POD = "own_in_flight_per_pod"


def cpu_utilization_query(scope: Scope, window: str) -> str:
    """Per pod: CPU seconds per second over the pod's own CPU limit (both series come from the same
    scrape target, so they match on every label); then the average over pods."""
    app = scope.selector("app")
    return f"avg(rate({PROCESS_CPU}{app}[{window}]) / {CPU_LIMIT}{app})"


def cpu_bound(cpu_utilization: float | None, spec: api.ScaledAppSpec) -> bool:
    """The app is hot on CPU on its own (above target plus hysteresis). Its client-side timings of its
    dependencies then measure its own event loop as much as the dependency: an asyncio process that is
    busy computing takes long to resume a coroutine whose query (or pooled connection) is ready.
    Unknown CPU is not CPU-bound: the app tier is then unknown too, and the scaler holds anyway."""
    if cpu_utilization is None:
        return False
    return cpu_utilization > spec.scaling.targets.app_cpu_utilization * (1 + spec.scaling.hysteresis)


class AppTier(HorizontalTier):
    name = "app"
    metrics: ClassVar[frozenset[str]] = frozenset(
        {PROCESS_CPU, CPU_LIMIT, IN_FLIGHT, REQUEST_DURATION, DEPENDENCY_DURATION}
    )
    status_field = "app"
    spec_block = "app"
    throughput_signal = REQUESTS_PER_SECOND
    max_field = "spec.app.replicas.max"

    def replica_range(self, spec: api.ScaledAppSpec) -> api.ReplicaRange:
        return spec.app.replicas

    def workload(self, child: ChildNames) -> Workload:
        return Workload("apps/v1", "Deployment", child.app)

    def queries(self, scope: Scope, window: str = RATE_WINDOW) -> dict[str, str]:
        app = scope.selector("app")
        request_count = sum_rate(f"{REQUEST_DURATION}_count", app, window)
        # Readiness pings are dependency calls outside any counted request (probe paths are not in the
        # request histogram), so they must not be subtracted from request time.
        calls = scope.selector("app", exclude=NOT_LOAD)
        dependency_sum = zero_if_reporting(sum_rate(f"{DEPENDENCY_DURATION}_sum", calls, window), scope, "app")
        return {
            CPU_UTILIZATION: cpu_utilization_query(scope, window),
            IN_FLIGHT_PER_POD: f"avg(sum by (instance) (avg_over_time({IN_FLIGHT}{app}[{window}])))",
            REQUESTS_PER_SECOND: zero_if_reporting(request_count, scope, "app"),
            REQUEST_SECONDS: f"{sum_rate(f'{REQUEST_DURATION}_sum', app, window)} / {request_count}",
            DEPENDENCY_SECONDS: f"({dependency_sum}) / {request_count}",
        }

    def pressure(self, signals: Mapping[str, float | None], spec: api.ScaledAppSpec, sizes: Sizes) -> TierPressure:
        targets = spec.scaling.targets
        missing: list[str] = []
        cpu, in_flight, rate = need(signals, [CPU_UTILIZATION, IN_FLIGHT_PER_POD, REQUESTS_PER_SECOND], missing)
        components: list[SignalPressure] = []
        if not missing:
            components.append(higher_is_worse(CPU_UTILIZATION, cpu, targets.app_cpu_utilization))
        own_share = 1.0
        # Request times are 0/0 (unknown) without traffic; they are needed only when there is some.
        if not missing and rate > 0:
            total, dependency = need(signals, [REQUEST_SECONDS, DEPENDENCY_SECONDS], missing)
            if not missing:
                # Parallel dependency calls can add up to more than the request; the app's share is >= 0.
                own = max(0.0, total - dependency)
                own_share = own / total if total > 0 else 1.0
                components.append(higher_is_worse(SELF_SECONDS, own, targets.app_self_latency_seconds))
        if missing:
            return TierPressure(self.name, missing=tuple(missing))
        components.append(
            higher_is_worse(OWN_IN_FLIGHT_PER_POD, in_flight * own_share, targets.app_in_flight_per_pod)
        )
        return TierPressure(self.name, components=tuple(components))


TIER = AppTier()
