"""The tiers: PromQL scoped to one ScaledApp, pressures from the right signals, one step at a time."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from scaledapp import api, tiers
from scaledapp.decide import Tick, decide
from scaledapp.observation import Snapshot
from scaledapp.sizes import Blocked, Resources, Sizes, Step
from scaledapp.tiers import app, cache, db_read, db_write, initial_sizes, workers
from scaledapp.tiers.base import Scope, TierModel, lower_is_worse, prometheus_label

SCOPE = Scope(namespace="shop-ns", instance="shop")
NS = 'namespace="shop-ns"'
INSTANCE = 'app_kubernetes_io_instance="shop"'
# PromQL words that are not metric names.
PROMQL_WORDS = {
    "sum", "avg", "max", "min", "rate", "by", "on", "or", "and", "histogram_quantile", "avg_over_time", "le",
    "instance", "up",
}  # fmt: skip


def spec() -> api.ScaledAppSpec:
    return api.ScaledAppSpec()


def sizes(**changes: object) -> Sizes:
    """The initial sizes with some tiers' changed, by tier name with `_` for `-` (db_read=0)."""
    return Sizes({**initial_sizes(spec()), **{k.replace("_", "-"): v for k, v in changes.items()}})


def test_registry_is_in_ladder_order() -> None:
    assert tiers.ladder() == ("cache", "app", "db-read", "workers", "db-write")
    assert all(isinstance(t, TierModel) for t in tiers.TIERS)
    assert tiers.tier("db-read") is db_read.TIER


def test_labelmap_names() -> None:
    assert prometheus_label("app.kubernetes.io/instance") == "app_kubernetes_io_instance"
    assert prometheus_label("scaledapp.dev/tier") == "scaledapp_dev_tier"


def test_selector_quotes_values() -> None:
    assert Scope("ns", "a").selector("db-read", state="active") == (
        '{namespace="ns",app_kubernetes_io_instance="a",scaledapp_dev_tier="db-read",state="active"}'
    )
    assert Scope("ns", 'we"ird\\').selector() == '{namespace="ns",app_kubernetes_io_instance="we\\"ird\\\\"}'


@pytest.mark.parametrize("tier", tiers.TIERS, ids=lambda t: t.name)
def test_every_query_is_scoped_to_namespace_and_instance(tier: TierModel) -> None:
    for signal, query in tier.queries(SCOPE).items():
        selectors = re.findall(r"\{[^}]*\}", query)
        assert selectors, signal
        for selector in selectors:  # every series selector, not just one of them
            assert NS in selector and INSTANCE in selector, (signal, selector)
        assert query.count("(") == query.count(")"), signal


@pytest.mark.parametrize("tier", tiers.TIERS, ids=lambda t: t.name)
def test_queries_use_exactly_the_declared_metric_names(tier: TierModel) -> None:
    used: set[str] = set()
    for query in tier.queries(SCOPE).values():
        without_selectors = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", " ", query)
        for word in re.findall(r"[a-zA-Z_][a-zA-Z0-9_]*", without_selectors):
            if word not in PROMQL_WORDS:
                histogram = re.sub(r"_(bucket|sum|count)$", "", word)  # a histogram's series
                used.add(histogram if histogram in tier.metrics else word)
    assert used == set(tier.metrics)


