"""The twin's snapshot() against real PromQL: for every bench scenario, a twin is driven (by the operator's
own engine, in simulated time) to a moment of that scenario, then ticks in real time while a real Prometheus
on loopback scrapes every simulated pod's /metrics; the operator's tier queries (scaledapp.tiers, with a
short rate window) then run in that Prometheus and must give every signal snapshot() gives, within
RELATIVE / ABSOLUTE. So the bench, which reads snapshot() instead of Prometheus, judges the engine on the
signals the operator would really see.

Clocks. The twin's time is simulated; Prometheus stamps samples with its own wall clock. Fast-forwarding
happens before Prometheus sees anything; from then on the twins advance TICK_SECONDS of simulated time per
TICK_SECONDS of wall time, as the live twin does (devharness/twin/server.py) with 1 s. Each tick's pages
are rendered first and published all at once at a scheduled wall time P_k, and every sample on them carries
P_k as its exposed timestamp, which Prometheus honours: a page scraped twice is one sample, and a scrape
racing a publication stores what it read at that page's own time. Queried at P_k + TICK/2, a window of
W = WINDOW_TICKS ticks holds exactly the pages of ticks k-W+1 .. k for every target (a marker gauge, the
tick number, checks that). rate() over those W samples is their increase over W-1 intervals, extrapolated
to the window: the mean of ticks k-W+2 .. k. So the twin's counterpart of `rate(x[W ticks])` is a window
of W-1 ticks (TwinModel(scrape_interval_seconds=TICK_SECONDS) averages each window less one interval, as the
bench does at its 15 s scrape: 45 s of a 1m window, 15 s of the 30 s onset window). The onset window is
checked the same way, over two pages. A gauge's
avg_over_time averages all W samples: the twin's (W-1)-tick mean plus the gauge of the window's first
page (`expected`). What is left is the text format's and float arithmetic's rounding, hence the tolerance.

One PromQL rule the twin does not model: rate() extrapolates a counter back no further than its zero, so
over a counter younger than the window (evictions that began seconds ago) PromQL reads less than the
mean. The moments are picked with every counter older than a window.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from bench.policies import Inputs, ScaledAppPolicy
from bench.scenarios import BenchScenario, scenarios

from devharness.prometheus import LocalPrometheus, Target
from devharness.twin import TwinModel, TwinParams
from devharness.twin.endpoints import Endpoints
from devharness.twin.model import POD_TIERS
from scaledapp import api, tiers
from scaledapp.observation import Snapshot
from scaledapp.prometheus import value_of
from scaledapp.sizes import TierName
from scaledapp.tiers import app as app_tier
from scaledapp.tiers.base import Scope
from tests.support.prometheus import Harness

pytestmark = pytest.mark.dataplane

# Prometheus scrapes every second (the harness' interval) and the twins tick every TICK_SECONDS of wall
# and of simulated time: each page is up for two scrapes, so no target misses a page when a scrape and a
# publication coincide. The rate window holds WINDOW_TICKS pages (the operator: 1m at a 15 s scrape).
TICK_SECONDS = 2.0
WINDOW_TICKS = 6
WINDOW = f"{WINDOW_TICKS * TICK_SECONDS:.0f}s"
# The onset window holds two pages, as the operator's 30 s onset window holds two scrapes at 15 s: rate()
# over it is the increase between them, the last interval alone.
ONSET_TICKS = 2
ONSET = f"{ONSET_TICKS * TICK_SECONDS:.0f}s"
INSTANCE = "shop"
IN_FLIGHT = app_tier.IN_FLIGHT
# |twin - PromQL| <= max(RELATIVE x the larger magnitude, ABSOLUTE). The pages print floats exactly (repr)
# and the windows hold the same ticks, so what is left is the order of float sums: the values agree
# better than 1e-6 (measured), and any modelling difference shows as far more than that.
RELATIVE = 1e-6
ABSOLUTE = 1e-9
# The simulated moments compared, per bench scenario: where each one's load is at its most telling (every
# scenario must be listed: a new scenario shape gets checked too).
MOMENTS: dict[str, tuple[float, ...]] = {
    "step": (300,),
    "ramp": (1200,),
    "spike": (340,),
    "diurnal": (600,),
    # app; the cache evicting (frozen at 64Mi just before the engine widens it); costly reads; the queue
    "shift": (400, 752, 1500, 1980),
    "db-write": (300,),
    "outage": (250,),  # the outage hides metrics from the policies, not from the twin
    "sawtooth": (410,),  # the second tooth near its top
    "two-bottlenecks": (180,),  # the app saturated and the queue growing
}
# Variants beyond the bench's shapes, for signals no bench scenario holds up: a replica lags only for the
# few seconds it catches up after its bootstrap, so here its one replay process (one core of two) is slower
# than the primary's writes. (scenario, moment, label, TwinParams changes, spec changes)
VARIANTS: tuple[tuple[str, float, str, dict[str, float], dict[str, Any]], ...] = (
    ("db-write", 300, "slow-replay", {"replay_cpu_seconds_per_write": 0.005},
     {"database": {"resources": {"initial": {"cpu": "2"}, "max": {"cpu": "4"}}}}),
)
POLICY_PERIOD = 15
LEAD_SECONDS = 18  # Prometheus' start and one whole window of ticks: the compared tick lands near the moment


@dataclass
class Case:
    """One twin at one moment of one scenario, in a namespace of its own."""

    scenario: BenchScenario
    moment: float
    model: TwinModel
    namespace: str
    base: TwinParams = field(default_factory=TwinParams)  # what the scenario's knobs apply to
    endpoints: Endpoints = field(default_factory=Endpoints)
    snapshots: dict[int, Snapshot] = field(default_factory=dict)  # tick number -> snapshot after it
    in_flight: dict[int, float] = field(default_factory=dict)  # tick number -> its pages' in-flight per app pod

    @property
    def name(self) -> str:
        return self.namespace.removeprefix("twin-")

    def pages(self) -> dict[str, str]:
        return {pod: text for tier in POD_TIERS for pod, text in self.model.pod_metrics(tier)}

    def targets(self) -> list[Target]:
        tier_of = {p.name: p.tier for p in self.model.pods()}
        return [Target(self.endpoints.address(pod), namespace=self.namespace, pod=pod, instance=INSTANCE,
                       tier=tier_of[pod]) for pod in self.endpoints.pods]


def drive(scenario: BenchScenario, base: TwinParams, until: float, model: TwinModel, policy: ScaledAppPolicy) -> None:
    """The bench's loop in simulated time (bench/simulate.py, without the scoring): the engine decides every
    15 s from the twin's snapshot, and its sizes are applied."""
    while model.now < until:
        model.params = scenario.params_at(model.now, base)
        obs = model.step(scenario.load(model.now))
        if round(obs.time) % POLICY_PERIOD == 0:
            down = scenario.metrics_down(obs.time)
            inputs = Inputs(None, None) if down else Inputs(model.snapshot(), obs.app_cpu_utilization)
            new = policy.tick(obs.time, model, inputs)
            if new is not None and new != model.sizes:
                model.set_sizes(new)


