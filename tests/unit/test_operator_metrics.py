"""The operator's own /metrics against docs/metrics.md ("The operator"): every documented family exists with exactly
its labels, nothing scaledapp_operator_* goes undocumented; and the hooks count what they should."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from kubernetes.client import ApiException

from scaledapp import api, metrics
from tests.dataplane.test_metrics_contract import _check, _families, documented_metrics

BODY = {"metadata": {"namespace": "shop", "name": "demo"}}


def _decision(**overrides: Any) -> Any:
    fields: dict[str, Any] = {
        "bottleneck": "db-read",
        "pressures": [api.Evidence(tier="app", pressure=0.5, signal="cpu", value=0.35, target=0.7),
                      api.Evidence(tier="db-read", pressure=1.8, signal="read_latency", value=0.09, target=0.05),
                      api.Evidence(tier="cache", pressure=None)],
        "action": api.Action(time="2026-01-01T00:00:00Z", tier="db-read", kind="widen", from_="1", to="2",
                             applied=True, verdict="pending"),
        "verified": api.Action(time="2025-12-31T23:58:00Z", tier="app", kind="widen", from_="2", to="3",
                               applied=True, verdict="effective"),
        "reason": "Widened",
        "message": "db-read is the bottleneck",
        "recommendation": "",
    }
    return SimpleNamespace(**{**fields, **overrides})


def _exercise() -> None:
    metrics.record_tiers(BODY, api.TiersStatus(app=api.TierStatus(desired=3, ready=2)))
    metrics.record_tick(BODY, _decision())
    with metrics.tick_timer(BODY):
        pass
    with metrics.prometheus_query() as outcome:
        outcome.append(metrics.query_result(1.0, answered=True))
    with metrics.kube_request("GET", "tick"):
        pass
    with pytest.raises(ApiException), metrics.kube_request("PATCH"):
        raise ApiException(status=409)


def _sample(name: str, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(name, labels)


def test_every_documented_operator_series_exists_with_its_labels() -> None:
    _exercise()
    port = metrics.serve(0, addr="127.0.0.1")
    assert port
    families = _families(f"http://127.0.0.1:{port}/metrics")
    documented = [d for d in documented_metrics() if "operator" in d.emitters]
    assert len(documented) >= 10
    problems: list[str] = []
    for doc in documented:
        problems += _check(doc, families, "operator")
    names = {d.name for d in documented}
    for sample_name in families:
        base = re.sub(r"_(bucket|sum|count)$", "", sample_name)
        if sample_name.startswith("scaledapp_") and sample_name not in names and base not in names:
            problems.append(f"operator: {sample_name} is exported but not documented")
    assert problems == []
    assert _sample("scaledapp_operator_leader") == 1.0
    assert httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).status_code == 200


def test_a_tick_sets_pressure_bottleneck_decisions_and_verdicts() -> None:
    metrics.forget(BODY)
    _exercise()
    obj = {"namespace": "shop", "scaledapp": "demo"}
    assert _sample("scaledapp_operator_tier_pressure", **obj, tier="db-read") == 1.8
    cache = _sample("scaledapp_operator_tier_pressure", **obj, tier="cache")
    assert cache is not None and cache != cache  # NaN: unknown, never zero
    assert _sample("scaledapp_operator_bottleneck", **obj, tier="db-read") == 1.0
    assert _sample("scaledapp_operator_bottleneck", **obj, tier="app") == 0.0
    assert _sample("scaledapp_operator_tier_desired_replicas", **obj, tier="app") == 3.0
    assert _sample("scaledapp_operator_tier_ready_replicas", **obj, tier="app") == 2.0
    assert _sample("scaledapp_operator_decisions_total", **obj, tier="db-read", direction="widen", applied="true") == 1
    assert _sample("scaledapp_operator_step_verdicts_total", **obj, tier="app", direction="widen",
                   verdict="effective") == 1
    assert _sample("scaledapp_operator_ticks_total", **obj, reason="Widened") == 1
    assert (_sample("scaledapp_operator_kube_requests_total", method="PATCH", code="409", work="other") or 0) >= 1
    assert (_sample("scaledapp_operator_kube_requests_total", method="GET", code="2xx", work="tick") or 0) >= 1


def test_a_hold_counts_no_decision_and_a_tier_no_longer_judged_loses_its_pressure() -> None:
    metrics.forget(BODY)
    metrics.record_tick(BODY, _decision())
    metrics.record_tick(BODY, _decision(action=None, verified=None, reason="Cooldown",
                                        pressures=[api.Evidence(tier="db-read", pressure=1.2)]))
    obj = {"namespace": "shop", "scaledapp": "demo"}
    assert _sample("scaledapp_operator_decisions_total", **obj, tier="db-read", direction="widen", applied="true") == 1
    assert _sample("scaledapp_operator_ticks_total", **obj, reason="Cooldown") == 1
    assert _sample("scaledapp_operator_tier_pressure", **obj, tier="app") is None
    assert _sample("scaledapp_operator_tier_pressure", **obj, tier="db-read") == 1.2


def test_forget_drops_only_that_scaledapps_series() -> None:
    other = {"metadata": {"namespace": "shop", "name": "other"}}
    metrics.record_tick(BODY, _decision())
    metrics.record_tick(other, _decision())
    metrics.forget(BODY)
    assert _sample("scaledapp_operator_tier_pressure", namespace="shop", scaledapp="demo", tier="db-read") is None
    assert _sample("scaledapp_operator_tier_pressure", namespace="shop", scaledapp="other", tier="db-read") == 1.8
    metrics.forget(other)


def test_prometheus_query_results_are_counted() -> None:
    before = {r: _sample("scaledapp_operator_prometheus_queries_total", result=r) or 0
              for r in ("ok", "unknown", "error")}
    for value, answered in ((1.0, True), (None, True), (None, False)):
        with metrics.prometheus_query() as outcome:
            outcome.append(metrics.query_result(value, answered))
    with pytest.raises(RuntimeError), metrics.prometheus_query():
        raise RuntimeError("boom")
    after = {r: _sample("scaledapp_operator_prometheus_queries_total", result=r) or 0 for r in before}
    assert {r: after[r] - before[r] for r in before} == {"ok": 1, "unknown": 1, "error": 2}
