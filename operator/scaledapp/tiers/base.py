"""The tier interface: everything the operator knows about one tier, behind one class.

A tier owns its facts, the way a KEDA scaler owns its settings, query and metric spec: its signals
(instant PromQL) and its throughput signal; its pressure with the evidence behind it; its bounds and one
widening and one narrowing step; its workload (which object holds its size, how that size is read from
it and written back, how its readiness is counted). One module per tier implements it;
`scaledapp.tiers.TIERS` lists them in ladder order, and the scaler, the decision, the conditions and the
twin ask the tier instead of switching on its name.

Pressure is dimensionless: 1.0 means a signal sits exactly at its target. A tier's pressure is the
highest of its signals' pressures, and the signal that set it is the evidence. Missing data is never
zero: a needed signal that is None makes the whole tier unknown.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, Generic, Literal, TypeVar, cast

from scaledapp import api
from scaledapp.apibase import Model
from scaledapp.reasons import Reason
from scaledapp.resources.common import Manifest
from scaledapp.resources.names import INSTANCE_LABEL, TIER_LABEL, ChildNames
from scaledapp.resources.scaler import replicas_body
from scaledapp.sizes import Blocked, Sizes, Step, TierName, clamp

# Rate window of every rate()/histogram: at least four scrapes at a 15 s scrape interval.
RATE_WINDOW = "1m"
# The onset window, beside it: the same signals over the shortest window that still holds two scrapes at a
# 15 s scrape interval (rate() needs two samples). It sees a sharp rise (and a backlog draining) a scrape or
# two before the 1m window; with a slower scrape its queries are empty and only the 1m window counts.
# rate() over it is the increase between the last two scrapes: the last scrape interval (SCRAPE_SECONDS).
ONSET_WINDOW_SECONDS = 30
ONSET_WINDOW = f"{ONSET_WINDOW_SECONDS}s"
SCRAPE_SECONDS = ONSET_WINDOW_SECONDS // 2
# A 1m-window signal's onset-window value reaches a tier's pressure() under its name with this suffix
# (e.g. the app's CPU over 30 s beside its CPU over 1m), for tiers that weigh one window against the other.
ONSET_SUFFIX = "@onset"


def onset_name(signal: str) -> str:
    return signal + ONSET_SUFFIX


def highest_known(*values: float | None) -> float | None:
    """The highest of the known values; None when none is known."""
    present = [v for v in values if v is not None]
    return max(present) if present else None
# A quantile of latency histograms: what the Targets call "p95".
LATENCY_QUANTILE = 0.95
# Dependency calls that are not request load: readiness pings and start-up DDL (docs/metrics.md).
NOT_LOAD = {"operation": "ping|schema"}
# For "lower is worse" signals whose target is 1.0 (nothing left to miss), avoid dividing by zero.
_MIN_SLACK = 1e-6
# The smallest multiplier of a vertical widening step: a step sized from a pressure just over 1 + hysteresis
# would be too small to be told from noise by verify-after-act (VERIFY_MIN_DROP) and would invite another.
MIN_VERTICAL_FACTOR = 1.25
# At most doubling per step (the HPA's scale-up limit is +100 %, or 4 pods): queue-driven signals
# (in-flight requests, queue depth, latency) measure a backlog as much as demand, and a step sized from a
# backlog overshoots.
MAX_STEP_RATIO = 2.0


def sized_replicas(current: int, pressure: float | None, steps: api.Steps) -> int:
    """The replica count after one widening step sized from the pressure, the HPA's ratio rule: the count at
    which the pressure would be at target, ceil(current x pressure); at least `steps.replicas` more and at
    most `steps.maxReplicas` more. (Zero replicas take `steps.replicas`: there is no ratio to apply.)"""
    ratio = min(MAX_STEP_RATIO, pressure) if pressure is not None else 1.0
    wanted = math.ceil(current * ratio - 1e-9)
    most = max(steps.replicas, steps.max_replicas)
    return current + min(most, max(steps.replicas, wanted - current))


def sized_factor(pressure: float | None, limit: float) -> float:
    """The multiplier of a vertical widening step: the pressure (capacity at which it would be at target),
    at least MIN_VERTICAL_FACTOR, at most the spec's factor `limit`."""
    return min(limit, max(MIN_VERTICAL_FACTOR, pressure or 0.0))


