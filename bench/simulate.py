"""One benchmark run: a scenario x a policy against the twin in simulated time (1 s ticks, policies
asked every 15 s), and the run's scores from the model's ground truth."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from bench.policies import Inputs, Policy
from bench.scenarios import BenchScenario
from devharness.twin import TwinModel
from devharness.twin.model import LOADED, SATURATED
from scaledapp import tiers
from scaledapp.quantity import format_bytes, parse_cpu_millicores
from scaledapp.sizes import Sizes, TierName
from scaledapp.tiers import app, cache, changed_tiers, db_read, db_write, workers

SLO_P95_SECONDS = 0.25  # end-user p95 latency objective
POLICY_PERIOD = 15  # seconds; every policy's interval is a multiple of it
# Prometheus and metrics-server both scrape every 15 s, not in step with the policies' ticks: a policy
# sees data 8 s old (on average a scrape is 7.5 s old), and metrics-server's CPU is the average over
# the 15 s before its scrape. A rate over a window of those scrapes is the mean of the window less one scrape
# interval (TwinModel's scrape_interval_seconds): 45 s for 1m, 15 s for the 30 s onset window.
SCRAPE_PERIOD = 15
SCRAPE_OFFSET = 7
JUDGE_WINDOW = 60  # an action is judged against the ground truth of the preceding rate window
REVERSAL_WINDOW = 600.0  # a tier changing direction within this is a reversal (flapping)


@dataclass(frozen=True)
class Act:
    time: float
    tier: TierName
    kind: str  # widen / narrow
    before: str
    after: str
    correct: bool  # the tier was saturated (ground truth) in the preceding window
    wrong: bool  # a widening of a tier that was not even loaded in the preceding window


@dataclass(frozen=True)
class Sample:
    """One tick of a run, for the plots."""

    time: float
    reads: float
    writes: float
    orders: float
    p95: float
    sizes: Sizes
    bottleneck: TierName | None


@dataclass
class RunResult:
    scenario: str
    policy: str
    acts: list[Act] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    time_to_correct: float | None = None
    slo_violation_seconds: float = 0.0
    replica_seconds: float = 0.0  # app + read replicas + workers, pods that exist
    core_seconds: float = 0.0  # the same pods' CPU limits plus the primary's CPU
    errors: float = 0.0
    first_saturation: float | None = None
    first_saturated: TierName | None = None  # the tier saturated at that moment
    # The first policy tick whose inputs come from a scrape taken at or after the first saturation: no
    # policy that acts on metrics can take a correct action earlier (a floor of time_to_correct).
    first_seen: float | None = None
    # The same for the first second over the SLO after the event, and the most utilized tier then.
    first_violation: float | None = None
    violation_tier: TierName | None = None
    violation_seen: float | None = None

    @property
    def wrong_tier(self) -> int:
        return sum(1 for a in self.acts if a.wrong)

    @property
    def reversals(self) -> int:
        count = 0
        last: dict[str, Act] = {}
        for act in self.acts:
            previous = last.get(act.tier)
            if previous is not None and previous.kind != act.kind and act.time - previous.time <= REVERSAL_WINDOW:
                count += 1
            last[act.tier] = act
        return count


def _size_text(sizes: Sizes, tier: TierName) -> str:
    """The size as the bench's tables show it: replicas, the cache's memory, the primary's CPU."""
    if tier == db_write.TIER.name:
        return db_write.TIER.size(sizes).cpu
    return format_bytes(cache.TIER.size(sizes)) if tier == cache.TIER.name else str(tiers.tier(tier).size(sizes))


def _bigger(before: Sizes, after: Sizes, tier: TierName) -> bool:
    model = tiers.tier(tier)
    return model.capacity(after) > model.capacity(before)


