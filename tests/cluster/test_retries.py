"""Retries: a repair that fails during an API brownout (503 and 429 answers) is retried with backoff until it
succeeds, and the retries do not flood the server. The brownout is a proxy in front of a private API server
(tests/support/brownout.py); nothing of the operator is mocked.
"""

from __future__ import annotations

import json
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
