"""What a user watching the operator sees, on the local control plane: `kubectl scaledapp` against a live
ScaledApp, the operator's own /metrics, and the decision trace in its JSON log (the scaler tests' synthetic pods
and Prometheus: the workers are the bottleneck, in Recommend mode so nothing changes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devharness.prometheus import LocalPrometheus
from tests.cluster.synthetic import SyntheticApp
from tests.cluster.test_scaler import NAME, TICK_TIMEOUT, apply_scaledapp, pods, prom, wait_status  # noqa: F401
from tests.support.cluster import Cluster
from tests.support.operator import OperatorProcess
from tests.support.wait import wait_for

pytestmark = pytest.mark.cluster
PLUGIN = Path(sys.executable).parent / "kubectl-scaledapp"


def plugin(cluster: Cluster, namespace: str, *args: str) -> str:
    proc = subprocess.run([str(PLUGIN), *args, NAME, "-n", namespace], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "KUBECONFIG": str(cluster.kubeconfig)}, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def samples(operator: OperatorProcess) -> list[tuple[str, dict[str, str], float]]:
    text = httpx.get(f"http://127.0.0.1:{operator.metrics_port}/metrics", timeout=5).text
    return [(s.name, s.labels, s.value) for f in text_string_to_metric_families(text) for s in f.samples]


def test_kubectl_scaledapp_metrics_and_trace_tell_the_same_story(
    cluster: Cluster, operator: OperatorProcess, namespace: str, pods: SyntheticApp,  # noqa: F811
    prom: LocalPrometheus,  # noqa: F811
) -> None:
    pods.hot_queue()
    apply_scaledapp(cluster, namespace, prom, "Recommend")
    wait_status(cluster, namespace, "a recommendation for workers",
                lambda s: s.get("bottleneck") == "workers" and (s.get("lastAction") or {}).get("tier"))

    why = plugin(cluster, namespace, "why")
    assert "Bottleneck: workers" in why and "<- bottleneck" in why and "Why workers:" in why, why
    assert "workers" in plugin(cluster, namespace, "history")

    obj = {"namespace": namespace, "scaledapp": NAME}
    wait_for(lambda: any(n == "scaledapp_operator_bottleneck" and labels == {**obj, "tier": "workers"} and v == 1
                         for n, labels, v in samples(operator)), TICK_TIMEOUT, "the bottleneck gauge")
    found = samples(operator)
    assert any(n == "scaledapp_operator_decisions_total" and labels.get("tier") == "workers"
               and labels.get("applied") == "false" and labels.get("namespace") == namespace and v >= 1
               for n, labels, v in found)
    assert any(n == "scaledapp_operator_tier_pressure" and labels == {**obj, "tier": "workers"} and v > 1
               for n, labels, v in found)

    traces = [r["decision"] for r in operator.log_records()
              if isinstance(r.get("decision"), dict) and (r.get("object") or {}).get("namespace") == namespace]
    assert any(t["direction"] == "widen" and t["tier"] == "workers" and t["applied"] is False
               and t["pressures"].get("workers", 0) > 1 for t in traces), traces[-3:]

    plugin(cluster, namespace, "pause")
    assert cluster.get_json("scaledapp", NAME, "-n", namespace)["metadata"]["annotations"][
        "scaledapp.dev/paused"] == "true"
    plugin(cluster, namespace, "resume")
    assert "scaledapp.dev/paused" not in (cluster.get_json("scaledapp", NAME, "-n", namespace)["metadata"]
                                          .get("annotations") or {})
