"""decide(): one tick, as a table of scenarios (snapshot -> bottleneck and action)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from scaledapp import api, tiers
from scaledapp.clock import format_time
from scaledapp.decide import Decision, Tick, decide, record, status_fields
from scaledapp.observation import Snapshot
from scaledapp.sizes import Resources, Sizes, TierName
from scaledapp.tiers import enforce_bounds, initial_sizes

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
GI = 2**30
MI = 2**20

# Every signal of every tier, all comfortably calm (pressure <= 0.55) under the default targets.
CALM: dict[TierName, dict[str, float | None]] = {
    "app": {"cpu_utilization": 0.35, "in_flight_per_pod": 4.0, "requests_per_second": 50.0,
            "request_seconds": 0.06, "dependency_seconds": 0.03},
    "cache": {"cpu_cores": 0.2, "memory_utilization": 0.5, "evictions_per_second": 0.0,
              "lookups_per_second": 100.0, "hit_ratio": 0.95},
    "db-read": {"reads_per_second": 40.0, "read_seconds": 0.01, "pool_wait_seconds": 0.001,
                "replica_saturation": 0.1, "lag_seconds": 0.2, "app_cpu_utilization": 0.35},
    "db-write": {"writes_per_second": 5.0, "write_seconds": 0.02, "lock_waits": 0.0,
                 "connection_utilization": 0.2, "app_cpu_utilization": 0.35},
    "workers": {"queue_depth": 2.0, "oldest_age_seconds": 1.0},
}  # fmt: skip

Overrides = dict[str, dict[str, float | None]]


def snapshot(overrides: Overrides | None = None, now: datetime = NOW, drop: tuple[str, str] | None = None) -> Snapshot:
    signals: dict[TierName, dict[str, float | None]] = {tier: dict(values) for tier, values in CALM.items()}
    for tier, values in (overrides or {}).items():
        signals[tier].update(values)  # type: ignore[index]
    if drop:
        del signals[drop[0]][drop[1]]  # type: ignore[index]
    return Snapshot(time=now, signals=signals)


def make_spec(**scaling: Any) -> api.ScaledAppSpec:
    return api.ScaledAppSpec.model_validate({"scaling": scaling})


def make_sizes(**changes: object) -> Sizes:
    """The initial sizes with some tiers' changed, by tier name with `_` for `-` (db_read=3)."""
    return Sizes({**initial_sizes(api.ScaledAppSpec()), **{k.replace("_", "-"): v for k, v in changes.items()}})


def ago(seconds: float) -> str:
    return format_time(NOW - timedelta(seconds=seconds))


def condition(decision: Decision, type_: str) -> api.Condition:
    return next(c for c in decision.conditions if c.type == type_)


@dataclass
class Case:
    id: str
    overrides: Overrides
    bottleneck: str | None
    action: str | None  # "widen app 2 -> 3", or None for no action
    reason: str
    sizes: dict[str, int] = field(default_factory=dict)
    scaling: dict[str, Any] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    paused: bool = False
    drop: tuple[str, str] | None = None
    at_ceiling: str = "False"


SATURATED_WRITES = {"lock_waits": 20.0}
# App latency is high (2 s) but 1.95 s of it is waiting on the database; in-flight per pod is high too.
APP_WAITING_ON_DB = {"request_seconds": 2.0, "dependency_seconds": 1.95, "in_flight_per_pod": 60.0}

