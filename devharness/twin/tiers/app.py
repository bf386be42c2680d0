"""The twin's app tier: its stage of the tick (requests served by the app pods' CPU) and its model."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from devharness.twin import pods as pod_series
from devharness.twin import signals as sig
from devharness.twin.params import Load, TwinParams
from devharness.twin.physics import Served, sojourn
from devharness.twin.plant import TickContext, TickResult
from devharness.twin.tiers.base import SignalInputs, TwinTier
from scaledapp import api
from scaledapp.resources.names import ChildNames
from scaledapp.sizes import Sizes
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


class AppTwin(TwinTier):
    tier = TIER

    def pods_wanted(self, spec: api.ScaledAppSpec, sizes: Sizes) -> int:
        return TIER.size(sizes)

    def ready_seconds(self, params: TwinParams) -> float:
        return params.app_ready_seconds

    def pod_base(self, child: ChildNames) -> str:
        return child.app

    def zero(self) -> dict[str, float]:
        return pod_series.zero_app()

    def increments(self, result: TickResult) -> Mapping[str, float]:
        return result.app

    def gauges(self, pod: pod_series.PodState, model: pod_series.PlantView) -> dict[str, float]:
        return pod_series.app_gauges(pod, model)

    def signals(self, inputs: SignalInputs) -> sig.Signals:
        return sig.app_signals(inputs.window, inputs.app_ready)


TWIN = AppTwin()
