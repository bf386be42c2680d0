"""RBAC proven, not assumed: the operator runs with a token of the chart's ServiceAccount and nothing else.

On a private control plane: an operator of another test or session (watching every namespace) would
reconcile our ScaledApps too, and then "every child created" would prove nothing about these rules.
The chart is installed into the empty cluster, so helm also installs the CRD from the chart's crds/.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devharness.prometheus import LocalPrometheus
from scaledapp import api
from scaledapp.resources import build_children
from scaledapp.resources.names import ChildNames
from scaledapp.tiers.base import PROM_INSTANCE_LABEL, PROM_TIER_LABEL, Scope
from tests.support.cluster import Cluster, KubectlError, private_cluster
from tests.support.helm import install
from tests.support.operator import OperatorProcess, token_kubeconfig, wait_crd_established
from tests.support.wait import eventually, wait_for

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]
SYSTEM = "scaledapp-system"
RELEASE = "scaledapp"
SA = "scaledapp-scaledapp-operator"
SCOPED_SYSTEM, SCOPED_RELEASE, SCOPED_NS = "scoped-system", "scoped", "blog"
SCOPED_SA = "scoped-scaledapp-operator"
FORBIDDEN = re.compile(r"\b403\b|forbidden", re.IGNORECASE)
# kopf's own fallbacks when it may not watch cluster-scoped CRDs or namespaces (namespaced mode): it then
# serves the named namespaces and the resources it found at start-up, which is what a Role-only install wants.
KOPF_SCOPED_FALLBACKS = ("Not enough permissions to list namespaces", "Not enough permissions to watch for namespaces",
                         "Not enough permissions to watch for resources")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with private_cluster(tmp_path_factory.mktemp("chart-rbac") / "state") as cluster:
        out = install(cluster.kubeconfig, RELEASE, SYSTEM, {"prometheus.enabled": True})
        assert "NOTES:" in out
        wait_crd_established(cluster)
        new_namespace(cluster, SCOPED_NS)  # Roles go into watched namespaces: they must exist first
        install(cluster.kubeconfig, SCOPED_RELEASE, SCOPED_SYSTEM, {"watchNamespaces": [SCOPED_NS]})
        yield cluster


def sa_kubeconfig(cluster: Cluster, namespace: str, sa: str, path: Path) -> Path:
    """TokenRequest for the ServiceAccount (`kubectl create token`), wrapped in a kubeconfig."""
    token = cluster.kubectl("create", "token", sa, "-n", namespace, "--duration=2h").strip()
    return token_kubeconfig(cluster.kubeconfig, token, path)


def new_namespace(cluster: Cluster, name: str) -> str:
    cluster.kubectl("create", "namespace", name)
    wait_for(lambda: cluster.kubectl_run("get", "serviceaccount", "default", "-n", name).returncode == 0, 30,
             f"the default ServiceAccount of {name}")
    return name


def apply_example(cluster: Cluster, namespace: str, name: str, spec: dict[str, Any] | None = None) -> None:
    body = yaml.safe_load((ROOT / "examples" / "minimal.yaml").read_text())
    body["metadata"] = {"name": name}
    body["spec"] = spec or {}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))


def children(cluster: Cluster, namespace: str) -> set[str]:
    kinds = "deployment,statefulset,service,poddisruptionbudget,secret,configmap,networkpolicy"
    items = cluster.get_json(kinds, "-n", namespace, "-l", "app.kubernetes.io/managed-by=scaledapp-operator")["items"]
    return {f"{i['kind']}/{i['metadata']['name']}" for i in items if not i["metadata"].get("deletionTimestamp")}


def every_child(name: str, cache: bool = True, workers: bool = True) -> set[str]:
    """What the pure builders produce for this spec, plus the generated Secrets (credentials, Postgres CA, TLS)."""
    spec = api.parse_spec({"cache": {"enabled": cache}, "workers": {"enabled": workers}})
    built = {f"{m['kind']}/{m['metadata']['name']}" for m in build_children(name, "any", spec)}
    child = ChildNames(name)
    return built | {f"Secret/{s}" for s in (child.db_credentials, child.db_ca, child.db_tls)}


def condition_types(cluster: Cluster, namespace: str, name: str) -> set[str]:
    status = cluster.get_json(f"scaledapp/{name}", "-n", namespace).get("status") or {}
    return {c["type"] for c in status.get("conditions") or []}


def event_reasons(cluster: Cluster, namespace: str) -> set[str]:
    return {e.get("reason") for e in cluster.get_json("events", "-n", namespace)["items"]}


def reconcile_fully(cluster: Cluster, namespace: str, name: str) -> None:
    """Every child, status from the reconciler and the scaler, Events, drift repair, pruning: each call the
    operator makes, made with the ServiceAccount's token."""
    apply_example(cluster, namespace, name)
    wait_for(lambda: every_child(name) <= children(cluster, namespace), 120, f"every child of {name}")
    def status_written() -> None:
        status = cluster.get_json(f"scaledapp/{name}", "-n", namespace).get("status") or {}
        assert status.get("observedGeneration") == 1, status  # the reconciler's
        assert status.get("tiers") and "MetricsAvailable" in condition_types(cluster, namespace, name), status

    eventually(status_written, 90, "status written by the reconciler and by a scaler tick")
    wait_for(lambda: "Created" in event_reasons(cluster, namespace), 30, "Events posted")
    app_service = f"service/{ChildNames(name).app}"
    cluster.kubectl("delete", "-n", namespace, app_service, "--wait=true")
    wait_for(lambda: cluster.kubectl_run("get", "-n", namespace, app_service).returncode == 0, 60,
             "the deleted Service recreated (drift handlers list and watch)")
    apply_example(cluster, namespace, name, {"cache": {"enabled": False}, "workers": {"enabled": False}})
    want = every_child(name, cache=False, workers=False)
    eventually(lambda: _same(children(cluster, namespace), want), 60, "cache and workers pruned (delete)")


