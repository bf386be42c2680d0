"""The benchmark's scenarios: offered load over simulated time, the demo-app knobs that change with
it, and when the metrics pipeline is down. Rates come from demo_app.profiles.Profile (the load
generator's own schedules) wherever its kinds fit; the diurnal curve and multi-phase shifts are
written out.

Request mix: most scenarios offer 85 % reads and 15 % writes plus a steady trickle of orders, so the
workers are not incidentally the bottleneck of a scenario meant for another tier; the step and
outage scenarios use 70/30 so that the step hits the app and nothing else (the cache's working set
still fits), which makes their time-to-first-correct-action a clean comparison.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from demo_app.profiles import Profile
from devharness.twin import Load, TwinParams
from scaledapp import api

BASE_RATE = 160.0
ORDERS = 1.0


@dataclass(frozen=True)
class Knobs:
    """Demo-app knobs from a time on (TwinParams fields that mirror APP_* settings)."""

    start: float
    changes: dict[str, float]


@dataclass(frozen=True)
class BenchScenario:
    name: str
    title: str
    duration: float
    load: Callable[[float], Load]
    event: float  # when the load first changes (time to first correct action counts from saturation after it)
    steady: bool  # the load settles at a constant: no scaling direction should reverse
    spec: api.ScaledAppSpec = field(default_factory=api.ScaledAppSpec)
    knobs: tuple[Knobs, ...] = ()
    outage: tuple[float, float] | None = None  # [from, to): no metrics for any policy

    def params_at(self, t: float, base: TwinParams | None = None) -> TwinParams:
        params = base or TwinParams()
        for knob in self.knobs:
            if t >= knob.start:
                params = params.with_(**knob.changes)
        return params

    def metrics_down(self, t: float) -> bool:
        return self.outage is not None and self.outage[0] <= t < self.outage[1]


def split(rate: float, reads: float, orders: float = ORDERS) -> Load:
    return Load(rate * reads, rate * (1 - reads), orders)


def _profile(profile: Profile, reads: float) -> Callable[[float], Load]:
    def load(t: float) -> Load:
        return split(profile.rate_at(t), reads)

    return load


def _phases(phases: list[tuple[float, Load]]) -> Callable[[float], Load]:
    """Piecewise-constant loads, each from its start time, with a 30 s linear ramp between them."""

    def load(t: float) -> Load:
        current = phases[0][1]
        for start, target in phases[1:]:
            if t >= start:
                f = min(1.0, (t - start) / 30.0)
                current = current.scaled(1 - f).plus(target.scaled(f))
        return current

    return load


def _diurnal(t: float) -> Load:
    # A compressed day: a 20-minute period from BASE_RATE up to 400 req/s and back.
    rate = BASE_RATE + 240.0 * (1 - math.cos(2 * math.pi * t / 1200.0)) / 2
    return split(rate, 0.85)


SAWTOOTH_PERIOD = 240.0
SAWTOOTH_RISE = 180.0
SAWTOOTH_PEAK = 460.0


def _sawtooth(t: float) -> Load:
    # Five teeth: each rises linearly from BASE_RATE to 460 req/s over 180 s, then drops straight back
    # and rests there for 60 s, so a scaler that widened for a tooth is asked to narrow before the next.
    into = t % SAWTOOTH_PERIOD
    rise = BASE_RATE + (SAWTOOTH_PEAK - BASE_RATE) * into / SAWTOOTH_RISE if into < SAWTOOTH_RISE else BASE_RATE
    return split(rise, 0.85)


def scenarios() -> list[BenchScenario]:
    write_bound_spec = api.ScaledAppSpec.model_validate({"app": {"replicas": {"min": 4, "max": 10}}})
    return [
        BenchScenario("step", "step: 160 -> 420 req/s at 2 min (app-bound)", 900,
                      _profile(Profile("step", rate=BASE_RATE, peak=420, at=120, duration=900), 0.7),
                      event=120, steady=True),
        BenchScenario("ramp", "ramp: 160 -> 800 req/s over 25 min", 1500,
                      _profile(Profile("ramp", rate=BASE_RATE, peak=800, duration=1500), 0.85),
                      event=0, steady=False),
        BenchScenario("spike", "spike: 520 req/s for 90 s at 5 min", 900,
                      _profile(Profile("spike", rate=BASE_RATE, peak=520, at=300, length=90, duration=900), 0.85),
                      event=300, steady=False),
        BenchScenario("diurnal", "diurnal: 160..400 req/s, 20-minute period", 1800, _diurnal,
                      event=0, steady=False),
        BenchScenario(
            "shift", "bottleneck shift: app -> cache -> db-read -> workers, 10 min each", 2520,
            _phases([(0, Load(140, 20, ORDERS)), (120, Load(300, 100, ORDERS)), (720, Load(900, 60, ORDERS)),
                     (1320, Load(900, 60, ORDERS)), (1920, Load(900, 60, 6.0))]),
            event=120, steady=True,
            # From 22 min the reads are report-like (APP_READ_QUERY_COST_ROWS): the replicas buckle.
            knobs=(Knobs(1320, {"read_query_cost_rows": 2000}),),
        ),
        BenchScenario("db-write", "DB-write-bound: writes 20 -> 230/s at 2 min (app min 4)", 900,
                      _phases([(0, Load(100, 20, ORDERS)), (120, Load(100, 230, ORDERS))]),
                      event=120, steady=True, spec=write_bound_spec),
        BenchScenario("outage", "metrics outage 100-400 s around a step to 420 req/s", 900,
                      _profile(Profile("step", rate=BASE_RATE, peak=420, at=120, duration=900), 0.7),
                      event=120, steady=True, outage=(100.0, 400.0)),
        BenchScenario("sawtooth", "sawtooth: 160 -> 460 req/s over 3 min, drop, rest 1 min; five teeth", 1200,
                      _sawtooth, event=0, steady=False),
        # Two tiers saturate at the same moment: reads for the app's CPU and orders for the one worker.
        # A one-tier-per-step scaler must relieve both; neither hides the other (orders do not need the
        # app's spare CPU to reach the queue).
        BenchScenario("two-bottlenecks", "two bottlenecks at once: app (reads 140 -> 340/s) and workers "
                      "(orders 1 -> 3/s) at 2 min", 900,
                      _phases([(0, Load(140, 20, ORDERS)), (120, Load(340, 60, 3.0))]),
                      event=120, steady=True),
    ]
