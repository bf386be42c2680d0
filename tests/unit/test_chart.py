"""The Helm chart, rendered by the pinned helm: lint-clean, valid Kubernetes 1.34 objects, least privilege."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.support.helm import CHART, helm_run, pinned_versions, render, set_args

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.34.0"
VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "prometheus": {"prometheus.enabled": True},
    "namespaced": {"watchNamespaces": ["shop", "blog"]},
    "namespaced-prometheus": {"watchNamespaces": ["shop"], "prometheus.enabled": True},
    "external-prometheus": {"prometheus.externalUrl": "http://prom.monitoring.svc:9090", "logFormat": "plain"},
}


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def the(objects: list[dict[str, Any]], kind: str, name_suffix: str = "") -> dict[str, Any]:
    found = [o for o in by_kind(objects, kind) if o["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, [o["metadata"]["name"] for o in by_kind(objects, kind)]
    return found[0]


def operator_deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return the([o for o in objects if o["metadata"]["name"] == "scaledapp-scaledapp-operator"], "Deployment")


def rules(objects: list[dict[str, Any]], subject_suffix: str = "scaledapp-operator") -> list[dict[str, Any]]:
    """Every rule of every (Cluster)Role bound to the operator's ServiceAccount."""
    bound = {(b["roleRef"]["kind"], b["roleRef"]["name"], b["metadata"].get("namespace"))
             for b in objects if b["kind"] in ("RoleBinding", "ClusterRoleBinding")
             and any(s["name"].endswith(subject_suffix) for s in b["subjects"])}
    out: list[dict[str, Any]] = []
    for role in objects:
        if role["kind"] in ("Role", "ClusterRole") and \
                (role["kind"], role["metadata"]["name"], role["metadata"].get("namespace")) in bound:
            out += role["rules"]
    return out


@pytest.mark.parametrize("values", [{}, {"prometheus.enabled": True, "watchNamespaces": ["a"]}], ids=["default", "all"])
def test_helm_lint_strict_is_clean(values: dict[str, Any]) -> None:
    proc = helm_run("lint", "--strict", str(CHART), *set_args(values))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout


@pytest.mark.parametrize("values", [{"logFormat": "xml"}, {"replicas": 0}, {"prometheus.retention": "forever"},
                                    {"watchNamespaces": ["Not_A_Namespace"]}], ids=str)
def test_the_values_schema_rejects_mistakes(values: dict[str, Any]) -> None:
    proc = helm_run("template", "x", str(CHART), *set_args(values))
    assert proc.returncode != 0
    assert "schema" in proc.stderr, proc.stderr


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rendered_objects_are_valid_kubernetes_1_34(variant: str) -> None:
    objects = render(VARIANTS[variant])
    assert objects
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_the_chart_crd_is_the_generated_one() -> None:
    assert (CHART / "crds" / "scaledapps.scaledapp.dev.yaml").read_text() == \
        (ROOT / "crds" / "scaledapps.scaledapp.dev.yaml").read_text()


def test_the_operator_runs_two_replicas_under_leader_election_with_liveness_and_json_logs() -> None:
    deploy = operator_deployment(render())
    spec = deploy["spec"]
    assert spec["replicas"] == 2
    # A rolling update is safe: the new pod waits as a standby until the old leader releases the Lease.
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    container = spec["template"]["spec"]["containers"][0]
    assert container["command"] == ["scaledapp"]  # the console script of pyproject.toml
    assert container["args"] == ["--all-namespaces", "--drain-switchover=auto", "--log-format=json",
                                 "--liveness=http://0.0.0.0:8080/healthz",
                                 "--metrics-port=8081",
                                 "--prometheus-allow=*.svc", "--prometheus-allow=*.svc.cluster.local",
                                 "--leader-elect", "--lease-name=scaledapp-scaledapp-operator",
                                 "--lease-duration=10", "--renew-deadline=7", "--retry-period=2"]
    env = {e["name"]: e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in container["env"]}
    assert env["POD_NAME"] == "metadata.name" and env["POD_NAMESPACE"] == "metadata.namespace"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["resources"]["limits"] and container["resources"]["requests"]
    assert container["image"] == "ghcr.io/scaledapp/operator:0.1.0"


