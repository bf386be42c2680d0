"""Load profiles for the live twin: what is offered when, and which demo-app knobs change with it.

A phase is a stretch of time with its own offered load and, optionally, the demo app's knobs
(`cpu_work_ms`, `read_query_cost_rows`, `job_duration_seconds`: TwinParams fields that do what the
app's APP_* settings do). Knobs are how a short demo makes a different tier buckle without first
widening the app eight times: a heavier endpoint, a report-like read query, a surge of orders.
Loads ramp linearly from the previous phase's load over `ramp_seconds`, so no tier sees a cliff.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from devharness.twin.params import Load, TwinParams

BASE = Load(reads_per_second=150.0, writes_per_second=10.0, orders_per_second=0.5)


@dataclass(frozen=True)
class Phase:
    name: str
    start: float  # seconds since the twin started
    load: Load
    knobs: Mapping[str, float] = field(default_factory=dict)  # TwinParams overrides from this phase on
    ramp_seconds: float = 5.0
    expect: str = ""  # the tier this phase should make the bottleneck (for the report), "" for none


@dataclass(frozen=True)
class Scenario:
    name: str
    phases: tuple[Phase, ...]
    # Constants of the twin for this scenario (e.g. a cheaper app request, so the app is not the first
    # tier to buckle under every load).
    params: Mapping[str, float] = field(default_factory=dict)

    def phase_at(self, t: float) -> tuple[int, Phase]:
        index = 0
        for i, phase in enumerate(self.phases):
            if t >= phase.start:
                index = i
        return index, self.phases[index]

    def load_at(self, t: float) -> Load:
        index, phase = self.phase_at(t)
        if index == 0 or phase.ramp_seconds <= 0 or t >= phase.start + phase.ramp_seconds:
            return phase.load
        before = self.phases[index - 1].load
        f = (t - phase.start) / phase.ramp_seconds
        return before.scaled(1.0 - f).plus(phase.load.scaled(f))

    def params_at(self, base: TwinParams, t: float) -> TwinParams:
        """The twin's constants at t: the scenario's own, then every knob set by a phase so far."""
        knobs: dict[str, float] = dict(self.params)
        for phase in self.phases:
            if t >= phase.start:
                knobs.update(phase.knobs)
        return base.with_(**knobs) if knobs else base

    @property
    def length(self) -> float:
        """When the last phase starts (the scenario holds the last phase's load after that)."""
        return self.phases[-1].start


def step(rate: float = 150.0, peak: float = 330.0, at: float = 20.0) -> Scenario:
    """Reads step from `rate` to `peak` per second at `at`: more than two app pods can serve."""
    return Scenario("step", (
        Phase("base", 0.0, BASE.scaled(rate / BASE.reads_per_second)),
        Phase("step", at, BASE.scaled(peak / BASE.reads_per_second), expect="app", ramp_seconds=2.0),
    ))


def ramp(rate: float = 100.0, peak: float = 600.0, over: float = 300.0, steps: int = 10) -> Scenario:
    """Load rising from `rate` to `peak` over `over` seconds (in `steps` ramps)."""
    phases = [Phase("base", 0.0, BASE.scaled(rate / BASE.reads_per_second))]
    for i in range(1, steps + 1):
        value = rate + (peak - rate) * i / steps
        phases.append(Phase(f"ramp {value:.0f}/s", over * i / steps, BASE.scaled(value / BASE.reads_per_second),
                            ramp_seconds=over / steps))
    return Scenario("ramp", tuple(phases))


def read_bottleneck(at: float = 15.0) -> Scenario:
    """Read queries turn report-like (each scans rows on a replica): the read replicas buckle, the app
    does not (its own CPU per request is unchanged)."""
    return Scenario("read-bottleneck", (
        Phase("base", 0.0, BASE),
        Phase("heavy reads", at, BASE, knobs={"read_query_cost_rows": 5000}, expect="db-read"),
    ))


def bottleneck_shift(gap: float = 90.0) -> Scenario:
    """app -> cache -> db-read -> workers, one phase each `gap` seconds: long enough for the scaler to
    act, cool down and verify its step within the operator's one-minute rate window.

    1. a CPU-heavy release (APP_CPU_WORK_MS=4): the app pods' own CPU is the limit;
    2. the release is rolled back and 2.5 times the reads arrive: more distinct items within one TTL than
       the cache holds, so Redis evicts and the hit ratio falls (the app has room after step 1);
    3. reads turn report-like (APP_READ_QUERY_COST_ROWS=3000): each miss scans rows on a replica;
    4. an order surge: more jobs per second than one worker finishes.
    """
    # 2.5x the reads, writes and orders as before (more writes would send more reads of fresh keys
    # to the primary, and the report-like reads would press it as well as the replicas).
    more = Load(BASE.reads_per_second * 2.5, BASE.writes_per_second, BASE.orders_per_second)
    return Scenario("bottleneck-shift", (
        Phase("warm-up", 0.0, BASE),
        Phase("app: CPU-heavy release", 10.0, BASE, knobs={"cpu_work_ms": 4.0}, expect="app"),
        Phase("cache: 2.5x the reads", 10.0 + gap, more, knobs={"cpu_work_ms": 0.0}, expect="cache"),
        Phase("db-read: report-like reads", 10.0 + 2 * gap, more, knobs={"read_query_cost_rows": 3000},
              expect="db-read"),
        Phase("workers: order surge", 10.0 + 3 * gap, Load(more.reads_per_second, more.writes_per_second, 3.0),
              expect="workers"),
    ), params={"app_cpu_seconds_per_request": 0.002})


def constant(rate: float = 150.0) -> Scenario:
    return Scenario("constant", (Phase("constant", 0.0, BASE.scaled(rate / BASE.reads_per_second)),))


PROFILES: dict[str, Callable[[], Scenario]] = {
    "step": step, "ramp": ramp, "bottleneck-shift": bottleneck_shift, "read-bottleneck": read_bottleneck,
    "constant": constant,
}


def scenario(name: str) -> Scenario:
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; one of {', '.join(PROFILES)}")
    return PROFILES[name]()
