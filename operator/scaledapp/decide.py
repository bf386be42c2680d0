"""The decision, pure: pressures + scaler memory + spec -> what to do now, and why.

One call per tick. Deterministic and cheap (no I/O, no clock: `now` is an argument), so the shell, the
simulated twin and the benchmark all call the same function.

The rules, in order:
1. Mode Off: nothing is evaluated. Prometheus unreachable, or every tier's signals unknown: hold;
   missing data is never zero. A tier with a needed signal unknown is blind: the others are still
   judged and the bottleneck among them may widen, but nothing narrows until every tier is seen
   (MetricsAvailable=False names the blind tiers).
2. Two windows: each signal over 1m and over the 30 s onset window (two scrapes at 15 s: rate() over
   it is the increase between the last two scrapes, the one-interval rate the HPA acts on). Fast onset,
   slow retreat: a tier's pressure for widening is its onset-window pressure (the 1m one where that
   is unknown), and it is hot when that is above 1 + hysteresis, whatever the 1m window says yet (it
   averages three intervals and trails a sharp rise by a tick); it is calm only when both windows are
   below 1 - hysteresis.
3. Verify-after-act: once the cooldown after a widening step is over, compare that tier's pressure
   now with its pressure when the step was decided, and its throughput (a saturated tier's pressure
   can stay pinned after a step that helped). If neither improved within one more rate window
   (a backlog built up before the step takes that long to leave the signals), the step was
   ineffective: the tier is not widened again until the back-off expires; the next candidate is
   considered instead. Until the verdict, no other step is taken. One exception: a rolled-out step
   whose tier serves clearly more while its pressure has not fallen (still saturated, see
   verification.EARLY_EFFECTIVE_RISE) is judged effective at once, on evidence from after the
   rollout, and that tier, if still the bottleneck, may take its next step within the cooldown.
4. The bottleneck is the tier with the highest pressure among the hot ones; pressures within
   TIE_TOLERANCE of each other tie, and ties go to the cheaper rung (tiers.ladder(): the registry's order).
5. The bottleneck is widened by one step, sized from its pressure, once it has been hot for the
   scale-up window and no cooldown runs: replicas become ceil(replicas x pressure) (the HPA's ratio
   rule), at most doubling and at most spec.scaling.steps.maxReplicas more; a vertical step multiplies
   by the pressure, up to the spec's factor. A rise only the onset window shows (the 1m window below
   target) is one interval of evidence and takes the smallest step the band allows (sized as if the
   pressure were 1 + hysteresis). If it cannot be widened (at its max, a hard ceiling, or
   a guard such as replica lag) the scaler holds and says so: it never widens a different tier instead.
6. When every tier is calm (both windows) for the scale-down window, one tier is narrowed, in reverse
   ladder order, as far as its peak pressure over that window allows: the fewest replicas at which
   that peak stays calm (at most maxReplicas fewer per step), so a narrow step can never invite the
   next widening step: no oscillation. The peak is the onset window's (consecutive ticks' onset windows
   cover every scrape interval; the 1m window would add only load from before the calm began), or the
   higher of both windows when ticks come further apart than a scrape. A tier whose onset window reads
   above its 1m window (a rising edge) is not narrowed.
7. Recommend mode decides the same but applies nothing (applied=False); a pause freezes everything.

The tick, as phases (docs/architecture.md): judge (each tier's pressure) -> track windows (windows.py)
-> verify the last step (verification.py) -> plan (widen the bottleneck or narrow when all are calm)
-> the mode and the pause decide what is applied. The shell (scaler.py) observes before and acts and
explains after.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from scaledapp import api, verification, windows
from scaledapp.clock import format_time, seconds_since
from scaledapp.conditions import conditions_for
from scaledapp.plan import ConditionParts, Plan, Tick
from scaledapp.reasons import Reason
from scaledapp.sizes import Blocked, Sizes, Step, TierName
from scaledapp.tiers import RATE_WINDOW, TierPressure, enabled_tiers, judge, ladder, tier
from scaledapp.tiers.base import SCRAPE_SECONDS

__all__ = ["HISTORY_LIMIT", "TIE_TOLERANCE", "Decision", "Tick", "decide", "rank_hot", "record", "status_fields"]

HISTORY_LIMIT = 10
# Pressures this close count as a tie, and ties go to the cheaper rung: a 1.50 vs 1.505 difference is
# noise, not evidence that the dearer tier is the chokepoint.
TIE_TOLERANCE = 0.01
# A tier whose onset-window pressure is this much above its 1m pressure is on a rising edge: it is not
# narrowed then, however low its peak (slow retreat).
RISING = 0.01


@dataclass(frozen=True)
class Decision:
    """Everything the shell writes and applies after one tick."""

    bottleneck: TierName | None
    pressures: list[api.Evidence]
    # A new decision record (widen/narrow; applied=False in Recommend mode) to append to history.
    action: api.Action | None
    # The one change to apply now (Auto mode only), and the sizes every workload should have.
    step: Step | None
    desired: Sizes
    # status.lastAction after this tick: the new action, or the previous one with its verdict updated.
    last_action: api.Action | None
    state: api.ScalerState
    # MetricsAvailable, Scaling and AtCeiling, without transition times (the shell keeps those).
    conditions: list[api.Condition] = field(default_factory=list)
    # The previous action with the verdict verify-after-act gave it this tick (to update in history).
    verified: api.Action | None = None
    recommendation: str = ""
    reason: Reason | None = None  # the Scaling condition's reason (Reason.WIDENED, Reason.COOLDOWN, ...)
    message: str = ""  # one line for the Event and the log

    @property
    def applied(self) -> bool:
        return self.step is not None


def decide(tick: Tick) -> Decision:
    """Decide one tick (see plan.Tick for what it decides from)."""
    if tick.spec.scaling.mode == api.ScalingMode.OFF:
        return _off(tick)
    plan = _plan(tick)
    if tick.paused:
        return _paused(tick, plan)
    return _outcome(tick, plan)


def _off(tick: Tick) -> Decision:
    """Mode Off: nothing is evaluated."""
    return Decision(
        bottleneck=None,
        pressures=[],
        action=None,
        step=None,
        desired=tick.sizes,
        last_action=tick.last_action,
        state=tick.state,
        conditions=conditions_for(metrics=None, scaling=("False", Reason.OFF, "spec.scaling.mode is Off")),
        reason=Reason.OFF,
        message="scaler is off: nothing evaluated",
    )


def _paused(tick: Tick, plan: Plan) -> Decision:
    """The pause annotation: the plan is reported, nothing changes."""
    message = f"paused by the {api.PAUSE_ANNOTATION} annotation"
    return Decision(
        bottleneck=plan.bottleneck,
        pressures=plan.pressures,
        action=None,
        step=None,
        desired=tick.sizes,
        last_action=tick.last_action,
        state=tick.state,
        conditions=conditions_for(plan.metrics, ("False", Reason.PAUSED, message), plan.ceiling),
        recommendation=plan.recommendation,
        reason=Reason.PAUSED,
        message=message,
    )


def _action(tick: Tick, plan: Plan, step: Step, auto: bool) -> api.Action:
    """The decision record of a step (applied only in Auto mode; only an applied widening is verified)."""
    return api.Action(
        time=format_time(tick.now),
        tier=step.tier,
        kind="widen" if step.kind == "widen" else "narrow",
        from_=step.from_text,
        to=step.to_text,
        reason=plan.message,
        applied=auto,
        pressure=plan.pressure_of(step.tier),
        throughput=plan.throughputs.get(step.tier),
        verdict="pending" if auto and step.kind == "widen" else "n/a",
    )


def _outcome(tick: Tick, plan: Plan) -> Decision:
    """The plan under the mode: Auto applies its step, Recommend only records and recommends it."""
    auto = tick.scaling.mode == api.ScalingMode.AUTO
    action = step = None
    state = plan.state
    if plan.step is not None:
        action = _action(tick, plan, plan.step, auto)
        step = plan.step if auto else None
        # Recommend mode starts the cooldown too, so a standing recommendation is not re-issued every tick.
        state = state.model_copy(update={"last_action_time": format_time(tick.now), "rolled_out_since": None})
        if auto and plan.narrow_ratio is not None:
            # The narrowed tier's peaks now stand for its smaller size, so the next narrow step builds on them.
            state = windows.rescale_peaks(state, plan.step.tier, plan.narrow_ratio)
    reason, message, recommendation = plan.reason, plan.message, plan.recommendation
    if action is not None and not auto:
        reason = Reason.RECOMMENDED
        message = f"would {action.kind} {action.tier} {action.from_} -> {action.to} (Recommend mode): {plan.message}"
        recommendation = recommendation or message
    assert reason is not None
    return Decision(
        bottleneck=plan.bottleneck,
        pressures=plan.pressures,
        action=action,
        step=step,
        desired=(step.after if step else tick.bounded) if auto else tick.sizes,
        last_action=action or plan.last_action,
        state=state,
        conditions=conditions_for(plan.metrics, ("True" if step else "False", reason, message), plan.ceiling),
        verified=plan.verified,
        recommendation=recommendation,
        reason=reason,
        message=message,
    )


def record(history: list[api.Action], decision: Decision, previous: api.Action | None) -> list[api.Action]:
    """status.history after a decision: the previous action's verdict updated in place, the new action
    appended, the last HISTORY_LIMIT kept."""
    out = list(history)
    updated = decision.verified
    if previous is not None and updated is not None:
        out = [updated if (a.time, a.tier, a.kind) == (previous.time, previous.tier, previous.kind) else a for a in out]
    if decision.action is not None:
        out.append(decision.action)
    return out[-HISTORY_LIMIT:]


def status_fields(decision: Decision, history: list[api.Action], previous: api.Action | None) -> dict[str, Any]:
    """The status fields a decision sets, camelCase as on the wire (conditions excluded: merge those
    with conditions.set_condition so transition times survive)."""
    status = api.ScaledAppStatus(
        bottleneck=decision.bottleneck or "",
        pressures=decision.pressures,
        last_action=decision.last_action,
        history=record(history, decision, previous),
        recommendation=decision.recommendation,
        scaler=decision.state,
    )
    return status.model_dump(by_alias=True, mode="json", include=set(STATUS_FIELDS))


# The status fields a decision sets (status_fields), by their model names.
STATUS_FIELDS = ("bottleneck", "pressures", "last_action", "history", "recommendation", "scaler")


# ---------------------------------------------------------------------------------------------- the plan


def _plan(tick: Tick) -> Plan:
    """Judge -> track windows -> verify the last step -> widen the bottleneck or narrow a calm tier."""
    # Judge: each enabled tier's pressure, its evidence and throughput; unknown data holds the scaler.
    if tick.snapshot is None:
        return _unknown(tick, {})
    judgement = judge(tick.snapshot, tick.spec, tick.bounded)
    served, blind = judgement.served, judgement.blind
    if not judgement.judged or len(blind) == len(judgement.judged):
        return _unknown(tick, judgement.judged)
    # Fast onset, slow retreat. Widening goes by each tier's most recent evidence, the onset window where
    # it is known: it sees a sharp rise a scrape before the 1m window, and a backlog draining after a step
    # while the 1m window still holds it. A tier is hot when that pressure is above 1 + hysteresis: two
    # scrapes are the evidence (the HPA acts on the same one-interval CPU rate, with the same 10 % band),
    # and waiting for the 1m window to agree cost a tick on every sharp rise. Calm (and so narrowing)
    # needs both windows calm.
    judged = {name: judgement.onset.get(name) or j for name, j in judgement.judged.items()}
    known: dict[TierName, float] = {name: j.pressure for name, j in judged.items() if j.pressure is not None}
    slow = {name: _pressure(judgement.judged[name], p) for name, p in known.items()}
    levels = {name: max(p, slow[name]) for name, p in known.items()}
    up, down = 1 + tick.scaling.hysteresis, 1 - tick.scaling.hysteresis
    hot = rank_hot({name: p for name, p in known.items() if p > up})
    # Narrowing needs every tier calm and none blind: a tier whose signals are unknown may be busy.
    all_calm = not blind and all(p < down for p in levels.values())
    # Track windows: hot since, calm since, calm peaks, back-offs.
    state = windows.track(tick, _peak_evidence(tick, judgement.onset, known, levels), hot, all_calm, blind)
    # Verify the last step, unless the cooldown after it still runs.
    verdict = verification.verify(tick, known, served, windows.cooldown(tick))
    state.ineffective_until.update(verdict.backoff)
    plan = Plan(
        pressures=[j.evidence() for j in judged.values()],
        judged=judged,
        state=state,
        last_action=verdict.last_action,
        metrics=_metrics(judged, blind),
        verified=verdict.verified,
        throughputs=served,
        confirmed=frozenset(name for name in known if slow[name] >= 1),
    )
    # Plan: widen the bottleneck, or narrow one tier when all are calm.
    if hot:
        return _widen_plan(tick, plan, hot, verdict)
    rising = frozenset(name for name, p in known.items() if p > slow[name] * (1 + RISING))
    return _narrow_plan(tick, plan, all_calm, verdict.cooldown, rising)


def _peak_evidence(
    tick: Tick, onset: dict[TierName, TierPressure], known: dict[TierName, float], levels: dict[TierName, float]
) -> dict[TierName, float]:
    """What each tier's calm peak is taken from: its onset-window pressure where that is known and the ticks
    come at most a scrape interval apart; the higher of both windows otherwise. Consecutive onset windows
    then cover every interval between scrapes, so their highest reading bounds any longer average over the
    same time, and the 1m window (three intervals) would only add load from before the calm period began:
    after a spike it held narrowing back by up to a minute of the spike itself. Slower ticks leave gaps
    between onset windows, which the 1m window covers."""
    if tick.scaling.interval_seconds > SCRAPE_SECONDS:
        return levels
    return {name: p if name in onset else levels[name] for name, p in known.items()}


def _pressure(judged: TierPressure, default: float) -> float:
    return default if judged.pressure is None else judged.pressure


def _metrics(judged: dict[TierName, TierPressure], blind: list[TierName]) -> ConditionParts:
    """MetricsAvailable: True when every tier's signals are known; otherwise False, naming the blind tiers
    and their unknown signals (the others are still judged, and may still widen)."""
    if not blind:
        return ("True", Reason.SIGNALS_KNOWN, f"{len(judged)} tiers observed")
    unknown = ", ".join(f"{name}.{signal}" for name in blind for signal in judged[name].missing)
    seen = ", ".join(name for name in judged if name not in blind)
    return (
        "False",
        Reason.SIGNALS_MISSING,
        f"blind: {', '.join(blind)} (unknown, never taken as zero: {unknown}); judged: {seen}; "
        "nothing narrows until every tier is seen",
    )


def _unknown(tick: Tick, judged: dict[TierName, TierPressure]) -> Plan:
    """Hold: Prometheus did not answer, or a needed signal is unknown (never taken as zero)."""
    if tick.snapshot is None:
        metrics = ("False", Reason.PROMETHEUS_UNAVAILABLE, "Prometheus could not be queried; holding")
    else:
        unknown = [f"{j.tier}.{name}" for j in judged.values() for name in j.missing]
        metrics = ("False", Reason.SIGNALS_MISSING, "unknown (never taken as zero): " + ", ".join(unknown))
    return Plan(
        pressures=[j.evidence() for j in judged.values()],
        judged=judged,
        state=windows.forget_calm(tick.state, tick.now),
        last_action=tick.last_action,
        metrics=metrics,
        reason=Reason.METRICS_UNAVAILABLE,
        message=f"holding: {metrics[2]}",
    )


def rank_hot(hot: dict[TierName, float]) -> list[TierName]:
    """Hot tiers, most pressed first; pressures within TIE_TOLERANCE of the top tie and the cheaper
    rung goes first."""
    remaining = dict(hot)
    ranked: list[TierName] = []
    while remaining:
        top = max(remaining.values())
        tied = [name for name in ladder() if name in remaining and remaining[name] >= top - TIE_TOLERANCE]
        ranked.append(tied[0])
        del remaining[tied[0]]
    return ranked


def _widen_plan(tick: Tick, plan: Plan, hot: list[TierName], verdict: verification.Verification) -> Plan:
    """The bottleneck is the hottest tier not backing off; widen it once the windows allow."""
    state = plan.state
    candidates = [name for name in hot if name not in state.ineffective_until]
    skipped_note = "".join(
        f"; {name} skipped: widening it did not lower its pressure (back-off until "
        f"{state.ineffective_until[name]})"
        for name in hot
        if name in state.ineffective_until
    )
    if not candidates:
        return replace(
            plan,
            bottleneck=hot[0],
            reason=Reason.INEFFECTIVE_BACKOFF,
            message=f"holding: {hot[0]} is hottest but not the chokepoint{skipped_note}",
        )
    bottleneck = candidates[0]
    judged = plan.judged[bottleneck]
    evidence = judged.evidence()
    why = (
        f"{bottleneck} is the bottleneck: {evidence.signal} {_number(evidence.value)} vs target "
        f"{_number(evidence.target)} (pressure {evidence.pressure:.2f}{_over(evidence.window)}){skipped_note}"
    )
    plan = replace(plan, bottleneck=bottleneck)
    outcome = tier(bottleneck).widen(tick.spec, tick.bounded, _sizing(judged, bottleneck in plan.confirmed, tick))
    if isinstance(outcome, Blocked):
        recommendation = outcome.recommendation or f"Raise the max of the {bottleneck} tier or reduce its load."
        plan = replace(plan, recommendation=recommendation, ceiling=outcome if outcome.at_ceiling else None)
        return replace(plan, reason=outcome.reason, message=f"holding: {why}; {outcome.message}")
    if verdict.cooldown.active and bottleneck != verdict.continuing:
        return replace(plan, reason=Reason.COOLDOWN, message=f"holding: {why}; {verdict.cooldown.note}")
    hot_for = seconds_since(state.hot_since.get(bottleneck), tick.now) or 0.0
    window = tick.scaling.stabilization.scale_up_seconds
    if hot_for < window:
        message = f"holding: {why}; hot for {hot_for:.0f}s of {window}s"
        return replace(plan, reason=Reason.SCALE_UP_WINDOW, message=message)
    return replace(plan, step=outcome, reason=Reason.WIDENED, message=why)


def _narrow_plan(
    tick: Tick, plan: Plan, all_calm: bool, cooldown: windows.Cooldown, rising: frozenset[TierName] = frozenset()
) -> Plan:
    """When every tier is calm for the scale-down window, narrow the last rung that stays calm after."""
    blind = [j.tier for j in plan.judged.values() if j.missing]
    if blind:
        message = f"no seen tier above target; nothing narrows while {', '.join(blind)} is blind"
        return replace(plan, reason=Reason.WITHIN_TARGET, message=message)
    if not all_calm:
        return replace(
            plan, reason=Reason.WITHIN_TARGET, message="no tier above target; not all calm enough to narrow"
        )
    calm_for = seconds_since(plan.state.calm_since, tick.now) or 0.0
    window = tick.scaling.stabilization.scale_down_seconds
    if calm_for < window:
        message = f"all tiers calm for {calm_for:.0f}s of {window}s"
        return replace(plan, reason=Reason.SCALE_DOWN_WINDOW, message=message)
    if cooldown.active:
        return replace(plan, reason=Reason.COOLDOWN, message=f"all tiers calm; {cooldown.note}")
    down = 1 - tick.scaling.hysteresis
    for t in reversed(enabled_tiers(tick.spec)):
        # The peak over the calm period, not this tick's (possibly low) reading: a narrow step made on a
        # quiet sample would be undone by the next busy one (the HPA's scale-down window does the same).
        # The step goes as far as that peak allows (tier.narrow_for), so a tier widened for a spike comes
        # back in one step, not one replica per cooldown. A tier on a rising edge (its onset window reads
        # above its 1m window: the load is coming back) is not narrowed.
        peak = windows.peak_of(plan.state, t.name)
        step = None if peak is None or t.name in rising else t.narrow_for(tick.spec, tick.bounded, peak, down)
        if step is not None and peak is not None:
            predicted = t.predicted_pressure(peak, step)
            return replace(
                plan,
                step=step,
                narrow_ratio=predicted / peak if peak > 0 else 1.0,
                reason=Reason.NARROWED,
                message=f"all tiers calm for {calm_for:.0f}s; {t.name} peak pressure {peak:.2f} -> "
                f"{predicted:.2f} predicted after the step",
            )
    return replace(plan, reason=Reason.AT_MINIMUM, message="all tiers calm; none can narrow without getting busy")


def _sizing(judged: TierPressure, confirmed: bool, tick: Tick) -> TierPressure:
    """The pressure a step is sized from. A rise only the onset window shows (the 1m window not yet at
    target) is one scrape interval of evidence: it buys the smallest step the band allows, sized as if the
    pressure were just above 1 + hysteresis, so a noisy interval costs at most that; once the 1m window
    agrees, the step is sized from the onset pressure."""
    up = 1 + tick.scaling.hysteresis
    pressure = judged.pressure
    if confirmed or pressure is None or pressure <= up:
        return judged
    scale = up / pressure
    return replace(judged, components=tuple(replace(c, pressure=c.pressure * scale) for c in judged.components))


def _over(window: str) -> str:
    """Which window set a pressure, when it is not the 1m rate window."""
    return f" over {window}" if window and window != RATE_WINDOW else ""


def _number(value: float | None) -> str:
    """Short and readable: 3 significant digits, whole numbers from 1000 on."""
    if value is None:
        return "unknown"
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}"
