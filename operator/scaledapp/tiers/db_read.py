"""The db-read tier: Postgres streaming read replicas, widened by adding replicas.

Pressure: read latency and read-pool wait as the app sees them (client-side, so they include the
network and the replicas' queueing), and active sessions per replica against its connection limit.
Client-side timings count only while the app is not CPU-bound (tiers.app.cpu_bound, over the 1m or the
onset window, whichever is higher): a saturated app's event loop inflates every dependency timing it
takes, and would otherwise send the scaler to add replicas for an app that is short of CPU.
Replication lag is a guard, not a pressure: a lagging replica is not the answer to read load (a new
one bootstraps from the same busy primary and lags too), so while lag is over target the scaler
reports it and holds instead of adding replicas.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from scaledapp import api
from scaledapp.reasons import Reason
from scaledapp.resources.names import ChildNames
from scaledapp.sizes import Blocked, Sizes, Step
from scaledapp.tiers.app import CPU_LIMIT, PROCESS_CPU, cpu_bound, cpu_utilization_query
from scaledapp.tiers.base import (
    NOT_LOAD,
    RATE_WINDOW,
    HorizontalTier,
    Scope,
    SignalPressure,
    TierPressure,
    Workload,
    higher_is_worse,
    highest_known,
    histogram_quantile,
    need,
    onset_name,
    sum_rate,
    zero_if_reporting,
)

# Metric names: the app's client-side dependency histograms and postgres_exporter v0.19 on each replica.
DEPENDENCY_DURATION = "scaledapp_dependency_duration_seconds"  # label dependency="db-read"
POOL_WAIT = "scaledapp_dependency_pool_wait_seconds"  # label dependency="db-read"
PG_ACTIVITY = "pg_stat_activity_count"  # labels datname, state
PG_MAX_CONNECTIONS = "pg_settings_max_connections"
PG_LAG = "pg_replication_lag_seconds"
DEPENDENCY = "db-read"

# Signals.
READS_PER_SECOND = "reads_per_second"
READ_SECONDS = "read_seconds"  # p95
POOL_WAIT_SECONDS = "pool_wait_seconds"  # p95
REPLICA_SATURATION = "replica_saturation"  # busiest replica: active sessions / max_connections
LAG_SECONDS = "lag_seconds"  # worst replica
APP_CPU_UTILIZATION = "app_cpu_utilization"  # the app tier's CPU signal: are the app's timings trustworthy?
# Derived evidence name: the client-side timings were set aside because the app is CPU-bound.
APP_CPU_BOUND = "app_cpu_bound"


class DbReadTier(HorizontalTier):
    name = "db-read"
    metrics: ClassVar[frozenset[str]] = frozenset(
        {DEPENDENCY_DURATION, POOL_WAIT, PG_ACTIVITY, PG_MAX_CONNECTIONS, PG_LAG, PROCESS_CPU, CPU_LIMIT}
    )
    status_field = "db_read"
    spec_block = "database"
    throughput_signal = READS_PER_SECOND
    ready_when_empty = True
    max_field = "spec.database.readReplicas.max"

    def replica_range(self, spec: api.ScaledAppSpec) -> api.ReplicaRange:
        return spec.database.read_replicas

    def workload(self, child: ChildNames) -> Workload:
        return Workload("apps/v1", "StatefulSet", child.db_replicas)

    def queries(self, scope: Scope, window: str = RATE_WINDOW) -> dict[str, str]:
        reads = scope.selector(dependency=DEPENDENCY, exclude=NOT_LOAD)
        replicas = scope.selector("db-read")
        active = scope.selector("db-read", state="active")
        return {
            READS_PER_SECOND: zero_if_reporting(sum_rate(f"{DEPENDENCY_DURATION}_count", reads, window), scope, "app"),
            READ_SECONDS: histogram_quantile(DEPENDENCY_DURATION, reads, window),
            POOL_WAIT_SECONDS: histogram_quantile(POOL_WAIT, scope.selector(dependency=DEPENDENCY), window),
            REPLICA_SATURATION: f"max(sum by (instance) ({PG_ACTIVITY}{active}) / "
            f"sum by (instance) ({PG_MAX_CONNECTIONS}{replicas}))",
            LAG_SECONDS: f"max({PG_LAG}{replicas})",
            APP_CPU_UTILIZATION: cpu_utilization_query(scope, window),
        }

    def pressure(self, signals: Mapping[str, float | None], spec: api.ScaledAppSpec, sizes: Sizes) -> TierPressure:
        targets = spec.scaling.targets
        missing: list[str] = []
        (reads,) = need(signals, [READS_PER_SECOND], missing)
        components: list[SignalPressure] = []
        guards: list[SignalPressure] = []
        # Latency quantiles are NaN without reads; replica signals do not exist without replicas.
        # The app's CPU over the onset window too: p95 timings react within seconds of the app running out
        # of CPU, while its 1m CPU rate still lags behind (it would let those timings blame the replicas).
        app_cpu = highest_known(signals.get(APP_CPU_UTILIZATION), signals.get(onset_name(APP_CPU_UTILIZATION)))
        if not missing and reads > 0 and app_cpu is None:
            # Without the app's CPU its timings cannot be told from its own starvation: unknown, not trusted.
            missing.append(APP_CPU_UTILIZATION)
        if not missing and reads > 0 and cpu_bound(app_cpu, spec):
            assert app_cpu is not None
            # Not evidence against the replicas (see the module doc); shown, with no pressure, to say why.
            components.append(SignalPressure(APP_CPU_BOUND, app_cpu, targets.app_cpu_utilization, 0.0))
        elif not missing and reads > 0:
            latency, wait = need(signals, [READ_SECONDS, POOL_WAIT_SECONDS], missing)
            components.append(higher_is_worse(READ_SECONDS, latency, targets.read_latency_seconds))
            components.append(higher_is_worse(POOL_WAIT_SECONDS, wait, targets.read_pool_wait_seconds))
        if self.replicas(sizes) > 0:
            saturation, lag = need(signals, [REPLICA_SATURATION, LAG_SECONDS], missing)
            components.append(higher_is_worse(REPLICA_SATURATION, saturation, targets.db_connection_utilization))
            guards.append(higher_is_worse(LAG_SECONDS, lag, targets.replication_lag_seconds))
        if missing:
            return TierPressure(self.name, missing=tuple(missing))
        if not components:  # no reads and no replicas: nothing loads this tier
            components.append(higher_is_worse(READS_PER_SECOND, 0.0, 1.0))
        return TierPressure(self.name, components=tuple(components), guards=tuple(guards))

    def widen(self, spec: api.ScaledAppSpec, sizes: Sizes, pressure: TierPressure) -> Step | Blocked:
        lag = pressure.guard(LAG_SECONDS)
        if lag is not None and lag.pressure > 1.0:
            return Blocked(
                self.name,
                Reason.REPLICA_LAG,
                f"replicas lag {lag.value:.1f}s (target {lag.target:g}s): a lagging replica is not the answer "
                "to read load, so no replica is added",
                at_ceiling=False,
                recommendation="Read replicas are lagging: look at the primary's write load and the replicas' "
                "replay before adding replicas (a new replica bootstraps from the same primary).",
            )
        return super().widen(spec, sizes, pressure)


TIER = DbReadTier()
