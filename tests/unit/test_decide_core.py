"""Issue #13's decision core: sized steps, the onset window beside the 1m one, partial metrics, narrowing
in step with the evidence, and the CPU-starved app that must not blame the read replicas."""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest

from devharness.twin import Load, TwinModel
from scaledapp import api, windows
from scaledapp.clock import format_time
from scaledapp.decide import Decision, Tick, decide
from scaledapp.observation import Snapshot
from scaledapp.sizes import Sizes, Step
from scaledapp.tiers import app, cache, db_read, db_write, onset_queries
from scaledapp.tiers.base import ONSET_WINDOW, Scope, sized_factor, sized_replicas
from tests.unit.test_decide import CALM, MI, NOW, Overrides, ago, condition, make_sizes, make_spec
from tests.unit.test_decide_sequences import Loop


def both(slow: Overrides | None = None, fast: Overrides | None = None, now: datetime = NOW) -> Snapshot:
    """A snapshot with the 1m window (CALM + `slow`) and the onset window (the 1m values + `fast`)."""
    signals = {tier: dict(values) for tier, values in CALM.items()}
    for tier, values in (slow or {}).items():
        signals[tier].update(values)  # type: ignore[index]
    onset = {tier: {**values, **(fast or {}).get(tier, {})} for tier, values in signals.items()}
    for window in (signals, onset):  # the database tiers query the app's CPU too (over the same window)
        for tier in ("db-read", "db-write"):
            window[tier]["app_cpu_utilization"] = window["app"]["cpu_utilization"]  # type: ignore[index]
    return Snapshot(time=now, signals=signals, onset=onset)


def run(snapshot: Snapshot, sizes: Sizes | None = None, state: api.ScalerState | None = None,
        spec: api.ScaledAppSpec | None = None) -> Decision:
    return decide(Tick(spec or make_spec(), snapshot, sizes or make_sizes(), state or api.ScalerState(), None, NOW))


# ---------------------------------------------------------------------------------------------- sized steps


@pytest.mark.parametrize(
    ("current", "pressure", "steps", "after"),
    [
        (2, 1.3, {}, 3),  # ceil(2.6)
        (2, 1.6, {}, 4),  # ceil(3.2)
        (2, 9.0, {}, 4),  # at most doubling: a backlog is not all demand
        (4, 9.0, {}, 8),
        (8, 9.0, {}, 12),  # at most maxReplicas (4) more
        (8, 9.0, {"maxReplicas": 10}, 16),
        (0, 5.0, {}, 1),  # no replicas: no ratio to apply, one step of `replicas`
        (2, 1.2, {"replicas": 3}, 5),  # at least `replicas` more
    ],
)
def test_a_horizontal_step_follows_the_ratio_rule_within_the_step_limits(
    current: int, pressure: float, steps: dict[str, int], after: int
) -> None:
    assert sized_replicas(current, pressure, api.Steps.model_validate(steps)) == after


def test_a_sized_step_stops_at_the_tiers_max() -> None:
    decision = run(both({"app": {"cpu_utilization": 0.99}}), make_sizes(app=9))
    assert decision.action is not None and (decision.action.from_, decision.action.to) == ("9", "10")


def test_vertical_steps_multiply_by_the_pressure_up_to_the_factor_limit() -> None:
    assert sized_factor(1.6, 2.0) == 1.6
    assert sized_factor(4.0, 2.0) == 2.0  # the spec's factor is the limit
    assert sized_factor(1.12, 2.0) == 1.25  # not a step too small to tell from noise
    spec, sizes = make_spec(), make_sizes()
    evicting = cache.TIER.pressure({**CALM["cache"], "evictions_per_second": 1.0, "hit_ratio": 0.7}, spec, sizes)
    step = cache.TIER.widen(spec, sizes, evicting)  # hit ratio 0.7 vs 0.8: pressure 1.5
    assert isinstance(step, Step) and abs(step.after["cache"] - 96 * MI) <= MI
    locks = db_write.TIER.pressure({**CALM["db-write"], "lock_waits": 20.0}, spec, sizes)  # pressure 4
    step = db_write.TIER.widen(spec, sizes, locks)
    assert isinstance(step, Step) and step.to_text == "cpu=1, memory=1Gi"


