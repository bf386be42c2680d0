"""The chart in a real API server with the pinned helm: install, upgrade, uninstall, Pod Security.

The CRD is cluster-scoped and shared by every test (the `crd` fixture installs it from crds/), so these
installs pass --skip-crds; tests/cluster/test_chart_rbac.py installs the chart into an empty private
control plane, where helm installs the CRD from the chart's crds/ itself.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from devharness.procs import Child, free_port, pinned_binary
from scaledapp.resources.names import ChildNames
from tests.support.cluster import Cluster, KubectlError
from tests.support.helm import helm, install
from tests.support.operator import OperatorProcess
from tests.support.wait import wait_for

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]
CRD_NAME = "scaledapps.scaledapp.dev"


def release_name() -> str:
    # ClusterRoles are named after the release: unique names keep parallel sessions apart.
    return f"sa-{secrets.token_hex(3)}"


def fullname(release: str) -> str:
    return f"{release}-scaledapp-operator"


def get_json(cluster: Cluster, *args: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(cluster.kubectl("get", *args, "-o", "json"))
    return out


def exists(cluster: Cluster, *args: str) -> bool:
    try:
        cluster.kubectl("get", *args, "-o", "name")
    except KubectlError as exc:
        if "NotFound" in exc.stderr:
            return False
        raise
    return True


def operator_pods(cluster: Cluster, namespace: str, release: str) -> list[dict[str, Any]]:
    selector = f"app.kubernetes.io/instance={release},app.kubernetes.io/component=operator"
    pods: list[dict[str, Any]] = get_json(cluster, "pods", "-n", namespace, "-l", selector)["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def pod_security_violations(cluster: Cluster, namespace: str) -> list[str]:
    events = get_json(cluster, "events", "-n", namespace)["items"]
    return [e["message"] for e in events if "PodSecurity" in e.get("message", "") or e.get("reason") == "FailedCreate"]


def test_install_prints_next_commands_and_runs_the_operator(cluster: Cluster, crd: Path, namespace: str) -> None:
    release = release_name()
    try:
        out = install(cluster.kubeconfig, release, namespace, {"prometheus.enabled": True}, skip_crds=True)
        notes = out.split("NOTES:", 1)[1]
        assert f"kubectl -n {namespace} rollout status deployment/{fullname(release)}" in notes
        assert f"set spec.scaling.prometheusUrl: http://prometheus.{namespace}.svc:9090" in notes
        assert "Helm never deletes the CRD" in notes and "no finalizer" in notes
        deploy = get_json(cluster, "deployment", fullname(release), "-n", namespace)
        assert deploy["status"].get("readyReplicas") == 2  # leader + standby
        container = deploy["spec"]["template"]["spec"]["containers"][0]
        assert "--log-format=json" in container["args"] and "--all-namespaces" in container["args"]
        crb = get_json(cluster, "clusterrolebinding", fullname(release))
        assert crb["subjects"] == [{"kind": "ServiceAccount", "name": fullname(release), "namespace": namespace}]
        prometheus = get_json(cluster, "deployment", f"{fullname(release)}-prometheus", "-n", namespace)
        assert prometheus["status"].get("readyReplicas") == 1
        assert get_json(cluster, "service", "prometheus", "-n", namespace)["spec"]["ports"][0]["port"] == 9090
    finally:
        helm("uninstall", release, "--namespace", namespace, "--wait", kubeconfig=cluster.kubeconfig)


def test_upgrade_with_changed_values_takes_effect(cluster: Cluster, crd: Path, namespace: str) -> None:
    release = release_name()
    try:
        install(cluster.kubeconfig, release, namespace, skip_crds=True)
        before = operator_pods(cluster, namespace, release)
        assert len(before) == 2  # leader + standby
        install(cluster.kubeconfig, release, namespace,
                {"logFormat": "plain", "resources.limits.memory": "384Mi", "verbose": True}, upgrade=True)
        deploy = get_json(cluster, "deployment", fullname(release), "-n", namespace)
        container = deploy["spec"]["template"]["spec"]["containers"][0]
        assert "--log-format=plain" in container["args"] and "--verbose" in container["args"]
        assert container["resources"]["limits"]["memory"] == "384Mi"
        assert container["resources"]["requests"]["memory"] == "128Mi"  # --reuse-values kept the rest

        old = {p["metadata"]["uid"] for p in before}

        def replaced() -> list[dict[str, Any]] | None:
            pods = operator_pods(cluster, namespace, release)
            new = [p for p in pods if p["metadata"]["uid"] not in old]
            return new if len(pods) == 2 and len(new) == 2 else None

        # A rolling update (safe under leader election): both pods replaced, running the new arguments.
        pod = wait_for(replaced, 60, "the operator pods replaced by ones with the new values")[0]
        args = pod["spec"]["containers"][0]["args"]
        assert "--log-format=plain" in args
        assert pod["spec"]["containers"][0]["resources"]["limits"]["memory"] == "384Mi"
        history = json.loads(helm("history", release, "-n", namespace, "-o", "json", kubeconfig=cluster.kubeconfig))
        assert [h["status"] for h in history] == ["superseded", "deployed"]
    finally:
        helm("uninstall", release, "--namespace", namespace, "--wait", kubeconfig=cluster.kubeconfig)


def test_uninstall_leaves_scaledapps_and_their_data_alone(
    cluster: Cluster, crd: Path, operator: OperatorProcess, namespace: str
) -> None:
    release = release_name()
    install(cluster.kubeconfig, release, namespace, skip_crds=True)
    body = yaml.safe_load((ROOT / "examples" / "minimal.yaml").read_text())
    body["metadata"] = {"name": "keep"}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))
    child = ChildNames("keep")
    wait_for(lambda: exists(cluster, "-n", namespace, f"statefulset/{child.db_primary}")
             and get_json(cluster, "pvc", "-n", namespace)["items"], 120, "the primary and its volume claim")
    before = {
        "pvcs": {p["metadata"]["uid"] for p in get_json(cluster, "pvc", "-n", namespace)["items"]},
        "secret": get_json(cluster, "secret", child.db_credentials, "-n", namespace)["metadata"]["uid"],
        "app": get_json(cluster, "deployment", child.app, "-n", namespace)["metadata"]["uid"],
    }

    out = helm("uninstall", release, "--namespace", namespace, "--wait", kubeconfig=cluster.kubeconfig)
    assert "uninstalled" in out
    assert not exists(cluster, "-n", namespace, f"deployment/{fullname(release)}")
    assert not exists(cluster, f"clusterrole/{fullname(release)}")
    assert not exists(cluster, "-n", namespace, f"serviceaccount/{fullname(release)}")
    # What helm never owned stays: the CRD (crds/ are never deleted), the ScaledApp, its children, its data.
    assert exists(cluster, f"crd/{CRD_NAME}")
    assert exists(cluster, "-n", namespace, "scaledapp/keep")
    assert {p["metadata"]["uid"] for p in get_json(cluster, "pvc", "-n", namespace)["items"]} >= before["pvcs"]
    assert get_json(cluster, "secret", child.db_credentials, "-n", namespace)["metadata"]["uid"] == before["secret"]
    assert get_json(cluster, "deployment", child.app, "-n", namespace)["metadata"]["uid"] == before["app"]


def test_operator_and_prometheus_pass_the_restricted_profile(cluster: Cluster, crd: Path, namespace: str) -> None:
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted",
                    "pod-security.kubernetes.io/enforce-version=latest", "--overwrite")
    release = release_name()
    try:
        # --wait: helm returns only once both Deployments have a Ready pod, i.e. their pods were admitted.
        install(cluster.kubeconfig, release, namespace, {"prometheus.enabled": True}, skip_crds=True)
        pods = get_json(cluster, "pods", "-n", namespace)["items"]
        components = {p["metadata"]["labels"].get("app.kubernetes.io/component") for p in pods}
        assert components == {"operator", "metrics"}
        for pod in pods:
            owner = pod["metadata"]["ownerReferences"][0]
            assert owner["kind"] == "ReplicaSet", pod["metadata"]["name"]  # created by its controller
        assert pod_security_violations(cluster, namespace) == []
        # The same pods would be refused if they broke the profile: a dry-run of a privileged copy is.
        spec: dict[str, Any] = {k: v for k, v in pods[0]["spec"].items() if k != "nodeName"}
        spec["containers"] = [{**spec["containers"][0], "securityContext": {"privileged": True}}]
        bad_pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "bad", "namespace": namespace}, "spec": spec}
        with pytest.raises(KubectlError, match="violates PodSecurity"):
            cluster.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(bad_pod))
    finally:
        helm("uninstall", release, "--namespace", namespace, "--wait", kubeconfig=cluster.kubeconfig)


def test_the_bundled_prometheus_config_discovers_the_operator_pods_metrics_port(
    cluster: Cluster, crd: Path, namespace: str, tmp_path: Path
) -> None:
    """The chart's own prometheus.yml (as installed) run by the pinned Prometheus against this API server: its
    `scaledapp-operator` job finds exactly the operator's pods (leader and standby) on their metrics port, labelled
    with their pod and namespace, and the pod-annotation job does not scrape them a second time. Pod IPs are kwok's
    (nothing answers there): discovery and relabelling are what is checked; scraping the operator with this job's
    honor_labels is tests/e2e/test_dashboard.py's."""
    release = release_name()
    child = Child("prometheus", tmp_path / "prometheus.log")
    try:
        install(cluster.kubeconfig, release, namespace, {"prometheus.enabled": True}, skip_crds=True)
        config_map = get_json(cluster, "configmap", f"{fullname(release)}-prometheus", "-n", namespace)
        config = yaml.safe_load(config_map["data"]["prometheus.yml"])
        # In the pod Prometheus uses its ServiceAccount; here the same discovery through this cluster's kubeconfig.
        for job in config["scrape_configs"]:
            for sd in job.get("kubernetes_sd_configs", []):
                sd["kubeconfig_file"] = str(cluster.kubeconfig)
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = free_port()
        child.spawn([str(pinned_binary("prometheus")), f"--config.file={tmp_path / 'prometheus.yml'}",
                     f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
                     "--log.level=warn"])

        def targets() -> list[dict[str, Any]]:
            child.check_alive()
            try:
                body = json.loads(httpx.get(f"http://127.0.0.1:{port}/api/v1/targets", timeout=5).text)
            except httpx.TransportError:
                return []
            active: list[dict[str, Any]] = body["data"]["activeTargets"]
            return active

        pods = {p["metadata"]["name"]: p["status"]["podIP"] for p in operator_pods(cluster, namespace, release)}
        assert len(pods) == 2, pods
        want = {name: f"{ip}:8081" for name, ip in pods.items()}

        def operator_targets() -> dict[str, str] | None:
            found = {t["labels"].get("pod", ""): t["labels"]["instance"] for t in targets()
                     if t["labels"].get("job") == "scaledapp-operator"}
            return found if found == want else None

        wait_for(operator_targets, 60, f"the scaledapp-operator job to discover {want}")
        for target in (t for t in targets() if t["labels"]["job"] == "scaledapp-operator"):
            assert target["labels"]["namespace"] == namespace
            assert target["scrapeUrl"] == f"http://{target['labels']['instance']}/metrics"
        assert not [t for t in targets() if t["labels"].get("job") == "kubernetes-pods"
                    and t["labels"].get("pod") in pods], "the operator's pods are scraped once"
    finally:
        child.stop()
        helm("uninstall", release, "--namespace", namespace, "--wait", kubeconfig=cluster.kubeconfig)
