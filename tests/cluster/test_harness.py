"""The local control plane behaves like a real cluster where the operator's tests need it to.

The destructive test (killing the apiserver) runs on a private control plane, so the shared one stays intact.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.support.cluster import Cluster, KubectlError, pod_ready, private_cluster, ready_pods
from tests.support.wait import wait_for

pytestmark = pytest.mark.cluster

IMAGE = "registry.invalid/scaledapp/pause:1"  # never pulled: kwok runs no containers


def deployment(name: str, replicas: int) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": IMAGE}]}},
        },
    }


def wait_ready_pods(cluster: Cluster, ns: str, selector: str, count: int, timeout: float = 60) -> list[dict[str, Any]]:
    return wait_for(
        lambda: pods if len(pods := ready_pods(cluster, ns, selector)) == count else None,
        timeout=timeout,
        what=f"{count} Ready pods matching {selector} in {ns}",
    )


def test_nodes_are_ready(cluster: Cluster) -> None:
    nodes = cluster.get_json("nodes")["items"]
    names = sorted(n["metadata"]["name"] for n in nodes)
    assert names == ["kwok-node-0", "kwok-node-1", "kwok-node-2"]
    for node in nodes:
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", node["metadata"]["name"]
        assert not node["spec"].get("taints"), "fake nodes must be schedulable without tolerations"


def test_deployment_gets_ready_pods_with_ips(cluster: Cluster, namespace: str) -> None:
    cluster.apply(deployment("web", 3), namespace=namespace)
    pods = wait_ready_pods(cluster, namespace, "app=web", 3)
    ips = {p["status"].get("podIP") for p in pods}
    assert len(ips) == 3 and None not in ips, f"every pod gets its own IP: {ips}"
    assert all(p["spec"].get("nodeName", "").startswith("kwok-node-") for p in pods)
    wait_for(
        lambda: cluster.get_json("deployment", "web", "-n", namespace)["status"].get("availableReplicas") == 3,
        timeout=30,
        what="deployment web to report 3 available replicas",
    )


def fence_refusals() -> int:
    """Packets the fence's TCP rules refused so far (hack/localcluster/fence.sh)."""
    out = subprocess.run(["iptables", "-w", "-L", "SCALEDAPP-FENCE", "-n", "-v", "-x"], capture_output=True,
                         text=True, check=True, timeout=10).stdout
    return sum(int(line.split()[0]) for line in out.splitlines() if "tcp" in line and "reject-with tcp-reset" in line)


@pytest.mark.skipif(os.geteuid() != 0, reason="the fence needs root (CI runs as root)")
def test_a_connection_to_a_fake_pods_address_is_refused_on_this_machine(cluster: Cluster, namespace: str) -> None:
    """kwok's pods have addresses nothing answers for; the operator still connects to its Postgres pods by IP.
    Such a connection must end here, refused at once, and never follow the default route off the machine."""
    cluster.apply(deployment("fenced", 1), namespace=namespace)
    ip = ipaddress.ip_address(wait_ready_pods(cluster, namespace, "app=fenced", 1)[0]["status"]["podIP"])
    assert ip in ipaddress.ip_network("10.244.128.0/17"), f"kwok's pods live apart from the real node's: {ip}"
    before = fence_refusals()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((str(ip), 5432), timeout=5).close()
    assert fence_refusals() > before, "refused by the fence, not by whatever lies beyond the default route"


def test_deleted_pod_is_replaced_by_its_replicaset(cluster: Cluster, namespace: str) -> None:
    cluster.apply(deployment("web", 3), namespace=namespace)
    before = {p["metadata"]["name"] for p in wait_ready_pods(cluster, namespace, "app=web", 3)}
    victim = sorted(before)[0]
    cluster.kubectl("delete", "pod", victim, "-n", namespace, "--wait=true", "--timeout=30s")

    def replaced() -> set[str] | None:
        names = {p["metadata"]["name"] for p in ready_pods(cluster, namespace, "app=web")}
        return names if len(names) == 3 and victim not in names else None

    after = wait_for(replaced, timeout=60, what=f"a replacement for pod {victim}")
    assert len(after - before) == 1


def test_deleting_a_deployment_garbage_collects_replicasets_and_pods(cluster: Cluster, namespace: str) -> None:
    cluster.apply(deployment("web", 2), namespace=namespace)
    wait_ready_pods(cluster, namespace, "app=web", 2)
    assert cluster.get_json("replicasets", "-n", namespace, "-l", "app=web")["items"]
    # Background cascading deletion: the Deployment goes at once, the garbage collector removes the rest.
    cluster.kubectl("delete", "deployment", "web", "-n", namespace, "--cascade=background", "--wait=false")

    def collected() -> bool:
        rs = cluster.get_json("replicasets", "-n", namespace, "-l", "app=web")["items"]
        pods = cluster.get_json("pods", "-n", namespace, "-l", "app=web")["items"]
        return not rs and not pods

    wait_for(collected, timeout=60, what="the garbage collector to delete the ReplicaSet and its pods")


