"""The closed loop on one machine: the real operator process reads a real Prometheus that scrapes the
live twin, and scales real workloads on the local control plane; the twin follows what the API server
says runs. Each test offers a load profile and checks what the operator did about it, through the
ScaledApp's status and Events and the workloads themselves.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest

from devharness.demo.stack import Stack
from tests.e2e.conftest import StartLoop
from tests.support.wait import wait_for

pytestmark = pytest.mark.cluster

# The service of examples/minimal.yaml with a fast scaler: a tick every 5 s, a 30 s cooldown (a step
# shows in the operator's one-minute rate window by then), and no narrowing within a test.
SCALEDAPP: dict[str, Any] = {
    "apiVersion": "scaledapp.dev/v1alpha1",
    "kind": "ScaledApp",
    "metadata": {"name": "shop"},
    "spec": {
        "app": {"replicas": {"min": 2, "max": 6}},
        "cache": {"memory": {"initial": "128Mi", "max": "512Mi"}},  # big enough to stay out of these tests
        "database": {"readReplicas": {"min": 1, "max": 3}},
        "workers": {"replicas": {"min": 1, "max": 4}},
        "scaling": {"mode": "Auto", "intervalSeconds": 5, "cooldownSeconds": 30, "verifyBackoffSeconds": 120,
                    "stabilization": {"scaleUpSeconds": 0, "scaleDownSeconds": 600}},
    },
}
WORKLOADS = {"app": "deployment/shop-app", "db-read": "statefulset/shop-db-read", "workers": "deployment/shop-workers"}


def scaledapp() -> dict[str, Any]:
    return copy.deepcopy(SCALEDAPP)


def status(stack: Stack) -> dict[str, Any]:
    out: dict[str, Any] = stack.get_json("scaledapp", stack.name).get("status") or {}
    return out


def condition(stack: Stack, kind: str) -> dict[str, Any]:
    return next((c for c in status(stack).get("conditions", []) if c.get("type") == kind), {})


def events(stack: Stack) -> list[dict[str, Any]]:
    """The ScaledApp's Events, oldest first."""
    items = stack.get_json("events", "--field-selector", f"involvedObject.name={stack.name},"
                           "involvedObject.kind=ScaledApp")["items"]
    return sorted(items, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")


def actions(stack: Stack) -> list[str]:
    """"Widened: <message>" / "Narrowed: ..." of every step the operator took."""
    return [f"{e['reason']}: {e['message']}" for e in events(stack) if e["reason"] in ("Widened", "Narrowed")]


def replicas(stack: Stack, tier: str) -> int:
    return int(stack.get_json(WORKLOADS[tier])["spec"].get("replicas") or 0)


def diagnose(stack: Stack) -> str:
    """What a failing assertion should show: the decisions, the status and the logs' tails."""
    st = status(stack)
    return (f"\nactions: {json.dumps(actions(stack), indent=1)}\nbottleneck: {st.get('bottleneck')!r}"
            f"\npressures: {st.get('pressures')}\nlastAction: {st.get('lastAction')}"
            f"\n--- operator log\n{stack.operator.log_tail(15)}\n--- twin log\n{stack.twin.log_tail(8)}")


def wait_for_widen(stack: Stack, tier: str, timeout: float) -> str:
    def widened() -> str | None:
        stack.operator.check_alive()
        stack.twin.check_alive()
        return next((a for a in actions(stack) if a.startswith(f"Widened: {tier} ")), None)

    try:
        return wait_for(widened, timeout, f"the operator to widen {tier}", interval=1.0)
    except AssertionError as exc:
        raise AssertionError(f"{exc}{diagnose(stack)}") from None


def test_a_load_step_widens_the_app_and_the_step_is_verified(closed_loop: StartLoop) -> None:
    stack = closed_loop(scaledapp(), "step")  # reads 150/s -> 330/s at 20 s: more than two app pods serve
    first = wait_for_widen(stack, "app", 120)
    assert "cpu_utilization" in first or "self_seconds" in first or "in_flight" in first, first
    # A sized step (ceil(replicas x pressure), at least one more): the Deployment gets what the action says.
    step = next(a for a in (status(stack).get("history") or []) if a.get("tier") == "app" and a.get("kind") == "widen")
    target = int(step["to"])
    assert target > int(step["from"]) >= 2, step
    wait_for(lambda: replicas(stack, "app") == target, 20, f"the app Deployment at {target} replicas")
    # Verify-after-act: after the cooldown the operator judges its step by the app's pressure.
    verdict = wait_for(lambda: (status(stack).get("lastAction") or {}).get("verdict") not in (None, "pending")
                       and status(stack)["lastAction"], 90, "a verdict on the app step", interval=1.0)
    assert verdict["tier"] == "app" and verdict["verdict"] == "effective", f"{verdict}{diagnose(stack)}"
    others = [a for a in actions(stack) if not a.startswith("Widened: app ")]
    assert others == [], f"only the app was the bottleneck{diagnose(stack)}"


def test_a_read_bottleneck_adds_a_read_replica_and_no_app_pods(closed_loop: StartLoop) -> None:
    stack = closed_loop(scaledapp(), "read-bottleneck")  # reads turn report-like at 15 s
    wait_for_widen(stack, "db-read", 120)
    wait_for(lambda: replicas(stack, "db-read") == 2, 20, "the read replicas' StatefulSet at 2")
    assert replicas(stack, "app") == 2, diagnose(stack)
    wrong = [a for a in actions(stack) if not a.startswith("Widened: db-read ")]
    assert wrong == [], f"the app is slow only because it waits on reads{diagnose(stack)}"


def held_ticks(stack: Stack) -> int:
    """Decisions the operator logged as a hold on missing metrics, so far (scaledapp.trace's summary line)."""
    log = stack.operator.log_path.read_text(errors="replace")
    return len(re.findall(r"decision hold[^(]*\(MetricsUnavailable\)", log))


def test_a_prometheus_outage_holds_with_metrics_unavailable(closed_loop: StartLoop) -> None:
    stack = closed_loop(scaledapp(), "constant")
    wait_for(lambda: condition(stack, "MetricsAvailable").get("status") == "True", 60, "metrics available")
    before = {tier: replicas(stack, tier) for tier in WORKLOADS}
    held_before = held_ticks(stack)
    stack.prometheus.stop()
    down = wait_for(lambda: (c := condition(stack, "MetricsAvailable")).get("status") == "False" and c, 60,
                    "MetricsAvailable=False while Prometheus is down", interval=1.0)
    assert down["reason"] == "PrometheusUnavailable", down
    assert any(e["reason"] == "MetricsUnavailable" and e["type"] == "Warning" for e in events(stack))
    # Several ticks on: still holding, nothing touched.
    wait_for(lambda: held_ticks(stack) >= held_before + 3, 40, "three ticks held on missing metrics", interval=1.0)
    assert condition(stack, "MetricsAvailable").get("status") == "False"
    assert {tier: replicas(stack, tier) for tier in WORKLOADS} == before
    assert actions(stack) == [], diagnose(stack)
    stack.prometheus.start()  # same port, same data: the operator's URL works again
    wait_for(lambda: condition(stack, "MetricsAvailable").get("status") == "True", 60,
             "MetricsAvailable=True once Prometheus is back", interval=1.0)
    assert actions(stack) == [], diagnose(stack)


def test_deleted_pods_come_back_and_decisions_are_unaffected(closed_loop: StartLoop) -> None:
    stack = closed_loop(scaledapp(), "constant")  # calm load: the right decision is no step at all
    wait_for(lambda: condition(stack, "MetricsAvailable").get("status") == "True", 60, "metrics available")
    sizes = {tier: replicas(stack, tier) for tier in WORKLOADS}
    for tier in ("app", "cache", "db-write", "db-read", "workers"):
        victim = stack.pods_by_tier()[tier][0]
        count = len(stack.pods_by_tier()[tier])
        uid = stack.get_json("pod", victim)["metadata"]["uid"]
        stack.kubectl("delete", "pod", "-n", stack.namespace, victim, "--wait=false")

        def replaced(tier: str = tier, count: int = count, uids: tuple[str, ...] = (uid,)) -> list[str] | None:
            """The tier is back to full strength, without the deleted pod (a StatefulSet reuses its name)."""
            pods = stack.pods_by_tier()[tier]
            live = {stack.get_json("pod", p)["metadata"]["uid"] for p in pods}
            return pods if len(pods) == count and not live & set(uids) else None

        now = wait_for(replaced, 60, f"{tier} pod {victim} replaced by its controller", interval=0.5)
        # The twin serves the replacement under its real name, and Prometheus scrapes it.
        for pod in now:

            def scraped(pod: str = pod) -> bool:
                return bool(stack.prometheus.query(f'up{{namespace="{stack.namespace}",pod="{pod}"}} == 1'))

            wait_for(scraped, 30, f"Prometheus scraping {pod}", interval=0.5)
    # Once every new pod's rates exist again, every tier has a pressure and nothing was scaled.
    def unknown() -> list[str]:
        st = status(stack)
        return [p["tier"] for p in st.get("pressures", []) if p.get("pressure") is None] or (
            [] if condition(stack, "MetricsAvailable").get("status") == "True" else ["MetricsAvailable"])

    try:
        wait_for(lambda: not unknown(), 90, "every tier's pressure known again", interval=1.0)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: still unknown {unknown()}{diagnose(stack)}") from None
    assert actions(stack) == [], f"pod churn is not load{diagnose(stack)}"
    assert {tier: replicas(stack, tier) for tier in WORKLOADS} == sizes
    assert not status(stack).get("bottleneck"), diagnose(stack)