def test_step_replicas_above_max_replicas_is_refused() -> None:
    with pytest.raises(ValueError, match="replicas must be less than or equal to maxReplicas"):
        api.Steps.model_validate({"replicas": 5, "maxReplicas": 4})


# ---------------------------------------------------------------------------------------------- the onset window


def test_onset_queries_are_the_window_dependent_ones_over_30s() -> None:
    queries = onset_queries(api.ScaledAppSpec(), Scope("ns", "demo"))
    assert ONSET_WINDOW == "30s"
    assert "[30s]" in queries["app"][app.CPU_UTILIZATION]
    assert db_read.LAG_SECONDS not in queries["db-read"]  # a gauge reads the same in both windows
    assert all("[30s]" in q for tier in queries.values() for q in tier.values())


def test_a_sharp_rise_widens_on_the_onset_window_sized_from_it() -> None:
    # The 1m window has only begun to see it (CPU at target), the 30 s window sees all of it.
    decision = run(both({"app": {"cpu_utilization": 0.72}}, {"app": {"cpu_utilization": 0.99}}))
    assert decision.reason == "Widened" and decision.bottleneck == "app"
    assert decision.action.to == "3"  # ceil(2 x 0.99 / 0.7)
    evidence = decision.pressures[1]
    assert (evidence.signal, evidence.value, evidence.window) == ("cpu_utilization", 0.99, "30s")
    assert decision.message.endswith("(pressure 1.41 over 30s)")
    assert {e.window for e in decision.pressures} == {"30s"}  # every tier with onset signals is judged on them
    assert {e.window for e in run(both({"app": {"cpu_utilization": 0.99}})).pressures} == {"30s"}
    assert {e.window for e in run(Snapshot(NOW, both().signals)).pressures} == {"1m"}  # no onset signals


def test_a_rise_only_the_onset_window_sees_yet_widens_at_once() -> None:
    # Reads ramping up: the last two scrapes (the onset window) put the app's CPU at 0.81, the 1m window,
    # three intervals long, still at 0.60 (below target). Two scrapes are the evidence, as for the HPA's
    # one-interval CPU rate: the app widens now, not a tick later.
    decision = run(both({"app": {"cpu_utilization": 0.60}}, {"app": {"cpu_utilization": 0.813}}))
    assert decision.reason == "Widened" and decision.bottleneck == "app"
    assert (decision.action.from_, decision.action.to) == ("2", "3")
    assert decision.message.endswith("(pressure 1.16 over 30s)")
    # The same for a vertical tier: write latency over the last two scrapes is what the primary serves now.
    decision = run(both({"db-write": {"write_seconds": 0.088}}, {"db-write": {"write_seconds": 0.158}}))
    assert decision.reason == "Widened" and decision.bottleneck == "db-write"


def test_one_interval_of_evidence_buys_the_smallest_step_and_the_1m_window_a_sized_one() -> None:
    # The onset window at pressure 1.4 on 4 pods. With the 1m window below target (one interval of evidence,
    # which may be a noisy one) the step is the smallest the band allows: ceil(4 x 1.1) = 5. With the 1m
    # window at target too, it is sized from the onset pressure: ceil(4 x 1.4) = 6.
    onset_only = run(both({"app": {"cpu_utilization": 0.60}}, {"app": {"cpu_utilization": 0.98}}), make_sizes(app=4))
    assert onset_only.reason == "Widened" and onset_only.action.to == "5"
    assert onset_only.action.pressure == pytest.approx(1.4)  # the record keeps the pressure seen
    confirmed = run(both({"app": {"cpu_utilization": 0.72}}, {"app": {"cpu_utilization": 0.98}}), make_sizes(app=4))
    assert confirmed.reason == "Widened" and confirmed.action.to == "6"
    # A vertical tier: the smallest factor (x1.25: 500m -> 630m, rounded up) against the pressure's (x1.58: 790m).
    write = {"db-write": {"write_seconds": 0.158}}
    assert run(both({"db-write": {"write_seconds": 0.088}}, write)).action.to.startswith("cpu=630m")
    assert run(both({"db-write": {"write_seconds": 0.1}}, write)).action.to.startswith("cpu=790m")


