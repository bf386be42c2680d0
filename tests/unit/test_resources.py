"""The pure builders: valid Kubernetes objects, restricted pods, no scaler-owned field, wiring."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from scaledapp import api
from scaledapp.quantity import parse_bytes, parse_cpu_millicores
from scaledapp.resources import DbPasswords, all_child_kinds, build_children, database
from scaledapp.resources.names import INSTANCE_LABEL, TIER_LABEL, ChildNames
from scaledapp.tiers import initial_scaler_bodies

ROOT = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.34.0"
NS = "shop-ns"
PASSWORDS = DbPasswords(superuser="su-7f3a9c", app="app-91bd02", replication="rep-3c8e11", exporter="exp-55d0aa",
                        cache="cache-4e1d77", queue="queue-b2a9f0")


def full_spec() -> api.ScaledAppSpec:
    return api.ScaledApp.model_validate(yaml.safe_load((ROOT / "examples" / "full.yaml").read_text())).spec


SPECS: dict[str, api.ScaledAppSpec] = {
    "minimal": api.ScaledAppSpec(),
    "full": full_spec(),
    "no-cache-no-workers": api.ScaledAppSpec.model_validate(
        {"cache": {"enabled": False}, "workers": {"enabled": False}, "database": {"readReplicas": {"min": 0, "max": 0}}}
    ),
}


@pytest.fixture(params=sorted(SPECS))
def spec(request: pytest.FixtureRequest) -> api.ScaledAppSpec:
    return SPECS[request.param]


def children(spec: api.ScaledAppSpec, name: str = "shop") -> list[dict[str, Any]]:
    return build_children(name, NS, spec, passwords=PASSWORDS)


def by_key(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{m['kind']}/{m['metadata']['name']}": m for m in manifests}


def pod_specs(manifests: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for m in manifests:
        if m["kind"] in ("Deployment", "StatefulSet"):
            yield f"{m['kind']}/{m['metadata']['name']}", m["spec"]["template"]


def containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod["spec"].get("initContainers", []), *pod["spec"]["containers"]]


def test_every_manifest_is_valid_for_kubernetes_1_34(spec: api.ScaledAppSpec) -> None:
    for manifest in children(spec):
        kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)


def test_manifests_are_namespaced_labelled_and_unique(spec: api.ScaledAppSpec) -> None:
    manifests = children(spec)
    assert len(by_key(manifests)) == len(manifests)
    for m in manifests:
        assert m["metadata"]["namespace"] == NS
        assert m["metadata"]["labels"][INSTANCE_LABEL] == "shop"
        assert "ownerReferences" not in m["metadata"]  # the shell adopts them
        assert len(m["metadata"]["name"]) <= 63


def test_builders_are_deterministic() -> None:
    assert children(SPECS["full"]) == children(SPECS["full"])


def test_expected_children_in_apply_order() -> None:
    c = ChildNames("shop")
    keys = list(by_key(children(SPECS["minimal"])))
    assert keys[0] == f"Secret/{c.db_credentials}"
    for key in (f"Deployment/{c.app}", f"Service/{c.app}", f"PodDisruptionBudget/{c.app}", f"Deployment/{c.cache}",
                f"Service/{c.cache}", f"ConfigMap/{c.cache_config}", f"StatefulSet/{c.db_primary}",
                f"StatefulSet/{c.db_replicas}", f"Service/{c.db_write}", f"Service/{c.db_read}",
                f"Service/{c.db_primary}", f"ConfigMap/{c.db_scripts}", f"Deployment/{c.workers}"):
        assert key in keys
    kinds = [k.split("/")[0] for k in keys]
    first_workload = min(i for i, k in enumerate(kinds) if k in ("Deployment", "StatefulSet"))
    assert all(k not in ("Deployment", "StatefulSet") for k in kinds[:first_workload])
    assert {"ConfigMap", "Service", "NetworkPolicy", "Secret"} >= set(kinds[:first_workload])


def test_disabled_tiers_and_existing_secret_are_left_out() -> None:
    keys = set(by_key(build_children("shop", NS, SPECS["no-cache-no-workers"])))
    assert not any("cache" in k or "workers" in k for k in keys)
    assert not any(k.startswith("Secret/") for k in keys)


def test_no_scaler_owned_field_in_reconciler_manifests(spec: api.ScaledAppSpec) -> None:
    c = ChildNames("shop")
    m = by_key(children(spec))
    for key in (f"Deployment/{c.app}", f"Deployment/{c.workers}", f"StatefulSet/{c.db_replicas}"):
        if key in m:
            assert "replicas" not in m[key]["spec"], key
    primary = m[f"StatefulSet/{c.db_primary}"]["spec"]["template"]["spec"]["containers"]
    assert "resources" not in next(x for x in primary if x["name"] == "postgres")
    if spec.cache.enabled:
        assert "maxmemory" not in m[f"ConfigMap/{c.cache_config}"]["data"]


def test_pods_pass_the_restricted_pod_security_profile(spec: api.ScaledAppSpec) -> None:
    allowed_volumes = {"configMap", "secret", "emptyDir", "persistentVolumeClaim", "downwardAPI", "projected",
                       "ephemeral", "csi"}
    for key, pod in pod_specs(children(spec)):
        ps = pod["spec"]
        assert not any(ps.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), key
        sc = ps["securityContext"]
        assert sc["runAsNonRoot"] is True and isinstance(sc["runAsUser"], int) and sc["runAsUser"] > 0, key
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}, key
        for vol in ps.get("volumes", []):
            assert set(vol) - {"name"} <= allowed_volumes, (key, vol)
        for ctr in containers(pod):
            where = f"{key}:{ctr['name']}"
            csc = ctr["securityContext"]
            assert csc["allowPrivilegeEscalation"] is False, where
            assert csc["capabilities"] == {"drop": ["ALL"]}, where
            assert csc.get("privileged") is not True and csc["runAsNonRoot"] is True, where
            assert csc.get("runAsUser", 1) != 0, where
            assert not any("hostPort" in p for p in ctr.get("ports", [])), where


def test_every_container_has_resources_except_the_scaler_owned_one(spec: api.ScaledAppSpec) -> None:
    primary = ChildNames("shop").db_primary
    for key, pod in pod_specs(children(spec)):
        for ctr in containers(pod):
            if key == f"StatefulSet/{primary}" and ctr["name"] == "postgres":
                continue  # sized by scaler.primary_resources_body (tests in test_resources_scaler.py)
            res = ctr["resources"]
            assert {"cpu", "memory"} <= set(res["requests"]) and {"cpu", "memory"} <= set(res["limits"]), key


def test_pods_carry_instance_tier_labels_and_scrape_annotations() -> None:
    c = ChildNames("shop")
    ports = {c.app: ("app", "8080"), c.workers: ("workers", "9100"), c.cache: ("cache", "9121"),
             c.db_primary: ("db-write", "9187"), c.db_replicas: ("db-read", "9187")}
    seen = set()
    for key, pod in pod_specs(children(SPECS["minimal"])):
        name = key.split("/")[1]
        labels, annotations = pod["metadata"]["labels"], pod["metadata"].get("annotations", {})
        assert labels[INSTANCE_LABEL] == "shop"
        if name not in ports:
            continue  # the queue Redis: not a scaling tier, not scraped
        tier, port = ports[name]
        seen.add(name)
        assert labels[TIER_LABEL] == tier
        assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": port,
                               "prometheus.io/path": "/metrics"}
        declared = {p["containerPort"] for ctr in pod["spec"]["containers"] for p in ctr.get("ports", [])}
        assert int(port) in declared, key
    assert seen == set(ports)


def test_workload_selectors_match_their_pods(spec: api.ScaledAppSpec) -> None:
    for m in children(spec):
        if m["kind"] in ("Deployment", "StatefulSet"):
            labels = m["spec"]["template"]["metadata"]["labels"]
            assert m["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_services_select_existing_pods_and_named_ports(spec: api.ScaledAppSpec) -> None:
    manifests = children(spec)
    pods = dict(pod_specs(manifests))
    for svc in (m for m in manifests if m["kind"] == "Service"):
        matching = [p for p in pods.values() if svc["spec"]["selector"].items() <= p["metadata"]["labels"].items()]
        assert matching, svc["metadata"]["name"]
        port_names = {p.get("name") for ctr in matching[0]["spec"]["containers"] for p in ctr.get("ports", [])}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in port_names


def test_app_deployment_probes_rollout_and_shutdown() -> None:
    spec = SPECS["full"]
    app = by_key(children(spec))[f"Deployment/{ChildNames('shop').app}"]
    assert app["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = app["spec"]["template"]["spec"]
    ctr = pod["containers"][0]
    assert ctr["name"] == "app" and ctr["image"] == spec.app.image
    assert ctr["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert ctr["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert "startupProbe" in ctr
    assert ctr["lifecycle"]["preStop"]["sleep"]["seconds"] > 0
    assert pod["terminationGracePeriodSeconds"] > ctr["lifecycle"]["preStop"]["sleep"]["seconds"]
    # The CPU limit is the app's budget (what it reports, what utilisation divides by); the request is smaller.
    assert ctr["resources"]["limits"] == {"cpu": "500m", "memory": "256Mi"}
    assert ctr["resources"]["requests"] == {"cpu": "100m", "memory": "256Mi"}
    pdb = by_key(children(spec))[f"PodDisruptionBudget/{ChildNames('shop').app}"]
    assert pdb["spec"]["selector"] == app["spec"]["selector"]


def env_of(manifest: dict[str, Any], container: str) -> dict[str, dict[str, Any]]:
    ctr = next(c for c in containers(manifest["spec"]["template"]) if c["name"] == container)
    return {e["name"]: e for e in ctr["env"]}


@pytest.mark.parametrize(("kind_name", "container"), [("app", "app"), ("workers", "worker")])
def test_app_and_worker_environment(kind_name: str, container: str) -> None:
    c = ChildNames("shop")
    m = by_key(children(SPECS["full"]))[f"Deployment/{getattr(c, kind_name)}"]
    env = env_of(m, container)
    assert env["DB_WRITE_HOST"]["value"] == c.db_write
    assert env["DB_READ_HOST"]["value"] == c.db_read
    assert env["DB_PASSWORD"]["valueFrom"] == {"secretKeyRef": {"name": c.db_credentials, "key": "app-password"}}
    # Each Redis' password from the Secret, spliced into its URL by the kubelet ($(VAR)), never a literal.
    assert env["REDIS_PASSWORD"]["valueFrom"] == {"secretKeyRef": {"name": c.db_credentials, "key": "cache-password"}}
    assert env["QUEUE_PASSWORD"]["valueFrom"] == {"secretKeyRef": {"name": c.db_credentials, "key": "queue-password"}}
    assert env["REDIS_URL"]["value"] == f"redis://:$(REDIS_PASSWORD)@{c.cache}:6379/0"
    assert env["QUEUE_URL"]["value"] == f"redis://:$(QUEUE_PASSWORD)@{c.queue}:6379/0"
    assert env["CACHE_TTL_SECONDS"]["value"] == "300"
    assert env["CPU_LIMIT_MILLICORES"]["valueFrom"]["resourceFieldRef"] == {
        "containerName": container, "resource": "limits.cpu", "divisor": "1m"}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["APP_LOG_LEVEL"]["value"] == "info"  # the user's own variable


def test_dependent_env_references_come_after_their_definitions(spec: api.ScaledAppSpec) -> None:
    for _key, pod in pod_specs(children(spec)):
        for ctr in containers(pod):
            defined: set[str] = set()
            for e in ctr.get("env", []):
                for ref in re.findall(r"\$\(([A-Z_]+)\)", e.get("value", "")):
                    assert ref in defined, (ctr["name"], e["name"], ref)
                defined.add(e["name"])


def test_user_env_replaces_ours_in_place() -> None:
    spec = api.ScaledAppSpec.model_validate({"app": {"env": [{"name": "DB_NAME", "value": "other"},
                                                             {"name": "EXTRA", "value": "1"}]}})
    app = by_key(children(spec))[f"Deployment/{ChildNames('shop').app}"]
    names = [e["name"] for e in app["spec"]["template"]["spec"]["containers"][0]["env"]]
    assert names.count("DB_NAME") == 1 and names[-1] == "EXTRA"
    assert names.index("DB_NAME") < names.index("DB_WRITE_DSN")
    assert env_of(app, "app")["DB_NAME"]["value"] == "other"


def test_no_password_appears_anywhere_but_the_secret(spec: api.ScaledAppSpec) -> None:
    secrets = tuple(getattr(PASSWORDS, f) for f in ("superuser", "app", "replication", "exporter", "cache", "queue"))
    for m in children(spec):
        if m["kind"] != "Secret":
            text = yaml.safe_dump(m)
            assert not any(s in text for s in secrets), m["metadata"]["name"]


def test_read_host_falls_back_to_the_primary_without_replicas() -> None:
    c = ChildNames("shop")
    app = by_key(children(SPECS["no-cache-no-workers"]))[f"Deployment/{c.app}"]
    env = env_of(app, "app")
    assert env["DB_READ_HOST"]["value"] == c.db_write
    assert env["CACHE_ENABLED"]["value"] == "false" and "REDIS_URL" not in env and "REDIS_PASSWORD" not in env


def test_the_secret_holds_every_password_and_every_referenced_key(spec: api.ScaledAppSpec) -> None:
    manifests = children(spec)
    (secret,) = [m for m in manifests if m["kind"] == "Secret"]
    assert set(secret["data"]) == {"superuser-password", "app-password", "replication-password", "exporter-password",
                                   "cache-password", "queue-password"}
    assert DbPasswords.from_secret_data(secret["data"]) == PASSWORDS
    for _key, pod in pod_specs(manifests):
        for ctr in containers(pod):
            for e in ctr.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == secret["metadata"]["name"] and ref["key"] in secret["data"], e


def test_root_filesystems_are_read_only_except_postgres(spec: api.ScaledAppSpec) -> None:
    """Every container but the Postgres ones (the server and its bootstrap; no image checked to write nothing
    outside its volumes) runs on a read-only root, with what it writes on volumes."""
    for key, pod in pod_specs(children(spec)):
        for ctr in containers(pod):
            postgres = ctr["name"] in ("postgres", "bootstrap")
            assert ctr["securityContext"]["readOnlyRootFilesystem"] is (not postgres), f"{key}:{ctr['name']}"


def test_every_child_of_every_spec_is_known_to_the_pruner(spec: api.ScaledAppSpec) -> None:
    known = {(k, n) for _v, k, n in all_child_kinds("shop")}
    assert {(m["kind"], m["metadata"]["name"]) for m in children(spec)} <= known


def test_app_cache_queue_and_workers_have_disruption_budgets_one_pod_at_a_time(spec: api.ScaledAppSpec) -> None:
    c = ChildNames("shop")
    manifests = children(spec)
    pods = dict(pod_specs(manifests))
    budgets = [m for m in manifests if m["kind"] == "PodDisruptionBudget"
               and m["metadata"]["name"] in (c.app, c.cache, c.queue, c.workers)]
    covered = set()
    for pdb in budgets:
        # maxUnavailable 1 even for a tier of one pod: a budget one pod can never meet blocks every drain.
        assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"], pdb["metadata"]["name"]
        assert pdb["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
        selected = [k for k, p in pods.items()
                    if pdb["spec"]["selector"]["matchLabels"].items() <= p["metadata"]["labels"].items()]
        assert len(selected) == 1, (pdb["metadata"]["name"], selected)
        covered.add(pods[selected[0]]["metadata"]["labels"][TIER_LABEL])
    expected = {"app", "queue"} | ({"cache"} if spec.cache.enabled else set()) | (
        {"workers"} if spec.workers.enabled else set())
    assert covered == expected


def test_scripts_configmap_holds_the_package_files() -> None:
    data = by_key(children(SPECS["minimal"]))[f"ConfigMap/{ChildNames('shop').db_scripts}"]["data"]
    files = ROOT / "operator" / "scaledapp" / "resources" / "files"
    for script in ("postgres-start.sh", "primary-init.sh", "app-role.sh", "replica-bootstrap.sh"):
        assert data[script] == (files / script).read_text(), script
        assert database.package_file(script).startswith("#!/usr/bin/env bash\n"), script
    assert data["queries.yaml"] == (files / "postgres-exporter-queries.yaml").read_text()


# ------------------------------------------------------------------------------------------ fits the node


def pod_requests(pod: dict[str, Any]) -> tuple[int, int]:
    """(CPU millicores, memory bytes) the scheduler reserves for one pod: the containers' sum, or the
    largest init container's when that is more."""
    def of(ctrs: list[dict[str, Any]]) -> list[tuple[int, int]]:
        return [(parse_cpu_millicores(c["resources"]["requests"]["cpu"]),
                 parse_bytes(c["resources"]["requests"]["memory"])) for c in ctrs]
    main = of(pod["spec"]["containers"])
    init = of(pod["spec"].get("initContainers", []))
    return (max([sum(c for c, _ in main), *(c for c, _ in init)]),
            max([sum(m for _, m in main), *(m for _, m in init)]))