def test_without_leader_election_the_operator_runs_once_with_recreate() -> None:
    spec = operator_deployment(render({"leaderElection.enabled": False, "replicas": 1}))["spec"]
    assert spec["replicas"] == 1 and spec["strategy"] == {"type": "Recreate"}
    assert "--leader-elect" not in spec["template"]["spec"]["containers"][0]["args"]
    proc = helm_run("template", "x", str(CHART), *set_args({"leaderElection.enabled": False}))
    assert proc.returncode != 0 and "needs leaderElection" in proc.stderr, proc.stderr


def test_the_leader_lease_is_the_only_named_grant() -> None:
    objects = render({"watchNamespaces": ["shop"]})
    role = the(objects, "Role", "-leader")
    assert role["metadata"]["namespace"] == "scaledapp-system"
    assert role["rules"] == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "resourceNames": ["scaledapp-scaledapp-operator"], "verbs": ["get", "update"]}]


def test_namespaced_mode_uses_roles_only() -> None:
    objects = render({"watchNamespaces": ["shop", "blog"]})
    assert not by_kind(objects, "ClusterRole") and not by_kind(objects, "ClusterRoleBinding")
    assert sorted(r["metadata"]["namespace"] for r in by_kind(objects, "Role")
                  if not r["metadata"]["name"].endswith("-leader")) == ["blog", "shop"]
    for binding in by_kind(objects, "RoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "scaledapp-scaledapp-operator",
                                        "namespace": "scaledapp-system"}]
    args = operator_deployment(objects)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[:2] == ["--namespace=shop", "--namespace=blog"] and "--all-namespaces" not in args


@pytest.mark.parametrize(("values", "nodes_readable"), [
    ({}, True), ({"drainSwitchover": "off"}, False),
    ({"watchNamespaces": ["shop"]}, False), ({"watchNamespaces": ["shop"], "drainSwitchover": "on"}, True)])
def test_nodes_are_readable_exactly_when_a_drain_switchover_can_run(values: dict[str, Any],
                                                                     nodes_readable: bool) -> None:
    objects = render(values)
    node_rules = [r for kind in ("ClusterRole", "Role") for role in by_kind(objects, kind) for r in role["rules"]
                  if "nodes" in r["resources"]]
    assert node_rules == ([{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]}]
                          if nodes_readable else [])
    args = operator_deployment(objects)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--drain-switchover={values.get('drainSwitchover', 'auto')}" in args


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rbac_is_least_privilege(variant: str) -> None:
    objects = render(VARIANTS[variant])
    granted = rules(objects)
    assert granted
    verbs_of: dict[str, set[str]] = {}
    granted = [r for r in granted if r["resources"] != ["leases"]]  # the leader Lease: its own test above
    for rule in granted:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"], rule
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule, rule
        for resource in rule["resources"]:
            key = f"{resource}.{rule['apiGroups'][0]}" if rule["apiGroups"][0] else resource
            verbs_of.setdefault(key, set()).update(rule["verbs"])
    assert not any({"deletecollection", "update", "escalate", "bind", "impersonate"} & v
                   for v in verbs_of.values()), verbs_of
    # delete only where the reconciler prunes a switched-off tier (cache, workers), and pods (the failover
    # guard fences a lost primary); never data (no PVCs, StatefulSets, Secrets).
    assert {k for k, v in verbs_of.items() if "delete" in v} == {
        "deployments.apps", "services", "configmaps", "networkpolicies.networking.k8s.io",
        "poddisruptionbudgets.policy", "pods"}
    # Its own, by name; patch adds the keys an older Secret lacks and renews the Postgres TLS Secret; never
    # list, watch, update or delete one.
    assert verbs_of["secrets"] == {"get", "create", "patch"}
    assert verbs_of["pods/resize"] == {"patch"}
    assert verbs_of["pods"] == {"get", "list", "watch", "patch", "delete"}  # labels and fencing, no exec/create
    assert not {"pods/exec", "pods/log", "pods/attach", "pods/portforward"} & set(verbs_of)
    assert verbs_of["events"] == {"create"}
    assert verbs_of["scaledapps/status.scaledapp.dev"] == {"patch"}
    assert verbs_of["scaledapps.scaledapp.dev"] == {"get", "list", "watch", "patch"}


