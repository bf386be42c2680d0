"""The twin's db-write tier: its stage of the tick (the primary) and its model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from devharness.twin import families as f
from devharness.twin import pods as pod_series
from devharness.twin import signals as sig
from devharness.twin.params import TwinParams
from devharness.twin.physics import pool_wait, sojourn
from devharness.twin.plant import EPS, TickContext, TickResult
from devharness.twin.tiers.app import AppStage
from devharness.twin.tiers.base import LiveObjects, SignalInputs, TwinTier
from devharness.twin.tiers.cache import CacheStage
from devharness.twin.tiers.db_read import ReplicaStage
from scaledapp.resources.database import CONTAINER as PRIMARY_CONTAINER
from scaledapp.resources.names import ChildNames
from scaledapp.sizes import Resources, Sizes
from scaledapp.tiers import db_write as op_tier
from scaledapp.tiers.db_write import TIER


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

    @property
    def utilization(self) -> float:
        return self.cpu_demand / self.cores


def stage(c: TickContext, app: AppStage, cache: CacheStage, replicas: ReplicaStage) -> PrimaryStage:
    """Writes and fresh reads; CPU (USL) and row locks."""
    p, run, dt, writes, primary_reads = c.p, c.run, c.dt, app.writes, cache.primary_reads
    collision, read_cpu = c.keys.collision, replicas.read_cpu
    primary_ops = writes + primary_reads
    write_pool = run.app_pods * p.write_pool_size
    cores = max(1e-3, run.primary_cpu_cores - run.bootstrapping * p.basebackup_cores)
    wall = 1.0 / min(1.0, run.primary_cpu_cores)  # one session runs on at most one core
    sessions, cpu_demand, cpu_per_write = _sessions(c, app, cache, read_cpu, cores)
    offered_cpu = cpu_demand + c.state.primary.backlog / dt
    pr = c.state.primary.serve(cpu_demand, cores, dt, p.pool_timeout_seconds)
    dropped_share = pr.dropped / offered_cpu if offered_cpu > EPS else 0.0
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


def _sessions(c: TickContext, app: AppStage, cache: CacheStage, read_cpu: float,
              cores: float) -> tuple[float, float, float]:
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


WRITE_OPS = sig.load_ops(op_tier.DEPENDENCY)  # db-write operations that are load


def _signals(
    w: sig.Window, app_ready: int, lock_waits: float, connections: float, max_connections: float
) -> sig.Signals:
    writes = [f.DEPENDENCY_HIST[op_tier.DEPENDENCY, op] for op in WRITE_OPS]
    count = sum(w.app.get(h.count_key, 0.0) for h in writes)
    return {
        op_tier.WRITES_PER_SECOND: count / max(w.seconds, 1e-9) if app_ready else None,
        op_tier.WRITE_SECONDS: sig.quantile(writes, w.app),
        op_tier.LOCK_WAITS: lock_waits,
        op_tier.CONNECTION_UTILIZATION: connections / max_connections,
    }


def _gauges(pod: pod_series.PodState, model: pod_series.PlantView) -> dict[str, float]:
    last, server = pod.last, (("server", pod_series.SERVER),)
    extra = {
        f.key("pg_locks_waiting_count", server): last.lock_waits if last else 0.0,
        f.key("pg_locks_waiting_max_seconds", server): last.lock_wait_max_seconds if last else 0.0,
    }
    return pod_series.pg_gauges(model, last.primary_active if last else 0.0,
                                last.primary_connections if last else 1.0, 0.0, extra, replica=False)


class DbWriteTwin(TwinTier):
    tier = TIER
    ordinal = True
    missing = "primary resources"

    def pod_base(self, child: ChildNames) -> str:
        return child.db_primary

    def resize_seconds(self, params: TwinParams, before: Sizes, after: Sizes) -> float | None:
        """An in-place resize of the primary's CPU takes `resize_seconds`."""
        if TIER.size(before).cpu_millicores == TIER.size(after).cpu_millicores:
            return None
        return params.resize_seconds

    def increments(self, result: TickResult) -> Mapping[str, float]:
        return result.primary

    def gauges(self, pod: pod_series.PodState, model: pod_series.PlantView) -> dict[str, float]:
        return _gauges(pod, model)

    def signals(self, inputs: SignalInputs) -> sig.Signals:
        last = inputs.last
        return _signals(inputs.window, inputs.app_ready, last.lock_waits, last.primary_connections,
                        float(inputs.params.max_connections))

    def read_size(self, live: LiveObjects, previous: Sizes) -> object | None:
        spec = (((live.primary or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
        for container in spec.get("containers") or []:
            if container.get("name") == PRIMARY_CONTAINER:
                limits = (container.get("resources") or {}).get("limits") or {}
                if "cpu" in limits and "memory" in limits:
                    return Resources.of(str(limits["cpu"]), str(limits["memory"]))
        return None


TWIN = DbWriteTwin()
