"""The twin's db-read tier: its stage of the tick (the read replicas) and its model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from devharness.twin import families as f
from devharness.twin import pods as pod_series
from devharness.twin import signals as sig
from devharness.twin.params import TwinParams
from devharness.twin.physics import Served, pool_wait, sojourn
from devharness.twin.plant import TickContext, TickResult
from devharness.twin.tiers.app import AppStage
from devharness.twin.tiers.base import SignalInputs, TwinTier
from devharness.twin.tiers.cache import CacheStage
from scaledapp import api
from scaledapp.resources.names import ChildNames
from scaledapp.sizes import Sizes
from scaledapp.tiers import db_read as op_tier
from scaledapp.tiers.db_read import TIER


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
    utilization: float


def stage(c: TickContext, app: AppStage, cache: CacheStage) -> ReplicaStage:
    """Each replica replays all the WAL, then serves reads with the CPU left."""
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
    utilization = rd.utilization if run.replicas else (cache.to_replicas + cache.primary_reads) * read_cpu / free_cores
    return ReplicaStage(rd, read_cpu, free_cores, read_server, read_pool, read_wait_p, read_wait,
                        read_server + read_wait, lag, utilization)


READ_OPS = sig.load_ops(op_tier.DEPENDENCY)  # db-read operations that are load


def _signals(w: sig.Window, app_ready: int, replicas: Mapping[str, tuple[float, float, float]]) -> sig.Signals:
    """`replicas`: ready replica pod -> (active sessions, max_connections, lag seconds)."""
    reads = [f.DEPENDENCY_HIST[op_tier.DEPENDENCY, op] for op in READ_OPS]
    count = sum(w.app.get(h.count_key, 0.0) for h in reads)
    return {
        op_tier.READS_PER_SECOND: count / max(w.seconds, 1e-9) if app_ready else None,
        op_tier.READ_SECONDS: sig.quantile(reads, w.app),
        op_tier.POOL_WAIT_SECONDS: sig.quantile([f.POOL_WAIT_HIST[op_tier.DEPENDENCY]], w.app),
        op_tier.REPLICA_SATURATION: max((a / m for a, m, _ in replicas.values()), default=None),
        op_tier.LAG_SECONDS: max((lag for _, _, lag in replicas.values()), default=None),
    }


def _gauges(pod: pod_series.PodState, model: pod_series.PlantView) -> dict[str, float]:
    """A replica that is still bootstrapping cannot be queried by its exporter (pg_up 0 and nothing else)."""
    if not pod.ready:
        return {"pg_up": 0.0}
    last = pod.last
    lag = last.replica_lag.get(pod.name, 0.0) if last else 0.0
    return pod_series.pg_gauges(model, (last.replica_active if last else 0.0) * pod.share,
                                (last.replica_connections if last else 0.0) * pod.share, lag,
                                {"pg_replication_last_replay_seconds": lag}, replica=True)


class DbReadTwin(TwinTier):
    tier = TIER
    ordinal = True

    def pods_wanted(self, spec: api.ScaledAppSpec, sizes: Sizes) -> int:
        return TIER.size(sizes)

    def ready_seconds(self, params: TwinParams) -> float:
        return params.replica_bootstrap_seconds

    def pod_base(self, child: ChildNames) -> str:
        return child.db_replicas

    def increments(self, result: TickResult) -> Mapping[str, float]:
        return result.replica

    def gauges(self, pod: pod_series.PodState, model: pod_series.PlantView) -> dict[str, float]:
        return _gauges(pod, model)

    def signals(self, inputs: SignalInputs) -> sig.Signals:
        replicas = inputs.ready.get(self.name, [])
        last, max_conn = inputs.last, float(inputs.params.max_connections)
        per_replica = last.replica_active / len(replicas) if replicas else 0.0
        return _signals(inputs.window, inputs.app_ready,
                        {p: (per_replica, max_conn, last.replica_lag.get(p, 0.0)) for p in replicas})


TWIN = DbReadTwin()
