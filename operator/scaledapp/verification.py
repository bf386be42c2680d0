"""Verify-after-act: was the last widening step effective? Pure.

Once the cooldown after a widening step is over, its tier's pressure now is compared with its pressure
when the step was decided, and its throughput (each tier's `throughput_signal`) with the throughput then.
An ineffective step backs its tier off (`spec.scaling.verifyBackoffSeconds`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta

from scaledapp import api
from scaledapp.clock import format_time, seconds_since
from scaledapp.plan import Tick
from scaledapp.sizes import TierName
from scaledapp.tiers import known
from scaledapp.windows import Cooldown, rolling_out

# A widening step is effective when its tier's pressure fell by at least this fraction, or the tier is
# no longer hot; anything less is within the noise of a rate() window.
VERIFY_MIN_DROP = 0.05
# A step that has not lowered its tier's pressure by the end of the cooldown gets one more rate window
# (tiers.base.RATE_WINDOW, 1m) before it is called ineffective: queue-driven signals (in-flight requests,
# request and query latency) still carry the backlog that built up before the step, and a window that
# still holds it says nothing about the step. A step that was not enough, but helped, would otherwise be
# judged ineffective and its tier - still the bottleneck - locked out for the whole back-off.
VERIFY_GRACE_SECONDS = 60
# The throughput signal (TierModel.throughput_signal) counts the work a tier gets through. A saturated
# tier's pressure can stay pinned after a step that helped but was not enough: CPU at its limit, in-flight
# requests at what the clients' timeout lets queue up (that grows with the pods), a queue that still
# grows, only slower. More work served is then the evidence that the step widened the chokepoint; a wrong
# lane serves no more than before. (The cache has none: memory does not serve more lookups, it turns
# misses into hits, and its pressure falls when that works.)
#
# Before its cooldown is over, a rolled-out widening step is judged at once when the evidence is plain:
# its tier serves at least this much more work while its pressure has not fallen. The tier is then still
# saturated after a step that helped - demand is beyond what the step added - so, if it is still the
# bottleneck, its next step need not wait out the cooldown (HPA has no scale-up cooldown at all). A
# pressure that is falling waits for the cooldown: the backlog from before the step is still draining and
# the tier may settle below target without another step.
EARLY_EFFECTIVE_RISE = 0.15
# That early verdict is reached only on evidence from after the step's pods were ready: the onset window
# (tiers.ONSET_WINDOW, 30 s) of a scrape after the rollout was seen (verification._seen_rolled_out).
EARLY_EVIDENCE_SECONDS = 30


@dataclass(frozen=True)
class Verification:
    """The outcome of verify-after-act for this tick."""

    last_action: api.Action | None  # status.lastAction with its verdict, if one was reached
    verified: api.Action | None  # that action, when its verdict was reached this tick
    continuing: TierName | None  # a tier whose step plainly helped: it may step again in its cooldown
    backoff: dict[str, str]  # tier -> until, for a step found ineffective
    cooldown: Cooldown  # the cooldown, extended while a pending step is not judged yet


def verify(
    tick: Tick, known: dict[TierName, float], throughputs: dict[TierName, float], wait: Cooldown
) -> Verification:
    """Judge the last step (see the module doc); `wait` is the cooldown this tick started with."""
    last_action = tick.last_action
    if wait.active:
        early = None
        if not rolling_out(tick) and _seen_rolled_out(tick):
            early = still_saturated_after_step(last_action, known, throughputs)
        if early is None:
            return Verification(last_action, None, None, {}, wait)
        return Verification(early, early, _tier(early), {}, wait)
    scaling = tick.scaling
    patient = (wait.since_action or 0) < scaling.cooldown_seconds + VERIFY_GRACE_SECONDS
    judged, ineffective = verify_last_action(last_action, known, patient, throughputs)
    verified = judged if judged is not last_action else None
    if ineffective is not None:
        until = format_time(tick.now + timedelta(seconds=scaling.verify_backoff_seconds))
        return Verification(judged, verified, None, {ineffective: until}, wait)
    if judged is not None and judged.verdict == "pending" and judged.kind == "widen":
        # Not judged yet (see VERIFY_GRACE_SECONDS): no second step before the first has shown its effect.
        note = f"judging the last {judged.tier} step: its pressure has not fallen yet"
        wait = replace(wait, active=True, note=note)
    return Verification(judged, verified, None, {}, wait)


def _seen_rolled_out(tick: Tick) -> bool:
    """The step's tier has been seen rolled out for EARLY_EVIDENCE_SECONDS plus a tick: the signals now
    come from scrapes after its pods were ready. (The scrape a tick sees can be older than the rollout,
    and a window that still holds the time before it shows the tier as it was before the step: saturated,
    with the backlog the step is there to drain.)"""
    since = seconds_since(tick.state.rolled_out_since, tick.now)
    return since is not None and since >= EARLY_EVIDENCE_SECONDS + tick.scaling.interval_seconds


def _tier(action: api.Action) -> TierName | None:
    return known(action.tier)


def verify_last_action(
    last_action: api.Action | None,
    pressures: dict[TierName, float],
    patient: bool = False,
    throughputs: dict[TierName, float] | None = None,
) -> tuple[api.Action | None, TierName | None]:
    """Judge a pending widening step once its cooldown is over: (the action with its verdict, the tier
    to back off from if the step was ineffective). Effective: the tier's pressure fell, or its
    throughput rose. `patient`: still within VERIFY_GRACE_SECONDS, so a step that has shown neither
    yet stays pending instead of ineffective."""
    if last_action is None or last_action.verdict != "pending" or last_action.kind != "widen":
        return last_action, None
    tier = _tier(last_action)
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
    tier = _tier(last_action)
    if tier is None:
        return None
    before, now = last_action.pressure, pressures.get(tier)
    served_before, served_now = last_action.throughput, throughputs.get(tier)
    if before is None or now is None or served_before is None or served_now is None or served_before <= 0:
        return None
    rose = served_now >= served_before * (1 + EARLY_EFFECTIVE_RISE)
    return replace_verdict(last_action, "effective") if rose and now > before * (1 - VERIFY_MIN_DROP) else None


def replace_verdict(action: api.Action, verdict: str) -> api.Action:
    return action.model_copy(update={"verdict": verdict})