@pytest.mark.parametrize(
    ("tier", "signal", "tier_label", "fragments"),
    [
        (app.TIER, app.CPU_UTILIZATION, "app", ["process_cpu_seconds_total", "scaledapp_cpu_limit_cores"]),
        (app.TIER, app.IN_FLIGHT_PER_POD, "app", ["scaledapp_http_requests_in_flight"]),
        (app.TIER, app.REQUEST_SECONDS, "app", ["scaledapp_http_request_duration_seconds_sum"]),
        (app.TIER, app.DEPENDENCY_SECONDS, "app", ["scaledapp_dependency_duration_seconds_sum"]),
        (cache.TIER, cache.CPU_CORES, "cache", ["redis_cpu_user_seconds_total", "redis_cpu_sys_seconds_total"]),
        (cache.TIER, cache.MEMORY_UTILIZATION, "cache", ["redis_memory_used_bytes", "redis_memory_max_bytes"]),
        (cache.TIER, cache.EVICTIONS_PER_SECOND, "cache", ["redis_evicted_keys_total"]),
        (cache.TIER, cache.HIT_RATIO, "app", ["scaledapp_cache_requests_total", 'result="hit"']),
        (db_read.TIER, db_read.READ_SECONDS, None, ["dependency_duration_seconds_bucket", 'dependency="db-read"']),
        (db_read.TIER, db_read.POOL_WAIT_SECONDS, None, ["scaledapp_dependency_pool_wait_seconds_bucket"]),
        (db_read.TIER, db_read.REPLICA_SATURATION, "db-read", ["pg_stat_activity_count", 'state="active"']),
        (db_read.TIER, db_read.LAG_SECONDS, "db-read", ["pg_replication_lag_seconds"]),
        (db_write.TIER, db_write.WRITE_SECONDS, None, ['dependency="db-write"']),
        (db_write.TIER, db_write.LOCK_WAITS, "db-write", ["pg_locks_waiting_count"]),
        (db_write.TIER, db_write.CONNECTION_UTILIZATION, "db-write", ["pg_settings_max_connections"]),
        (db_read.TIER, db_read.APP_CPU_UTILIZATION, "app", ["process_cpu_seconds_total", "scaledapp_cpu_limit_cores"]),
        (db_write.TIER, db_write.APP_CPU_UTILIZATION, "app", ["process_cpu_seconds_total"]),
        (workers.TIER, workers.QUEUE_DEPTH_SIGNAL, None, ["scaledapp_queue_depth"]),
        (workers.TIER, workers.OLDEST_AGE_SECONDS, None, ["scaledapp_queue_oldest_age_seconds"]),
    ],
)
def test_signal_queries(tier: TierModel, signal: str, tier_label: str | None, fragments: list[str]) -> None:
    query = tier.queries(SCOPE)[signal]
    for fragment in fragments:
        assert fragment in query
    if tier_label:
        assert f'scaledapp_dev_tier="{tier_label}"' in query


def test_cache_bypass_is_not_a_lookup_and_pings_are_not_load() -> None:
    queries = cache.TIER.queries(SCOPE)
    assert 'result=~"hit|miss"' in queries[cache.LOOKUPS_PER_SECOND]
    assert 'result=~"hit|miss"' in queries[cache.HIT_RATIO] and 'result="hit"' in queries[cache.HIT_RATIO]
    for tier, signal in ((db_read.TIER, db_read.READ_SECONDS), (db_write.TIER, db_write.WRITE_SECONDS),
                         (app.TIER, app.DEPENDENCY_SECONDS)):  # fmt: skip
        query = tier.queries(SCOPE)[signal]
        assert 'operation!~"ping|schema"' in query


def test_zero_is_claimed_only_when_pods_report() -> None:
    query = app.TIER.queries(SCOPE)[app.REQUESTS_PER_SECOND]
    assert query.endswith(f'or (0 * sum(up{{{NS},{INSTANCE},scaledapp_dev_tier="app"}} == 1))')


def test_metric_names_cover_every_tier() -> None:
    names = tiers.metric_names()
    assert {"process_cpu_seconds_total", "redis_evicted_keys_total", "pg_replication_lag_seconds"} <= names
    assert "scaledapp_queue_depth" in names


def test_disabled_tiers_are_not_queried() -> None:
    s = api.ScaledAppSpec.model_validate({"cache": {"enabled": False}, "workers": {"enabled": False}})
    assert set(tiers.queries(s, SCOPE)) == {"app", "db-read", "db-write"}