def completes_an_older_secret(cluster: Cluster, namespace: str, name: str) -> None:
    """A ScaledApp whose credentials Secret predates the Redis passwords (made here with only the database
    keys): the operator adds the two keys with the ServiceAccount's patch right and leaves the others be."""
    old = {k: base64.b64encode(f"kept-{k}".encode()).decode()
           for k in ("superuser-password", "app-password", "replication-password", "exporter-password")}
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "data": old,
              "metadata": {"name": ChildNames(name).db_credentials, "namespace": namespace}}
    cluster.kubectl("create", "-f", "-", input=json.dumps(secret))
    apply_example(cluster, namespace, name)

    def data() -> dict[str, str] | None:
        got: dict[str, str] = cluster.get_json(f"secret/{ChildNames(name).db_credentials}", "-n", namespace)["data"]
        return got if {"cache-password", "queue-password"} <= set(got) else None

    got = wait_for(data, 90, "the Redis passwords added to the older Secret")
    kept = {k: got[k] for k in old} == old
    assert kept, "a key the Secret had was rewritten"
    assert set(got) == set(old) | {"cache-password", "queue-password"}


def _same(got: set[str], want: set[str]) -> None:
    assert got == want, {"unexpected": sorted(got - want), "missing": sorted(want - got)}


def leader_args(release_namespace: str, lease: str) -> list[str]:
    """The chart's leader-election arguments (its Lease is named after the release's full name)."""
    return ["--leader-elect", "--lease-namespace", release_namespace, "--lease-name", lease]


def assert_no_permission_errors(op: OperatorProcess, allowed: tuple[str, ...] = ()) -> None:
    lines = [ln for ln in op.log_path.read_text(errors="replace").splitlines() if FORBIDDEN.search(ln)]
    assert lines == [], "\n".join(lines[:10])
    warnings = [r.get("message", "") for r in op.log_records() if r.get("severity") in ("warn", "error")
                and "permission" in r.get("message", "").lower()]
    assert [w for w in warnings if not w.startswith(allowed)] == [], warnings


