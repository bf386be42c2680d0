"""The benchmark's HPA baselines follow the HPA's documented algorithm (Kubernetes docs, "Algorithm
details"; the controller's replica calculator) where pods have just been added."""

from __future__ import annotations

from bench.policies import Hpa


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