# ---------------------------------------------------------------------------------------------- pressures


APP_CALM = {"cpu_utilization": 0.35, "in_flight_per_pod": 4.0, "requests_per_second": 50.0,
            "request_seconds": 0.06, "dependency_seconds": 0.03}  # fmt: skip


def test_app_pressure_counts_only_the_apps_own_time() -> None:
    # 2 s requests, of which 1.95 s waiting on the database, 60 in flight per pod: the app is not busy.
    signals = {**APP_CALM, "request_seconds": 2.0, "dependency_seconds": 1.95, "in_flight_per_pod": 60.0}
    judged = app.TIER.pressure(signals, spec(), sizes())
    assert judged.pressure is not None and judged.pressure < 1
    by_signal = {c.signal: c for c in judged.components}
    assert by_signal[app.SELF_SECONDS].value == pytest.approx(0.05)
    assert by_signal[app.OWN_IN_FLIGHT_PER_POD].value == pytest.approx(60 * 0.05 / 2.0)


def test_app_pressure_from_cpu_and_self_time() -> None:
    hot_cpu = app.TIER.pressure({**APP_CALM, "cpu_utilization": 0.91}, spec(), sizes())
    assert hot_cpu.pressure == pytest.approx(1.3)
    assert hot_cpu.evidence().signal == app.CPU_UTILIZATION
    slow = app.TIER.pressure({**APP_CALM, "request_seconds": 0.35, "dependency_seconds": 0.05}, spec(), sizes())
    assert slow.evidence().signal == app.SELF_SECONDS and slow.pressure == pytest.approx(3.0)


def test_app_without_traffic_needs_no_latency() -> None:
    idle = {"cpu_utilization": 0.01, "in_flight_per_pod": 0.0, "requests_per_second": 0.0,
            "request_seconds": None, "dependency_seconds": None}  # fmt: skip
    judged = app.TIER.pressure(idle, spec(), sizes())
    assert not judged.missing and judged.pressure is not None


def test_missing_signal_makes_the_tier_unknown() -> None:
    judged = app.TIER.pressure({**APP_CALM, "cpu_utilization": None}, spec(), sizes())
    assert judged.pressure is None and judged.missing == ("cpu_utilization",)
    assert judged.evidence().pressure is None and "cpu_utilization" in judged.evidence().signal


CACHE_CALM = {"cpu_cores": 0.2, "memory_utilization": 0.5, "evictions_per_second": 0.0,
              "lookups_per_second": 100.0, "hit_ratio": 0.95}  # fmt: skip


def test_cache_misses_count_only_while_evicting() -> None:
    full_evicting = {**CACHE_CALM, "memory_utilization": 0.99, "evictions_per_second": 30.0, "hit_ratio": 0.5}
    judged = cache.TIER.pressure(full_evicting, spec(), sizes())
    assert judged.evidence().signal == cache.HIT_RATIO and judged.pressure == pytest.approx(2.5)
    cold = {**CACHE_CALM, "hit_ratio": 0.5}  # half empty, no evictions: misses are cold keys
    judged = cache.TIER.pressure(cold, spec(), sizes())
    assert judged.pressure is not None and judged.pressure < 1


def test_cache_full_but_hitting_is_calm() -> None:
    full = {**CACHE_CALM, "memory_utilization": 1.0, "evictions_per_second": 5.0}
    judged = cache.TIER.pressure(full, spec(), sizes())
    assert judged.pressure is not None and judged.pressure < 0.9


def test_cache_without_lookups_ignores_hit_ratio() -> None:
    judged = cache.TIER.pressure({**CACHE_CALM, "lookups_per_second": 0.0, "hit_ratio": None}, spec(), sizes())
    assert not judged.missing


def test_lower_is_worse_with_a_perfect_target() -> None:
    assert lower_is_worse("hit_ratio", 0.99, 1.0).pressure > 1000


