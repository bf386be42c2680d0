"""The values one tick passes between its phases: what it decides from (`Tick`) and what it has found
and intends so far (`Plan`). Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from scaledapp import api
from scaledapp.observation import Snapshot
from scaledapp.reasons import Reason
from scaledapp.sizes import Blocked, Sizes, Step, TierName
from scaledapp.tiers import TierPressure

ConditionParts = tuple[str, Reason, str]  # status ("True"/"False"/"Unknown"), reason, message


@dataclass(frozen=True)
class Tick:
    """What one tick decides from: the spec, the observation, the sizes (within bounds), the memory
    status keeps, the time, and the tiers still rolling out their last change."""

    spec: api.ScaledAppSpec
    snapshot: Snapshot | None
    sizes: Sizes
    state: api.ScalerState
    last_action: api.Action | None
    now: datetime
    settling: frozenset[TierName] = frozenset()

    @property
    def scaling(self) -> api.ScalingSpec:
        return self.spec.scaling


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

    def pressure_of(self, tier: TierName) -> float | None:
        judged = self.judged.get(tier)
        return None if judged is None else judged.pressure
