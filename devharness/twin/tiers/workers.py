"""The twin's workers tier: its stage of the tick (the order queue and the workers draining it) and its
model."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from demo_app.metrics import ERROR_KINDS, OPERATIONS
from devharness.twin import families as f
from devharness.twin import pods as pod_series
from devharness.twin import signals as sig
from devharness.twin.params import TwinParams
from devharness.twin.plant import EPS, Counters, TickContext, TickResult
from devharness.twin.tiers.app import AppStage
from devharness.twin.tiers.base import SignalInputs, TwinTier
from scaledapp import api
from scaledapp.resources.names import ChildNames
from scaledapp.sizes import Sizes
from scaledapp.tiers import workers as op_tier
from scaledapp.tiers.workers import TIER

WORKER_CPU_SECONDS_PER_JOB = 0.0005  # a job is a wait elsewhere; the worker only moves it
WORKER_CPU_LIMIT_CORES = 0.5


@dataclass(frozen=True)
class QueueStage:
    capacity_jobs: float  # per second, all workers
    done: float  # jobs finished this tick
    depth: float
    oldest_age: float
    utilization: float  # orders (and a minute's worth of backlog) over what the workers finish

    def done_rate(self, dt: float) -> float:
        return self.done / dt


def stage(c: TickContext, app: AppStage) -> QueueStage:
    """The order queue and the workers draining it."""
    p, run, state, dt = c.p, c.run, c.state, c.dt
    if app.orders > 0:
        state.queue.append([c.now, app.orders * dt])
    capacity_jobs = run.workers * p.worker_concurrency / p.job_duration_seconds if run.workers_enabled else 0.0
    budget = capacity_jobs * dt
    done = 0.0
    while state.queue and budget > EPS:
        take = min(budget, state.queue[0][1])
        state.queue[0][1] -= take
        budget -= take
        done += take
        if state.queue[0][1] <= EPS:
            state.queue.popleft()
    depth = sum(chunk[1] for chunk in state.queue)
    oldest = c.now - state.queue[0][0] if depth >= 0.5 else 0.0
    utilization = (app.orders + depth / 60.0) / capacity_jobs if capacity_jobs > 0 else (math.inf if depth else 0.0)
    return QueueStage(capacity_jobs, done, depth, oldest, utilization)


def series(c: TickContext, queue: QueueStage) -> Counters:
    """The worker pods' counters and histograms, all pods together."""
    dep, done, queue_call = f.DEPENDENCY_HIST, queue.done, c.p.queue_call_seconds
    out: Counters = {"process_cpu_seconds_total": queue.done_rate(c.dt) * WORKER_CPU_SECONDS_PER_JOB * c.dt}
    dep["queue", "dequeue"].observe(out, done, queue_call)
    dep["queue", "update_order"].observe(out, done, queue_call)
    f.JOB_HIST.observe_fixed(out, done, c.p.job_duration_seconds)
    out[f.JOBS_DONE] = done
    return out


def _signals(w: sig.Window, depth: float | None, oldest_age: float | None, workers_ready: int) -> sig.Signals:
    jobs = w.worker.get(f.JOBS_DONE, 0.0) + w.worker.get(f.JOBS_FAILED, 0.0)
    return {
        op_tier.QUEUE_DEPTH_SIGNAL: depth,
        op_tier.OLDEST_AGE_SECONDS: oldest_age,
        op_tier.JOBS_PER_SECOND: jobs / max(w.seconds, 1e-9) if workers_ready else None,
    }


def _zero() -> dict[str, float]:
    out: dict[str, float] = {"process_cpu_seconds_total": 0.0}
    for op in OPERATIONS["queue"]:
        f.DEPENDENCY_HIST["queue", op].zero(out)
    f.POOL_WAIT_HIST["queue"].zero(out)
    out.update({f.ERRORS["queue", kind]: 0.0 for kind in ERROR_KINDS})
    f.JOB_HIST.zero(out)
    out[f.JOBS_DONE] = out[f.JOBS_FAILED] = 0.0
    return out


def _gauges(pod: pod_series.PodState, model: pod_series.PlantView) -> dict[str, float]:
    last = pod.last
    return {
        "scaledapp_cpu_limit_cores": WORKER_CPU_LIMIT_CORES,
        f.CIRCUIT["queue"]: 0.0,
        "scaledapp_queue_depth": last.queue_depth if last else 0.0,
        "scaledapp_queue_oldest_age_seconds": last.oldest_age if last else 0.0,
        "scaledapp_worker_jobs_in_progress": (last.jobs_in_progress if last else 0.0) * pod.share,
        "scaledapp_worker_concurrency": float(model.params.worker_concurrency),
    }


class WorkersTwin(TwinTier):
    tier = TIER

    def pods_wanted(self, spec: api.ScaledAppSpec, sizes: Sizes) -> int:
        return TIER.size(sizes) if self.enabled(spec) else 0

    def ready_seconds(self, params: TwinParams) -> float:
        return params.worker_ready_seconds

    def pod_base(self, child: ChildNames) -> str:
        return child.workers

    def zero(self) -> dict[str, float]:
        return _zero()

    def increments(self, result: TickResult) -> Mapping[str, float]:
        return result.worker

    def gauges(self, pod: pod_series.PodState, model: pod_series.PlantView) -> dict[str, float]:
        return _gauges(pod, model)

    def signals(self, inputs: SignalInputs) -> sig.Signals:
        workers_ready = len(inputs.ready.get(self.name, []))
        reporting = inputs.app_ready + workers_ready  # the app and the workers both report the queue
        last = inputs.last
        return _signals(inputs.window, last.queue_depth if reporting else None,
                        last.oldest_age if reporting else None, workers_ready)


TWIN = WorkersTwin()
