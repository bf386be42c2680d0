"""Resilience, on a private API server (no other operator may act on these ScaledApps):

* retries: a repair that fails during an API brownout (503 and 429 answers) is retried with backoff until it
  succeeds, and the retries do not flood the server. The brownout is a proxy in front of the API server
  (tests/support/brownout.py); nothing of the operator is mocked.
* Prometheus: a URL the operator's policy refuses is a status condition, not a crash, and a Prometheus that never
  answers does not stall the ticks of the other ScaledApps.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from scaledapp.resources.names import ChildNames
from tests.support.brownout import BrownoutProxy, proxied_kubeconfig, upstream_of
from tests.support.cluster import Cluster, free_ports, private_cluster
from tests.support.operator import CRD, OperatorProcess, wait_crd_established
from tests.support.wait import wait_for

pytestmark = pytest.mark.cluster
NAME, NAMESPACE = "shop", "shop"
BROWNOUT_SECONDS = 12.0


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with private_cluster(tmp_path_factory.mktemp("retries") / "state") as cluster:
        cluster.kubectl("apply", "--server-side", "-f", str(CRD))
        wait_crd_established(cluster)
        cluster.kubectl("create", "namespace", NAMESPACE)
        cluster.kubectl("create", "serviceaccount", "operator", "-n", "default")
        cluster.kubectl("create", "clusterrolebinding", "operator", "--clusterrole=cluster-admin",
                        "--serviceaccount=default:operator")
        yield cluster


def test_a_repair_is_retried_through_a_brownout_without_flooding(scratch: Cluster, tmp_path: Path) -> None:
    server, ca = upstream_of(scratch.kubeconfig)
    token = scratch.kubectl("create", "token", "operator", "-n", "default", "--duration=1h").strip()
    with BrownoutProxy(server, ca, free_ports(1)[0]) as proxy:
        kubeconfig = proxied_kubeconfig(scratch.kubeconfig, token, proxy.url, tmp_path / "proxied.kubeconfig")
        op = OperatorProcess(str(kubeconfig), tmp_path, scope=["--namespace", NAMESPACE], name="operator-brownout")
        op.start()
        try:
            body = {"apiVersion": "scaledapp.dev/v1alpha1", "kind": "ScaledApp", "metadata": {"name": NAME},
                    "spec": {"scaling": {"mode": "Recommend", "prometheusUrl": "http://127.0.0.1:9",
                                         "intervalSeconds": 5}}}
            scratch.kubectl("apply", "-n", NAMESPACE, "-f", "-", input=json.dumps(body))
            app = ChildNames(NAME).app
            exists = lambda: scratch.kubectl_run("get", "service", app, "-n", NAMESPACE).returncode == 0  # noqa: E731
            wait_for(exists, 60, "the operator creating the children")
            wait_for(lambda: "decision " in op.log_path.read_text(), 60, "a first scaler tick")
            time.sleep(3)  # let the start-up writes settle: what follows is steady state plus the repair

            mark = time.monotonic()
            time.sleep(10)
            steady = [f"{method} {path}" for t, method, path in proxy.log if t >= mark]

            proxy.browning = True
            started = time.monotonic()
            scratch.kubectl("delete", "service", app, "-n", NAMESPACE, "--wait=true")  # direct, not proxied
            time.sleep(BROWNOUT_SECONDS)
            proxy.browning = False
            refused = dict(proxy.refused)
            assert not exists()
            wait_for(exists, 40, f"the Service put back after the brownout (log: {op.log_path})", interval=0.2)
            repaired = time.monotonic() - started
            print(f"\nsteady state: {len(steady)} API calls in 10 s {steady}; "
                  f"brownout of {BROWNOUT_SECONDS:.0f} s: refused {refused}; "
                  f"Service back {repaired:.1f} s after its deletion; all requests: {dict(proxy.seen)}")
            messages = [str(r.get("message", "")) for r in op.log_records()]
            assert any(m.startswith("repair of Service/") and "retry in" in m for m in messages), messages[-20:]
            # Backoff, not a loop: the repair and the scaler ticks retried a handful of times in 12 s.
            assert sum(refused.values()) <= 25, refused
            assert op.healthy()
        finally:
            op.stop()


def blackhole() -> tuple[socket.socket, list[socket.socket]]:
    """A TCP port that accepts connections and never answers (a Prometheus that hangs)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    return server, held


def scaledapp(name: str, url: str) -> dict[str, object]:
    return {"apiVersion": "scaledapp.dev/v1alpha1", "kind": "ScaledApp", "metadata": {"name": name},
            "spec": {"scaling": {"mode": "Recommend", "prometheusUrl": url, "intervalSeconds": 5,
                                 "queryTimeoutSeconds": 5}}}


def test_a_refused_or_hanging_prometheus_holds_only_its_own_scaledapp(scratch: Cluster, tmp_path: Path) -> None:
    namespace = "metrics"
    scratch.kubectl("create", "namespace", namespace)
    server, held = blackhole()
    hanging = f"http://127.0.0.1:{server.getsockname()[1]}"
    closed = f"http://127.0.0.1:{free_ports(1)[0]}"  # refuses connections at once
    op = OperatorProcess(str(scratch.kubeconfig), tmp_path, name="operator-prometheus-policy",
                         scope=["--namespace", namespace, "--prometheus-allow", "127.0.0.1"])
    op.start()
    try:
        for name, url in (("hanging", hanging), ("elsewhere", "http://prometheus.example.com:9090"),
                          ("quick", closed)):
            scratch.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(scaledapp(name, url)))

        def metrics_condition(name: str) -> dict[str, str]:
            status = scratch.get_json(f"scaledapp/{name}", "-n", namespace).get("status") or {}
            return next((c for c in status.get("conditions") or [] if c["type"] == "MetricsAvailable"), {})

        cond = wait_for(lambda: metrics_condition("elsewhere") or None, 60, "elsewhere's MetricsAvailable")
        assert cond["status"] == "False" and cond["reason"] == "PrometheusUrlNotAllowed", cond
        assert "prometheus.example.com" in cond["message"] and "127.0.0.1" in cond["message"], cond
        wait_for(lambda: held, 30, "the hanging Prometheus being asked")

        def decisions(name: str) -> int:
            return sum(1 for r in op.log_records() if (r.get("object") or {}).get("name") == name
                       and str(r.get("message", "")).startswith("decision "))

        start = decisions("quick")
        time.sleep(21)
        # quick ticks every 5 s while hanging's queries sit in their 5 s timeouts: at least 3 in 21 s.
        assert decisions("quick") - start >= 3, op.tail()
        assert metrics_condition("hanging").get("reason") == "PrometheusUnavailable"
        assert op.healthy()
    finally:
        op.stop()
        server.close()
        for conn in held:
            conn.close()
