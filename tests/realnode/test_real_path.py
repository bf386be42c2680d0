"""The user's path on the real node: the chart's operator and bundled Prometheus as real pods, a ScaledApp whose
every tier runs real processes, replication, metrics, the load Job, chaos, and a bottleneck widened on real metrics.

One chart release and one ScaledApp for the whole module (each takes tens of seconds to come up on 2 cores); the
tests run in file order and each leaves them serving. The release watches only its own app namespace, so it
never acts on anything else on the shared node.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hack import chaos, loadjob

from tests.support.cluster import Cluster, pod_ready, ready_pods
from tests.support.release import NAME, Deployed, apply_scaledapp, condition, http_json, release
from tests.support.wait import wait_for

pytestmark = pytest.mark.realnode

ROOT = Path(__file__).resolve().parents[2]
SCRAPED_TIERS = ("app", "cache", "db-write", "db-read", "workers")
TIERS = (*SCRAPED_TIERS, "queue")
TIER_LABEL = "scaledapp.dev/tier"
INSTANCE_LABEL = "app.kubernetes.io/instance"
DEMO_IMAGE = "ghcr.io/scaledapp/demo-app:0.1.0"


@pytest.fixture(scope="module")
def deployed(real_cluster: Cluster) -> Iterator[Deployed]:
    with release(real_cluster, "rp") as deployed:
        yield deployed


@pytest.fixture(scope="module")
def scaledapp(deployed: Deployed) -> Deployed:
    """examples/minimal.yaml as a user applies it, pointed at the release's Prometheus, with faster ticks."""
    return apply_scaledapp(deployed, {"scaling": {"intervalSeconds": 10, "cooldownSeconds": 30}})


def test_the_charts_operator_runs_as_a_real_pod_with_the_charts_rbac(deployed: Deployed) -> None:
    pods = deployed.cluster.get_json("pods", "-n", deployed.system, "-l", "app.kubernetes.io/component=operator")
    # Two replicas under leader election: both run (the standby answers its probes), one holds the Lease.
    assert len(pods["items"]) == 2
    for pod in pods["items"]:
        assert pod_ready(pod)
        assert pod["spec"]["serviceAccountName"].startswith("scaledapp-")
        [status] = pod["status"]["containerStatuses"]
        assert status["containerID"].startswith("containerd://") and status["restartCount"] == 0
    leases = deployed.cluster.get_json("leases", "-n", deployed.system)["items"]
    holders = {lease["spec"].get("holderIdentity") for lease in leases}
    assert len(holders & {p["metadata"]["name"] for p in pods["items"]}) == 1, holders
    pod = pods["items"][0]
    # The operator's ServiceAccount may not read Secrets cluster-wide: it runs with the chart's RBAC, nothing more.
    sa = f"system:serviceaccount:{deployed.system}:{pod['spec']['serviceAccountName']}"
    assert deployed.cluster.kubectl_run("auth", "can-i", "list", "secrets", "-A", f"--as={sa}").stdout.strip() == "no"


def test_minimal_scaledapp_gets_every_tier_ready_with_real_processes(scaledapp: Deployed) -> None:
    obj = scaledapp.scaledapp()
    assert condition(obj, "Ready").get("status") == "True"
    for tier in TIERS:
        pods = ready_pods(scaledapp.cluster, scaledapp.apps, f"{INSTANCE_LABEL}={NAME},{TIER_LABEL}={tier}")
        assert pods, f"no Ready pod in tier {tier}"
        for pod in pods:
            for status in pod["status"]["containerStatuses"]:
                assert status["ready"] and status["containerID"].startswith("containerd://"), (tier, status)


def test_a_write_is_read_back_and_streams_to_the_replica(scaledapp: Deployed) -> None:
    app = scaledapp.service_url(f"{NAME}-app", 8080)
    created = http_json(f"{app}/items", {"name": "real-node", "value": secrets.token_hex(8)})
    assert http_json(f"{app}/items/{created['id']}")["value"] == created["value"]
    # The primary streams to the replica through its own slot, and the replica has the row.
    replication = scaledapp.psql(f"{NAME}-db-0", "select application_name, state from pg_stat_replication")
    assert f"{NAME}-db-read-0|streaming" in replication.split()
    wait_for(lambda: scaledapp.psql(f"{NAME}-db-read-0", f"select value from items where id = {created['id']}")
             .strip() == created["value"], timeout=30, what="the new row on the replica")
    assert scaledapp.psql(f"{NAME}-db-read-0", "select pg_is_in_recovery()").strip() == "t"


def test_the_bundled_prometheus_scrapes_every_tiers_real_pods(scaledapp: Deployed) -> None:
    def targets_up() -> set[str] | None:
        data = http_json(f"{scaledapp.prometheus}/api/v1/targets?state=active")
        up = {t["labels"].get("scaledapp_dev_tier", "") for t in data["data"]["activeTargets"]
              if t["health"] == "up" and t["labels"].get("namespace") == scaledapp.apps}
        return up if up >= set(SCRAPED_TIERS) else None

    up = wait_for(targets_up, timeout=90, what="a healthy scrape target in every tier", interval=2)
    assert set(SCRAPED_TIERS) <= up
    # And the operator reads them: its MetricsAvailable condition is True.
    wait_for(lambda: condition(scaledapp.scaledapp(), "MetricsAvailable").get("status") == "True",
             timeout=90, what="MetricsAvailable=True", interval=2)


def run_module(cluster: Cluster, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """`python -m MODULE ARGS` with this cluster's kubeconfig and pinned kubectl (the hack/ tools use kubectl)."""
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=timeout,
                          check=False, cwd=ROOT, env=cluster.env)


