"""The time windows the scaler keeps in status (api.ScalerState): how long each tier has been hot, how
long all have been calm, the calm-period pressure peaks, the back-offs, and the cooldown. Pure."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from scaledapp import api
from scaledapp.clock import format_time, seconds_since
from scaledapp.plan import Tick
from scaledapp.sizes import TierName

# The calm peaks are kept in this many buckets of the scale-down window (see track_calm_peaks).
CALM_PEAK_BUCKETS = 4


@dataclass(frozen=True)
class Cooldown:
    """Whether the scaler waits for its last step; `note` says why, `since_action` how long ago it was."""

    active: bool
    note: str
    since_action: float | None


def track(
    tick: Tick, known: dict[TierName, float], hot: list[TierName], all_calm: bool, blind: Collection[TierName] = ()
) -> api.ScalerState:
    """The windows after this tick's pressures: hot since, calm since, calm peaks, live back-offs. A blind
    tier (its signals unknown) keeps its hot window: unknown is neither hot nor calm."""
    state, now, now_text = tick.state, tick.now, format_time(tick.now)
    still_blocked = {
        name: until for name, until in state.ineffective_until.items() if (seconds_since(until, now) or 0) < 0
    }
    kept = {name: since for name, since in state.hot_since.items() if name in blind}
    return api.ScalerState(
        last_action_time=state.last_action_time,
        hot_since={**kept, **{name: state.hot_since.get(name) or now_text for name in hot}},
        calm_since=(state.calm_since or now_text) if all_calm else None,
        **track_calm_peaks(state, known, all_calm, now, tick.scaling.stabilization.scale_down_seconds),
        ineffective_until=still_blocked,
        rolled_out_since=rolled_out_since(tick),
    )


def rolled_out_since(tick: Tick) -> str | None:
    """When the pending widening step was first seen rolled out (None while it rolls out, or none is
    pending): the scrapes before that saw the tier without the step's pods."""
    last = tick.last_action
    if last is None or last.verdict != "pending" or last.kind != "widen" or last.tier in tick.settling:
        return None
    return tick.state.rolled_out_since or format_time(tick.now)


def forget_calm(state: api.ScalerState, now: datetime) -> api.ScalerState:
    """Unknown is not calm: the scale-down window starts over. Hot windows survive a scrape gap."""
    return state.model_copy(update={"calm_since": None, **track_calm_peaks(state, {}, False, now, 0)})


def cooldown(tick: Tick) -> Cooldown:
    """The cooldown after the last step. A widening step is judged only once it took effect (a new read
    replica bootstraps for minutes): until then the cooldown goes on, for at most the back-off period
    (pods that never become ready did not help, and that is then the verdict)."""
    scaling, last_action = tick.scaling, tick.last_action
    since_action = seconds_since(tick.state.last_action_time, tick.now)
    active = since_action is not None and since_action < scaling.cooldown_seconds
    note = f"cooldown: {scaling.cooldown_seconds - (since_action or 0):.0f}s left"
    limit = scaling.cooldown_seconds + scaling.verify_backoff_seconds
    if rolling_out(tick) and not active and (since_action or 0) < limit:
        active = True
        note = f"waiting for the last {last_action.tier if last_action else ''} step to roll out"
    return Cooldown(active, note, since_action)


def rolling_out(tick: Tick) -> bool:
    """The last step is a pending one whose tier is still rolling out."""
    last = tick.last_action
    return last is not None and last.verdict == "pending" and last.tier in tick.settling


def track_calm_peaks(
    state: api.ScalerState, pressures: dict[TierName, float], all_calm: bool, now: datetime, window: int
) -> dict[str, Any]:
    """ScalerState updates for the per-tier pressure peaks while all tiers are calm.

    A narrow step must keep the peak of the last scale-down window calm, not just this tick's reading
    (HPA's scale-down window keeps its highest recommendation for the same reason). CALM_PEAK_BUCKETS
    buckets of a fraction of the window each, plus the current one, approximate that sliding maximum in
    constant space: the peak used covers between one window and one window and a bucket, so a peak older
    than that no longer holds narrowing back (with two buckets of a whole window it could hold it for two).
    """
    if not all_calm:
        return {"calm_peak": {}, "calm_peak_buckets": {}, "calm_peak_previous": {}, "calm_peak_since": None}
    rounded = {name: round(p, 4) for name, p in pressures.items()}
    started = seconds_since(state.calm_peak_since, now)
    if not state.calm_since or started is None:  # a fresh calm period
        return {"calm_peak": rounded, "calm_peak_buckets": {}, "calm_peak_previous": {},
                "calm_peak_since": format_time(now)}
    if started >= window / CALM_PEAK_BUCKETS:  # the bucket is full: it joins the previous ones
        buckets = {
            name: [*state.calm_peak_buckets.get(name, []), peak][-CALM_PEAK_BUCKETS:]
            for name, peak in state.calm_peak.items()
        }
        # A peak an earlier version kept for the window before counts until the buckets cover a window.
        covered = bool(buckets) and all(len(values) >= CALM_PEAK_BUCKETS for values in buckets.values())
        return {"calm_peak": rounded, "calm_peak_buckets": buckets,
                "calm_peak_previous": {} if covered else dict(state.calm_peak_previous),
                "calm_peak_since": format_time(now)}
    peaks = {name: max(state.calm_peak.get(name, 0.0), p) for name, p in rounded.items()}
    return {
        "calm_peak": peaks,
        "calm_peak_buckets": {name: list(values) for name, values in state.calm_peak_buckets.items()},
        "calm_peak_previous": dict(state.calm_peak_previous),
        "calm_peak_since": state.calm_peak_since,
    }


def peak_of(state: api.ScalerState, tier: TierName) -> float | None:
    values = [*state.calm_peak_buckets.get(tier, []),
              *(v for v in (state.calm_peak.get(tier), state.calm_peak_previous.get(tier)) if v is not None)]
    return max(values) if values else None


def rescale_peaks(state: api.ScalerState, tier: TierName, ratio: float) -> api.ScalerState:
    """After narrowing `tier`, its recorded peaks would have been `ratio` times higher at the new size."""

    def scaled(peaks: dict[str, float]) -> dict[str, float]:
        return {name: round(v * ratio, 4) if name == tier else v for name, v in peaks.items()}

    buckets = {name: [round(v * ratio, 4) for v in values] if name == tier else values
               for name, values in state.calm_peak_buckets.items()}
    return state.model_copy(
        update={"calm_peak": scaled(state.calm_peak), "calm_peak_previous": scaled(state.calm_peak_previous),
                "calm_peak_buckets": buckets}
    )