@pytest.mark.parametrize("onset_cpu", [0.75, 0.77])  # pressure 1.07 and 1.10: inside the hysteresis band
def test_an_onset_window_inside_the_hysteresis_band_is_no_rise(onset_cpu: float) -> None:
    decision = run(both({"app": {"cpu_utilization": 0.5}}, {"app": {"cpu_utilization": onset_cpu}}))
    assert decision.action is None and decision.bottleneck is None


def test_a_backlog_draining_after_a_step_does_not_widen_again() -> None:
    # The 1m window still holds the backlog from before the step; the 30 s window has drained.
    drained = both({"app": {"cpu_utilization": 0.9, "in_flight_per_pod": 200.0}},
                   {"app": {"cpu_utilization": 0.6, "in_flight_per_pod": 2.0}})
    decision = run(drained, make_sizes(app=4))
    assert decision.action is None and decision.reason == "WithinTarget"


def test_calm_needs_both_windows_and_its_peaks_come_from_the_onset_window() -> None:
    calm_now_busy_before = both({"app": {"cpu_utilization": 0.66}}, {"app": {"cpu_utilization": 0.3}})
    decision = run(calm_now_busy_before, make_sizes(app=4), api.ScalerState(calm_since=ago(400)))
    assert decision.reason == "WithinTarget" and decision.state.calm_since is None
    quiet = both({"app": {"cpu_utilization": 0.3}}, {"app": {"cpu_utilization": 0.5}})
    decision = run(quiet, make_sizes(app=4), api.ScalerState(calm_since=ago(10)))
    assert decision.state.calm_peak["app"] == pytest.approx(0.5 / 0.7, abs=1e-3)
    # Calm in both windows, the 1m one still holding the busier minute before: the onset windows of the
    # ticks cover every scrape interval, so the peak is theirs and that minute does not hold narrowing back.
    trailing = both({"app": {"cpu_utilization": 0.55}}, {"app": {"cpu_utilization": 0.3}})
    decision = run(trailing, make_sizes(app=4), api.ScalerState(calm_since=ago(10)))
    assert decision.state.calm_peak["app"] == pytest.approx(0.3 / 0.7, abs=1e-3)
    # Ticks further apart than a scrape leave gaps between onset windows: the higher of both windows.
    decision = run(trailing, make_sizes(app=4), api.ScalerState(calm_since=ago(10)),
                   spec=make_spec(intervalSeconds=30, queryTimeoutSeconds=5))
    assert decision.state.calm_peak["app"] == pytest.approx(0.55 / 0.7, abs=1e-3)


def test_the_twin_reports_the_onset_window_and_it_leads_the_1m_one() -> None:
    model = TwinModel(api.ScaledAppSpec(), seed=1)
    for _ in range(120):
        model.step(Load(150, 15, 1))
    for _ in range(20):
        model.step(Load(300, 30, 1))
    snapshot = model.snapshot()
    slow, fast = snapshot.tier("app"), snapshot.onset_tier("app")
    assert fast is not None
    assert fast[app.REQUESTS_PER_SECOND] > slow[app.REQUESTS_PER_SECOND]  # type: ignore[operator]
    assert fast[app.CPU_UTILIZATION] > slow[app.CPU_UTILIZATION]  # type: ignore[operator]


# ---------------------------------------------------------------------------------------------- partial metrics


def test_a_tier_with_known_signals_widens_while_another_is_blind() -> None:
    snap = both({"app": {"cpu_utilization": 0.99}, "db-read": {"lag_seconds": None, "replica_saturation": None}})
    decision = run(snap)
    assert decision.reason == "Widened" and decision.action.tier == "app"
    metrics = condition(decision, "MetricsAvailable")
    assert (metrics.status, metrics.reason) == ("False", "SignalsMissing")
    assert metrics.message.startswith("blind: db-read (") and "db-read.lag_seconds" in metrics.message
    assert "judged: cache, app, workers, db-write" in metrics.message
    assert next(e for e in decision.pressures if e.tier == "db-read").pressure is None