def prometheus_label(kubernetes_label: str) -> str:
    """The label name Prometheus' `labelmap` gives a pod label (app.kubernetes.io/instance ->
    app_kubernetes_io_instance)."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", kubernetes_label)


PROM_INSTANCE_LABEL = prometheus_label(INSTANCE_LABEL)
PROM_TIER_LABEL = prometheus_label(TIER_LABEL)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


@dataclass(frozen=True)
class Scope:
    """Which series belong to one ScaledApp: its namespace and its name (the instance label)."""

    namespace: str
    instance: str

    def selector(
        self,
        tier: TierName | None = None,
        regex: Mapping[str, str] | None = None,
        exclude: Mapping[str, str] | None = None,
        **matchers: str,
    ) -> str:
        """`{namespace="ns",app_kubernetes_io_instance="name"[,scaledapp_dev_tier="t"][,k="v"][,k=~"re"][,k!~"re"]}`."""
        pairs = [("namespace", "=", self.namespace), (PROM_INSTANCE_LABEL, "=", self.instance)]
        if tier is not None:
            pairs.append((PROM_TIER_LABEL, "=", tier))
        pairs.extend((name, "=", value) for name, value in matchers.items())
        pairs.extend((name, "=~", value) for name, value in (regex or {}).items())
        pairs.extend((name, "!~", value) for name, value in (exclude or {}).items())
        return "{" + ",".join(f"{name}{op}{_quote(value)}" for name, op, value in pairs) + "}"


def histogram_quantile(metric: str, selector: str, window: str, quantile: float = LATENCY_QUANTILE) -> str:
    return f"histogram_quantile({quantile}, sum by (le) (rate({metric}_bucket{selector}[{window}])))"


def sum_rate(metric: str, selector: str, window: str) -> str:
    return f"sum(rate({metric}{selector}[{window}]))"


def zero_if_reporting(expr: str, scope: Scope, tier: TierName) -> str:
    """`expr`, or 0 when it has no series but the tier's pods are scraped and up.

    A labelled counter has no series until its first event, so "no reads yet" would look like
    "unknown" and hold the scaler forever on an idle app. Zero is claimed only with proof the pods
    report (`up == 1`); with no pod up the result stays empty, i.e. unknown.
    """
    return f"({expr}) or (0 * sum(up{scope.selector(tier)} == 1))"


# ---------------------------------------------------------------------------------------------- pressure


@dataclass(frozen=True)
class SignalPressure:
    """One signal's reading against its target."""

    signal: str
    value: float
    target: float
    pressure: float


def higher_is_worse(signal: str, value: float, target: float) -> SignalPressure:
    return SignalPressure(signal, value, target, value / target)


def lower_is_worse(signal: str, value: float, target: float) -> SignalPressure:
    """For ratios that should be high (hit ratio): pressure is the shortfall against the allowed one,
    so a 60 % hit ratio against an 80 % target (40 % misses where 20 % are allowed) is 2.0."""
    return SignalPressure(signal, value, target, max(0.0, 1.0 - value) / max(_MIN_SLACK, 1.0 - target))


@dataclass(frozen=True)
class TierPressure:
    """A tier's judgement: pressure (None = unknown) and the evidence behind it."""

    tier: TierName
    components: tuple[SignalPressure, ...] = ()
    # Signals that never set the pressure but may forbid widening (replication lag).
    guards: tuple[SignalPressure, ...] = ()
    missing: tuple[str, ...] = ()
    window: str = RATE_WINDOW  # the rate window its signals are over

    @property
    def dominant(self) -> SignalPressure | None:
        if self.missing or not self.components:
            return None
        return max(self.components, key=lambda c: c.pressure)

    @property
    def pressure(self) -> float | None:
        dominant = self.dominant
        return None if dominant is None else dominant.pressure

    def evidence(self) -> api.Evidence:
        dominant = self.dominant
        if dominant is None:
            signal = "missing: " + ", ".join(self.missing) if self.missing else "no signals"
            return api.Evidence(tier=self.tier, pressure=None, signal=signal)
        return api.Evidence(
            tier=self.tier,
            pressure=round(dominant.pressure, 3),
            signal=dominant.signal,
            value=round(dominant.value, 6),
            target=dominant.target,
            window=self.window,
        )

    def guard(self, signal: str) -> SignalPressure | None:
        return next((g for g in self.guards if g.signal == signal), None)


def need(signals: Mapping[str, float | None], names: list[str], missing: list[str]) -> list[float]:
    """The values of needed signals; names of unknown ones are appended to `missing` (with 0.0 as a
    placeholder the caller must not use: it checks `missing` first)."""
    values = []
    for name in names:
        value = signals.get(name)
        if value is None:
            missing.append(name)
            values.append(0.0)
        else:
            values.append(value)
    return values


# ---------------------------------------------------------------------------------------------- workload


@dataclass(frozen=True)
class Workload:
    """The object that holds a tier's size (the scaler reads it from the watch cache)."""

    api_version: str
    kind: str
    name: str


