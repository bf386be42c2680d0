"""The decision, pure: pressures + scaler memory + spec -> what to do now, and why.

One call per tick. Deterministic and cheap (no I/O, no clock: `now` is an argument), so the shell, the
simulated twin and the benchmark all call the same function.

The rules, in order:
1. Mode Off: nothing is evaluated. Unknown data (None/NaN) in any needed signal: hold; missing data
   is never zero.
2. Verify-after-act: once the cooldown after a widening step is over, compare that tier's pressure
   now with its pressure when the step was decided, and its throughput (a saturated tier's pressure
   can stay pinned after a step that helped). If neither improved within one more rate window
   (a backlog built up before the step takes that long to leave the signals), the step was
   ineffective: the tier is not widened again until the back-off expires; the next candidate is
   considered instead. Until the verdict, no other step is taken. One exception: a rolled-out step
   whose tier serves clearly more while its pressure has not fallen (still saturated, see
   EARLY_EFFECTIVE_RISE) is judged effective at once, and that tier, if still the bottleneck, may take
   its next step within the cooldown.
3. The bottleneck is the tier with the highest pressure above 1 + hysteresis; pressures within
   TIE_TOLERANCE of each other tie, and ties go to the cheaper rung (api.LADDER).
4. The bottleneck is widened by one step once it has been hot for the scale-up window and no
   cooldown runs. If it cannot be widened (at its max, a hard ceiling, or a guard such as replica
   lag) the scaler holds and says so: it never widens a different tier instead.
5. When every tier is calm (below 1 - hysteresis) for the scale-down window, one tier is narrowed by
   one step, in reverse ladder order, and only if its predicted pressure afterwards stays calm (so a
   narrow step can never invite the next widening step: no oscillation).
6. Recommend mode decides the same but applies nothing (applied=False); a pause freezes everything.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from scaledapp import api
from scaledapp.decide_support import (
    VERIFY_GRACE_SECONDS,
    Plan,
    conditions_for,
    peak_of,
    rank_hot,
    rescale_peaks,
    still_saturated_after_step,
    throughputs_of,
    track_calm_peaks,
    verify_last_action,
)
from scaledapp.policy import Blocked, Sizes, Snapshot, Step, TierName, enforce_bounds, format_time, seconds_since
from scaledapp.tiers import TierPressure, enabled_tiers, tier

HISTORY_LIMIT = 10


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
    reason: str = ""  # CamelCase: the Scaling condition's reason ("Widened", "Cooldown", ...)
    message: str = ""  # one line for the Event and the log

    @property
    def applied(self) -> bool:
        return self.step is not None


def decide(
    spec: api.ScaledAppSpec,
    snapshot: Snapshot | None,
    sizes: Sizes,
    state: api.ScalerState,
    last_action: api.Action | None,
    now: datetime,
    *,
    paused: bool = False,
    settling: Collection[TierName] = (),
) -> Decision:
    """Decide one tick. `snapshot` None means Prometheus could not be asked (hold); `sizes` are the
    workloads' current scaler-owned fields; `state` and `last_action` come from status; `settling`
    names tiers whose workload has not rolled out its last change yet (ready < desired, resize in
    progress): a step is judged only once it has taken effect."""
    mode = spec.scaling.mode
    if mode == api.ScalingMode.OFF:
        return Decision(
            bottleneck=None,
            pressures=[],
            action=None,
            step=None,
            desired=sizes,
            last_action=last_action,
            state=state,
            conditions=conditions_for(metrics=None, scaling=("False", "Off", "spec.scaling.mode is Off")),
            reason="Off",
            message="scaler is off: nothing evaluated",
        )
    plan = _plan(spec, snapshot, enforce_bounds(spec, sizes), state, last_action, now, frozenset(settling))
    if paused:
        message = f"paused by the {api.PAUSE_ANNOTATION} annotation"
        return Decision(
            bottleneck=plan.bottleneck,
            pressures=plan.pressures,
            action=None,
            step=None,
            desired=sizes,
            last_action=last_action,
            state=state,
            conditions=conditions_for(plan.metrics, ("False", "Paused", message), plan.ceiling),
            recommendation=plan.recommendation,
            reason="Paused",
            message=message,
        )
    auto = mode == api.ScalingMode.AUTO
    action = None
    step = None
    new_state = plan.state
    if plan.step is not None:
        action = api.Action(
            time=format_time(now),
            tier=plan.step.tier,
            kind="widen" if plan.step.kind == "widen" else "narrow",
            from_=plan.step.from_text,
            to=plan.step.to_text,
            reason=plan.message,
            applied=auto,
            pressure=plan.pressure_of(plan.step.tier),
            throughput=plan.throughputs.get(plan.step.tier),
            verdict="pending" if auto and plan.step.kind == "widen" else "n/a",
        )
        step = plan.step if auto else None
        # Recommend mode starts the cooldown too, so a standing recommendation is not re-issued every tick.
        new_state = new_state.model_copy(update={"last_action_time": format_time(now)})
        if auto and plan.narrow_ratio is not None:
            # The narrowed tier's peaks now stand for its smaller size, so the next narrow step builds on them.
            new_state = rescale_peaks(new_state, plan.step.tier, plan.narrow_ratio)
    reason, message, recommendation = plan.reason, plan.message, plan.recommendation
    if action is not None and not auto:
        reason = "Recommended"
        message = f"would {action.kind} {action.tier} {action.from_} -> {action.to} (Recommend mode): {plan.message}"
        recommendation = recommendation or message
    scaling_status = "True" if step is not None else "False"
    bounded = enforce_bounds(spec, sizes)
    return Decision(
        bottleneck=plan.bottleneck,
        pressures=plan.pressures,
        action=action,
        step=step,
        desired=(step.after if step else bounded) if auto else sizes,
        last_action=action or plan.last_action,
        state=new_state,
        conditions=conditions_for(plan.metrics, (scaling_status, reason, message), plan.ceiling),
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
    fields = {"bottleneck", "pressures", "last_action", "history", "recommendation", "scaler"}
    return status.model_dump(by_alias=True, mode="json", include=fields)


# ---------------------------------------------------------------------------------------------- the plan


def _plan(
    spec: api.ScaledAppSpec,
    snapshot: Snapshot | None,
    sizes: Sizes,
    state: api.ScalerState,
    last_action: api.Action | None,
    now: datetime,
    settling: frozenset[TierName],
) -> Plan:
    scaling = spec.scaling
    now_text = format_time(now)
    judged: dict[TierName, TierPressure] = {}
    if snapshot is not None:
        judged = {t.name: t.pressure(snapshot.tier(t.name), spec, sizes) for t in enabled_tiers(spec)}
    pressures = [j.evidence() for j in judged.values()]
    if snapshot is None or any(j.missing for j in judged.values()):
        unknown = [f"{j.tier}.{name}" for j in judged.values() for name in j.missing]
        metrics = (
            ("False", "PrometheusUnavailable", "Prometheus could not be queried; holding")
            if snapshot is None
            else ("False", "SignalsMissing", "unknown (never taken as zero): " + ", ".join(unknown))
        )
        # Unknown is not calm: the scale-down window starts over. Hot windows survive a scrape gap.
        return Plan(
            pressures=pressures,
            judged=judged,
            state=state.model_copy(update={"calm_since": None, **track_calm_peaks(state, {}, False, now, 0)}),
            last_action=last_action,
            metrics=metrics,
            reason="MetricsUnavailable",
            message=f"holding: {metrics[2]}",
        )

    known: dict[TierName, float] = {name: j.pressure for name, j in judged.items() if j.pressure is not None}
    throughputs = throughputs_of({t.name: snapshot.tier(t.name) for t in enabled_tiers(spec)})
    up, down = 1 + scaling.hysteresis, 1 - scaling.hysteresis
    hot = rank_hot({name: p for name, p in known.items() if p > up})
    all_calm = all(p < down for p in known.values())
    still_blocked = {
        name: until for name, until in state.ineffective_until.items() if (seconds_since(until, now) or 0) < 0
    }
    new_state = api.ScalerState(
        last_action_time=state.last_action_time,
        hot_since={name: state.hot_since.get(name) or now_text for name in hot},
        calm_since=(state.calm_since or now_text) if all_calm else None,
        **track_calm_peaks(state, known, all_calm, now, scaling.stabilization.scale_down_seconds),
        ineffective_until=still_blocked,
    )
    since_action = seconds_since(state.last_action_time, now)
    in_cooldown = since_action is not None and since_action < scaling.cooldown_seconds
    cooldown_note = f"cooldown: {scaling.cooldown_seconds - (since_action or 0):.0f}s left"
    # A widening step is judged only once it took effect (a new read replica bootstraps for minutes).
    # Until then the cooldown goes on, for at most the back-off period: pods that never become ready
    # did not help, and that is then the verdict.
    pending = last_action is not None and last_action.verdict == "pending" and last_action.tier in settling
    if pending and not in_cooldown and (since_action or 0) < scaling.cooldown_seconds + scaling.verify_backoff_seconds:
        in_cooldown = True
        cooldown_note = f"waiting for the last {last_action.tier if last_action else ''} step to roll out"

    verified = None
    continuing: TierName | None = None  # a tier whose step plainly helped: it may step again in cooldown
    if in_cooldown and not pending:
        early = still_saturated_after_step(last_action, known, throughputs)
        if early is not None:
            last_action = verified = early
            continuing = next(name for name in api.LADDER if name == early.tier)
    if not in_cooldown:
        before = last_action
        patient = (since_action or 0) < scaling.cooldown_seconds + VERIFY_GRACE_SECONDS
        last_action, ineffective = verify_last_action(last_action, known, patient, throughputs)
        verified = last_action if last_action is not before else None
        if ineffective is not None:
            until = format_time(now + timedelta(seconds=scaling.verify_backoff_seconds))
            new_state.ineffective_until[ineffective] = until
        elif last_action is not None and last_action.verdict == "pending" and last_action.kind == "widen":
            # Not judged yet (see VERIFY_GRACE_SECONDS): no second step before the first has shown its effect.
            in_cooldown = True
            cooldown_note = f"judging the last {last_action.tier} step: its pressure has not fallen yet"
    plan = Plan(
        pressures=pressures,
        judged=judged,
        state=new_state,
        last_action=last_action,
        metrics=("True", "SignalsKnown", f"{len(judged)} tiers observed"),
        verified=verified,
        throughputs=throughputs,
    )
    if hot:
        return _widen_plan(plan, spec, sizes, hot, in_cooldown, cooldown_note, now, continuing)
    return _narrow_plan(plan, spec, sizes, all_calm, in_cooldown, cooldown_note, now)


def _widen_plan(
    plan: Plan,
    spec: api.ScaledAppSpec,
    sizes: Sizes,
    hot: list[TierName],
    in_cooldown: bool,
    cooldown_note: str,
    now: datetime,
    continuing: TierName | None = None,
) -> Plan:
    state = plan.state
    candidates = [name for name in hot if name not in state.ineffective_until]
    skipped = [name for name in hot if name in state.ineffective_until]
    skipped_note = "".join(
        f"; {name} skipped: widening it did not lower its pressure (back-off until "
        f"{state.ineffective_until[name]})"
        for name in skipped
    )
    if not candidates:
        return replace(
            plan,
            bottleneck=hot[0],
            reason="IneffectiveBackoff",
            message=f"holding: {hot[0]} is hottest but not the chokepoint{skipped_note}",
        )
    bottleneck = candidates[0]
    judged = plan.judged[bottleneck]
    evidence = judged.evidence()
    why = (
        f"{bottleneck} is the bottleneck: {evidence.signal} {_number(evidence.value)} vs target "
        f"{_number(evidence.target)} (pressure {evidence.pressure:.2f}){skipped_note}"
    )
    plan = replace(plan, bottleneck=bottleneck)
    outcome = tier(bottleneck).widen(spec, sizes, judged)
    if isinstance(outcome, Blocked):
        recommendation = outcome.recommendation or f"Raise the max of the {bottleneck} tier or reduce its load."
        plan = replace(plan, recommendation=recommendation, ceiling=outcome if outcome.at_ceiling else None)
        return replace(plan, reason=outcome.reason, message=f"holding: {why}; {outcome.message}")
    if in_cooldown and bottleneck != continuing:
        return replace(plan, reason="Cooldown", message=f"holding: {why}; {cooldown_note}")
    hot_for = seconds_since(state.hot_since.get(bottleneck), now) or 0.0
    window = spec.scaling.stabilization.scale_up_seconds
    if hot_for < window:
        return replace(plan, reason="ScaleUpWindow", message=f"holding: {why}; hot for {hot_for:.0f}s of {window}s")
    return replace(plan, step=outcome, reason="Widened", message=why)


def _narrow_plan(
    plan: Plan,
    spec: api.ScaledAppSpec,
    sizes: Sizes,
    all_calm: bool,
    in_cooldown: bool,
    cooldown_note: str,
    now: datetime,
) -> Plan:
    down = 1 - spec.scaling.hysteresis
    if not all_calm:
        return replace(plan, reason="WithinTarget", message="no tier above target; not all calm enough to narrow")
    calm_for = seconds_since(plan.state.calm_since, now) or 0.0
    window = spec.scaling.stabilization.scale_down_seconds
    if calm_for < window:
        return replace(plan, reason="ScaleDownWindow", message=f"all tiers calm for {calm_for:.0f}s of {window}s")
    if in_cooldown:
        return replace(plan, reason="Cooldown", message=f"all tiers calm; {cooldown_note}")
    for t in reversed(enabled_tiers(spec)):
        step = t.narrow(spec, sizes)
        # The peak over the calm period, not this tick's (possibly low) reading: a narrow step made on a
        # quiet sample would be undone by the next busy one (the HPA's scale-down window does the same).
        peak = peak_of(plan.state, t.name)
        if step is None or peak is None:
            continue
        predicted = t.predicted_pressure(peak, step)
        if predicted < down:
            return replace(
                plan,
                step=step,
                narrow_ratio=predicted / peak if peak > 0 else 1.0,
                reason="Narrowed",
                message=f"all tiers calm for {calm_for:.0f}s; {t.name} peak pressure {peak:.2f} -> "
                f"{predicted:.2f} predicted after the step",
            )
    return replace(plan, reason="AtMinimum", message="all tiers calm; none can narrow without getting busy")


def _number(value: float | None) -> str:
    """Short and readable: 3 significant digits, whole numbers from 1000 on."""
    if value is None:
        return "unknown"
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}"