def test_replication_lag_is_a_guard_not_a_pressure() -> None:
    signals = {"reads_per_second": 10.0, "read_seconds": 0.01, "pool_wait_seconds": 0.0,
               "replica_saturation": 0.1, "lag_seconds": 60.0, "app_cpu_utilization": 0.3}  # fmt: skip
    judged = db_read.TIER.pressure(signals, spec(), sizes())
    assert judged.pressure is not None and judged.pressure < 1
    guard = judged.guard(db_read.LAG_SECONDS)
    assert guard is not None and guard.pressure == 12.0


def test_db_read_without_replicas_needs_no_replica_signals() -> None:
    signals = {"reads_per_second": 10.0, "read_seconds": 0.01, "pool_wait_seconds": 0.0, "app_cpu_utilization": 0.3}
    judged = db_read.TIER.pressure(signals, spec(), sizes(db_read=0))
    assert not judged.missing
    assert db_read.TIER.pressure(signals, spec(), sizes(db_read=1)).missing


def test_client_side_timings_without_the_apps_cpu_are_unknown() -> None:
    # The app's CPU tells whether its timings of the database measure the database or its own starved
    # event loop; without it they are not trusted (unknown, never zero), so the tier is blind.
    reads = {"reads_per_second": 10.0, "read_seconds": 0.5, "pool_wait_seconds": 0.2,
             "replica_saturation": 0.1, "lag_seconds": 0.1}  # fmt: skip
    assert db_read.TIER.pressure(reads, spec(), sizes()).missing == (db_read.APP_CPU_UTILIZATION,)
    writes = {"writes_per_second": 1.0, "write_seconds": 0.5, "lock_waits": 0.0, "connection_utilization": 0.1}
    assert db_write.TIER.pressure(writes, spec(), sizes()).missing == (db_write.APP_CPU_UTILIZATION,)
    idle = {**writes, "writes_per_second": 0.0}  # no writes: no timings to trust
    assert not db_write.TIER.pressure(idle, spec(), sizes()).missing


def test_dependency_tiers_read_the_apps_cpu_exactly_as_the_app_tier_does() -> None:
    app_cpu = app.TIER.queries(SCOPE, "10s")[app.CPU_UTILIZATION]
    assert db_read.TIER.queries(SCOPE, "10s")[db_read.APP_CPU_UTILIZATION] == app_cpu
    assert db_write.TIER.queries(SCOPE, "10s")[db_write.APP_CPU_UTILIZATION] == app_cpu


# Found on the real data plane (tests/dataplane/test_signals.py): an app saturating its one core made
# its read-pool wait p95 0.57 s (the event loop resumed the waiting coroutine late), and db-read was
# named instead of app.
READS_TIMED_BY_A_BUSY_LOOP = {"reads_per_second": 20.0, "read_seconds": 0.6, "pool_wait_seconds": 0.57,
                              "replica_saturation": 0.05, "lag_seconds": 0.1}  # fmt: skip


def test_read_timings_of_a_cpu_bound_app_are_not_evidence_against_the_replicas() -> None:
    busy = db_read.TIER.pressure({**READS_TIMED_BY_A_BUSY_LOOP, "app_cpu_utilization": 0.95}, spec(), sizes())
    assert busy.pressure is not None and busy.pressure < 1
    assert {c.signal for c in busy.components} == {db_read.APP_CPU_BOUND, db_read.REPLICA_SATURATION}
    # Saturated replicas are the server's own word and still count.
    saturated = {**READS_TIMED_BY_A_BUSY_LOOP, "app_cpu_utilization": 0.95, "replica_saturation": 0.95}
    assert db_read.TIER.pressure(saturated, spec(), sizes()).evidence().signal == db_read.REPLICA_SATURATION
    # Within the app's target plus hysteresis (0.7 * 1.1), its timings stand.
    calm_app = db_read.TIER.pressure({**READS_TIMED_BY_A_BUSY_LOOP, "app_cpu_utilization": 0.75}, spec(), sizes())
    assert calm_app.evidence().signal == db_read.POOL_WAIT_SECONDS and (calm_app.pressure or 0) > 50
    no_replicas = db_read.TIER.pressure({**READS_TIMED_BY_A_BUSY_LOOP, "app_cpu_utilization": 0.95}, spec(),
                                        sizes(db_read=0))
    assert no_replicas.pressure == 0.0 and no_replicas.evidence().signal == db_read.APP_CPU_BOUND