def test_nothing_narrows_while_a_tier_is_blind() -> None:
    state = api.ScalerState(calm_since=ago(900), calm_peak={"app": 0.2}, calm_peak_since=ago(100))
    decision = run(both({"workers": {"queue_depth": None}}), make_sizes(app=6), state)
    assert decision.action is None and decision.reason == "WithinTarget"
    assert decision.message == "no seen tier above target; nothing narrows while workers is blind"
    assert decision.state.calm_since is None and decision.state.calm_peak == {}


def test_every_tier_blind_holds() -> None:
    blind: Overrides = {tier: dict.fromkeys(values) for tier, values in CALM.items()}
    decision = run(both(blind), make_sizes(app=6), api.ScalerState(calm_since=ago(900)))
    assert decision.reason == "MetricsUnavailable" and decision.action is None


# ---------------------------------------------------------------------------------------------- narrowing


def test_after_a_spike_the_tier_comes_back_in_one_step_to_what_the_peak_needs() -> None:
    # 8 app pods after a spike; the load is back to what 2.4 pods carry at target (pressure 0.3 on 8).
    def signals(sizes: Sizes, _: float) -> Overrides:
        return {"app": {"cpu_utilization": 0.7 * 2.4 / sizes["app"]}}

    loop = Loop(make_spec(), make_sizes(app=8))
    loop.run(signals, 900)
    narrows = [(t, a.from_, a.to) for t, a in loop.actions()]
    # 300 s calm, then one step: the fewest pods that keep the peak below 0.9 (2.4 / 0.9 -> 3), at most
    # maxReplicas (4) at a time; then the last one after a cooldown.
    assert narrows == [(300, "8", "4"), (360, "4", "3")]
    assert loop.sizes["app"] == 3
    assert 0.7 * 2.4 / 3 / 0.7 < 0.9  # never below what the peak needs


# ---------------------------------------------------------------------------------------------- the CPU-starved app


def test_a_cpu_starved_app_is_not_blamed_on_the_read_replicas() -> None:
    # The app's event loop starves: its client-side pool-wait p95 jumps within seconds, while its 1m CPU
    # rate still lags under the CPU-bound line (0.7 x 1.1). Over 30 s its CPU is plainly pinned. The
    # inflated timings must not send a replica; the app is widened.
    starving = both(
        {"app": {"cpu_utilization": 0.72}, "db-read": {"pool_wait_seconds": 0.08, "read_seconds": 0.09}},
        {"app": {"cpu_utilization": 0.98}, "db-read": {"pool_wait_seconds": 0.2, "read_seconds": 0.3}},
    )
    decision = run(starving)
    assert decision.bottleneck == "app" and decision.action.tier == "app"
    read = next(e for e in decision.pressures if e.tier == "db-read")
    assert read.signal != "pool_wait_seconds"


# ---------------------------------------------------------------------------------------------- verify-after-act


def test_the_early_verdict_waits_for_evidence_from_after_the_rollout() -> None:
    # A step 2 -> 4 was taken; the scrape a tick sees can predate the new pods, showing the tier as
    # saturated as before while serving more (the 1m window filled with load). No second step on that.
    step = api.Action(time=ago(30), tier="app", kind="widen", from_="2", to="4", applied=True, pressure=1.43,
                      throughput=300.0, verdict="pending")
    pinned = both({"app": {"cpu_utilization": 1.0, "requests_per_second": 400.0}})
    spec = make_spec(cooldownSeconds=300)
    state = api.ScalerState(last_action_time=ago(30))
    decision = decide(Tick(spec, pinned, make_sizes(app=4), state, step, NOW, settling={"app"}))
    assert decision.action is None and decision.state.rolled_out_since is None
    decision = decide(Tick(spec, pinned, make_sizes(app=4), state, step, NOW))
    assert decision.action is None and decision.state.rolled_out_since is not None  # seen rolled out now
    later = NOW + timedelta(seconds=45)
    seen = state.model_copy(update={"rolled_out_since": decision.state.rolled_out_since})
    decision = decide(Tick(spec, both({"app": {"cpu_utilization": 1.0, "requests_per_second": 400.0}}, now=later),
                           make_sizes(app=4), seen, step, later))
    assert decision.action is not None and decision.action.to == "6"  # ceil(4 x 1.43)
    assert decision.verified is not None and decision.verified.verdict == "effective"


