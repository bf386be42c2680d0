"""decide() over sequences of ticks: verify-after-act, windows, noise, restarts.

A tiny closed loop: signals are functions of the current sizes (a crude twin), and between ticks the
scaler's memory goes through JSON exactly as it does through the API server's status.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from datetime import timedelta

from scaledapp import api, tiers
from scaledapp.decide import Decision, Tick, decide, record
from scaledapp.sizes import Sizes
from scaledapp.tiers.base import Scope
from tests.unit.test_decide import NOW, Overrides, make_sizes, make_spec, snapshot

Signals = Callable[[Sizes, float], Overrides]  # (sizes, seconds since start) -> signal overrides


class Loop:
    """The shell, minus I/O: observe, decide, apply, persist status as JSON."""

    def __init__(self, spec: api.ScaledAppSpec, sizes: Sizes, interval: float = 15.0) -> None:
        self.spec, self.sizes, self.interval = spec, sizes, interval
        self.elapsed = 0.0
        self.status: dict[str, object] = {}
        self.decisions: list[tuple[float, Decision]] = []

    def tick(self, signals: Signals) -> Decision:
        now = NOW + timedelta(seconds=self.elapsed)
        status = api.ScaledAppStatus.model_validate(self.status)
        decision = decide(Tick(self.spec, snapshot(signals(self.sizes, self.elapsed), now=now), self.sizes,
                          status.scaler, status.last_action, now))  # fmt: skip
        status.history = record(status.history, decision, status.last_action)
        status.scaler, status.last_action = decision.state, decision.last_action
        self.status = status.model_dump(by_alias=True, mode="json", exclude_none=True)
        self.sizes = decision.desired
        self.decisions.append((self.elapsed, decision))
        self.elapsed += self.interval
        return decision

    def run(self, signals: Signals, seconds: float) -> None:
        end = self.elapsed + seconds
        while self.elapsed < end:
            self.tick(signals)

    def actions(self) -> list[tuple[float, api.Action]]:
        return [(t, d.action) for t, d in self.decisions if d.action is not None]


def test_an_ineffective_step_is_not_repeated_and_the_next_candidate_is_tried() -> None:
    # App CPU stays high whatever the replica count (it is burning CPU on retries against slow reads);
    # read latency falls as replicas are added: db-read is the real chokepoint.
    def signals(sizes: Sizes, _: float) -> Overrides:
        return {"app": {"cpu_utilization": 1.05}, "db-read": {"read_seconds": 0.065 / sizes["db-read"]}}

    loop = Loop(make_spec(), make_sizes())
    # The verdict comes after the cooldown (60 s) and one more rate window (60 s): at t=120; the back-off
    # is 600 s from there.
    loop.run(signals, 660)
    actions = [(t, a.kind, a.tier, a.to) for t, a in loop.actions()]
    assert actions == [(0, "widen", "app", "3"), (120, "widen", "db-read", "2")]
    assert loop.sizes["app"] == 3 and loop.sizes["db-read"] == 2
    history = api.ScaledAppStatus.model_validate(loop.status).history
    assert [(a.tier, a.verdict) for a in history] == [("app", "ineffective"), ("db-read", "effective")]
    assert {d.reason for t, d in loop.decisions if 60 <= t < 120} == {"Cooldown"}
    assert {d.reason for t, d in loop.decisions if t > 120} == {"IneffectiveBackoff"}
    # Once the back-off expires the hot tier may be tried again (and judged again).
    loop.run(signals, 75)
    assert loop.actions()[-1][1].tier == "app"


def test_an_effective_step_is_recorded_and_not_repeated_needlessly() -> None:
    def signals(sizes: Sizes, _: float) -> Overrides:  # 1.5 x target on 2 pods: 3 pods bring it to 1.0
        return {"app": {"cpu_utilization": 0.7 * 1.5 * 2 / sizes["app"]}}

    loop = Loop(make_spec(), make_sizes())
    loop.run(signals, 900)
    assert [(a.tier, a.to) for _, a in loop.actions()] == [("app", "3")]
    assert api.ScaledAppStatus.model_validate(loop.status).history[-1].verdict == "effective"


def test_scale_down_only_after_the_window_one_step_per_cooldown_in_reverse_ladder_order() -> None:
    loop = Loop(make_spec(), make_sizes(app=4, db_read=3, workers=3))
    loop.run(lambda sizes, _: {}, 600)
    narrows = [(t, a.tier, a.to) for t, a in loop.actions()]
    assert all(a.kind == "narrow" for _, a in loop.actions())
    assert narrows[0][0] >= 300  # the scale-down window
    assert all(b[0] - a[0] >= 60 for a, b in itertools.pairwise(narrows))  # the cooldown
    tiers_in_order = [tier for _, tier, _ in narrows]
    assert tiers_in_order == sorted(tiers_in_order, key=lambda t: -tiers.ladder().index(t))  # reverse ladder
    assert tiers_in_order[0] == "workers"


def test_noise_around_the_target_causes_no_action() -> None:
    rng = random.Random(7)

    def signals(sizes: Sizes, _: float) -> Overrides:  # app pressure 1.0 +- 8 %: inside the hysteresis band
        return {"app": {"cpu_utilization": 0.7 * rng.uniform(0.92, 1.08) * 2 / sizes["app"]}}

    loop = Loop(make_spec(), make_sizes())
    loop.run(signals, 2 * 3600)
    assert loop.actions() == []


def test_large_noise_widens_once_and_never_flaps() -> None:
    rng = random.Random(11)

    def signals(sizes: Sizes, _: float) -> Overrides:  # pressure 1.0 +- 20 % on 2 pods
        return {"app": {"cpu_utilization": 0.7 * rng.uniform(0.8, 1.2) * 2 / sizes["app"]}}

    loop = Loop(make_spec(), make_sizes())
    loop.run(signals, 3 * 3600)
    kinds = [a.kind for _, a in loop.actions()]
    assert kinds == ["widen"]  # a narrow step back to 2 pods would be undone by the next noisy peak


def test_a_slow_load_cycle_is_followed_without_oscillating_on_noise() -> None:
    rng = random.Random(3)

    def signals(sizes: Sizes, elapsed: float) -> Overrides:
        load = 1.0 + 0.8 * math.sin(2 * math.pi * elapsed / 3600) + rng.uniform(-0.1, 0.1)
        return {"app": {"cpu_utilization": 0.7 * max(0.05, load) * 2 / sizes["app"]}}

    loop = Loop(make_spec(), make_sizes())
    loop.run(signals, 3 * 3600)
    actions = loop.actions()
    kinds = [a.kind for _, a in actions]
    assert "widen" in kinds and "narrow" in kinds
    changes = sum(1 for a, b in itertools.pairwise(kinds) if a != b)
    assert changes <= 2 * 3  # at most one turn per half cycle
    for (t1, a1), (t2, a2) in itertools.pairwise(actions):
        if a1.kind == "narrow" and a2.kind == "widen":
            assert t2 - t1 >= 600, "a narrow step invited the next widening step"


def test_recommend_mode_over_time_changes_nothing() -> None:
    loop = Loop(make_spec(mode="Recommend"), make_sizes())
    loop.run(lambda sizes, _: {"db-read": {"read_seconds": 0.5}}, 600)
    assert loop.sizes == make_sizes()
    assert loop.actions() and all(not a.applied for _, a in loop.actions())
    assert all(t2 - t1 >= 60 for (t1, _), (t2, _) in zip(loop.actions(), loop.actions()[1:], strict=False))


def test_a_restarted_operator_keeps_cooldowns_and_windows() -> None:
    hot: Signals = lambda sizes, _: {"app": {"cpu_utilization": 0.7 * 1.5 * 2 / sizes["app"]}}  # noqa: E731
    first = Loop(make_spec(), make_sizes())
    first.tick(hot)  # widens, starts the cooldown
    # A new process: nothing but the persisted status and the workloads' sizes.
    second = Loop(make_spec(), first.sizes)
    second.status, second.elapsed = first.status, first.elapsed
    decision = second.tick(lambda sizes, _: {"app": {"cpu_utilization": 0.99}})
    assert decision.action is None and decision.reason == "Cooldown"
    second.run(hot, 60)
    assert api.ScaledAppStatus.model_validate(second.status).history[-1].verdict == "effective"


def test_a_step_that_helps_only_once_the_backlog_drains_is_effective_and_the_tier_widens_again() -> None:
    # Regression (make bench, step scenario): a load step backs requests up in the app; one more pod is
    # not enough but helps. The in-flight signal still carries the backlog at the end of the cooldown
    # and falls only a little later. The step must not be judged ineffective (locking the app - still
    # the bottleneck - out for the whole back-off); the app must be widened again.
    def signals(sizes: Sizes, elapsed: float) -> Overrides:
        cpu = 0.7 * 1.7 * 2 / sizes["app"]  # 4 pods bring it under target
        backlog = 20.0 if sizes["app"] == 3 and elapsed < 90 else 0.0
        return {"app": {"cpu_utilization": cpu, "in_flight_per_pod": 4.0 + backlog * 16}}

    # Sized steps: pressure 1.7 on 2 pods asks for ceil(3.4) = 4 at once (it took two steps of one pod).
    loop = Loop(make_spec(), make_sizes())
    loop.run(signals, 400)
    widened = [(t, a.to) for t, a in loop.actions() if a.tier == "app" and a.kind == "widen"]
    assert widened == [(0, "4")]
    history = api.ScaledAppStatus.model_validate(loop.status).history
    assert [a.verdict for a in history] == ["effective"]


def saturated_until_six_pods(sizes: Sizes, _: float) -> Overrides:
    """An app that needs six pods for 900 req/s: below that, CPU and in-flight stay pinned (clients time out
    and retry) and only the requests served grow with each pod."""
    served = min(900.0, 166.0 * sizes["app"])
    pinned = served < 900.0
    return {"app": {"cpu_utilization": 1.0 if pinned else 0.6, "in_flight_per_pod": 830.0 if pinned else 8.0,
                    "requests_per_second": served}}


def test_a_saturated_tier_whose_step_let_more_work_through_is_widened_again() -> None:
    # Regression (make bench, bottleneck shift): an overloaded app sheds what its clients' timeout cannot
    # wait for, so in-flight per pod and CPU stay pinned however many pods it has until it has enough.
    # Each step raises the requests served; that is the evidence it helped, and the app is widened again.
    loop = Loop(make_spec(), make_sizes())
    loop.run(saturated_until_six_pods, 900)
    # Pinned signals ask for doubling each time (2 -> 4 -> 8): at least the six it needs.
    assert 6 <= loop.sizes["app"] <= 8
    history = api.ScaledAppStatus.model_validate(loop.status).history
    assert {a.verdict for a in history if a.tier == "app"} <= {"effective", "pending"}
    assert all(a.throughput is not None for a in history)


def test_workers_whose_step_drained_more_jobs_are_widened_again() -> None:
    # Regression (make bench, bottleneck shift): orders arrive faster than two workers finish them, so
    # the queue and its depth per worker keep growing after the first step; jobs finished per second
    # (the workers' throughput signal) rose, so the step helped and the workers are widened again.
    from scaledapp.tiers import workers

    assert "scaledapp_worker_jobs_total" in workers.TIER.queries(Scope("ns", "demo"))[workers.JOBS_PER_SECOND]
    depth = {"value": 0.0}

    def signals(sizes: Sizes, _: float) -> Overrides:
        done = min(6.0, 2.0 * sizes["workers"])
        depth["value"] = max(0.0, depth["value"] + (6.0 - done) * 15)
        return {"workers": {"queue_depth": depth["value"], "oldest_age_seconds": depth["value"] / 6.0,
                            "jobs_per_second": done}}

    loop = Loop(make_spec(), make_sizes())
    loop.run(signals, 900)
    assert loop.sizes["workers"] >= 3
    history = api.ScaledAppStatus.model_validate(loop.status).history
    assert "ineffective" not in {a.verdict for a in history if a.tier == "workers"}


def test_a_tier_still_saturated_after_a_step_that_helped_steps_again_without_waiting_out_the_cooldown() -> None:
    # make bench, spike: demand far beyond the app's pods pins CPU and in-flight; each step lets more
    # requests through while the pressure stays where it was. That is plain evidence the step helped and
    # was not enough, so the next step need not wait out a (long) cooldown - but only on evidence from after
    # the rollout: seen rolled out at 15 s, then the onset window (30 s) and a tick, so at 60 s, not 15 s.
    loop = Loop(make_spec(cooldownSeconds=300), make_sizes())
    loop.run(saturated_until_six_pods, 120)
    widened = [(t, a.to) for t, a in loop.actions() if a.tier == "app" and a.kind == "widen"]
    assert widened == [(0, "4"), (60, "8")]
    history = api.ScaledAppStatus.model_validate(loop.status).history
    assert [a.verdict for a in history] == ["effective", "pending"]


def test_a_step_whose_pressure_is_falling_waits_out_the_cooldown_even_as_throughput_rises() -> None:
    # make bench, step: after a step the backlog drains, pressure falls but is still over target for a
    # while. Another step then would overshoot: the tier may settle under target on its own.
    def signals(sizes: Sizes, _: float) -> Overrides:
        return {"app": {"cpu_utilization": 0.7 * 1.7 * 2 / sizes["app"],
                        "requests_per_second": 166.0 * sizes["app"]}}

    loop = Loop(make_spec(), make_sizes())
    loop.run(signals, 300)
    widened = [t for t, a in loop.actions() if a.tier == "app" and a.kind == "widen"]
    assert widened[0] == 0
    assert len(widened) == 1 or widened[1] >= 60