def test_write_latency_of_a_cpu_bound_app_is_set_aside_but_lock_waits_count() -> None:
    writes = {"writes_per_second": 5.0, "write_seconds": 0.9, "lock_waits": 0.0, "connection_utilization": 0.1}
    assert db_write.TIER.pressure({**writes, "app_cpu_utilization": 0.3}, spec(), sizes()).pressure == 9.0
    busy = db_write.TIER.pressure({**writes, "app_cpu_utilization": 0.95}, spec(), sizes())
    assert busy.pressure is not None and busy.pressure < 1
    locked = db_write.TIER.pressure({**writes, "lock_waits": 10.0, "app_cpu_utilization": 0.95}, spec(), sizes())
    assert locked.evidence().signal == db_write.LOCK_WAITS and locked.pressure == 2.0


def test_a_cpu_bound_app_is_named_not_the_replicas_its_busy_loop_seems_to_wait_for() -> None:
    cpu = 0.95
    signals = {
        "app": {**APP_CALM, "cpu_utilization": cpu},
        "cache": {"cpu_cores": 0.1, "memory_utilization": 0.2, "evictions_per_second": 0.0,
                  "lookups_per_second": 100.0, "hit_ratio": 0.95},
        "db-read": {**READS_TIMED_BY_A_BUSY_LOOP, "app_cpu_utilization": cpu},
        "db-write": {"writes_per_second": 0.0, "lock_waits": 0.0, "connection_utilization": 0.05,
                     "app_cpu_utilization": cpu},
        "workers": {"queue_depth": 0.0, "oldest_age_seconds": 0.0},
    }  # fmt: skip
    now = datetime(2026, 11, 28, tzinfo=UTC)
    decision = decide(Tick(spec(), Snapshot(time=now, signals=signals), sizes(), api.ScalerState(), None, now))
    assert decision.bottleneck == "app"
    assert decision.step is not None and decision.step.tier == "app"


def test_workers_depth_is_per_worker() -> None:
    judged = workers.TIER.pressure({"queue_depth": 100.0, "oldest_age_seconds": 1.0}, spec(), sizes(workers=5))
    assert judged.evidence().signal == workers.DEPTH_PER_WORKER and judged.pressure == pytest.approx(1.0)
    none = workers.TIER.pressure({"queue_depth": 100.0, "oldest_age_seconds": 1.0}, spec(), sizes(workers=0))
    assert none.pressure == pytest.approx(5.0)


# ---------------------------------------------------------------------------------------------- steps


def _step(outcome: Step | Blocked) -> Step:
    assert isinstance(outcome, Step), outcome
    return outcome


def test_horizontal_steps_and_bounds() -> None:
    s = spec()
    judged = app.TIER.pressure(APP_CALM, s, sizes())
    step = _step(app.TIER.widen(s, sizes(app=2), judged))
    assert (step.from_text, step.to_text, step.after["app"]) == ("2", "3", 3)
    blocked = app.TIER.widen(s, sizes(app=10), judged)
    assert isinstance(blocked, Blocked) and blocked.at_ceiling and blocked.reason == "MaxReplicas"
    assert app.TIER.narrow(s, sizes(app=2)) is None
    assert _step(app.TIER.narrow(s, sizes(app=5)) or blocked).after["app"] == 4
    big_steps = api.ScaledAppSpec.model_validate({"scaling": {"steps": {"replicas": 4}}})
    assert _step(app.TIER.widen(big_steps, sizes(app=8), judged)).after["app"] == 10


