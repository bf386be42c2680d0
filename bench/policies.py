"""The scaling policies the benchmark compares, all driven in simulated time against the twin.

- ScaledApp: the operator's own `decide()` every `spec.scaling.interval_seconds`.
- HPA (autoscaling/v2, /work/shared/reference/autoscalers.md section 1, and the Kubernetes docs' "Algorithm
  details"): every 15 s, desired = ceil(pods x metric / target), no change within the 10 % tolerance. On
  CPU the pods are those with a CPU sample; a pod not ready, or whose latest sample is from before it
  became ready, is set aside and counts as 0 % on a scale-up, and a recomputed ratio inside the tolerance
  means no change. On an object/external Value metric (latency, read p95) the ratio multiplies the ready
  pods (the controller's getUsageRatioReplicaCount); an AverageValue one divides the total. Default
  behavior: scale-up max(+100 %, +4 pods) per 15 s with no window, scale-down at most -100 % per 15 s
  after a 300 s stabilization window that keeps the highest recommendation; no metric, no change.
- KEDA (section 2): a ScaledObject per tier whose trigger is polled every 30 s and handed to an HPA
  with the same defaults. `Value` triggers scale by current x value / threshold, `AverageValue`
  triggers (a Redis list's length) by total / threshold per replica.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal, Protocol

from devharness.twin import Observation, TwinModel
from devharness.twin.model import EPOCH
from scaledapp import api
from scaledapp.decide import Tick, decide
from scaledapp.observation import Snapshot
from scaledapp.sizes import Sizes, TierName
from scaledapp.tiers import app, db_read, workers

MetricKind = Literal["utilization", "value", "average_value"]


@dataclass(frozen=True)
class Inputs:
    """What a policy can know at a tick: the last Prometheus scrape's signals (None while the metrics
    pipeline is down) and metrics-server's last CPU reading of the app pods (the same scrape cadence), with
    how many app pods that reading covers (ready throughout its sample; None: every ready pod)."""

    snapshot: Snapshot | None
    app_cpu: float | None
    app_cpu_pods: int | None = None


class Policy(Protocol):
    name: str

    def tick(self, now: float, model: TwinModel, inputs: Inputs) -> Sizes | None:
        """The sizes to apply now, or None to leave them."""


# ---------------------------------------------------------------------------------------------- ScaledApp


@dataclass
class ScaledAppPolicy:
    spec: api.ScaledAppSpec
    name: str = "ScaledApp"
    state: api.ScalerState = field(default_factory=api.ScalerState)
    last_action: api.Action | None = None
    _next: float = 0.0

    def tick(self, now: float, model: TwinModel, inputs: Inputs) -> Sizes | None:
        if now < self._next:
            return None
        self._next = now + self.spec.scaling.interval_seconds
        decision = decide(Tick(self.spec, inputs.snapshot, model.sizes, self.state, self.last_action, moment(now),
                          settling=model.settling()))
        self.state, self.last_action = decision.state, decision.last_action
        return decision.desired if decision.step is not None else None


# ---------------------------------------------------------------------------------------------- HPA


@dataclass
class Hpa:
    """One HorizontalPodAutoscaler with the default behavior, on one metric of one workload."""

    tier: TierName
    bounds: tuple[int, int]
    target: float
    kind: MetricKind
    metric: Callable[[Inputs], float | None]
    sampled: Callable[[Inputs], int | None] = lambda inputs: None  # pods the metric covers (CPU)
    period_seconds: float = 15.0  # HPA sync period (KEDA: its polling interval feeds the HPA)
    tolerance: float = 0.1
    down_window_seconds: float = 300.0
    _recommendations: list[tuple[float, int]] = field(default_factory=list)
    _next: float = 0.0

    def desired(
        self, now: float, current: int, ready: int, value: float | None, sampled: int | None = None
    ) -> int | None:
        """`ready`: pods ready now; `sampled`: how many of them the CPU reading covers (a pod whose latest
        sample predates its readiness is set aside like a pod not yet ready)."""
        if now < self._next:
            return None
        self._next = now + self.period_seconds
        if value is None:  # ScalingActive=False: the HPA keeps the replicas as they are
            return None
        if self.kind == "utilization" and sampled is not None:
            ready = min(ready, sampled)
        recommendation = self._raw(current, ready, value)
        if recommendation is None:
            recommendation = current
        # Scale-down stabilization: the highest recommendation of the last 300 s (this one included).
        self._recommendations = [(t, r) for t, r in self._recommendations if t > now - self.down_window_seconds]
        self._recommendations.append((now, recommendation))
        stabilized = recommendation
        if recommendation < current:
            stabilized = min(current, max(r for _, r in self._recommendations))
        # Rate limits: up by max(100 %, 4 pods) per 15 s; down by at most 100 % per 15 s.
        if stabilized > current:
            stabilized = min(stabilized, max(2 * current, current + 4))
        low, high = self.bounds
        return max(low, min(high, stabilized))

    def _raw(self, current: int, ready: int, value: float) -> int | None:
        if self.kind == "average_value":
            ratio = value / (self.target * max(1, current))
            if abs(ratio - 1) <= self.tolerance:
                return None
            return math.ceil(value / self.target)
        ratio = value / self.target
        if abs(ratio - 1) <= self.tolerance:
            return None
        unready = max(0, current - ready)
        if self.kind == "utilization" and ratio > 1 and unready > 0:
            # Not-ready pods count as 0 % on a scale-up; inside the tolerance (or flipped) means no change.
            ratio = value * ready / (self.target * (ready + unready))
            if ratio <= 1 + self.tolerance:
                return None
            return math.ceil(ratio * (ready + unready))
        # Utilization: over the pods with a sample; a Value metric: its ratio times the ready pods.
        return math.ceil(ready * ratio)


def _replicas(sizes: Sizes, tier: TierName) -> int:
    count = sizes[tier]
    assert isinstance(count, int)  # the HPA baselines scale horizontal tiers only
    return count


def _with_replicas(sizes: Sizes, tier: TierName, count: int) -> Sizes:
    return sizes.with_size(tier, count)


@dataclass
class HpaPolicy:
    """One or more independent HPAs, each on its own workload and metric (KEDA: one per tier)."""

    name: str
    hpas: list[Hpa]

    def tick(self, now: float, model: TwinModel, inputs: Inputs) -> Sizes | None:
        sizes = model.sizes
        changed = False
        last: Observation | None = model.last
        for hpa in self.hpas:
            current = _replicas(sizes, hpa.tier)
            ready = last.ready.get(hpa.tier, current) if last else current
            value = hpa.metric(inputs)
            desired = hpa.desired(now, current, ready, value, hpa.sampled(inputs))
            if desired is not None and desired != current:
                sizes, changed = _with_replicas(sizes, hpa.tier, desired), True
        return sizes if changed else None


# ---------------------------------------------------------------------------------------------- metrics


def cpu_from_metrics_server(inputs: Inputs) -> float | None:
    return inputs.app_cpu


def pods_with_cpu(inputs: Inputs) -> int | None:
    return inputs.app_cpu_pods


def app_mean_latency(inputs: Inputs) -> float | None:
    """Mean request latency over 1 m (the usual prometheus-adapter rule: rate(sum) / rate(count))."""
    return None if inputs.snapshot is None else inputs.snapshot.tier("app").get(app.REQUEST_SECONDS)


def read_p95(inputs: Inputs) -> float | None:
    return None if inputs.snapshot is None else inputs.snapshot.tier("db-read").get(db_read.READ_SECONDS)


def queue_length(inputs: Inputs) -> float | None:
    return None if inputs.snapshot is None else inputs.snapshot.tier("workers").get(workers.QUEUE_DEPTH_SIGNAL)


LATENCY_TARGET_SECONDS = 0.08  # mean; an exponential's p95 is 3x its mean, about the 0.25 s SLO


def baselines(spec: api.ScaledAppSpec) -> list[Callable[[], Policy]]:
    """Factories of the baseline policies (fresh state per run)."""
    app_bounds = app.TIER.replica_bounds(spec)
    read_bounds, worker_bounds = db_read.TIER.replica_bounds(spec), workers.TIER.replica_bounds(spec)
    cpu = spec.scaling.targets.app_cpu_utilization

    def hpa_cpu() -> Policy:
        return HpaPolicy("HPA on app CPU", [Hpa("app", app_bounds, cpu, "utilization", cpu_from_metrics_server,
                                                pods_with_cpu)])

    def hpa_latency() -> Policy:
        return HpaPolicy("HPA on app latency",
                         [Hpa("app", app_bounds, LATENCY_TARGET_SECONDS, "value", app_mean_latency)])

    def per_tier() -> Policy:
        targets = spec.scaling.targets
        return HpaPolicy("per-tier HPAs (KEDA)", [
            Hpa("app", app_bounds, cpu, "utilization", cpu_from_metrics_server, pods_with_cpu),
            Hpa("db-read", read_bounds, targets.read_latency_seconds, "value", read_p95, period_seconds=30),
            Hpa("workers", worker_bounds, targets.queue_depth_per_worker, "average_value", queue_length,
                period_seconds=30),
        ])

    return [hpa_cpu, hpa_latency, per_tier]


def moment(now: float) -> datetime:
    return EPOCH + timedelta(seconds=now)