def test_the_chart_identity_reconciles_a_scaledapp_completely(scratch: Cluster, tmp_path: Path) -> None:
    namespace = new_namespace(scratch, "shop")
    # With leader election as the chart runs it: the Lease (create, then get/update by name) is covered too.
    op = OperatorProcess(str(sa_kubeconfig(scratch, SYSTEM, SA, tmp_path / "sa.kubeconfig")), tmp_path,
                         name="operator-chart-sa", scope=["--all-namespaces", *leader_args(SYSTEM, SA)])
    op.start()
    try:
        reconcile_fully(scratch, namespace, "shop")
        completes_an_older_secret(scratch, namespace, "legacy")
    finally:
        op.stop()
    assert_no_permission_errors(op)


def test_namespaced_install_reconciles_its_namespace_and_nothing_else(scratch: Cluster, tmp_path: Path) -> None:
    blog = SCOPED_NS
    other = new_namespace(scratch, "elsewhere")
    kubeconfig = sa_kubeconfig(scratch, SCOPED_SYSTEM, SCOPED_SA, tmp_path / "scoped.kubeconfig")
    op = OperatorProcess(str(kubeconfig), tmp_path, scope=["--namespace", blog, *leader_args(SCOPED_SYSTEM, SCOPED_SA)],
                         name="operator-chart-scoped")
    op.start()
    try:
        reconcile_fully(scratch, blog, "posts")
        apply_example(scratch, other, "ignored")
        # The operator only watches `blog`; prove the ignored one stays untouched while `blog` is served.
        apply_example(scratch, blog, "later")
        wait_for(lambda: every_child("later") <= children(scratch, blog), 120, "a second ScaledApp in blog served")
        assert children(scratch, other) == set()
    finally:
        op.stop()
    assert_no_permission_errors(op, allowed=KOPF_SCOPED_FALLBACKS)


def rules_review(cluster: Cluster, sa: str, sa_namespace: str, namespace: str) -> list[dict[str, Any]]:
    """SelfSubjectRulesReview as the ServiceAccount (what `kubectl auth can-i --list` prints), as JSON."""
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
              "spec": {"namespace": namespace}}
    out = cluster.kubectl("create", "--validate=false", f"--as=system:serviceaccount:{sa_namespace}:{sa}",
                          "-o", "json", "-f", "-", input=json.dumps(review))
    rules: list[dict[str, Any]] = json.loads(out)["status"]["resourceRules"]
    return rules


