"""The benchmark's HPA baselines follow the HPA's documented algorithm (Kubernetes docs, "Algorithm
details"; the controller's replica calculator) where pods have just been added; the Goals section's
floors of a miss."""

from __future__ import annotations

from bench import report
from bench.policies import Hpa, ScaledAppPolicy, baselines
from bench.scenarios import scenarios
from bench.simulate import run


def cpu_hpa() -> Hpa:
    return Hpa("app", (2, 10), 0.7, "utilization", lambda inputs: None)


def latency_hpa() -> Hpa:
    return Hpa("app", (2, 10), 0.08, "value", lambda inputs: None)


def test_a_pod_whose_cpu_sample_predates_its_readiness_is_set_aside_on_a_scale_up() -> None:
    # 3 pods ready now; the CPU reading (0.86 of the limit) covers the 2 that were ready through its sample.
    # The third counts as 0 %: 0.86 x 2 / (0.7 x 3) = 0.82, not a scale-up.
    assert cpu_hpa().desired(0, current=3, ready=3, value=0.86, sampled=2) == 3
    # Taken as if all three had reported 0.86 it would go to ceil(3 x 1.23) = 4.
    assert cpu_hpa().desired(0, current=3, ready=3, value=0.86) == 4
    # With every pod sampled, the ratio rule as usual: ceil(2 x 1.0 / 0.7) = 3.
    assert cpu_hpa().desired(0, current=2, ready=2, value=1.0, sampled=2) == 3


def test_a_value_metric_multiplies_the_ready_pods_not_the_ones_asked_for() -> None:
    # Latency at twice its target: ceil(2 x ready pods). With 6 asked for and 2 ready, 4 (not 12, capped at 10).
    assert latency_hpa().desired(0, current=6, ready=2, value=0.16) == 4
    assert latency_hpa().desired(0, current=2, ready=2, value=0.16) == 4


def test_the_floors_of_a_miss_are_what_a_reacting_policy_cannot_beat() -> None:
    # The spike: the first scrape that holds it is taken at 307 s, the first tick after it is 315 s, and the
    # app's new pods serve 10 s later; everything over the SLO before that is lost whatever the step.
    spike = next(s for s in scenarios() if s.name == "spike")
    cpu, latency = baselines(spike.spec)[:2]  # the HPA on CPU (the first-action goal's) and the spike's best
    results = [run(spike, ScaledAppPolicy(spike.spec)), run(spike, cpu()), run(spike, latency())]
    mine = results[0]
    assert mine.first_violation is not None and 300 < mine.first_violation < 307
    assert mine.violation_seen == 315 and mine.first_seen is not None and mine.first_saturation is not None
    assert mine.first_seen - mine.first_saturation <= 15
    assert report.relief_seconds("app", spike) == 10 and report.relief_seconds("cache", spike) == 0
    lines = report.floors(results, [spike])
    best = min(r.slo_violation_seconds for r in results[1:])
    if mine.slo_violation_seconds > 0.8 * best:
        assert any(line.startswith("- spike: SLO: unreachable - 24 s") for line in lines), lines