def test_cache_widens_memory_by_factor_up_to_max() -> None:
    s = spec()
    evicting = cache.TIER.pressure({**CACHE_CALM, "evictions_per_second": 1.0, "hit_ratio": 0.5}, s, sizes())
    step = _step(cache.TIER.widen(s, sizes(), evicting))
    assert (step.from_text, step.to_text) == ("64Mi", "128Mi")
    step = _step(cache.TIER.widen(s, sizes(cache=384 * 2**20), evicting))
    assert step.to_text == "512Mi"
    blocked = cache.TIER.widen(s, sizes(cache=512 * 2**20), evicting)
    assert isinstance(blocked, Blocked) and blocked.reason == "MaxMemory"


def test_cpu_bound_cache_is_not_given_memory() -> None:
    s = spec()
    hot_cpu = cache.TIER.pressure({**CACHE_CALM, "cpu_cores": 0.97}, s, sizes())
    blocked = cache.TIER.widen(s, sizes(), hot_cpu)
    assert isinstance(blocked, Blocked) and blocked.reason == "CacheCpuBound" and blocked.at_ceiling


def test_db_write_widens_vertically_then_recommends_sharding() -> None:
    s = spec()
    judged = db_write.TIER.pressure(
        {"writes_per_second": 1.0, "write_seconds": 0.5, "lock_waits": 0.0, "connection_utilization": 0.1,
         "app_cpu_utilization": 0.3}, s, sizes()
    )
    step = _step(db_write.TIER.widen(s, sizes(), judged))
    assert step.to_text == "cpu=1, memory=1Gi"
    step = _step(db_write.TIER.widen(s, sizes(db_write=Resources(3000, 8 * 2**30)), judged))
    assert step.to_text == "cpu=4, memory=8Gi"
    blocked = db_write.TIER.widen(s, sizes(db_write=Resources(4000, 8 * 2**30)), judged)
    assert isinstance(blocked, Blocked) and blocked.reason == "ShardingRecommended"
    assert "shard" in blocked.recommendation and "never shards" in blocked.recommendation
    narrowed = db_write.TIER.narrow(s, sizes(db_write=Resources(2000, 2 * 2**30)))
    assert narrowed is not None and narrowed.to_text == "cpu=1, memory=1Gi"
    # Halving the primary is predicted to quadruple its pressure (regression: make bench, DB-write-bound
    # scenario, where a linear guess halved a primary at pressure 0.4 straight back into saturation).
    assert db_write.TIER.predicted_pressure(0.3, narrowed) == pytest.approx(1.2)
    assert db_write.TIER.predicted_pressure(0.2, narrowed) == pytest.approx(0.8)


def test_db_read_with_lag_adds_no_replica() -> None:
    s = spec()
    signals = {"reads_per_second": 10.0, "read_seconds": 0.5, "pool_wait_seconds": 0.0,
               "replica_saturation": 0.1, "lag_seconds": 30.0, "app_cpu_utilization": 0.3}  # fmt: skip
    blocked = db_read.TIER.widen(s, sizes(), db_read.TIER.pressure(signals, s, sizes()))
    assert isinstance(blocked, Blocked) and blocked.reason == "ReplicaLag" and not blocked.at_ceiling
    signals["lag_seconds"] = 1.0
    assert _step(db_read.TIER.widen(s, sizes(), db_read.TIER.pressure(signals, s, sizes()))).to_text == "2"


def test_every_metric_name_is_documented() -> None:
    doc = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
    documented = set(re.findall(r"^\| `([a-z_:]+)` \|", doc.read_text(), flags=re.MULTILINE))
    assert tiers.metric_names() <= documented, tiers.metric_names() - documented
