"""The twin's app tier: its stage of the tick (requests served by the app pods' CPU) and its model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from devharness.twin import families as f
from devharness.twin import pods as pod_series
from devharness.twin import signals as sig
from devharness.twin.params import Load, TwinParams
from devharness.twin.physics import Served, sojourn
from devharness.twin.plant import TickContext, TickResult
from devharness.twin.tiers.base import SignalInputs, TwinTier
from scaledapp import api
from scaledapp.quantity import parse_cpu_millicores
from scaledapp.resources.names import ChildNames
from scaledapp.sizes import Sizes
from scaledapp.tiers import app as op_tier
from scaledapp.tiers.app import TIER


@dataclass(frozen=True)
class AppStage:
    served: Served
    reads: float  # admitted per second, by class
    writes: float
    orders: float
    self_seconds: float  # the app's own time per request
    behind: float  # the wait behind the app's backlog (FIFO, the same for every request)
    cpu_seconds: float  # the increment of process_cpu_seconds_total

    @property
    def utilization(self) -> float:
        return self.served.utilization


def stage(c: TickContext, load: Load) -> AppStage:
    """One Python process per pod, at most one core, CFS-throttled to its limit."""
    p, run = c.p, c.run
    requests = load.reads_per_second + load.writes_per_second + load.orders_per_second
    pod_cores = min(run.app_cpu_cores, 1.0)
    cpu_per_request = p.app_cpu_seconds_per_request + p.cpu_work_ms / 1000.0
    app = c.state.app.serve(requests, run.app_pods * pod_cores / cpu_per_request, c.dt, p.client_timeout_seconds)
    share = min(1.0, app.throughput / requests) if requests > 0 else 0.0
    if run.app_pods == 0:  # nothing is served (every request fails): no latency to speak of
        self_seconds, behind = p.client_timeout_seconds, 0.0
    else:
        # Waiting behind the app's backlog is the same for every request (FIFO), then its own sojourn.
        self_seconds, behind = sojourn(cpu_per_request / pod_cores, app.busy), app.queue_delay
    return AppStage(app, load.reads_per_second * share, load.writes_per_second * share,
                    load.orders_per_second * share, self_seconds, behind,
                    app.throughput * cpu_per_request * c.dt)


def _signals(w: sig.Window, app_ready: int) -> sig.Signals:
    if app_ready == 0 or w.seconds <= 0:  # no pod reports: every query is empty
        return dict.fromkeys((op_tier.CPU_UTILIZATION, op_tier.IN_FLIGHT_PER_POD, op_tier.REQUESTS_PER_SECOND,
                              op_tier.REQUEST_SECONDS, op_tier.DEPENDENCY_SECONDS))
    count = sum(w.app.get(h.count_key, 0.0) for h in f.HTTP_HIST.values())
    total = sum(w.app.get(h.sum_key, 0.0) for h in f.HTTP_HIST.values())
    dependency = sum(w.app.get(h.sum_key, 0.0) for h in f.DEPENDENCY_HIST.values() if sig.counts_as_load(h))
    return {
        op_tier.CPU_UTILIZATION: w.app.get("process_cpu_seconds_total", 0.0) / w.app_core_seconds
        if w.app_core_seconds > 0 else None,
        op_tier.IN_FLIGHT_PER_POD: w.in_flight_per_pod_seconds / w.seconds,
        op_tier.REQUESTS_PER_SECOND: count / w.seconds,
        op_tier.REQUEST_SECONDS: total / count if count > 0 else None,
        op_tier.DEPENDENCY_SECONDS: dependency / count if count > 0 else None,
    }


def _zero() -> dict[str, float]:
    """The series an app process has before its first event (demo_app.metrics.init_*_series)."""
    out: dict[str, float] = {"process_cpu_seconds_total": 0.0}
    for hist in f.HTTP_HIST.values():
        hist.zero(out)
    out.update(dict.fromkeys(f.HTTP_COUNT.values(), 0.0))
    for hist in f.DEPENDENCY_HIST.values():
        hist.zero(out)
    for hist in f.POOL_WAIT_HIST.values():
        hist.zero(out)
    out.update(dict.fromkeys(f.ERRORS.values(), 0.0))
    out.update(dict.fromkeys(f.CACHE_RESULT.values(), 0.0))
    return out


def _gauges(pod: pod_series.PodState, model: pod_series.PlantView) -> dict[str, float]:
    last = pod.last
    out = {
        "scaledapp_http_requests_in_flight": (last.in_flight if last else 0.0) * pod.share,
        "scaledapp_cpu_limit_cores": parse_cpu_millicores(model.spec.app.resources.cpu) / 1000.0,
        "scaledapp_queue_depth": last.queue_depth if last else 0.0,
        "scaledapp_queue_oldest_age_seconds": last.oldest_age if last else 0.0,
    }
    out.update(dict.fromkeys(f.CIRCUIT.values(), 0.0))
    return out


class AppTwin(TwinTier):
    tier = TIER

    def pods_wanted(self, spec: api.ScaledAppSpec, sizes: Sizes) -> int:
        return TIER.size(sizes)

    def ready_seconds(self, params: TwinParams) -> float:
        return params.app_ready_seconds

    def pod_base(self, child: ChildNames) -> str:
        return child.app

    def zero(self) -> dict[str, float]:
        return _zero()

    def increments(self, result: TickResult) -> Mapping[str, float]:
        return result.app

    def gauges(self, pod: pod_series.PodState, model: pod_series.PlantView) -> dict[str, float]:
        return _gauges(pod, model)

    def signals(self, inputs: SignalInputs) -> sig.Signals:
        return _signals(inputs.window, inputs.app_ready)


TWIN = AppTwin()
