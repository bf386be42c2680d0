"""The twin model: deterministic, physically sensible in each direction a scaler can push it, and its
signals name the intended tier when fed through the real tiers' pressure functions."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devharness.twin import Load, Observation, TwinModel, TwinParams
from devharness.twin.model import POD_TIERS
from scaledapp import api
from scaledapp.observation import Snapshot
from scaledapp.sizes import Resources, TierName
from scaledapp.tiers import enabled_tiers, metric_names
from scaledapp.tiers.base import Scope

BASE = Load(150, 15, 1)
DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"


def documented_labels() -> dict[str, frozenset[str]]:
    """docs/metrics.md: metric name -> its label names (rows `| `name` | type | labels | ...`)."""
    out: dict[str, frozenset[str]] = {}
    for line in DOC.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or not cells[0].startswith("`"):
            continue
        labels = frozenset(re.findall(r"`([a-z_]+)`", cells[2])) if cells[2] != "—" else frozenset()
        if cells[2].startswith("same as"):
            labels = out[re.findall(r"`([a-z_]+)`", cells[2])[0]]
        out[cells[0].strip("`")] = labels
    return out


def settle(model: TwinModel, load: Load, seconds: int = 120) -> Observation:
    last = None
    for _ in range(seconds):
        last = model.step(load)
    assert last is not None
    return last


def pressures(model: TwinModel, snapshot: Snapshot | None = None) -> dict[TierName, float | None]:
    snap = snapshot or model.snapshot()
    return {t.name: t.pressure(snap.tier(t.name), model.spec, model.sizes).pressure for t in enabled_tiers(model.spec)}


def hottest(model: TwinModel) -> TierName:
    known = {name: p for name, p in pressures(model).items() if p is not None}
    return max(known, key=lambda name: known[name])


def test_same_seed_same_run_and_different_seed_differs() -> None:
    def run(seed: int) -> list[float]:
        model = TwinModel(seed=seed)
        return [model.step(Load(300, 30, 2)).p95_seconds for _ in range(60)]

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_snapshot_has_every_signal_every_tier_queries() -> None:
    model = TwinModel(seed=1)
    settle(model, BASE, 70)
    snap = model.snapshot()
    for t in enabled_tiers(model.spec):
        wanted = set(t.queries(Scope("ns", "demo")))
        assert wanted <= set(snap.signals[t.name]), t.name
        judged = t.pressure(snap.tier(t.name), model.spec, model.sizes)
        assert not judged.missing, (t.name, judged.missing)


def test_exposition_uses_the_documented_names_and_labels() -> None:
    model = TwinModel(seed=1, pod_series=True)
    settle(model, BASE, 30)
    documented = documented_labels()
    exposed: set[str] = set()
    for t in ("app", "cache", "db-read", "workers", "db-write"):
        pods = model.pod_metrics(t)
        assert pods, t
        for _, text in pods:
            for family in text_string_to_metric_families(text):
                name = family.name + ("_total" if family.type == "counter" and family.name + "_total" in documented
                                      else "")
                assert name in documented, name
                exposed.add(name)
                for sample in family.samples:
                    assert set(sample.labels) - {"le"} == documented[name], (name, sample.labels)
    # Everything the operator's queries read is exposed by some simulated pod.
    assert metric_names() <= exposed, metric_names() - exposed


def test_more_app_replicas_lower_app_cpu_pressure() -> None:
    loads = Load(300, 20, 1)
    small, big = TwinModel(seed=2), TwinModel(seed=2)
    big.set_sizes(big.with_sizes(app=4))
    settle(small, loads)
    settle(big, loads, 120)
    p_small, p_big = pressures(small)["app"], pressures(big)["app"]
    assert p_small is not None and p_big is not None
    assert p_big < p_small


def test_bigger_cache_raises_hit_ratio() -> None:
    heavy_reads = Load(900, 10, 1)
    small, big = TwinModel(seed=3), TwinModel(seed=3)
    for model in (small, big):
        model.set_sizes(model.with_sizes(app=8))
    big.set_sizes(big.with_sizes(cache=4 * small.sizes["cache"]))
    low, high = settle(small, heavy_reads, 300), settle(big, heavy_reads, 300)
    assert low.hit_ratio is not None and high.hit_ratio is not None
    assert high.hit_ratio > low.hit_ratio + 0.05


def test_more_read_replicas_lower_read_latency() -> None:
    spec = api.ScaledAppSpec.model_validate({"cache": {"enabled": False}})
    reads = Load(450, 5, 0.5)
    one, three = TwinModel(spec, seed=4), TwinModel(spec, seed=4)
    for model in (one, three):
        model.set_sizes(model.with_sizes(app=6))
    three.set_sizes(three.with_sizes(db_read=3))
    settle(one, reads, 200)
    settle(three, reads, 200)
    slow = one.snapshot().tier("db-read")["read_seconds"]
    fast = three.snapshot().tier("db-read")["read_seconds"]
    assert slow is not None and fast is not None
    assert fast < slow


def test_write_bound_load_is_not_fixed_by_app_replicas() -> None:
    writes = Load(100, 240, 0.5)
    few, many = TwinModel(seed=5), TwinModel(seed=5)
    few.set_sizes(few.with_sizes(app=4))
    many.set_sizes(many.with_sizes(app=10))
    a, b = settle(few, writes, 200), settle(many, writes, 200)
    write_few = few.snapshot().tier("db-write")["write_seconds"]
    write_many = many.snapshot().tier("db-write")["write_seconds"]
    assert write_few is not None and write_many is not None
    assert write_many >= write_few  # more app pods: more sessions on the primary, no faster writes
    assert b.p95_seconds >= a.p95_seconds * 0.95
    assert a.bottleneck == b.bottleneck == "db-write"
    # A bigger primary does fix it.
    bigger = TwinModel(seed=5)
    memory = bigger.sizes["db-write"].memory_bytes
    bigger.set_sizes(bigger.with_sizes(app=4, db_write=Resources(2000, memory)))
    c = settle(bigger, writes, 200)
    assert c.p95_seconds < a.p95_seconds


def test_queue_drains_with_more_workers() -> None:
    orders = Load(100, 10, 6)
    one, four = TwinModel(seed=6), TwinModel(seed=6)
    four.set_sizes(four.with_sizes(workers=4))
    a, b = settle(one, orders, 180), settle(four, orders, 180)
    assert b.queue_depth < a.queue_depth
    assert b.queue_depth < 10


def test_new_pods_become_ready_after_their_tier_delay() -> None:
    model = TwinModel(seed=1, params=TwinParams(app_ready_seconds=10, replica_bootstrap_seconds=60))
    model.set_sizes(model.with_sizes(app=3, db_read=2))
    model.step(BASE)
    assert model.settling() == {"app", "db-read"}
    settle(model, BASE, 10)
    assert model.settling() == {"db-read"}
    settle(model, BASE, 60)
    assert model.settling() == frozenset()
    assert model.last is not None and model.last.ready["db-read"] == 2


@pytest.mark.parametrize("tier", POD_TIERS)
def test_every_page_stays_finite_when_a_tier_has_no_ready_pod_for_a_while(tier: TierName) -> None:
    """A deleted pod's replacement is not ready at once: for a few ticks its tier may have none. Nothing then
    reaches that tier, and no page may show NaN or Inf (a NaN added to a counter would poison it for good,
    and Prometheus turns a NaN into an unknown signal: a blind tier)."""
    model = TwinModel(seed=1, pod_series=True, params=TwinParams(replica_bootstrap_seconds=5, app_ready_seconds=5,
                                                                 worker_ready_seconds=5))
    names = {t: [p.name for p in model.pods(t)] for t in POD_TIERS}
    settle(model, BASE, 20)
    model.set_sizes(model.sizes, pods={**names, tier: []})
    settle(model, BASE, 3)
    model.set_sizes(model.sizes, pods={**names, tier: [f"{n}-new" for n in names[tier]]})
    for _ in range(30):
        model.step(BASE)
        for t in POD_TIERS:
            for pod, text in model.pod_metrics(t):
                for family in text_string_to_metric_families(text):
                    for sample in family.samples:
                        assert math.isfinite(sample.value), (pod, sample)


NO_CACHE = {"cache": {"enabled": False}}


@pytest.mark.parametrize(
    ("load", "params", "spec", "sizes", "intended"),
    [
        (Load(330, 20, 1), TwinParams(), {}, {}, "app"),
        (Load(1100, 10, 1), TwinParams(), {}, {"app": 10}, "cache"),
        (Load(530, 5, 0.5), TwinParams(), NO_CACHE, {"app": 5}, "db-read"),
        (Load(150, 15, 6), TwinParams(), {}, {}, "workers"),
        (Load(100, 240, 1), TwinParams(), {}, {"app": 5}, "db-write"),
    ],
)
def test_canonical_loads_name_the_intended_tier(
    load: Load, params: TwinParams, spec: dict[str, object], sizes: dict[str, int], intended: TierName
) -> None:
    model = TwinModel(api.ScaledAppSpec.model_validate(spec), seed=9, params=params)
    if sizes:
        model.set_sizes(model.with_sizes(**sizes))
    observed = settle(model, load, 180)
    assert hottest(model) == intended, pressures(model)
    assert observed.bottleneck == intended, observed.utilization


def test_a_counter_that_stopped_moving_has_a_rate_of_exactly_zero() -> None:
    # Evictions during a small-cache period leave the rate window later: then the rate is 0, not 1e-15
    # (the cache tier counts misses as capacity pressure only while evictions are > 0).
    model = TwinModel(seed=1)
    model.set_sizes(model.with_sizes(app=10))
    settle(model, Load(1100, 10, 1), 120)
    assert (model.snapshot().tier("cache")["evictions_per_second"] or 0) > 0
    model.set_sizes(model.with_sizes(cache=512 * 2**20))
    settle(model, Load(1100, 10, 1), 120)
    assert model.snapshot().tier("cache")["evictions_per_second"] == 0.0


@pytest.mark.parametrize(("scrape", "fast", "slow"), [
    # rate() over a window of scrapes 15 s apart averages the window less one interval: the onset window
    # (30 s) holds the last two scrapes, 15 s of data; the 1m window four, 45 s.
    (15.0, 250.0, (30 * 150 + 15 * 250) / 45),
    # Scraped far more often than the windows: their whole length.
    (0.0, (15 * 150 + 15 * 250) / 30, (45 * 150 + 15 * 250) / 60),
])
def test_the_snapshot_windows_are_what_rate_averages_at_the_scrape_interval(
    scrape: float, fast: float, slow: float
) -> None:
    model = TwinModel(seed=1, params=TwinParams(poisson_noise=False), scrape_interval_seconds=scrape)
    settle(model, Load(150, 0, 0))
    settle(model, Load(250, 0, 0), seconds=15)
    snapshot = model.snapshot()
    onset = snapshot.onset_tier("app")
    assert onset is not None
    assert onset["requests_per_second"] == pytest.approx(fast, rel=0.02)
    assert snapshot.tier("app")["requests_per_second"] == pytest.approx(slow, rel=0.02)


def test_an_onset_window_no_longer_than_the_scrape_interval_has_no_rate() -> None:
    model = TwinModel(seed=1, scrape_interval_seconds=30.0)  # one scrape in 30 s: rate() needs two
    settle(model, BASE)
    snapshot = model.snapshot()
    assert snapshot.onset_tier("app") is None and snapshot.tier("app")["requests_per_second"] is not None
