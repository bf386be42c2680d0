"""Helpers of decide.py, pure: the plan under construction, ranking, verify-after-act, conditions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from scaledapp import api
from scaledapp.policy import Blocked, Step, TierName, format_time, seconds_since
from scaledapp.tiers import TierPressure, app, db_read, db_write, workers

# Pressures this close count as a tie, and ties go to the cheaper rung: a 1.50 vs 1.505 difference is
# noise, not evidence that the dearer tier is the chokepoint.
TIE_TOLERANCE = 0.01
# A widening step is effective when its tier's pressure fell by at least this fraction, or the tier is
# no longer hot; anything less is within the noise of a rate() window.
VERIFY_MIN_DROP = 0.05
# A step that has not lowered its tier's pressure by the end of the cooldown gets one more rate window
# (tiers.base.RATE_WINDOW, 1m) before it is called ineffective: queue-driven signals (in-flight requests,
# request and query latency) still carry the backlog that built up before the step, and a window that
# still holds it says nothing about the step. A step that was not enough, but helped, would otherwise be
# judged ineffective and its tier - still the bottleneck - locked out for the whole back-off.
VERIFY_GRACE_SECONDS = 60
# The signal that counts the work a tier gets through. A saturated tier's pressure can stay pinned after
# a step that helped but was not enough: CPU at its limit, in-flight requests at what the clients'
# timeout lets queue up (that grows with the pods), a queue that still grows, only slower. More work
# served is then the evidence that the step widened the chokepoint; a wrong lane serves no more than
# before. (The cache has none: memory does not serve more lookups, it turns misses into hits, and its
# pressure falls when that works.)
THROUGHPUT_SIGNALS: dict[TierName, str] = {
    "app": app.REQUESTS_PER_SECOND,
    "db-read": db_read.READS_PER_SECOND,
    "db-write": db_write.WRITES_PER_SECOND,
    "workers": workers.JOBS_PER_SECOND,
}

# Before its cooldown is over, a rolled-out widening step is judged at once when the evidence is plain:
# its tier serves at least this much more work while its pressure has not fallen. The tier is then still
# saturated after a step that helped - demand is beyond what the step added - so, if it is still the
# bottleneck, its next step need not wait out the cooldown (HPA has no scale-up cooldown at all). A
# pressure that is falling waits for the cooldown: the backlog from before the step is still draining and
# the tier may settle below target without another step.
EARLY_EFFECTIVE_RISE = 0.15

ConditionParts = tuple[str, str, str]  # status ("True"/"False"/"Unknown"), reason, message


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
    reason: str = ""
    message: str = ""
    recommendation: str = ""
    ceiling: Blocked | None = None
    narrow_ratio: float | None = None  # a narrow step's predicted pressure / pressure before
    verified: api.Action | None = None  # the previous action, if its verdict was decided this tick
    throughputs: dict[TierName, float] = field(default_factory=dict)  # THROUGHPUT_SIGNALS now

    def pressure_of(self, tier: TierName) -> float | None:
        judged = self.judged.get(tier)
        return None if judged is None else judged.pressure


def rank_hot(hot: dict[TierName, float]) -> list[TierName]:
    """Hot tiers, most pressed first; pressures within TIE_TOLERANCE of the top tie and the cheaper
    rung goes first."""
    remaining = dict(hot)
    ranked: list[TierName] = []
    while remaining:
        top = max(remaining.values())
        tied = [name for name in api.LADDER if name in remaining and remaining[name] >= top - TIE_TOLERANCE]
        ranked.append(tied[0])
        del remaining[tied[0]]
    return ranked


def verify_last_action(
    last_action: api.Action | None,
    pressures: dict[TierName, float],
    patient: bool = False,
    throughputs: dict[TierName, float] | None = None,
) -> tuple[api.Action | None, TierName | None]:
    """Judge a pending widening step once its cooldown is over: (the action with its verdict, the tier
    to back off from if the step was ineffective). Effective: the tier's pressure fell, or its
    throughput rose (THROUGHPUT_SIGNALS). `patient`: still within VERIFY_GRACE_SECONDS, so a step
    that has shown neither yet stays pending instead of ineffective."""
    if last_action is None or last_action.verdict != "pending" or last_action.kind != "widen":
        return last_action, None
    tier = next((name for name in api.LADDER if name == last_action.tier), None)
    before = last_action.pressure
    now = None if tier is None else pressures.get(tier)
    if tier is None or before is None or now is None:  # e.g. the tier was disabled: nothing to judge
        return replace_verdict(last_action, "n/a"), None
    if now <= before * (1 - VERIFY_MIN_DROP):
        return replace_verdict(last_action, "effective"), None
    served_before = last_action.throughput
    served_now = (throughputs or {}).get(tier)
    if served_before is not None and served_now is not None and served_now >= served_before * (1 + VERIFY_MIN_DROP):
        return replace_verdict(last_action, "effective"), None
    if patient:
        return last_action, None
    return replace_verdict(last_action, "ineffective"), tier


def still_saturated_after_step(
    last_action: api.Action | None, pressures: dict[TierName, float], throughputs: dict[TierName, float]
) -> api.Action | None:
    """The pending widening step, judged "effective", when it already shows EARLY_EFFECTIVE_RISE more
    throughput and no fall in pressure (see there); None otherwise."""
    if last_action is None or last_action.verdict != "pending" or last_action.kind != "widen":
        return None
    tier = next((name for name in api.LADDER if name == last_action.tier), None)
    if tier is None:
        return None
    before, now = last_action.pressure, pressures.get(tier)
    served_before, served_now = last_action.throughput, throughputs.get(tier)
    if before is None or now is None or served_before is None or served_now is None or served_before <= 0:
        return None
    rose = served_now >= served_before * (1 + EARLY_EFFECTIVE_RISE)
    return replace_verdict(last_action, "effective") if rose and now > before * (1 - VERIFY_MIN_DROP) else None


def track_calm_peaks(
    state: api.ScalerState, pressures: dict[TierName, float], all_calm: bool, now: datetime, window: int
) -> dict[str, Any]:
    """ScalerState updates for the per-tier pressure peaks while all tiers are calm.

    A narrow step must keep the peak of the last scale-down window calm, not just this tick's reading
    (HPA's scale-down window keeps its highest recommendation for the same reason). Two buckets of one
    window each approximate that sliding maximum in constant space: the peak used covers between one
    and two windows, and a peak older than that no longer blocks narrowing.
    """
    if not all_calm:
        return {"calm_peak": {}, "calm_peak_previous": {}, "calm_peak_since": None}
    rounded = {name: round(p, 4) for name, p in pressures.items()}
    started = seconds_since(state.calm_peak_since, now)
    if not state.calm_since or started is None:  # a fresh calm period
        return {"calm_peak": rounded, "calm_peak_previous": {}, "calm_peak_since": format_time(now)}
    if started >= window:  # the bucket is full: it becomes the previous one
        return {"calm_peak": rounded, "calm_peak_previous": dict(state.calm_peak), "calm_peak_since": format_time(now)}
    peaks = {name: max(state.calm_peak.get(name, 0.0), p) for name, p in rounded.items()}
    return {
        "calm_peak": peaks,
        "calm_peak_previous": dict(state.calm_peak_previous),
        "calm_peak_since": state.calm_peak_since,
    }


def peak_of(state: api.ScalerState, tier: TierName) -> float | None:
    values = [v for v in (state.calm_peak.get(tier), state.calm_peak_previous.get(tier)) if v is not None]
    return max(values) if values else None


def rescale_peaks(state: api.ScalerState, tier: TierName, ratio: float) -> api.ScalerState:
    """After narrowing `tier`, its recorded peaks would have been `ratio` times higher at the new size."""

    def scaled(peaks: dict[str, float]) -> dict[str, float]:
        return {name: round(v * ratio, 4) if name == tier else v for name, v in peaks.items()}

    return state.model_copy(
        update={"calm_peak": scaled(state.calm_peak), "calm_peak_previous": scaled(state.calm_peak_previous)}
    )


def throughputs_of(snapshot_tiers: dict[TierName, dict[str, float | None]]) -> dict[TierName, float]:
    """Each tier's throughput signal, where known."""
    out: dict[TierName, float] = {}
    for tier, signal in THROUGHPUT_SIGNALS.items():
        value = snapshot_tiers.get(tier, {}).get(signal)
        if value is not None:
            out[tier] = value
    return out


def replace_verdict(action: api.Action, verdict: str) -> api.Action:
    return action.model_copy(update={"verdict": verdict})


def conditions_for(
    metrics: ConditionParts | None, scaling: ConditionParts, ceiling: Blocked | None = None
) -> list[api.Condition]:
    """The scaler's three conditions. `metrics` None: the scaler is off and observed nothing."""
    if metrics is None:
        metrics_parts: ConditionParts = ("Unknown", "ScalerOff", "the scaler is off")
        ceiling_parts: ConditionParts = ("Unknown", "ScalerOff", "the scaler is off")
    else:
        metrics_parts = metrics
        if metrics[0] != "True":
            ceiling_parts = ("Unknown", "MetricsUnavailable", "cannot tell without metrics")
        elif ceiling is not None:
            ceiling_parts = ("True", ceiling.reason, f"{ceiling.tier}: {ceiling.message}")
        else:
            ceiling_parts = ("False", "BelowCeiling", "the bottleneck (if any) can still be widened")
    return [
        _condition("MetricsAvailable", metrics_parts),
        _condition("Scaling", scaling),
        _condition("AtCeiling", ceiling_parts),
    ]


def _condition(type_: str, parts: ConditionParts) -> api.Condition:
    status, reason, message = parts
    return api.Condition.model_validate({"type": type_, "status": status, "reason": reason, "message": message})