def settle(scenario: BenchScenario, base: TwinParams, model: TwinModel, limit: float = 120.0) -> None:
    """Tick without the engine until every pod is ready, so no series starts inside the compared window."""
    deadline = model.now + limit
    while model.settling() and model.now < deadline:
        model.params = scenario.params_at(model.now, base)
        model.step(scenario.load(model.now))


def merged(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in patch.items():
        out[key] = merged(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def cases() -> list[Case]:
    """Fast-forward each scenario once, copying the twin LEAD_SECONDS before each of its moments (then
    settled): the real-time part starts there, and the compared tick comes about LEAD_SECONDS later."""
    out: list[Case] = []
    by_name = {s.name: s for s in scenarios()}
    assert set(by_name) == set(MOMENTS), "every bench scenario needs a moment in MOMENTS"
    runs: list[tuple[str, tuple[float, ...], str, dict[str, float], dict[str, Any]]]
    runs = [(name, moments, "", {}, {}) for name, moments in MOMENTS.items()]
    runs += [(name, (moment,), label, knobs, patch) for name, moment, label, knobs, patch in VARIANTS]
    for name, moments, label, knobs, patch in runs:
        scenario, base = by_name[name], TwinParams().with_(**knobs)
        if patch:
            spec = merged(scenario.spec.model_dump(by_alias=True, exclude_none=True), patch)
            scenario = dataclasses.replace(scenario, spec=api.ScaledAppSpec.model_validate(spec))
        model = TwinModel(scenario.spec, params=scenario.params_at(0.0, base), seed=7, name=INSTANCE,
                          pod_series=True, rate_window_seconds=WINDOW_TICKS * TICK_SECONDS,
                          onset_window_seconds=ONSET_TICKS * TICK_SECONDS, scrape_interval_seconds=TICK_SECONDS)
        policy = ScaledAppPolicy(scenario.spec)
        for moment in moments:
            drive(scenario, base, moment - LEAD_SECONDS, model, policy)
            twin = copy.deepcopy(model)
            settle(scenario, base, twin)
            suffix = f"-{label}" if label else ""
            out.append(Case(scenario, moment, twin, namespace=f"twin-{name}-{moment:.0f}{suffix}", base=base))
    return out


TICK = "twin_tick"  # a marker gauge on every page: the tick number, so the test sees which pages were scraped


def stamped(page: str, tick: int, stamp: float) -> str:
    """The page with every sample stamped at the tick's publication time (ms), plus the tick marker."""
    ms = f" {round(stamp * 1000)}"
    lines = [line if not line or line.startswith("#") else line + ms for line in page.splitlines()]
    return "\n".join([*lines, f"# TYPE {TICK} gauge", f"{TICK} {tick}{ms}", ""])


class Ticker:
    """All twins tick together once per wall-clock second: step and render first (a variable part of the
    second), then publish every page at once on the fixed schedule. Each page's samples carry the
    publication time as their timestamp (Prometheus honours exposed timestamps), so a scrape that races a
    publication stores the page it got at the page's own time: the window holds exactly the ticks' pages."""

    def __init__(self, all_cases: list[Case]) -> None:
        self.cases = all_cases
        self.published: list[float] = []  # time.time() of tick k's publication (its samples' timestamp)
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="twin-ticker", daemon=True)

    def prepare(self, stamp: float) -> list[tuple[Case, dict[str, str]]]:
        """Step every twin (tick 0: the fast-forwarded state as it is) and render its pages."""
        tick = len(self.published)
        pages = []
        for case in self.cases:
            if tick > 0:
                case.model.params = case.scenario.params_at(case.model.now, case.base)
                case.model.step(case.scenario.load(case.model.now), TICK_SECONDS)
            case.snapshots[tick] = case.model.snapshot()
            by_pod = case.pages()
            app_pods = [p.name for p in case.model.pods("app") if p.ready]
            case.in_flight[tick] = sum(gauge(by_pod[p], IN_FLIGHT) for p in app_pods) / max(1, len(app_pods))
            pages.append((case, {pod: stamped(text, tick, stamp) for pod, text in by_pod.items()}))
        return pages

    def publish(self, pages: list[tuple[Case, dict[str, str]]], stamp: float) -> None:
        for case, by_pod in pages:
            case.endpoints.sync(by_pod)  # the sizes are frozen: this opens the endpoints at tick 0 only
            for pod, text in by_pod.items():
                case.endpoints.set_page(pod, text)
        self.published.append(stamp)

    def first(self) -> None:
        """Tick 0, now: the endpoints open with pages before Prometheus looks."""
        stamp = time.time()
        self.publish(self.prepare(stamp), stamp)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        next_at = time.monotonic() + TICK_SECONDS
        try:
            while not self._stop.is_set():
                stamp = time.time() + (next_at - time.monotonic())
                pages = self.prepare(stamp)
                if self._stop.wait(max(0.0, next_at - time.monotonic())):
                    return
                self.publish(pages, stamp)
                next_at += TICK_SECONDS
        except BaseException as exc:  # surfaced by the test
            self.errors.append(exc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@pytest.fixture(scope="module")
def running(harness: Harness) -> Iterator[tuple[list[Case], Ticker, LocalPrometheus]]:
    all_cases = cases()
    ticker = Ticker(all_cases)
    ticker.first()
    prom = harness.prometheus([t for case in all_cases for t in case.targets()], name="twin-promql")
    ticker.start()
    try:
        prom.wait_for_targets(timeout=60)
        yield all_cases, ticker, prom
    finally:
        ticker.stop()
        prom.stop()
        for case in all_cases:
            case.endpoints.close()


def gauge(page: str, name: str) -> float:
    """The value of an unlabelled gauge in a text exposition."""
    match = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", page, re.MULTILINE)
    assert match, f"{name} not in the page"
    return float(match.group(1))


def expected(case: Case, tier_name: TierName, signal: str, tick: int, onset: bool = False) -> float | None:
    """The twin's value of a signal after `tick` (over the onset window with `onset`), as PromQL at a 1 s
    scrape should see it (module doc)."""
    snapshot = case.snapshots[tick]
    value = (snapshot.onset if onset else snapshot.signals).get(tier_name, {}).get(signal)
    if (tier_name, signal) == ("app", app_tier.IN_FLIGHT_PER_POD) and value is not None:
        ticks = (ONSET_TICKS if onset else WINDOW_TICKS) - 1
        return (value * ticks + case.in_flight[tick - ticks]) / (ticks + 1)
    return value


def close(twin: float | None, promql: float | None) -> bool:
    if twin is None or promql is None:
        return twin is None and promql is None
    return abs(twin - promql) <= max(RELATIVE * max(abs(twin), abs(promql)), ABSOLUTE)


def compare(case: Case, prom: LocalPrometheus, tick: int, at: float, onset: bool = False) -> list[str]:
    """Every signal of every enabled tier: the twin's snapshot after `tick` against PromQL at wall time `at`
    (with `onset`: the window-dependent ones over the onset window)."""
    problems = []
    scope = Scope(case.namespace, INSTANCE)
    chosen = (tiers.onset_queries(case.scenario.spec, scope, ONSET, WINDOW) if onset
              else tiers.queries(case.scenario.spec, scope, WINDOW))
    for tier_name, queries in chosen.items():
        for signal, promql in queries.items():
            value, why = value_of(prom.api("query", {"query": promql, "time": f"{at:.3f}"})["result"])
            twin = expected(case, tier_name, signal, tick, onset)
            if not close(twin, value):
                problems.append(f"{case.name} tick {tick}: {tier_name}.{signal}: twin {twin!r}, PromQL {value!r}"
                                f"{f' ({why})' if why else ''}\n    {promql}")
    return problems


@pytest.fixture(scope="module")
def compared(running: tuple[list[Case], Ticker, LocalPrometheus]) -> tuple[int, float]:
    """The tick to compare and the evaluation time: a whole window of it scraped after the targets were up,
    and (checked with the tick marker) every target's window holding exactly that tick's pages."""
    all_cases, ticker, prom = running
    ticks = WINDOW_TICKS - 1
    tick = len(ticker.published) + ticks + 1
    for attempt in range(3):
        while len(ticker.published) <= tick + 1 or time.time() < ticker.published[tick] + TICK_SECONDS + 0.5:
            assert not ticker.errors, ticker.errors
            time.sleep(0.2)
        at = ticker.published[tick] + TICK_SECONDS / 2
        counts = prom.api("query", {"query": f"count_over_time({TICK}[{WINDOW}])", "time": f"{at:.3f}"})["result"]
        oldest = prom.api("query", {"query": f"min_over_time({TICK}[{WINDOW}])", "time": f"{at:.3f}"})["result"]
        pods = sum(len(case.endpoints.pods) for case in all_cases)
        whole = [r for r in counts if float(r["value"][1]) == ticks + 1]
        aligned = [r for r in oldest if float(r["value"][1]) == tick - ticks]
        if len(whole) == len(aligned) == pods:
            return tick, at
        tick += 1 + attempt
    raise AssertionError(f"no tick had every target's window whole: {len(whole)}/{pods} with {ticks + 1} "
                         f"samples, {len(aligned)}/{pods} starting at tick {tick - ticks}")


def test_every_tier_signal_of_the_twin_is_what_promql_computes(
    running: tuple[list[Case], Ticker, LocalPrometheus], compared: tuple[int, float]
) -> None:
    all_cases, _ticker, prom = running
    tick, at = compared
    problems = [p for case in all_cases for p in compare(case, prom, tick, at)]
    total = sum(len(q) for case in all_cases
                for q in tiers.queries(case.scenario.spec, Scope(case.namespace, INSTANCE), WINDOW).values())
    assert not problems, f"{len(problems)} of {total} signals differ:\n" + "\n".join(problems)


def test_every_onset_window_signal_of_the_twin_is_what_promql_computes(
    running: tuple[list[Case], Ticker, LocalPrometheus], compared: tuple[int, float]
) -> None:
    """The onset window (two pages, as 30 s at the cluster's 15 s scrape): rate() over it is the last
    interval's increase, and the twin's snapshot().onset, a scrape interval short of the window, agrees."""
    all_cases, _ticker, prom = running
    tick, at = compared
    problems = [p for case in all_cases for p in compare(case, prom, tick, at, onset=True)]
    total = sum(len(q) for case in all_cases
                for q in tiers.onset_queries(case.scenario.spec, Scope(case.namespace, INSTANCE), ONSET,
                                             WINDOW).values())
    assert total > 0
    assert not problems, f"{len(problems)} of {total} onset-window signals differ:\n" + "\n".join(problems)


def test_the_cases_cover_every_tier_under_load(
    running: tuple[list[Case], Ticker, LocalPrometheus], compared: tuple[int, float]
) -> None:
    """The comparison is only worth something if the signals are not all idle: across the scenarios, every
    tier's signals take non-zero values at the compared tick (a replica lags, the cache evicts, the queue
    backs up)."""
    all_cases, _ticker, _prom = running
    tick, _at = compared
    seen: dict[str, float] = {}
    for case in all_cases:
        for tier_name, signals in case.snapshots[tick].signals.items():
            for signal, value in signals.items():
                if value is not None and not math.isnan(value):
                    key = f"{tier_name}.{signal}"
                    seen[key] = max(seen.get(key, 0.0), abs(value))
    idle = sorted(k for k, v in seen.items() if v == 0.0)
    assert not idle, f"never non-zero in any scenario: {idle}"