def workload_counts(live: Manifest | None) -> api.TierStatus:
    """desired/ready of a Deployment or StatefulSet as the API server reports it (0/0 when absent)."""
    if not live:
        return api.TierStatus()
    spec = live.get("spec") or {}
    status = live.get("status") or {}
    desired = spec.get("replicas")
    return api.TierStatus(
        desired=int(desired if desired is not None else 1),
        ready=int(status.get("readyReplicas") or status.get("ready_replicas") or 0),
    )


def spec_replicas(live: Manifest | None, default: int) -> int:
    value = ((live or {}).get("spec") or {}).get("replicas")
    return int(value) if value is not None else default


# ---------------------------------------------------------------------------------------------- tier


Size = TypeVar("Size")


class TierModel(ABC, Generic[Size]):
    """One tier. Subclasses are stateless singletons; all inputs come as arguments. `Size` is what its
    entry in `Sizes` holds (a replica count, bytes, `Resources`): `size(sizes)` reads it typed."""

    name: ClassVar[TierName]
    # Every metric name the queries use, in one place (a contract test checks them against docs/metrics.md).
    metrics: ClassVar[frozenset[str]]
    # Its entry in status.tiers (api.TiersStatus), and what it is (for a tier the API does not declare yet:
    # the registry adds the entry, tiers.declare_api).
    status_field: ClassVar[str]
    status_description: ClassVar[str] = ""
    # Its settings: the spec block its bounds come from (`spec.<spec_block>`); for a tier the API does not
    # declare yet, that block's model and description (the registry adds it to the spec: tiers.declare_api).
    spec_block: ClassVar[str]
    spec_model: ClassVar[type[Model] | None] = None
    spec_description: ClassVar[str] = ""
    # The signal that counts the work the tier gets through (verify-after-act: more served is evidence
    # that a step helped); None when more size does not serve more (the cache).
    throughput_signal: ClassVar[str | None] = None
    # Whether status.tiers counts a tier with no replicas as ready (read replicas may be zero).
    ready_when_empty: ClassVar[bool] = False
    # Whether a rollout in progress (ready < desired) holds the verdict on its last step.
    settles: ClassVar[bool] = True
    # Whether the tier can be switched off in the spec (its workload may then be absent).
    optional: ClassVar[bool] = False

    def enabled(self, spec: api.ScaledAppSpec) -> bool:
        return True

    # -- signals and pressure

    @abstractmethod
    def queries(self, scope: Scope, window: str = RATE_WINDOW) -> dict[str, str]:
        """Signal name -> instant PromQL returning one sample (or none: unknown)."""

    @abstractmethod
    def pressure(self, signals: Mapping[str, float | None], spec: api.ScaledAppSpec, sizes: Sizes) -> TierPressure:
        """Judge the signals against the spec's targets. `sizes` tells which signals exist at all."""

    def throughput(self, signals: Mapping[str, float | None]) -> float | None:
        return None if self.throughput_signal is None else signals.get(self.throughput_signal)

    # -- size, bounds and steps

    def size(self, sizes: Sizes) -> Size:
        """Its size in `sizes`, typed."""
        return cast(Size, sizes[self.name])

    def with_size(self, sizes: Sizes, size: Size) -> Sizes:
        return sizes.with_size(self.name, size)

    @abstractmethod
    def initial(self, spec: api.ScaledAppSpec) -> Size:
        """Its starting size, from the spec (also the smallest it is narrowed to)."""

    @abstractmethod
    def bounded(self, spec: api.ScaledAppSpec, size: Size) -> Size:
        """`size` pulled inside the spec's bounds."""

    @abstractmethod
    def size_text(self, sizes: Sizes) -> str:
        """The tier's current size, for status and actions ("3", "cpu=1, memory=2Gi")."""

    @abstractmethod
    def widen(self, spec: api.ScaledAppSpec, sizes: Sizes, pressure: TierPressure) -> Step | Blocked:
        """One step wider, or why not (at the max, or a guard such as replica lag)."""

    @abstractmethod
    def narrow(self, spec: api.ScaledAppSpec, sizes: Sizes) -> Step | None:
        """One step narrower, or None at the min."""

    def narrow_for(self, spec: api.ScaledAppSpec, sizes: Sizes, peak: float, calm: float) -> Step | None:
        """The narrowing step to take when the tier's recent peak pressure is `peak`: the step whose
        predicted pressure at that peak stays below `calm`, or None. One `narrow` step by default."""
        step = self.narrow(spec, sizes)
        if step is None or self.predicted_pressure(peak, step) >= calm:
            return None
        return step

    @abstractmethod
    def capacity(self, sizes: Sizes) -> float:
        """A number proportional to the tier's capacity, used to predict pressure after a narrow step
        (pressure scales with load / capacity)."""

    def predicted_pressure(self, pressure: float, step: Step) -> float:
        return pressure * self.capacity(step.before) / max(self.capacity(step.after), 1e-9)

    def resized(self, before: Sizes, after: Sizes) -> bool:
        return before.get(self.name) != after.get(self.name)

    # -- its workload

    @abstractmethod
    def workload(self, child: ChildNames) -> Workload:
        """The object whose scaler-owned fields hold the tier's size."""

    @abstractmethod
    def read_size(self, live: Manifest | None, spec: api.ScaledAppSpec) -> Size:
        """Its size as the live workload says (the spec's starting point where not set yet)."""

    @abstractmethod
    def size_body(self, child: ChildNames, namespace: str, sizes: Sizes) -> Manifest:
        """The server-side-apply body that gives the tier its size (scaler-owned fields only)."""

    def live_resize(self, child: ChildNames, sizes: Sizes) -> tuple[str, Manifest] | None:
        """(pod name, resize patch) when the size must also reach a running pod in place; None otherwise."""
        return None

    def status(self, live: Manifest | None, sizes: Sizes) -> api.TierStatus:
        """Its entry in status.tiers."""
        return workload_counts(live)