def run(scenario: BenchScenario, policy: Policy, seed: int = 1) -> RunResult:
    model = TwinModel(scenario.spec, params=scenario.params_at(0.0), seed=seed, scrape_interval_seconds=SCRAPE_PERIOD)
    spec = scenario.spec
    app_cores = parse_cpu_millicores(spec.app.resources.cpu) / 1000.0
    replica_cores = parse_cpu_millicores(spec.database.resources.initial.cpu) / 1000.0
    worker_cores = 0.5
    result = RunResult(scenario.name, policy.name)
    saturated_at: list[set[TierName]] = []  # per tick
    loaded_at: list[set[TierName]] = []
    first_saturation: float | None = None
    scraped = Inputs(None, None)
    scraped_at: float | None = None
    cpu_samples: list[float] = []
    app_ready: list[int] = []  # ready app pods per tick over the CPU sample
    for _ in range(int(scenario.duration)):
        now = model.now
        model.params = scenario.params_at(now)
        obs = model.step(scenario.load(now))
        cpu_samples = [*cpu_samples[-(SCRAPE_PERIOD - 1):], obs.app_cpu_utilization]
        app_ready = [*app_ready[-(SCRAPE_PERIOD - 1):], obs.ready.get(app.TIER.name, 0)]
        tick = round(obs.time)
        if tick % SCRAPE_PERIOD == SCRAPE_OFFSET:
            down = scenario.metrics_down(obs.time)
            # The pods metrics-server's reading covers: those ready throughout its sample.
            scraped_at = None if down else obs.time
            scraped = Inputs(None if down else model.snapshot(),
                             None if down else sum(cpu_samples) / len(cpu_samples),
                             None if down else min(app_ready))
        saturated_at.append({t for t, u in obs.utilization.items() if u >= SATURATED})
        loaded_at.append({t for t, u in obs.utilization.items() if u >= LOADED})
        if first_saturation is None and obs.time > scenario.event and obs.bottleneck is not None:
            first_saturation = obs.time
            result.first_saturated = obs.bottleneck
        sizes = model.sizes
        violated = not obs.p95_seconds <= SLO_P95_SECONDS
        result.slo_violation_seconds += 1.0 if violated else 0.0
        if violated and result.first_violation is None and obs.time > scenario.event:
            result.first_violation = obs.time
            result.violation_tier = max(obs.utilization, key=lambda t: obs.utilization[t])
        apps, reads, workers_ = app.TIER.size(sizes), db_read.TIER.size(sizes), workers.TIER.size(sizes)
        result.replica_seconds += apps + reads + workers_
        result.core_seconds += (apps * app_cores + reads * replica_cores + workers_ * worker_cores
                                + db_write.TIER.size(sizes).cpu_millicores / 1000.0)
        result.errors += obs.errors_per_second
        result.samples.append(Sample(obs.time, obs.load.reads_per_second, obs.load.writes_per_second,
                                     obs.load.orders_per_second, obs.p95_seconds, sizes, obs.bottleneck))
        if tick % POLICY_PERIOD:
            continue
        inputs = Inputs(None, None) if scenario.metrics_down(obs.time) else scraped
        if (result.first_seen is None and first_saturation is not None and inputs.snapshot is not None
                and scraped_at is not None and scraped_at >= first_saturation):
            result.first_seen = obs.time
        if (result.violation_seen is None and result.first_violation is not None and inputs.snapshot is not None
                and scraped_at is not None and scraped_at >= result.first_violation):
            result.violation_seen = obs.time
        new = policy.tick(obs.time, model, inputs)
        if new is None or new == sizes:
            continue
        recent_saturated = set().union(*saturated_at[-JUDGE_WINDOW:])
        recent_loaded = set().union(*loaded_at[-JUDGE_WINDOW:])
        for tier in changed_tiers(sizes, new):
            widen = _bigger(sizes, new, tier)
            act = Act(obs.time, tier, "widen" if widen else "narrow", _size_text(sizes, tier), _size_text(new, tier),
                      correct=widen and tier in recent_saturated, wrong=widen and tier not in recent_loaded)
            result.acts.append(act)
            if (act.correct and result.time_to_correct is None and first_saturation is not None
                    and act.time >= first_saturation):
                result.time_to_correct = act.time - first_saturation
        model.set_sizes(new)
    result.first_saturation = first_saturation
    if result.time_to_correct is None and first_saturation is None:
        result.time_to_correct = math.nan  # nothing ever saturated: nothing to react to
    return result
