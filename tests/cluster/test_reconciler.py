"""The reconciler against a real API server, with the operator running as a real process."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from scaledapp import handlers
from scaledapp.resources.names import ChildNames
from tests.support.cluster import KubectlError
from tests.support.operator import OperatorProcess
from tests.support.wait import wait_for

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "minimal.yaml"
KINDS = "deployment,statefulset,service,poddisruptionbudget,secret,configmap,networkpolicy"


def example(name: str) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    body["metadata"] = {"name": name}
    return body


def apply(cluster: Any, namespace: str, body: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))


def get(cluster: Any, namespace: str, what: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(cluster.kubectl("get", "-n", namespace, what, "-o", "json"))
    return out


def find(cluster: Any, namespace: str, what: str) -> dict[str, Any] | None:
    """The object, or None while it does not exist."""
    try:
        return get(cluster, namespace, what)
    except KubectlError as exc:
        if "NotFound" in exc.stderr:
            return None
        raise


def owned_children(cluster: Any, namespace: str, owner: str) -> dict[str, dict[str, Any]]:
    items = get(cluster, namespace, KINDS)["items"]
    return {
        f"{i['kind']}/{i['metadata']['name']}": i
        for i in items
        if any(r.get("kind") == "ScaledApp" and r.get("name") == owner
               for r in i["metadata"].get("ownerReferences", []))
    }


def expected_children(name: str) -> set[str]:
    c = ChildNames(name)
    return {
        f"Deployment/{c.app}", f"Service/{c.app}", f"PodDisruptionBudget/{c.app}",
        f"Deployment/{c.cache}", f"Service/{c.cache}",
        *(f"PodDisruptionBudget/{n}" for n in (c.cache, c.queue, c.workers)),
        *(f"NetworkPolicy/{policy(t)}" for t in ("app", "workers", "cache", "queue", "db-write", "db-read")
          for policy in (c.ingress_policy, c.egress_policy)),
        f"StatefulSet/{c.db_primary}", f"StatefulSet/{c.db_replicas}", f"StatefulSet/{c.queue}",
        f"Service/{c.db_write}",
        f"Service/{c.db_read}", f"Secret/{c.db_credentials}", f"Deployment/{c.workers}",
        # Postgres TLS: the generated CA and the certificates every Postgres pod mounts.
        f"Secret/{c.db_ca}", f"Secret/{c.db_tls}",
    }


def test_example_yields_every_child_owned_and_labelled(cluster: Any, operator: OperatorProcess, namespace: str) -> None:
    apply(cluster, namespace, example("shop"))
    want = expected_children("shop")
    children = wait_for(lambda: (c := owned_children(cluster, namespace, "shop")) and want <= set(c) and c,
                        90, f"every child of shop ({sorted(want)})")
    assert any(k.startswith("NetworkPolicy/") for k in children), sorted(children)
    for key, child in children.items():
        labels = child["metadata"].get("labels", {})
        assert labels.get("app.kubernetes.io/instance") == "shop", key
        assert labels.get("app.kubernetes.io/managed-by") == "scaledapp-operator", key
        refs = child["metadata"]["ownerReferences"]
        assert refs[0]["controller"] is True, key
    secret = children[f"Secret/{ChildNames('shop').db_credentials}"]
    assert secret["data"], "generated credentials are stored"
    issued = children[f"Secret/{ChildNames('shop').db_tls}"]["data"]
    assert set(issued) == {"ca.crt", "tls.crt", "tls.key", "replication.crt", "replication.key"}
    status = wait_for(lambda: get(cluster, namespace, "scaledapp/shop").get("status", {}).get("observedGeneration"),
                      60, "observedGeneration in status")
    assert status == 1


def test_pods_are_created_in_a_restricted_namespace(cluster: Any, operator: OperatorProcess, namespace: str) -> None:
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted", "--overwrite")
    apply(cluster, namespace, example("strict"))

    def tiers_with_pods() -> set[str] | None:
        pods = get(cluster, namespace, "pods")["items"]
        tiers = {p["metadata"]["labels"].get("scaledapp.dev/tier") for p in pods}
        want = {"app", "cache", "db-write", "db-read", "workers"}
        return tiers if want <= tiers else None

    wait_for(tiers_with_pods, 120, "pods of every tier admitted under the restricted profile")
    events = get(cluster, namespace, "events")["items"]
    forbidden = [e["message"] for e in events if "violates PodSecurity" in e.get("message", "")]
    assert not forbidden, forbidden


def test_the_watch_selectors_bring_every_child_and_only_the_postgres_pods(cluster: Any, operator: OperatorProcess,
                                                                          namespace: str) -> None:
    """The label selectors the operator's watches send (handlers.watch_selectors), asked of the real API server:
    a selector that missed a child would leave its drift unrepaired, one that missed a Postgres pod would blind
    the failover guard."""
    apply(cluster, namespace, example("sel"))
    want = expected_children("sel")
    wait_for(lambda: want <= set(owned_children(cluster, namespace, "sel")), 90, "every child of sel")

    def pods_by_tier() -> dict[str, int] | None:
        tiers: dict[str, int] = {}
        for pod in get(cluster, namespace, "pods")["items"]:
            tier = pod["metadata"]["labels"].get("scaledapp.dev/tier")
            tiers[tier] = tiers.get(tier, 0) + 1
        return tiers if {"app", "cache", "db-write", "db-read", "workers"} <= set(tiers) else None

    every_pod = wait_for(pods_by_tier, 120, "pods of every tier")
    selectors = handlers.watch_selectors()

    def selected(resource: str, selector: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = json.loads(cluster.kubectl("get", "-n", namespace, resource, "-l", selector,
                                                                 "-o", "json"))["items"]
        return found

    db_pods = selected("pods", selectors["", "v1", "pods"])
    assert len(db_pods) == every_pod["db-write"] + every_pod["db-read"]
    assert {p["metadata"]["labels"]["scaledapp.dev/tier"] for p in db_pods} == {"db-write", "db-read"}
    children = owned_children(cluster, namespace, "sel")
    watched = set()
    for (group, version, plural), selector in selectors.items():
        if plural != "pods":
            resource = f"{plural}.{version}.{group}" if group else plural
            watched |= {f"{i['kind']}/{i['metadata']['name']}" for i in selected(resource, selector)}
    assert {k for k in children if not k.startswith("Secret/")} <= watched, sorted(set(children) - watched)


@pytest.mark.parametrize("kind_name", [
    "deployment/{app}", "service/{cache}", "statefulset/{db_replicas}", "poddisruptionbudget/{app}",
    "configmap/{db_scripts}",
])
def test_a_deleted_child_comes_back(cluster: Any, operator: OperatorProcess, namespace: str, kind_name: str) -> None:
    apply(cluster, namespace, example("heal"))
    c = ChildNames("heal")
    target = kind_name.format(app=c.app, cache=c.cache, db_replicas=c.db_replicas, db_scripts=c.db_scripts)
    first = wait_for(lambda: find(cluster, namespace, target), 90, f"{target} created")
    cluster.kubectl("delete", "-n", namespace, target, "--wait=true")
    again = wait_for(lambda: find(cluster, namespace, target), 60, f"{target} recreated")
    assert again["metadata"]["uid"] != first["metadata"]["uid"]


def test_a_deleted_credentials_secret_is_back_soon_after_a_workload_loses_a_pod(
    cluster: Any, operator: OperatorProcess, namespace: str
) -> None:
    """The operator never watches Secrets, and the periodic resync comes 300-450 s after the ScaledApp is Ready
    (the operator's default). A workload short of ready pods brings the resync forward: the pod replacing a
    deleted one would mount the Secret, so a drill that deletes both gets the Secret back within seconds."""
    apply(cluster, namespace, example("keys"))
    secret = f"secret/{ChildNames('keys').db_credentials}"

    def ready() -> bool:
        conditions = ((find(cluster, namespace, "scaledapp/keys") or {}).get("status") or {}).get("conditions")
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions or [])

    wait_for(ready, 180, "the ScaledApp Ready")
    before = get(cluster, namespace, secret)["data"]
    cluster.kubectl("delete", "-n", namespace, secret, "--wait=true")
    cluster.kubectl("delete", "pod", "-n", namespace, "-l", "app.kubernetes.io/instance=keys,scaledapp.dev/tier=app",
                    "--wait=true")
    after = wait_for(lambda: find(cluster, namespace, secret), 60, "the credentials Secret back")
    assert after["data"] == before  # the same passwords: every pod and the database roles still agree with it
    events = get(cluster, namespace, "events")["items"]
    assert any(e["reason"] == "CredentialsRestored" for e in events), [e["reason"] for e in events]


def test_an_edited_image_is_reverted(cluster: Any, operator: OperatorProcess, namespace: str) -> None:
    apply(cluster, namespace, example("revert"))
    deploy = f"deployment/{ChildNames('revert').app}"

    def image() -> str | None:
        d = find(cluster, namespace, deploy)
        return str(d["spec"]["template"]["spec"]["containers"][0]["image"]) if d else None

    original = wait_for(image, 90, "app deployment")
    cluster.kubectl("set", "image", "-n", namespace, deploy, "app=evil:latest")
    wait_for(lambda: image() == original, 60, "the image edit reverted")


def test_changing_the_spec_rolls_the_app(cluster: Any, operator: OperatorProcess, namespace: str) -> None:
    body = example("roll")
    apply(cluster, namespace, body)
    deploy = f"deployment/{ChildNames('roll').app}"
    generation = wait_for(lambda: (find(cluster, namespace, deploy) or {}).get("metadata", {}).get("generation"),
                          90, "app deployment")
    body["spec"].setdefault("app", {})["env"] = [{"name": "FEATURE_FLAG", "value": "on"}]
    apply(cluster, namespace, body)

    def rolled() -> bool:
        d = get(cluster, namespace, deploy)
        env = d["spec"]["template"]["spec"]["containers"][0].get("env", [])
        return d["metadata"]["generation"] > generation and {"name": "FEATURE_FLAG", "value": "on"} in env

    wait_for(rolled, 60, "a new app pod template with the new env")


def test_deleting_the_scaledapp_collects_everything(cluster: Any, operator: OperatorProcess, namespace: str) -> None:
    apply(cluster, namespace, example("gone"))
    wait_for(lambda: expected_children("gone") <= set(owned_children(cluster, namespace, "gone")), 90, "children")
    cluster.kubectl("delete", "-n", namespace, "scaledapp/gone", "--wait=true", "--timeout=60s")
    wait_for(lambda: not owned_children(cluster, namespace, "gone"), 90, "garbage collection of every child")


def test_killed_mid_reconcile_converges_after_restart(cluster: Any, operator: OperatorProcess, namespace: str) -> None:
    operator.kill()
    apply(cluster, namespace, example("crash"))
    operator.start()
    operator.kill()  # again, while it is most likely in the middle of the first reconcile
    operator.start()
    wait_for(lambda: expected_children("crash") <= set(owned_children(cluster, namespace, "crash")), 90,
             "every child after two crashes")


def test_switching_a_tier_off_prunes_its_children(cluster: Any, operator: OperatorProcess, namespace: str) -> None:
    body = example("prune")
    apply(cluster, namespace, body)
    cache = f"deployment/{ChildNames('prune').cache}"
    wait_for(lambda: find(cluster, namespace, cache), 90, "the cache deployment")
    body["spec"].setdefault("cache", {})["enabled"] = False
    apply(cluster, namespace, body)
    wait_for(lambda: find(cluster, namespace, cache) is None, 60, "the cache deployment pruned")
    assert find(cluster, namespace, f"deployment/{ChildNames('prune').app}") is not None
    events = get(cluster, namespace, "events")["items"]
    assert any(e["reason"] == "Pruned" for e in events), [e["reason"] for e in events]