def verbs_by_resource(rules: list[dict[str, Any]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for rule in rules:
        for group in rule.get("apiGroups", [""]):
            for resource in rule["resources"]:
                key = f"{resource}.{group}" if group else resource
                out.setdefault(key, set()).update(rule["verbs"])
    return out


def can_i(cluster: Cluster, sa: str, sa_namespace: str, *args: str) -> bool:
    proc = cluster.kubectl_run("auth", "can-i", *args, f"--as=system:serviceaccount:{sa_namespace}:{sa}")
    return proc.stdout.strip() == "yes"


def test_can_i_list_shows_no_wildcards_and_no_more_secret_access_than_needed(scratch: Cluster) -> None:
    namespace = new_namespace(scratch, "audit")
    listing = scratch.kubectl("auth", "can-i", "--list", "-n", namespace, f"--as=system:serviceaccount:{SYSTEM}:{SA}")
    resource_rows = [ln for ln in listing.splitlines()[1:] if ln and not ln.lstrip().startswith("[")]
    assert resource_rows, listing
    for row in resource_rows:
        resource, *_rest = row.split()
        row_verbs = row[row.rindex("[") + 1:row.rindex("]")].split()
        assert "*" not in resource and "*" not in row_verbs, row

    granted = verbs_by_resource(rules_review(scratch, SA, SYSTEM, namespace))
    for key, verbs in granted.items():
        assert "*" not in key and "*" not in verbs, (key, verbs)
    # Its own, by name (the failover guard); patch adds the keys an older Secret lacks and renews the TLS Secret.
    assert granted["secrets"] == {"get", "create", "patch"}
    assert granted["pods/resize"] == {"patch"}
    assert granted["pods"] == {"get", "list", "watch", "patch", "delete"}  # the failover guard's
    assert granted["nodes"] == {"get", "list", "watch"}  # read-only: a cordoned node moves the write role
    assert not {"pods/exec", "pods/log", "pods/attach", "pods/portforward"} & set(granted)
    assert not any({"update", "deletecollection", "escalate", "bind", "impersonate"} & v for v in granted.values())
    assert can_i(scratch, SA, SYSTEM, "patch", "pods", "--subresource=resize", "-n", namespace)
    for forbidden in (("delete", "secrets"), ("update", "secrets"), ("list", "secrets"),
                      ("watch", "secrets"), ("create", "pods"),
                      ("delete", "statefulsets"), ("delete", "persistentvolumeclaims"), ("delete", "scaledapps"),
                      ("create", "clusterroles"), ("patch", "nodes"), ("delete", "nodes")):
        assert not can_i(scratch, SA, SYSTEM, *forbidden, "-n", namespace), forbidden
    for verb in ("list", "watch"):
        assert not can_i(scratch, SA, SYSTEM, verb, "secrets", "--all-namespaces"), verb

    # Namespaced install: all of it inside the watched namespace, nothing outside (no ClusterRole at all).
    assert can_i(scratch, SCOPED_SA, SCOPED_SYSTEM, "create", "secrets", "-n", SCOPED_NS)
    assert not can_i(scratch, SCOPED_SA, SCOPED_SYSTEM, "get", "secrets", "-n", namespace)
    assert not can_i(scratch, SCOPED_SA, SCOPED_SYSTEM, "list", "secrets", "--all-namespaces")
    assert verbs_by_resource(rules_review(scratch, SCOPED_SA, SCOPED_SYSTEM, namespace)).keys() <= {
        "selfsubjectaccessreviews.authorization.k8s.io", "selfsubjectrulesreviews.authorization.k8s.io",
        "selfsubjectreviews.authentication.k8s.io"}


def test_a_token_of_another_account_is_refused(scratch: Cluster, tmp_path: Path) -> None:
    """The proof above needs the token to carry only the ServiceAccount's rights: a fresh account has none."""
    scratch.kubectl("create", "serviceaccount", "nobody", "-n", SYSTEM)
    kubeconfig = sa_kubeconfig(scratch, SYSTEM, "nobody", tmp_path / "nobody.kubeconfig")
    proc = scratch.kubectl_run(f"--kubeconfig={kubeconfig}", "get", "scaledapps", "-A")
    assert proc.returncode != 0 and "forbidden" in proc.stderr.lower(), proc.stderr
    with pytest.raises(KubectlError, match=r"(?i)forbidden"):
        scratch.kubectl(f"--kubeconfig={kubeconfig}", "get", "secrets", "-n", SYSTEM)


class ChartPrometheus(LocalPrometheus):
    """The pinned Prometheus binary running the chart's own scrape configuration, pointed at this API server
    with the chart's Prometheus ServiceAccount token (instead of the in-cluster defaults)."""

    def __init__(self, workdir: Path, config: dict[str, Any]) -> None:
        super().__init__(workdir)
        self.chart_config = config

    def config_text(self) -> str:
        return json.dumps(self.chart_config, indent=2) + "\n"


def chart_prometheus_config(cluster: Cluster, token_file: Path) -> dict[str, Any]:
    text = cluster.kubectl("get", "configmap", f"{SA}-prometheus", "-n", SYSTEM,
                           "-o", "jsonpath={.data.prometheus\\.yml}")
    config: dict[str, Any] = yaml.safe_load(text)
    admin = yaml.safe_load(cluster.kubeconfig.read_text())["clusters"][0]["cluster"]
    config["global"].update({"scrape_interval": "1s", "scrape_timeout": "1s"})
    for job in config["scrape_configs"]:
        for sd in job["kubernetes_sd_configs"]:
            sd.update({"api_server": admin["server"], "authorization": {"credentials_file": str(token_file)},
                       "tls_config": {"ca_file": admin["certificate-authority"]}})
    return config


def test_bundled_prometheus_gives_pod_series_the_labels_the_operator_selects_on(
    scratch: Cluster, tmp_path: Path
) -> None:
    namespace = new_namespace(scratch, "metrics")
    # An app pod exactly as the operator builds it (labels and prometheus.io annotations), and an unannotated one.
    deployment = next(m for m in build_children("shop", namespace, api.ScaledAppSpec())
                      if m["kind"] == "Deployment" and m["metadata"]["name"] == ChildNames("shop").app)
    template = deployment["spec"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {**template["metadata"], "name": "shop-app-x"},
           "spec": template["spec"]}
    quiet = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "quiet", "labels": {"x": "y"}},
             "spec": {"containers": [{"name": "c", "image": "busybox:1.37"}]}}
    for body in (pod, quiet):
        scratch.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))
    pod_ip = wait_for(lambda: scratch.get_json("pod", "shop-app-x", "-n", namespace).get("status", {}).get("podIP"),
                      60, "the pod scheduled with an IP")
    annotations = template["metadata"]["annotations"]

    token = scratch.kubectl("create", "token", f"{SA}-prometheus", "-n", SYSTEM, "--duration=1h").strip()
    (tmp_path / "token").write_text(token)
    with ChartPrometheus(tmp_path / "prometheus", chart_prometheus_config(scratch, tmp_path / "token")) as prom:

        def shop_target() -> dict[str, Any] | None:
            active = prom.api("targets", {"state": "active"})["activeTargets"]
            return next((t for t in active if t["labels"].get("pod") == "shop-app-x"), None)

        target = wait_for(shop_target, 60, f"the annotated pod discovered (log: {prom.log_tail()})")
        labels = target["labels"]
        assert labels["namespace"] == namespace
        assert labels[PROM_INSTANCE_LABEL] == "shop" and labels[PROM_TIER_LABEL] == "app"
        assert target["scrapeUrl"] == f"http://{pod_ip}:{annotations['prometheus.io/port']}" \
                                      f"{annotations['prometheus.io/path']}"
        # The operator's own selector finds the series (up = 0 here: kwok pods run nothing).
        selector = Scope(namespace, "shop").selector("app")
        wait_for(lambda: prom.query(f"count(up{selector})"), 30, f"up{selector}")
        active = prom.api("targets", {"state": "active"})["activeTargets"]
        assert not [t for t in active if t["labels"].get("pod") == "quiet"], "unannotated pods are not scraped"