def test_narrowing_waits_out_the_last_window_not_two() -> None:
    # The peaks are kept in quarters of the scale-down window: a busy minute stops holding narrowing back
    # once a window (plus at most a quarter) has passed, not up to two windows later.
    state, now = api.ScalerState(calm_since=format_time(NOW)), NOW
    spec = make_spec()
    pressures = [0.8] * 4 + [0.2] * 40  # busy (but calm) for a minute, then quiet; a tick every 15 s
    held_until = None
    for i, pressure in enumerate(pressures):
        tick = Tick(spec, None, make_sizes(), state, None, now)
        state = windows.track(tick, {"app": pressure}, [], True)
        if (windows.peak_of(state, "app") or 0) > 0.5:
            held_until = i * 15
        now += timedelta(seconds=15)
    assert held_until is not None and 300 <= held_until <= 300 + 75 + 15


def test_a_tier_on_a_rising_edge_is_not_narrowed() -> None:
    state = api.ScalerState(calm_since=ago(900), calm_peak={"app": 0.28}, calm_peak_since=ago(10))
    rising = both({"app": {"cpu_utilization": 0.2}}, {"app": {"cpu_utilization": 0.25}})
    decision = run(rising, make_sizes(app=6), state)
    assert decision.action is None and decision.reason == "AtMinimum"
    flat = both({"app": {"cpu_utilization": 0.2}}, {"app": {"cpu_utilization": 0.2}})
    decision = run(flat, make_sizes(app=6), state)
    assert decision.action is not None and (decision.action.kind, decision.action.to) == ("narrow", "2")


def test_a_tier_with_no_load_and_a_min_of_zero_narrows_to_zero() -> None:
    spec = api.ScaledAppSpec.model_validate({"database": {"readReplicas": {"min": 0, "max": 5}}})
    step = db_read.TIER.narrow_for(spec, make_sizes(db_read=2), 0.0, 0.9)
    assert step is not None and step.after["db-read"] == 0
    step = db_read.TIER.narrow_for(spec, make_sizes(db_read=2), 0.2, 0.9)
    assert step is not None and step.after["db-read"] == 1  # 0.2 x 2 / 1 = 0.4 stays calm


def test_an_onset_window_short_of_a_scrape_does_not_hide_a_hot_tier() -> None:
    # A 30 s rate that lacks its second scrape is empty, and zero_if_reporting turns "reads per second"
    # into 0: the onset window would then skip the read timings. The 1m judgement stands.
    hot_reads = {"db-read": {"read_seconds": 0.2}}
    decision = run(both(hot_reads, {"db-read": {"reads_per_second": 0.0, "read_seconds": None}}))
    assert decision.bottleneck == "db-read" and decision.action is not None
    read = next(e for e in decision.pressures if e.tier == "db-read")
    assert (read.signal, read.window) == ("read_seconds", "1m")


def test_a_tier_seen_at_its_ceiling_is_at_ceiling_while_another_is_blind() -> None:
    decision = run(both({"app": {"cpu_utilization": 0.99}, "workers": {"queue_depth": None}}),
                   make_sizes(app=10))
    assert decision.action is None and decision.reason == "MaxReplicas"
    assert condition(decision, "AtCeiling").status == "True"
    assert condition(decision, "MetricsAvailable").status == "False"


# ---------------------------------------------------------------------------------------------- fast onset over ticks