def test_bundled_prometheus_may_only_read_pods() -> None:
    objects = render({"prometheus.enabled": True})
    role = the(objects, "ClusterRole", "-prometheus")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    namespaced = render({"prometheus.enabled": True, "watchNamespaces": ["shop"]})
    assert not by_kind(namespaced, "ClusterRole")
    # the watched namespace, and the release's own for the operator's pods (its scrape job)
    assert [r["metadata"]["namespace"] for r in by_kind(namespaced, "Role") if r["metadata"]["name"].endswith(
        "-prometheus")] == ["shop", "scaledapp-system"]
    no_metrics = render({"prometheus.enabled": True, "watchNamespaces": ["shop"], "metrics.enabled": False})
    assert [r["metadata"]["namespace"] for r in by_kind(no_metrics, "Role") if r["metadata"]["name"].endswith(
        "-prometheus")] == ["shop"]
    both = render({"prometheus.enabled": True, "watchNamespaces": ["shop", "scaledapp-system"]})
    assert [r["metadata"]["namespace"] for r in by_kind(both, "Role") if r["metadata"]["name"].endswith(
        "-prometheus")] == ["shop", "scaledapp-system"]


def scrape_job(objects: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    config = yaml.safe_load(the(objects, "ConfigMap", "-prometheus")["data"]["prometheus.yml"])
    return next((j for j in config["scrape_configs"] if j["job_name"] == name), None)


@pytest.mark.parametrize("variant", ["prometheus", "namespaced-prometheus"])
def test_bundled_prometheus_scrapes_the_operators_metrics_port_keeping_its_namespace_label(variant: str) -> None:
    """Without the Prometheus Operator the dashboard's operator panels still fill: the bundled Prometheus has a job
    for the operator pods' `metrics` port (the Deployment's port name) in the release namespace, the pods chosen by
    the Deployment's own selector, and honor_labels so a series' `namespace` stays the ScaledApp's."""
    objects = render({**VARIANTS[variant], "prometheus.enabled": True}, namespace="ops", release="rel")
    job = scrape_job(objects, "scaledapp-operator")
    assert job is not None
    assert job["honor_labels"] is True
    (sd,) = job["kubernetes_sd_configs"]
    assert sd["role"] == "pod" and sd["namespaces"] == {"names": ["ops"]}
    deploy = the([o for o in objects if o["metadata"]["name"] == "rel-scaledapp-operator"], "Deployment")
    selector = deploy["spec"]["selector"]["matchLabels"]
    (pod_selector,) = sd["selectors"]
    assert pod_selector["role"] == "pod"
    assert dict(kv.split("=") for kv in pod_selector["label"].split(",")) == selector
    ports = {p["name"]: p["containerPort"] for p in deploy["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert ports["metrics"] == 8081
    relabel = job["relabel_configs"]
    assert {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "action": "keep",
            "regex": "metrics"} in relabel
    assert {r.get("target_label") for r in relabel} >= {"namespace", "pod"}
    # the pod-annotation job stays as it was: the operator's pods are not annotated, so they are scraped once
    assert scrape_job(objects, "kubernetes-pods") is not None
    assert "prometheus.io/scrape" not in (deploy["spec"]["template"]["metadata"].get("annotations") or {})


def test_no_operator_scrape_job_without_its_metrics() -> None:
    assert scrape_job(render({"prometheus.enabled": True, "metrics.enabled": False}), "scaledapp-operator") is None


def test_bundled_prometheus_is_pinned_and_discovers_pods_by_annotation() -> None:
    objects = render({"prometheus.enabled": True})
    deploy = the(objects, "Deployment", "-prometheus")
    container = deploy["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == f"prom/prometheus:v{pinned_versions()['PROMETHEUS_VERSION']}"
    service = the(objects, "Service", "prometheus")
    # The CRD's default spec.scaling.prometheusUrl is http://prometheus.scaledapp-system.svc:9090.
    assert service["metadata"]["name"] == "prometheus" and service["spec"]["ports"][0]["port"] == 9090
    config = yaml.safe_load(the(objects, "ConfigMap", "-prometheus")["data"]["prometheus.yml"])
    relabel = config["scrape_configs"][0]["relabel_configs"]
    assert {"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"], "action": "keep",
            "regex": "true"} in relabel
    assert {"action": "labelmap", "regex": "__meta_kubernetes_pod_label_(.+)"} in relabel
    targets = {r.get("target_label") for r in relabel}
    assert {"namespace", "pod", "__address__", "__metrics_path__"} <= targets
    checksum = deploy["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    changed = the(render({"prometheus.enabled": True, "prometheus.scrapeInterval": "30s"}), "Deployment", "-prometheus")
    assert changed["spec"]["template"]["metadata"]["annotations"]["checksum/config"] != checksum


@pytest.mark.parametrize("variant", ["prometheus", "namespaced-prometheus"])
def test_every_pod_meets_the_restricted_profile(variant: str) -> None:
    for deploy in by_kind(render(VARIANTS[variant]), "Deployment"):
        pod = deploy["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
        assert all("emptyDir" in v or "configMap" in v for v in pod.get("volumes", []))
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False, deploy["metadata"]["name"]
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["runAsNonRoot"] is True


def test_values_and_schema_agree() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert set(values) == set(schema["properties"]) - {"global"}  # global: Helm's, for subcharts
    assert set(values["prometheus"]) == set(schema["properties"]["prometheus"]["properties"])


def test_the_admission_policy_checks_the_pause_annotation_where_the_operator_watches() -> None:
    objects = render()
    policy = the(objects, "ValidatingAdmissionPolicy")
    binding = the(objects, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"] and "matchResources" not in binding["spec"]
    assert policy["spec"]["failurePolicy"] == "Fail"
    assert policy["spec"]["matchConstraints"]["resourceRules"] == [{
        "apiGroups": ["scaledapp.dev"], "apiVersions": ["*"], "operations": ["CREATE", "UPDATE"],
        "resources": ["scaledapps"]}]
    assert "metadata.annotations[scaledapp.dev/paused]" in policy["spec"]["validations"][0]["message"]
    namespaced = the(render({"watchNamespaces": ["shop", "blog"]}), "ValidatingAdmissionPolicyBinding")
    assert namespaced["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"] == [
        {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["shop", "blog"]}]
    disabled = render({"admissionPolicy.enabled": False})
    assert not by_kind(disabled, "ValidatingAdmissionPolicy")
    assert not by_kind(disabled, "ValidatingAdmissionPolicyBinding")


def test_the_prometheus_url_policy_reaches_the_operator() -> None:
    def args(values: dict[str, Any]) -> list[str]:
        container = operator_deployment(render(values))["spec"]["template"]["spec"]["containers"][0]
        return [a for a in container["args"] if a.startswith("--prometheus-allow=")]

    assert args({}) == ["--prometheus-allow=*.svc", "--prometheus-allow=*.svc.cluster.local"]
    assert args({"prometheus.externalUrl": "https://prom.example.com:9443"})[-1] == \
        "--prometheus-allow=https://prom.example.com:9443"
    assert args({"prometheus.allowedUrls": ["*"]}) == ["--prometheus-allow=*"]
