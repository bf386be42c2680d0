"""The values one tick passes between its phases: what it decides from (`Tick`) and what it has found
and intends so far (`Plan`). Pure."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from scaledapp import api
from scaledapp.observation import Snapshot
from scaledapp.reasons import Reason
from scaledapp.sizes import Blocked, Sizes, Step, TierName
from scaledapp.tiers import TierPressure, enforce_bounds

ConditionParts = tuple[str, Reason, str]  # status ("True"/"False"/"Unknown"), reason, message


@dataclass(frozen=True)
class Tick:
    """What one tick decides from, the one argument of `decide.decide`.

    `snapshot` None means Prometheus could not be asked (hold); `sizes` are the workloads' current
    scaler-owned fields; `state` and `last_action` come from status; `paused` is the pause annotation;
    `settling` names tiers whose workload has not rolled out its last change yet (ready < desired, resize
    in progress): a step is judged only once it has taken effect.
    """

    spec: api.ScaledAppSpec
    snapshot: Snapshot | None
    sizes: Sizes
    state: api.ScalerState
    last_action: api.Action | None
    now: datetime
    paused: bool = False
    settling: Collection[TierName] = ()

    @property
    def scaling(self) -> api.ScalingSpec:
        return self.spec.scaling

    @cached_property
    def bounded(self) -> Sizes:
        """The sizes pulled inside the spec's bounds: what the plan starts from."""
        return enforce_bounds(self.spec, self.sizes)


@dataclass(frozen=True)
class Plan:
    """What one tick found and intends, before the mode (Auto/Recommend) and the pause apply."""

    pressures: list[api.Evidence]
    judged: dict[TierName, TierPressure]
    state: api.ScalerState
    last_action: api.Action | None
    metrics: ConditionParts
    bottleneck: TierName | None = None
    step: Step | None = None
    reason: Reason | None = None
    message: str = ""
    recommendation: str = ""
    ceiling: Blocked | None = None
    narrow_ratio: float | None = None  # a narrow step's predicted pressure / pressure before
    verified: api.Action | None = None  # the previous action, if its verdict was decided this tick
    throughputs: dict[TierName, float] = field(default_factory=dict)  # each tier's throughput signal now
    # Tiers whose 1m window is at least at target too (a rise the onset window alone shows is not in it).
    confirmed: frozenset[TierName] = frozenset()

    def pressure_of(self, tier: TierName) -> float | None:
        judged = self.judged.get(tier)
        return None if judged is None else judged.pressure