def requested(spec: api.ScaledAppSpec) -> tuple[int, int]:
    """What a new ScaledApp asks the scheduler for: the reconciler's manifests completed by the scaler's
    starting point (minimum replicas, the primary's initial resources)."""
    m = by_key(children(spec))
    replicas: dict[str, int] = {}
    for body in initial_scaler_bodies("shop", NS, spec):
        key = f"{body['kind']}/{body['metadata']['name']}"
        if "replicas" in body.get("spec", {}):
            replicas[key] = body["spec"]["replicas"]
        elif body["kind"] == "StatefulSet":
            (ctr,) = body["spec"]["template"]["spec"]["containers"]
            target = next(c for c in m[key]["spec"]["template"]["spec"]["containers"] if c["name"] == ctr["name"])
            target["resources"] = ctr["resources"]
    cpu = memory = 0
    for key, pod in pod_specs(list(m.values())):
        n = replicas.get(key, m[key]["spec"].get("replicas", 1))
        pod_cpu, pod_memory = pod_requests(pod)
        cpu, memory = cpu + n * pod_cpu, memory + n * pod_memory
    return cpu, memory


# A 2-CPU node also runs the operator, Prometheus and CoreDNS (100m each), and a rollout surges a pod.
CPU_BUDGET_MILLICORES = 700
MEMORY_BUDGET_BYTES = 2560 * 2**20


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_fits_a_two_cpu_node(path: Path) -> None:
    spec = api.ScaledApp.model_validate(yaml.safe_load(path.read_text())).spec
    cpu, memory = requested(spec)
    assert cpu <= CPU_BUDGET_MILLICORES, f"{path.name} requests {cpu}m CPU"
    assert memory <= MEMORY_BUDGET_BYTES, f"{path.name} requests {memory / 2**20:.0f}Mi"