def test_a_ramp_is_widened_on_the_first_tick_its_last_two_scrapes_show_it() -> None:
    # Demand (cores, at the app's CPU limit of one per pod) ramps from 0.8 to 2.4 over 30 s from t=30 and
    # stays there. Each tick sees the onset window as the last interval's mean and the 1m window as the mean
    # of the last three (what rate() averages over 30 s and 1m of scrapes 15 s apart). The first step
    # comes on the tick whose onset window is above 1 + hysteresis, while the 1m window is still below
    # target; then, with the step seen, the app is sized for the demand and nothing flaps.
    def demand(t: float) -> float:
        return 0.8 + 1.6 * min(1.0, max(0.0, (t - 30) / 30))

    def mean(start: float, end: float) -> float:
        return sum(demand(start + i) for i in range(int(end - start))) / (end - start)

    spec, sizes = make_spec(), make_sizes()
    elapsed, actions = 0.0, []
    state, last = api.ScalerState(), None
    first_step: tuple[float, float, float] | None = None
    while elapsed < 900:
        pods = sizes["app"]
        fast, slow = mean(elapsed - 15, elapsed) / pods, mean(elapsed - 45, elapsed) / pods
        snap = both({"app": {"cpu_utilization": min(1.0, slow)}}, {"app": {"cpu_utilization": min(1.0, fast)}},
                    now=NOW + timedelta(seconds=elapsed))
        decision = decide(Tick(spec, snap, sizes, state, last, NOW + timedelta(seconds=elapsed)))
        state, last = decision.state, decision.last_action
        if decision.action is not None:
            actions.append((elapsed, decision.action.kind, decision.action.to))
            first_step = first_step or (elapsed, fast / 0.7, slow / 0.7)
            sizes = decision.desired
        elapsed += 15
    assert first_step is not None
    when, onset_pressure, slow_pressure = first_step
    assert onset_pressure > 1.1 and slow_pressure < 1.0  # the 1m window alone would have waited a tick
    assert when == 60
    assert [kind for _, kind, _ in actions] == ["widen"] * len(actions)  # no reversal
    assert 2.4 / sizes["app"] <= 0.7 * 1.1  # sized for the demand: not hot any more


def test_after_a_spike_the_1m_windows_trailing_minute_does_not_hold_narrowing_back() -> None:
    # 6 app pods after a spike that ended at t=0: demand falls from 4.2 cores to 1.2. The onset window (the
    # last scrape interval) sees the drop at once, the 1m window (three intervals) 45 s later. Both are calm
    # from t=30 (0.45 / 0.7 < 0.9 on 6 pods); once the calm window is over, the app comes back to 2 pods in
    # one step: the peak is the onset windows', not the 1m window's mean of the spike's tail (which would
    # have kept 3 pods).
    def demand(t: float) -> float:
        return 4.2 if t < 0 else 1.2

    def mean(start: float, end: float) -> float:
        return sum(demand(start + i) for i in range(int(end - start))) / (end - start)

    spec, sizes = make_spec(), make_sizes(app=6)
    state, last, narrows = api.ScalerState(), None, []
    for elapsed in range(0, 600, 15):
        pods = sizes["app"]
        fast, slow = mean(elapsed - 15, elapsed) / pods, mean(elapsed - 45, elapsed) / pods
        now = NOW + timedelta(seconds=elapsed)
        snap = both({"app": {"cpu_utilization": slow}}, {"app": {"cpu_utilization": fast}}, now=now)
        decision = decide(Tick(spec, snap, sizes, state, last, now))
        state, last = decision.state, decision.last_action
        if decision.action is not None:
            narrows.append((elapsed, decision.action.kind, decision.action.to))
            sizes = decision.desired
    assert narrows[0][1:] == ("narrow", "2")
    assert narrows[0][0] <= 30 + spec.scaling.stabilization.scale_down_seconds + 15


def test_a_noisy_onset_window_costs_at_most_the_smallest_step_and_never_flaps() -> None:
    # Demand steady at pressure 0.95 on 2 pods. The onset window (one scrape interval) is noisy, +-25 %;
    # the 1m window, three intervals, +-8 %. A noisy interval above 1 + hysteresis is a rise only the onset
    # window shows: it buys the smallest step (2 -> 3), and after it nothing is hot or calm enough to move.
    rng = random.Random(5)
    spec, sizes = make_spec(), make_sizes()
    state, last, actions = api.ScalerState(), None, []
    for elapsed in range(0, 2 * 3600, 15):
        load = 0.7 * 0.95 * 2 / sizes["app"]
        fast, slow = load * rng.uniform(0.75, 1.25), load * rng.uniform(0.92, 1.08)
        now = NOW + timedelta(seconds=elapsed)
        snap = both({"app": {"cpu_utilization": slow}}, {"app": {"cpu_utilization": fast}}, now=now)
        decision = decide(Tick(spec, snap, sizes, state, last, now))
        state, last = decision.state, decision.last_action
        if decision.action is not None:
            actions.append((decision.action.kind, decision.action.from_, decision.action.to))
            sizes = decision.desired
    assert actions == [("widen", "2", "3")]