class HorizontalTier(TierModel[int]):
    """A tier widened by adding replicas: app, db-read, workers. Its size is its replica count."""

    max_field: ClassVar[str]  # where the user raises the ceiling, for the recommendation

    def replicas(self, sizes: Sizes) -> int:
        return self.size(sizes)

    @abstractmethod
    def replica_range(self, spec: api.ScaledAppSpec) -> api.ReplicaRange: ...

    def replica_bounds(self, spec: api.ScaledAppSpec) -> tuple[int, int]:
        replicas = self.replica_range(spec)
        return replicas.min, replicas.max

    def initial(self, spec: api.ScaledAppSpec) -> int:
        return self.replica_range(spec).min

    def bounded(self, spec: api.ScaledAppSpec, size: int) -> int:
        return clamp(size, self.replica_bounds(spec))

    def read_size(self, live: Manifest | None, spec: api.ScaledAppSpec) -> int:
        return spec_replicas(live, self.replica_range(spec).min)

    def size_body(self, child: ChildNames, namespace: str, sizes: Sizes) -> Manifest:
        workload = self.workload(child)
        kind: Literal["Deployment", "StatefulSet"] = "StatefulSet" if workload.kind == "StatefulSet" else "Deployment"
        return replicas_body(kind, workload.name, namespace, self.replicas(sizes))

    def size_text(self, sizes: Sizes) -> str:
        return str(self.replicas(sizes))

    def capacity(self, sizes: Sizes) -> float:
        return float(self.replicas(sizes))

    def _step(self, sizes: Sizes, kind: str, replicas: int) -> Step:
        after = self.with_size(sizes, replicas)
        return Step(self.name, kind, sizes, after, self.size_text(sizes), self.size_text(after))

    def widen(self, spec: api.ScaledAppSpec, sizes: Sizes, pressure: TierPressure) -> Step | Blocked:
        low, high = self.replica_bounds(spec)
        current = self.replicas(sizes)
        if current >= high:
            return Blocked(
                self.name,
                Reason.MAX_REPLICAS,
                f"{self.name} is at its max of {high} replicas",
                at_ceiling=True,
                recommendation=f"{self.name} is the bottleneck at its max of {high} replicas: raise "
                f"{self.max_field} or reduce its load.",
            )
        wanted = sized_replicas(current, pressure.pressure, spec.scaling.steps)
        return self._step(sizes, "widen", min(high, max(low, wanted)))

    def narrow(self, spec: api.ScaledAppSpec, sizes: Sizes) -> Step | None:
        low, high = self.replica_bounds(spec)
        current = self.replicas(sizes)
        if current <= low:
            return None
        return self._step(sizes, "narrow", max(low, min(high, current - spec.scaling.steps.replicas)))

    def narrow_for(self, spec: api.ScaledAppSpec, sizes: Sizes, peak: float, calm: float) -> Step | None:
        """As far down as the recent peak allows: the fewest replicas at which the peak's pressure
        (peak x current / replicas) stays below `calm`, removing at least `steps.replicas` and at most
        `steps.maxReplicas`, never below the min."""
        low, high = self.replica_bounds(spec)
        current = self.replicas(sizes)
        steps = spec.scaling.steps
        if current <= low:
            return None
        # The fewest n with peak x current / n < calm; none at all for a peak of zero (a tier whose min is 0).
        needed = (math.floor(current * peak / calm) + 1 if peak > 0 else 0) if calm > 0 else current
        fewest = max(low, current - max(steps.replicas, steps.max_replicas))
        target = min(max(fewest, needed), max(low, min(high, current - steps.replicas)))
        if target >= current:
            return None
        step = self._step(sizes, "narrow", target)
        return step if self.predicted_pressure(peak, step) < calm else None