def test_the_default_spec_requests_635m_cpu() -> None:
    # app 2 x 100m, workers 100m, primary and replica 100m + 10m exporter + 5m pgpass writer + 5m password sync
    # each, cache 65m, queue 25m + 5m password reloader.
    assert requested(api.ScaledAppSpec())[0] == 635


def test_cpu_limits_stay_the_budget_the_scaler_reads() -> None:
    """Utilisation is usage over the LIMIT (tiers/app.py, the app's CPU-limit gauge): requests may be lower,
    limits must stay the spec's."""
    c = ChildNames("shop")
    m = by_key(children(api.ScaledAppSpec()))
    for key, name in ((f"Deployment/{c.app}", "app"), (f"Deployment/{c.workers}", "worker")):
        res = next(x for x in m[key]["spec"]["template"]["spec"]["containers"] if x["name"] == name)["resources"]
        assert res["limits"] == {"cpu": "500m", "memory": "256Mi"}
        assert res["requests"] == {"cpu": "100m", "memory": "256Mi"}
    replica = next(x for x in m[f"StatefulSet/{c.db_replicas}"]["spec"]["template"]["spec"]["containers"]
                   if x["name"] == "postgres")
    assert replica["resources"] == {"requests": {"cpu": "100m", "memory": "512Mi"},
                                    "limits": {"cpu": "500m", "memory": "512Mi"}}