def test_deleting_a_namespace_served_by_a_namespaced_install_completes(scratch: Cluster, tmp_path: Path) -> None:
    """The Role lives in the namespace it grants: deleting the namespace deletes the operator's rights along with
    the ScaledApps. A finalizer would then be left for ever (nobody may remove it) and the namespace stuck in
    Terminating; the operator puts none on (no kopf daemons or timers: runner.py)."""
    doomed, system, release = "doomed", "doomed-system", "doomed"
    new_namespace(scratch, doomed)
    install(scratch.kubeconfig, release, system, {"watchNamespaces": [doomed], "admissionPolicy.enabled": False},
            skip_crds=True)
    kubeconfig = sa_kubeconfig(scratch, system, f"{release}-scaledapp-operator", tmp_path / "doomed.kubeconfig")
    op = OperatorProcess(str(kubeconfig), tmp_path, scope=["--namespace", doomed], name="operator-doomed")
    op.start()
    try:
        apply_example(scratch, doomed, "gone")
        wait_for(lambda: every_child("gone") <= children(scratch, doomed), 120, "every child of gone")
        eventually(lambda: _no_finalizers(scratch, doomed, "gone"), 30, "the ScaledApp without finalizers")
        scratch.kubectl("delete", "namespace", doomed, "--wait=false")
        wait_for(lambda: scratch.kubectl_run("get", "namespace", doomed).returncode != 0, 120,
                 f"namespace {doomed} deleted (not stuck Terminating)", interval=1)
    finally:
        op.stop()  # its 403s once the Role is gone are expected: the namespace going away is the test


def _no_finalizers(cluster: Cluster, namespace: str, name: str) -> None:
    assert not cluster.get_json(f"scaledapp/{name}", "-n", namespace)["metadata"].get("finalizers")
