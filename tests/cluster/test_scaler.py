"""The scaler end to end on the local control plane: the operator as a real process, a real Prometheus
scraping synthetic pods of one ScaledApp (exact metric names, labelled as pods via file_sd), and the
operator's own ticks (intervalSeconds 5) deciding from real PromQL.

Each test makes one tier (workers: a queued backlog) the bottleneck and checks what the operator does
about it in one mode, and that what it must not touch stays untouched.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from devharness.prometheus import LocalPrometheus
from scaledapp.resources.names import SCALER_MANAGER, ChildNames
from tests.cluster.synthetic import SyntheticApp, synthetic_app
from tests.support.cluster import Cluster
from tests.support.operator import OperatorProcess
from tests.support.prometheus import Harness
from tests.support.wait import wait_for

pytestmark = pytest.mark.cluster
NAME = "shop"
INTERVAL = 5  # the CRD's minimum
TICK_TIMEOUT = 60  # reconcile + Prometheus target discovery (~5 s) + a few ticks, with room for a busy box
WORKLOADS = {  # tier -> (kind, child name)
    "app": ("deployment", ChildNames(NAME).app),
    "cache": ("deployment", ChildNames(NAME).cache),
    "workers": ("deployment", ChildNames(NAME).workers),
    "db-read": ("statefulset", ChildNames(NAME).db_replicas),
    "db-write": ("statefulset", ChildNames(NAME).db_primary),
}


@pytest.fixture
def pods(namespace: str) -> Iterator[SyntheticApp]:
    with synthetic_app(namespace, NAME) as app:
        yield app


@pytest.fixture
def prom(harness: Harness, pods: SyntheticApp) -> Iterator[LocalPrometheus]:
    prometheus = harness.prometheus(pods.targets(), name="scaler-prometheus")
    prometheus.wait_for_targets(timeout=30)
    yield prometheus
    prometheus.stop()


def apply_scaledapp(cluster: Cluster, namespace: str, prom: LocalPrometheus, mode: str,
                    annotations: dict[str, str] | None = None) -> None:
    body = {
        "apiVersion": "scaledapp.dev/v1alpha1",
        "kind": "ScaledApp",
        "metadata": {"name": NAME, "annotations": annotations or {}},
        "spec": {"scaling": {"mode": mode, "prometheusUrl": prom.url, "intervalSeconds": INTERVAL}},
    }
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))


def status(cluster: Cluster, namespace: str) -> dict[str, Any]:
    result: dict[str, Any] = cluster.get_json("scaledapp", NAME, "-n", namespace).get("status") or {}
    return result


def condition(st: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in st.get("conditions", []) if c.get("type") == type_), {})


def workloads(cluster: Cluster, namespace: str) -> dict[str, dict[str, Any]]:
    out = {}
    for tier, (kind, child) in WORKLOADS.items():
        out[tier] = cluster.get_json(kind, child, "-n", namespace, "--show-managed-fields")
    return out


def replicas(live: dict[str, dict[str, Any]]) -> dict[str, int]:
    return {tier: obj["spec"].get("replicas") for tier, obj in live.items()}


def scaler_entries(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in obj["metadata"].get("managedFields", []) if m.get("manager") == SCALER_MANAGER]


def owners_of_replicas(obj: dict[str, Any]) -> set[str]:
    return {m["manager"] for m in obj["metadata"].get("managedFields", [])
            if "f:replicas" in (m.get("fieldsV1", {}).get("f:spec") or {})}


def ticks(operator: OperatorProcess, namespace: str) -> int:
    """How many decisions the operator has logged for this ScaledApp (one per tick that decided)."""
    return sum(1 for r in operator.log_records()
               if (r.get("object") or {}).get("namespace") == namespace
               and (r.get("object") or {}).get("name") == NAME and str(r.get("message", "")).startswith("decision "))


def wait_ticks(operator: OperatorProcess, namespace: str, count: int) -> None:
    """Let the operator decide `count` more times (its log says so): time for a wrong action to show."""
    start = ticks(operator, namespace)
    wait_for(lambda: ticks(operator, namespace) >= start + count, INTERVAL * count + 30,
             f"{count} more scaler ticks for {namespace}/{NAME}")


def events(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.get_json("events", "-n", namespace)["items"]
    return [e for e in items if e.get("involvedObject", {}).get("kind") == "ScaledApp"]


def wait_status(cluster: Cluster, namespace: str, what: str, check: Any) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        st = status(cluster, namespace)
        return st if check(st) else None

    result: dict[str, Any] = wait_for(ready, TICK_TIMEOUT, what, interval=0.5)
    return result


def test_recommend_mode_reports_the_decision_and_changes_no_workload(
    cluster: Cluster, operator: OperatorProcess, namespace: str, pods: SyntheticApp, prom: LocalPrometheus
) -> None:
    pods.hot_queue()
    apply_scaledapp(cluster, namespace, prom, "Recommend")
    st = wait_status(cluster, namespace, "a recommendation for workers",
                     lambda s: s.get("bottleneck") == "workers" and (s.get("lastAction") or {}).get("tier"))
    action = st["lastAction"]
    assert action["tier"] == "workers" and action["kind"] == "widen" and action["applied"] is False
    assert (action["from"], action["to"]) == ("1", "2")
    assert condition(st, "Scaling")["reason"] == "Recommended"
    assert any(e["reason"] == "Recommended" and "workers" in e["message"] for e in events(cluster, namespace))
    before = workloads(cluster, namespace)
    wait_ticks(operator, namespace, 2)
    after = workloads(cluster, namespace)
    assert replicas(after) == replicas(before) and replicas(after)["workers"] == 1
    for tier in WORKLOADS:
        assert after[tier]["metadata"]["generation"] == before[tier]["metadata"]["generation"], tier
        # The scaler gave every horizontal workload its starting size once; it has applied nothing since.
        assert scaler_entries(after[tier]) == scaler_entries(before[tier]), tier
    # The app's starting size (2) was applied by the scaler; the workers start at the API's default of 1, which
    # needs no apply: the scaler owns their replicas from its first step on.
    assert scaler_entries(after["app"]), "the scaler's initial-size entry should be there"
    assert not scaler_entries(after["workers"]) and owners_of_replicas(after["workers"]) == set()
    # kubectl get shows the bottleneck at a glance (the CRD's printer column, filled from real metrics).
    table = cluster.kubectl("get", "sapp", NAME, "-n", namespace).splitlines()
    header, row = table[0].split(), table[1].split()
    assert row[header.index("BOTTLENECK")] == "workers", table


def test_auto_mode_widens_the_bottleneck_and_nothing_else(
    cluster: Cluster, operator: OperatorProcess, namespace: str, pods: SyntheticApp, prom: LocalPrometheus
) -> None:
    apply_scaledapp(cluster, namespace, prom, "Auto")
    wait_status(cluster, namespace, "signals known and no bottleneck",
                lambda s: condition(s, "MetricsAvailable").get("status") == "True" and not s.get("bottleneck"))
    before = workloads(cluster, namespace)
    pods.hot_queue()
    wait_for(lambda: replicas(workloads(cluster, namespace))["workers"] == 2, TICK_TIMEOUT,
             "the workers Deployment widened to 2 replicas")
    after = workloads(cluster, namespace)
    st = status(cluster, namespace)
    assert st["bottleneck"] == "workers"
    assert st["lastAction"]["applied"] is True and st["lastAction"]["tier"] == "workers"
    workers_before, workers_after = before["workers"], after["workers"]
    # Only the scaler's field manager owns spec.replicas, and only spec.replicas moved.
    assert owners_of_replicas(workers_after) == {SCALER_MANAGER}
    assert {k: v for k, v in workers_after["spec"].items() if k != "replicas"} == \
        {k: v for k, v in workers_before["spec"].items() if k != "replicas"}
    assert scaler_entries(workers_after) != scaler_entries(workers_before)  # the scaler's apply is recorded
    for tier in ("app", "cache", "db-read", "db-write"):
        assert after[tier]["spec"] == before[tier]["spec"], tier
        assert after[tier]["metadata"]["generation"] == before[tier]["metadata"]["generation"], tier
    assert any(e["reason"] == "Widened" and "workers" in e["message"] for e in events(cluster, namespace))


def test_the_pause_annotation_freezes_the_scaler(
    cluster: Cluster, operator: OperatorProcess, namespace: str, pods: SyntheticApp, prom: LocalPrometheus
) -> None:
    pods.hot_queue()
    apply_scaledapp(cluster, namespace, prom, "Auto", annotations={"scaledapp.dev/paused": "true"})
    wait_status(cluster, namespace, "the paused scaler seeing the workers bottleneck",
                lambda s: s.get("bottleneck") == "workers" and condition(s, "Scaling").get("reason") == "Paused")
    wait_ticks(operator, namespace, 2)
    assert replicas(workloads(cluster, namespace))["workers"] == 1
    assert not status(cluster, namespace).get("lastAction")
    # Unpaused, the same signals widen it: the annotation was what held it.
    cluster.kubectl("annotate", "scaledapp", NAME, "-n", namespace, "scaledapp.dev/paused-")
    wait_for(lambda: replicas(workloads(cluster, namespace))["workers"] == 2, TICK_TIMEOUT,
             "the workers widened once unpaused")


def test_a_prometheus_that_does_not_answer_holds_the_scaler(
    cluster: Cluster, operator: OperatorProcess, namespace: str, pods: SyntheticApp, prom: LocalPrometheus
) -> None:
    apply_scaledapp(cluster, namespace, prom, "Auto")
    wait_status(cluster, namespace, "signals known",
                lambda s: condition(s, "MetricsAvailable").get("status") == "True")
    prom.stop()
    pods.hot_queue()
    st = wait_status(cluster, namespace, "MetricsAvailable=False",
                     lambda s: condition(s, "MetricsAvailable").get("status") == "False")
    assert condition(st, "MetricsAvailable")["reason"] == "PrometheusUnavailable"
    assert any(e["reason"] == "MetricsUnavailable" for e in events(cluster, namespace))
    wait_ticks(operator, namespace, 2)
    assert replicas(workloads(cluster, namespace))["workers"] == 1
    assert not status(cluster, namespace).get("lastAction")
    # The same Prometheus back (same port and data): the backlog it now reports is acted on.
    prom.start(prom.targets)
    wait_for(lambda: replicas(workloads(cluster, namespace))["workers"] == 2, TICK_TIMEOUT,
             "the workers widened once Prometheus answered again")