@pytest.mark.parametrize(("given", "expected"), [(None, "100m"), ("250m", "250m"), ("500m", "500m"), ("2", "500m")])
def test_app_cpu_request_is_a_fifth_of_the_limit_unless_given_and_never_above_it(given: str | None,
                                                                                   expected: str) -> None:
    raw = {"cpu": "500m", "cpuRequest": given}
    # A request above the limit is refused by the API (and the models); the builder caps one anyway.
    resources = api.AppResources.model_validate(raw) if given != "2" else api.AppResources.model_construct(
        cpu="500m", memory="256Mi", cpu_request=given)
    spec = api.ScaledAppSpec().model_copy(update={"app": api.AppSpec().model_copy(update={"resources": resources})})
    app = by_key(children(spec))[f"Deployment/{ChildNames('shop').app}"]
    res = app["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert res["requests"]["cpu"] == expected and res["limits"]["cpu"] == "500m"


def test_the_write_roles_pod_is_never_evicted_and_replicas_one_at_a_time() -> None:
    c = ChildNames("shop")
    kids = by_key(children(api.ScaledAppSpec()))
    primary = kids[f"PodDisruptionBudget/{c.db_primary_budget}"]
    replicas = kids[f"PodDisruptionBudget/{c.db_replica_budget}"]
    # By role label, not by StatefulSet: the write role moves between them on failover and switchover.
    assert primary["spec"]["selector"] == {"matchLabels": {INSTANCE_LABEL: "shop", "scaledapp.dev/role": "primary"}}
    assert replicas["spec"]["selector"] == {"matchLabels": {INSTANCE_LABEL: "shop", "scaledapp.dev/role": "replica"}}
    assert primary["spec"]["maxUnavailable"] == 0 and replicas["spec"]["maxUnavailable"] == 1
    # A pod that serves nothing (not Ready) may always go: it must not hold a drain.
    for budget in (primary, replicas):
        assert budget["spec"]["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    db_write = kids[f"Service/{c.db_write}"]["spec"]["selector"]
    assert db_write == primary["spec"]["selector"]["matchLabels"]