def test_statefulset_claims_are_bound_and_pods_ready(cluster: Cluster, namespace: str) -> None:
    labels = {"app": "db"}
    cluster.apply(
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "db"},
            "spec": {
                "replicas": 2,
                "serviceName": "db",
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": IMAGE}]}},
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data"},
                        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "3Gi"}}},
                    }
                ],
            },
        },
        namespace=namespace,
    )

    def bound_claims() -> list[dict[str, Any]] | None:
        claims: list[dict[str, Any]] = cluster.get_json("pvc", "-n", namespace)["items"]
        bound = [c for c in claims if c.get("status", {}).get("phase") == "Bound"]
        return bound if len(bound) == 2 else None

    claims = wait_for(bound_claims, timeout=60, what="2 Bound claims of StatefulSet db")
    assert sorted(c["metadata"]["name"] for c in claims) == ["data-db-0", "data-db-1"]
    for claim in claims:
        assert claim["spec"]["storageClassName"] == "standard", "the default StorageClass applies"
        assert claim["status"]["capacity"]["storage"] == "3Gi"
        volume = cluster.get_json("pv", claim["spec"]["volumeName"])
        assert volume["status"]["phase"] == "Bound"
        assert volume["spec"]["claimRef"]["uid"] == claim["metadata"]["uid"]
    pods = wait_ready_pods(cluster, namespace, "app=db", 2)
    assert sorted(p["metadata"]["name"] for p in pods) == ["db-0", "db-1"]


def _pod(name: str, security: dict[str, Any], container_security: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "securityContext": security,
            "containers": [{"name": "c", "image": IMAGE, "securityContext": container_security}],
        },
    }


def test_restricted_pod_security_rejects_privileged_and_admits_compliant(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    privileged = _pod("privileged", {}, {"privileged": True})
    with pytest.raises(KubectlError) as rejected:
        cluster.apply(privileged, namespace=namespace)
    assert "violates PodSecurity" in rejected.value.stderr
    assert "restricted" in rejected.value.stderr

    compliant = _pod(
        "compliant",
        {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
        {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    )
    cluster.apply(compliant, namespace=namespace)
    wait_for(
        lambda: pod_ready(cluster.get_json("pod", "compliant", "-n", namespace)),
        timeout=60,
        what="the compliant pod to become Ready",
    )


def test_service_account_without_bindings_is_denied(cluster: Cluster, namespace: str) -> None:
    cluster.kubectl("create", "serviceaccount", "nobody", "-n", namespace)
    user = f"system:serviceaccount:{namespace}:nobody"
    can_i = cluster.kubectl_run("auth", "can-i", "list", "pods", "-n", namespace, f"--as={user}")
    assert can_i.returncode != 0 and can_i.stdout.strip() == "no"
    assert cluster.kubectl("auth", "can-i", "list", "pods", "-n", namespace).strip() == "yes"

    # A real request with a TokenRequest token: authenticated as the ServiceAccount, then forbidden.
    token = cluster.kubectl("create", "token", "nobody", "-n", namespace, "--duration=10m").strip()
    with cluster.api_client() as admin_api:
        admin = admin_api.configuration
    conf = k8s.Configuration()
    conf.host = admin.host
    conf.ssl_ca_cert = admin.ssl_ca_cert
    conf.api_key = {"authorization": f"Bearer {token}"}
    with k8s.ApiClient(conf) as api:
        review = k8s.AuthenticationV1Api(api).create_self_subject_review(k8s.V1SelfSubjectReview())
        assert review.status is not None and review.status.user_info is not None
        assert review.status.user_info.username == user
        with pytest.raises(ApiException) as denied:
            k8s.CoreV1Api(api).list_namespaced_pod(namespace)
        assert denied.value.status == 403


def test_second_up_is_a_no_op(cluster: Cluster) -> None:
    pids = {c: cluster.pid(c) for c in ("etcd", "kube-apiserver", "kube-controller-manager", "kwok")}
    proc = cluster.run_script("up", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "nothing to do" in proc.stderr
    assert {c: cluster.pid(c) for c in pids} == pids, "a no-op up restarts nothing"


def test_killed_apiserver_shows_in_status_and_up_restores_it(tmp_path: Path) -> None:
    # On a private control plane: killing the shared one would break tests running in parallel sessions.
    with private_cluster(tmp_path / "state") as scratch:
        assert scratch.run_script("status", timeout=60).returncode == 0
        os.kill(scratch.pid("kube-apiserver"), signal.SIGKILL)
        down = wait_for(
            lambda: (p if (p := scratch.run_script("status", timeout=60)).returncode != 0 else None),
            timeout=10,
            what="cluster.sh status to notice the killed apiserver",
        )
        line = next(ln for ln in down.stdout.splitlines() if ln.startswith("kube-apiserver"))
        assert "NOT RUNNING" in line, down.stdout
        assert "NOT healthy" in down.stdout

        scratch.ensure_up()  # restarts what is down, keeps the rest and the data in etcd
        assert scratch.run_script("status", timeout=60).returncode == 0
        assert scratch.kubectl("get", "--raw", "/readyz").strip() == "ok"
        assert len(scratch.get_json("nodes")["items"]) == 3