CASES = [
    Case("app-cpu-bound", {"app": {"cpu_utilization": 0.95}}, "app", "widen app 2 -> 3", "Widened"),
    # Sized steps (the HPA's ratio rule, at most doubling): pressure 4.5 on 2 pods asks for 9, doubling gives 4.
    Case("app-own-time", {"app": {"request_seconds": 0.5, "dependency_seconds": 0.05}}, "app", "widen app 2 -> 4",
         "Widened"),
    Case("cache-full-evicting", {"cache": {"memory_utilization": 0.99, "evictions_per_second": 40.0,
                                           "hit_ratio": 0.5}}, "cache", "widen cache 64Mi -> 128Mi", "Widened"),
    Case("cache-misses-not-evicting-is-not-capacity", {"cache": {"hit_ratio": 0.4}}, None, None, "ScaleDownWindow"),
    Case("cache-cpu-bound", {"cache": {"cpu_cores": 0.98}}, "cache", None, "CacheCpuBound", at_ceiling="True"),
    Case("read-bound-replicas-saturated", {"db-read": {"replica_saturation": 0.95, "read_seconds": 0.2}},
         "db-read", "widen db-read 1 -> 2", "Widened"),
    Case("read-pool-wait", {"db-read": {"pool_wait_seconds": 0.05}}, "db-read", "widen db-read 1 -> 2", "Widened"),
    Case("write-lock-waits-not-app", {"db-write": SATURATED_WRITES, "app": APP_WAITING_ON_DB}, "db-write",
         "widen db-write cpu=500m, memory=512Mi -> cpu=1, memory=1Gi", "Widened"),
    Case("write-latency", {"db-write": {"write_seconds": 0.5}, "app": APP_WAITING_ON_DB}, "db-write",
         "widen db-write cpu=500m, memory=512Mi -> cpu=1, memory=1Gi", "Widened"),
    Case("queue-backlog", {"workers": {"queue_depth": 200.0}}, "workers", "widen workers 1 -> 2", "Widened"),
    Case("queue-old-job", {"workers": {"oldest_age_seconds": 120.0}}, "workers", "widen workers 1 -> 2", "Widened"),
    Case("all-calm-window-not-elapsed", {}, None, None, "ScaleDownWindow", sizes={"db_read": 3},
         state={"calm_since": ago(200)}),
    # Sized narrowing: the peak (0.2 on 3 replicas) stays calm on 1 (0.6), so one step goes there.
    Case("all-calm-after-window-narrows-reverse-ladder", {}, None, "narrow db-read 3 -> 1", "Narrowed",
         sizes={"db_read": 3, "app": 4}, state={"calm_since": ago(301)}),
    Case("calm-but-narrowing-would-overload", {"app": {"cpu_utilization": 0.56}}, None, None, "AtMinimum",
         sizes={"app": 3}, state={"calm_since": ago(301)}),
    # Partial metrics: a blind tier holds narrowing (not all calm), but a tier whose own signals are known
    # may still widen.
    Case("signal-missing-none", {"db-read": {"lag_seconds": None}}, None, None, "WithinTarget",
         at_ceiling="Unknown", sizes={"app": 4}, state={"calm_since": ago(301)}),
    Case("signal-missing-nan-another-tier-hot-still-widens", {"app": {"cpu_utilization": 0.99},
         "workers": {"queue_depth": math.nan}}, "app", "widen app 2 -> 3", "Widened", at_ceiling="Unknown"),
    Case("signal-absent", {}, None, None, "WithinTarget", drop=("db-write", "lock_waits"), at_ceiling="Unknown"),
    Case("two-hot-higher-wins", {"app": {"cpu_utilization": 1.05}, "db-read": {"read_seconds": 0.15}}, "db-read",
         "widen db-read 1 -> 2", "Widened"),
    Case("tie-goes-to-cheaper-rung", {"app": {"cpu_utilization": 1.05}, "db-write": {"lock_waits": 7.5}}, "app",
         "widen app 2 -> 3", "Widened"),
    Case("tie-cache-before-app", {"app": {"cpu_utilization": 1.4},
                                  "cache": {"evictions_per_second": 1.0, "hit_ratio": 0.6}}, "cache",
         "widen cache 64Mi -> 128Mi", "Widened"),
    Case("lagging-replica-no-replica-added", {"db-read": {"read_seconds": 0.2, "lag_seconds": 30.0}}, "db-read",
         None, "ReplicaLag"),
    Case("lag-alone-is-no-bottleneck", {"db-read": {"lag_seconds": 30.0}}, None, None, "ScaleDownWindow"),
    Case("app-at-max", {"app": {"cpu_utilization": 1.4}}, "app", None, "MaxReplicas", sizes={"app": 10},
         at_ceiling="True"),
    Case("ceiling-does-not-move-the-decision-to-another-tier", {"app": {"cpu_utilization": 1.4},
         "db-read": {"read_seconds": 0.065}}, "app", None, "MaxReplicas", sizes={"app": 10},
         at_ceiling="True"),
    Case("db-write-at-ceiling-recommends-sharding", {"db-write": SATURATED_WRITES}, "db-write", None,
         "ShardingRecommended", sizes={"db_write": Resources(4000, 8 * GI)},
         at_ceiling="True"),
    Case("cache-at-max-memory", {"cache": {"evictions_per_second": 9.0, "hit_ratio": 0.3}}, "cache", None,
         "MaxMemory", sizes={"cache": 512 * MI}, at_ceiling="True"),
    Case("cooldown-respected", {"app": {"cpu_utilization": 0.95}}, "app", None, "Cooldown",
         state={"last_action_time": ago(30)}),
    Case("cooldown-over", {"app": {"cpu_utilization": 0.95}}, "app", "widen app 2 -> 3", "Widened",
         state={"last_action_time": ago(60)}),
    Case("scale-up-window-not-elapsed", {"app": {"cpu_utilization": 0.95}}, "app", None, "ScaleUpWindow",
         scaling={"stabilization": {"scaleUpSeconds": 30}}, state={"hot_since": {"app": ago(20)}}),
    Case("scale-up-window-elapsed", {"app": {"cpu_utilization": 0.95}}, "app", "widen app 2 -> 3", "Widened",
         scaling={"stabilization": {"scaleUpSeconds": 30}}, state={"hot_since": {"app": ago(30)}}),
    Case("ineffective-tier-skipped-for-next-candidate", {"app": {"cpu_utilization": 1.4},
         "db-read": {"read_seconds": 0.065}}, "db-read", "widen db-read 1 -> 2", "Widened",
         state={"ineffective_until": {"app": format_time(NOW + timedelta(seconds=100))}}),
    Case("ineffective-backoff-expired", {"app": {"cpu_utilization": 1.4}}, "app", "widen app 2 -> 4", "Widened",
         state={"ineffective_until": {"app": ago(1)}}),
    Case("only-hot-tier-in-backoff-holds", {"app": {"cpu_utilization": 1.4}}, "app", None, "IneffectiveBackoff",
         state={"ineffective_until": {"app": format_time(NOW + timedelta(seconds=100))}}),
    Case("paused", {"app": {"cpu_utilization": 0.95}}, "app", None, "Paused", paused=True),
    Case("hysteresis-band-is-not-hot", {"app": {"cpu_utilization": 0.76}}, None, None, "WithinTarget"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_scenario(case: Case) -> None:
    spec = make_spec(**case.scaling)
    state = api.ScalerState.model_validate(case.state)
    sizes = make_sizes(**case.sizes)
    decision = decide(Tick(spec, snapshot(case.overrides, drop=case.drop), sizes, state, None, NOW, paused=case.paused))
    assert decision.bottleneck == case.bottleneck, decision.message
    assert decision.reason == case.reason, decision.message
    got = decision.action
    assert (f"{got.kind} {got.tier} {got.from_} -> {got.to}" if got else None) == case.action, decision.message
    if got is not None:
        assert got.applied and decision.step is not None and decision.step.tier == got.tier
        assert decision.desired == decision.step.after
        assert decision.state.last_action_time == format_time(NOW)
        assert got.verdict == ("pending" if got.kind == "widen" else "n/a")
    else:
        assert decision.step is None and decision.desired == sizes
    assert condition(decision, "AtCeiling").status == case.at_ceiling
    assert condition(decision, "Scaling").status == ("True" if got else "False")
    assert condition(decision, "Scaling").reason == case.reason


def test_write_bound_never_adds_app_pods_even_with_app_latency_high() -> None:
    overrides: Overrides = {"db-write": SATURATED_WRITES, "app": APP_WAITING_ON_DB}
    decision = decide(Tick(make_spec(), snapshot(overrides), make_sizes(), api.ScalerState(), None, NOW))
    assert decision.action is not None and decision.action.tier == "db-write"
    app = next(e for e in decision.pressures if e.tier == "app")
    assert app.pressure is not None and app.pressure < 1
    # Even at the primary's ceiling the answer is "hold and recommend sharding", never app pods.
    at_max = make_sizes(db_write=Resources(4000, 8 * GI))
    decision = decide(Tick(make_spec(), snapshot(overrides), at_max, api.ScalerState(), None, NOW))
    assert decision.action is None and decision.bottleneck == "db-write"
    assert "shard" in decision.recommendation


def test_recommend_mode_never_acts() -> None:
    sizes = make_sizes()
    decision = decide(Tick(make_spec(mode="Recommend"), snapshot({"app": {"cpu_utilization": 0.95}}), sizes,
                      api.ScalerState(), None, NOW))  # fmt: skip
    assert decision.action is not None and decision.action.applied is False
    assert decision.action.verdict == "n/a"
    assert decision.step is None and not decision.applied and decision.desired == sizes
    assert decision.reason == "Recommended" and "app 2 -> 3" in decision.recommendation
    # The recommendation is not re-issued every tick: the cooldown applies to it too.
    again = decide(Tick(make_spec(mode="Recommend"), snapshot({"app": {"cpu_utilization": 0.95}}), sizes,
                        decision.state, decision.last_action, NOW + timedelta(seconds=15)))
    assert again.action is None and again.reason == "Cooldown"


def test_recommend_mode_does_not_touch_bounds() -> None:
    sizes = make_sizes(app=1)  # below min
    assert decide(Tick(make_spec(mode="Recommend"), snapshot(), sizes, api.ScalerState(), None, NOW)).desired == sizes


def test_off_evaluates_nothing() -> None:
    state = api.ScalerState(calm_since=ago(10))
    decision = decide(Tick(make_spec(mode="Off"), None, make_sizes(app=1), state, None, NOW))
    assert decision.pressures == [] and decision.bottleneck is None and decision.action is None
    assert decision.state == state and decision.reason == "Off" and decision.desired == make_sizes(app=1)
    assert condition(decision, "MetricsAvailable").status == "Unknown"


def test_paused_freezes_state_and_sizes() -> None:
    state = api.ScalerState(hot_since={"db-read": ago(5)}, calm_since=None)
    sizes = make_sizes(app=1)
    decision = decide(Tick(make_spec(), snapshot({"app": {"cpu_utilization": 0.95}}), sizes, state, None, NOW,
                           paused=True))
    assert decision.state == state and decision.desired == sizes and decision.action is None
    assert decision.bottleneck == "app"  # still explained
    assert [e.tier for e in decision.pressures] == list(tiers.ladder())


def test_prometheus_unavailable_holds() -> None:
    decision = decide(Tick(make_spec(), None, make_sizes(), api.ScalerState(calm_since=ago(999)), None, NOW))
    assert decision.action is None and decision.reason == "MetricsUnavailable"
    assert condition(decision, "MetricsAvailable").reason == "PrometheusUnavailable"
    assert decision.state.calm_since is None  # unknown is not calm


def test_missing_data_is_reported_per_signal_and_keeps_hot_windows() -> None:
    # The blind tier keeps its hot window (unknown is neither hot nor calm); a seen, calm tier loses its own.
    state = api.ScalerState(hot_since={"app": ago(40), "db-read": ago(40)})
    decision = decide(Tick(make_spec(), snapshot({"db-read": {"lag_seconds": None}}), make_sizes(), state, None, NOW))
    metrics = condition(decision, "MetricsAvailable")
    assert metrics.status == "False" and "db-read.lag_seconds" in metrics.message
    assert metrics.message.startswith("blind: db-read ")
    assert decision.state.hot_since == {"db-read": ago(40)}
    db_read = next(e for e in decision.pressures if e.tier == "db-read")
    assert db_read.pressure is None


def test_bounds_are_enforced_in_auto_without_a_step() -> None:
    sizes = make_sizes(app=1, workers=50)
    decision = decide(Tick(make_spec(), snapshot(), sizes, api.ScalerState(), None, NOW))
    assert decision.step is None and decision.desired == enforce_bounds(make_spec(), sizes)
    assert (decision.desired["app"], decision.desired["workers"]) == (2, 10)


def test_disabled_tiers_are_not_needed() -> None:
    spec = api.ScaledAppSpec.model_validate({"workers": {"enabled": False}, "cache": {"enabled": False}})
    snap = snapshot({"workers": {"queue_depth": None}, "cache": {"cpu_cores": None}})
    decision = decide(Tick(spec, snap, make_sizes(), api.ScalerState(), None, NOW))
    assert decision.reason != "MetricsUnavailable"
    assert [e.tier for e in decision.pressures] == ["app", "db-read", "db-write"]


def test_pressures_carry_evidence() -> None:
    decision = decide(Tick(make_spec(), snapshot({"app": {"cpu_utilization": 0.91}}), make_sizes(), api.ScalerState(),
                      None, NOW))  # fmt: skip
    app = next(e for e in decision.pressures if e.tier == "app")
    assert (app.signal, app.value, app.target, app.pressure) == ("cpu_utilization", 0.91, 0.7, 1.3)
    assert decision.action is not None and "cpu_utilization 0.91 vs target 0.7" in decision.action.reason


def test_record_keeps_ten_and_updates_the_verdict() -> None:
    history = [api.Action(time=ago(100 - i), tier="app", kind="widen", verdict="n/a") for i in range(10)]
    # Judged after the cooldown (60 s) and the grace of one rate window (60 s).
    previous = api.Action(time=ago(120), tier="app", kind="widen", pressure=1.5, applied=True, verdict="pending")
    history[-1] = previous
    decision = decide(Tick(make_spec(), snapshot({"app": {"cpu_utilization": 1.05}}), make_sizes(app=3),
                      api.ScalerState(last_action_time=ago(120)), previous, NOW))  # fmt: skip
    assert decision.last_action is not None and decision.last_action.verdict == "ineffective"
    out = record(history, decision, previous)
    assert len(out) == 10 and out[-1].verdict == "ineffective"


def test_a_step_is_judged_only_after_it_rolled_out() -> None:
    previous = api.Action(time=ago(120), tier="db-read", kind="widen", pressure=4.0, applied=True, verdict="pending")
    state = api.ScalerState(last_action_time=ago(120))
    hot_reads = snapshot({"db-read": {"read_seconds": 0.2}})
    sizes = make_sizes(db_read=2)
    # The new replica is still bootstrapping: no verdict yet, and no second replica on stale signals.
    waiting = decide(Tick(make_spec(), hot_reads, sizes, state, previous, NOW, settling={"db-read"}))
    assert waiting.action is None and waiting.reason == "Cooldown" and "roll out" in waiting.message
    assert waiting.last_action == previous and waiting.verified is None
    # Rolled out (or waited longer than the back-off): judged as usual.
    done = decide(Tick(make_spec(), hot_reads, sizes, state, previous, NOW))
    assert done.verified is not None and done.verified.verdict == "ineffective"
    late = api.ScalerState(last_action_time=ago(700))
    stuck = decide(Tick(make_spec(), hot_reads, sizes, late, previous, NOW, settling={"db-read"}))
    assert stuck.verified is not None and stuck.verified.verdict == "ineffective"


def test_status_fields_round_trip() -> None:
    decision = decide(Tick(make_spec(), snapshot({"app": {"cpu_utilization": 0.95}}), make_sizes(), api.ScalerState(),
                      None, NOW))  # fmt: skip
    fields = status_fields(decision, [], None)
    assert fields["bottleneck"] == "app" and fields["lastAction"]["from"] == "2" and fields["lastAction"]["to"] == "3"
    assert fields["scaler"]["lastActionTime"] == format_time(NOW) and len(fields["history"]) == 1
    status = api.ScaledAppStatus.model_validate(fields)
    assert status.scaler == decision.state and status.last_action == decision.action