def test_the_load_job_sends_real_traffic_through_the_service(scaledapp: Deployed) -> None:
    proc = run_module(scaledapp.cluster, "hack.loadjob", "--context", "",
                      "--namespace", scaledapp.apps, "--name", NAME, "--profile", "constant:rate=20",
                      "--seconds", "20", "--image", DEMO_IMAGE, "--json", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout[proc.stdout.index("\n{") + 1:])
    assert report["sent"] >= 300
    assert sum(report["errors"].values()) == 0, report
    # The app's own metrics saw it, per pod, in the real Prometheus.
    query = f'sum(rate(scaledapp_http_requests_total{{namespace="{scaledapp.apps}"}}[1m]))'
    wait_for(lambda: float(http_json(f"{scaledapp.prometheus}/api/v1/query?query={urllib.parse.quote(query)}")
                           ["data"]["result"][0]["value"][1]) > 0,
             timeout=60, what="a request rate in Prometheus", interval=2, ignore=(IndexError, KeyError))


def test_chaos_deletes_a_pod_of_each_tier_under_load_and_every_tier_comes_back(
    scaledapp: Deployed, tmp_path: Path
) -> None:
    drills_json = tmp_path / "drills.json"
    proc = run_module(scaledapp.cluster, "hack.chaos", "--context", "", "--namespace", scaledapp.apps,
                      "--name", NAME, "--seconds", "15", "--kill-after", "5", "--profile", "constant:rate=15",
                      "--ready-timeout", "180", "--json", str(drills_json), timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    drills = json.loads(drills_json.read_text())
    baseline, *killed = drills
    assert baseline["sent"] > 0
    assert [d["tier"] for d in killed] == list(chaos.TIERS)
    for drill in killed:
        # Each tier lost a real pod and got as many Ready ones back; what the load's clients lost is counted.
        assert drill["pod"] and drill["seconds_to_ready"] is not None, drill
        assert drill["sent"] > 0 and drill["failed"] is not None, drill
        # The write probe: writes went on, or came back, and none that was acknowledged is missing afterwards.
        assert drill["writes_acked"] and drill["writes_lost"] == 0 and drill["writes_down_s"] is not None, drill
        if drill["tier"] in chaos.ORDER_TIERS:  # and no accepted order is lost with the queue or a worker
            assert drill["orders_accepted"] and drill["orders_lost"] == 0, drill
    assert "| tier killed |" in proc.stdout
    # Afterwards the service writes and reads again.
    app = scaledapp.service_url(f"{NAME}-app", 8080)

    def serving() -> bool:
        created = http_json(f"{app}/items", {"name": "after-chaos", "value": "v"})
        return bool(http_json(f"{app}/items/{created['id']}")["value"] == "v")

    wait_for(serving, timeout=60, what="writes and reads after the drills", interval=1, ignore=(OSError,))


def test_a_cpu_bound_app_is_widened_on_real_metrics(scaledapp: Deployed) -> None:
    """Each request burns CPU in the app (APP_CPU_WORK_MS) and reads a few hot items the cache holds, so the
    database sees almost nothing: as the load ramps past what the app pods' CPU limits grant, the app tier,
    and only it, must be widened, from what the real Prometheus scraped. (A step straight into saturation can
    still make the app's own inflated dependency timings blame db-read first: README, known limits.)"""
    cluster, ns = scaledapp.cluster, scaledapp.apps
    cluster.kubectl("patch", "scaledapp", NAME, "-n", ns, "--type=merge", "-p", json.dumps({"spec": {
        "app": {"resources": {"cpu": "250m", "memory": "256Mi", "cpuRequest": "50m"},
                "env": [{"name": "APP_CPU_WORK_MS", "value": "8"}]},
        "scaling": {"targets": {"appCpuUtilization": 0.5}}}}))
    wait_for(lambda: "APP_CPU_WORK_MS" in cluster.kubectl("get", "deployment", f"{NAME}-app", "-n", ns, "-o",
                                                          "jsonpath={.spec.template.spec.containers[0].env}"),
             timeout=60, what="the app Deployment to carry the new env")
    cluster.kubectl("rollout", "status", f"deployment/{NAME}-app", "-n", ns, "--timeout=180s", timeout=200)
    before = int(cluster.kubectl("get", "deployment", f"{NAME}-app", "-n", ns, "-o", "jsonpath={.spec.replicas}"))
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    spec = loadjob.LoadSpec(ns, NAME, "ramp:rate=10,peak=45", 240, DEMO_IMAGE,
                            args=("--mix", "read=1", "--keys", "20"), cpu_request="200m")
    cluster.apply(loadjob.job_manifest(spec, "cpu-heavy"), namespace=ns)
    try:
        def widened() -> dict[str, Any] | None:
            last = scaledapp.scaledapp().get("status", {}).get("lastAction") or {}
            fresh = last.get("time", "") > started and last.get("kind") == "widen" and last.get("applied")
            return last if fresh else None

        action = wait_for(widened, timeout=300, what="the scaler's first widening", interval=2)
        assert action["tier"] == "app", action
        replicas = int(cluster.kubectl("get", "deployment", f"{NAME}-app", "-n", ns,
                                       "-o", "jsonpath={.spec.replicas}"))
        assert replicas > before
        wait_for(lambda: len(ready_pods(cluster, ns, f"{INSTANCE_LABEL}={NAME},{TIER_LABEL}=app")) >= replicas,
                 timeout=120, what=f"{replicas} Ready app pods", interval=2)
    finally:
        cluster.kubectl_run("delete", "job", "cpu-heavy", "-n", ns, "--wait=false")
