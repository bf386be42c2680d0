"""Cache, database and network builders, and the scaler's server-side-apply bodies."""

from __future__ import annotations

import copy
import re
from typing import Any

import kubernetes_validate
import pytest

from scaledapp import api, tiers
from scaledapp.resources import (
    build_children,
    cache,
    cache_memory_body,
    primary_pod_resize_patch,
    primary_resources_body,
    replicas_body,
)
from scaledapp.resources.database import package_file
from scaledapp.resources.names import INSTANCE_LABEL, ROLE_LABEL, TIER_LABEL, ChildNames
from tests.unit.test_resources import K8S_VERSION, NS, PASSWORDS, SPECS, by_key, env_of

C = ChildNames("shop")


def built(spec: str = "full") -> dict[str, dict[str, Any]]:
    return by_key(build_children("shop", NS, SPECS[spec], passwords=PASSWORDS))


def container(manifest: dict[str, Any], name: str, init: bool = False) -> dict[str, Any]:
    ctrs = manifest["spec"]["template"]["spec"]["initContainers" if init else "containers"]
    return next(c for c in ctrs if c["name"] == name)


# ------------------------------------------------------------------------------------------ cache


def test_cache_runs_redis_as_an_lru_cache_without_persistence() -> None:
    redis = container(built()[f"Deployment/{C.cache}"], "redis")
    script = redis["command"][-1]
    assert "--maxmemory-policy allkeys-lru" in script
    assert '--save ""' in script and "--appendonly no" in script
    assert "/etc/redis/maxmemory" in script and "/etc/redis/redis.conf" in script
    assert env_of(built()[f"Deployment/{C.cache}"], "redis")["INITIAL_MAXMEMORY"]["value"] == str(64 * 2**20)


def test_cache_memory_limit_is_sized_for_the_max_and_request_for_the_initial() -> None:
    redis = container(built()[f"Deployment/{C.cache}"], "redis")  # full: initial 64Mi, max 1Gi
    assert redis["resources"]["limits"]["memory"] == "1280Mi"
    assert redis["resources"]["requests"]["memory"] == "80Mi"


def test_redis_probes_connect_through_the_pod_ip() -> None:
    """Protected mode or a loopback bind refuse other pods but answer 127.0.0.1: readiness must not use it."""
    m = built()
    for deploy in (m[f"Deployment/{C.cache}"], m[f"StatefulSet/{C.queue}"]):
        redis = container(deploy, "redis")
        probe = redis["readinessProbe"]["exec"]["command"][-1]
        assert 'redis-cli -h "$POD_IP" ping' in probe and "127.0.0.1" not in probe
        assert env_of(deploy, "redis")["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}


def test_queue_redis_names_its_command_and_network_settings() -> None:
    redis = container(built()[f"StatefulSet/{C.queue}"], "redis")
    # No image entrypoint turns bare options into a command: our script execs redis-server with the args.
    sh, dash_c, script, argv0 = redis["command"]
    assert (sh, dash_c, argv0) == ("sh", "-c", "redis-server")
    assert 'exec redis-server "$@" --include /run/redis-auth/auth.conf' in script
    args = redis["args"]
    settings = dict(zip(args[::2], args[1::2], strict=True))
    assert settings["--bind"] == "0.0.0.0" and settings["--protected-mode"] == "no" and settings["--port"] == "6379"
    assert settings["--maxmemory-policy"] == "noeviction" and settings["--appendonly"] == "yes"
    assert settings["--dir"] == next(v["mountPath"] for v in redis["volumeMounts"] if v["name"] == "data")


def test_the_queue_is_durable_an_acknowledged_order_is_on_a_volume_before_the_reply() -> None:
    queue = built()[f"StatefulSet/{C.queue}"]
    redis = container(queue, "redis")
    settings = dict(zip(redis["args"][::2], redis["args"][1::2], strict=True))
    assert settings["--appendfsync"] == "always"  # fsync before every reply, not once a second
    # /data is the claim from the template, not a pod-lifetime volume; one pod, and the claim outlives it.
    assert [c["metadata"]["name"] for c in queue["spec"]["volumeClaimTemplates"]] == ["data"]
    assert not any(v["name"] == "data" for v in queue["spec"]["template"]["spec"].get("volumes", []))
    assert queue["spec"]["replicas"] == 1
    assert queue["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Retain"


def test_cache_reloader_and_exporter_sidecars() -> None:
    deploy = built()[f"Deployment/{C.cache}"]
    reloader = container(deploy, "maxmemory-reloader")
    assert reloader["image"] == SPECS["full"].cache.image
    assert "CONFIG SET maxmemory" in reloader["command"][-1]
    assert all("subPath" not in m for m in reloader["volumeMounts"])  # subPath mounts never update
    exporter = container(deploy, "redis-exporter")
    assert exporter["image"] == api.REDIS_EXPORTER_IMAGE
    assert exporter["ports"][0]["containerPort"] == 9121


def redis_containers(m: dict[str, dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any], str]]:
    """(workload, redis container, Secret key of its password) for the cache and the queue."""
    return [(m[f"Deployment/{C.cache}"], container(m[f"Deployment/{C.cache}"], "redis"), "cache-password"),
            (m[f"StatefulSet/{C.queue}"], container(m[f"StatefulSet/{C.queue}"], "redis"), "queue-password")]


def volume_of(workload: dict[str, Any], name: str) -> dict[str, Any]:
    return next(v for v in workload["spec"]["template"]["spec"]["volumes"] if v["name"] == name)


def test_each_redis_requires_its_own_password_from_the_secret() -> None:
    for workload, redis, key in redis_containers(built()):
        # Its own key of the Secret only, as a file the kubelet updates in place (no subPath).
        mount = next(m for m in redis["volumeMounts"] if m["mountPath"] == cache.CREDENTIALS_DIR)
        assert "subPath" not in mount and mount["readOnly"]
        assert volume_of(workload, mount["name"])["secret"] == {
            "secretName": C.db_credentials, "defaultMode": 0o440, "items": [{"key": key, "path": "password"}]}
        # No password in the environment: it is fixed at start, and the file is what follows an edit.
        assert not any("secretKeyRef" in (e.get("valueFrom") or {}) for e in redis["env"])
        script = redis["command"][2]
        # requirepass goes into a file the server includes, never onto its command line.
        assert "requirepass" in script and f"cat {cache.PASSWORD_FILE}" in script and "--requirepass" not in script
        assert "--include /run/redis-auth/auth.conf" in script and "umask 077" in script
        assert "exit 1" in script.split("\n")[1]  # no password: no Redis
        assert "--requirepass" not in redis.get("args", [])
        auth = next(v for v in redis["volumeMounts"] if v["mountPath"] == "/run/redis-auth")
        assert volume_of(workload, auth["name"])["emptyDir"]["medium"] == "Memory"  # never on the node's disk
        # The probe logs in with the password the server takes now (auth.conf), through REDISCLI_AUTH.
        probe = redis["readinessProbe"]["exec"]["command"][-1]
        assert "REDISCLI_AUTH=" in probe and "/run/redis-auth/auth.conf" in probe and " -a " not in probe


def test_each_redis_has_a_sidecar_that_follows_its_password_file() -> None:
    m = built()
    for workload, name in ((m[f"Deployment/{C.cache}"], "maxmemory-reloader"),
                           (m[f"StatefulSet/{C.queue}"], "password-reloader")):
        sidecar = container(workload, name)
        assert sidecar["image"] == SPECS["full"].cache.image
        mounts = {v["mountPath"]: v for v in sidecar["volumeMounts"]}
        assert mounts[cache.CREDENTIALS_DIR]["name"] == "credentials" and cache.AUTH_DIR in mounts
        assert "env" not in sidecar  # no password fixed at start
        script = sidecar["command"][-1]
        assert "-x ACL SETUSER default" in script and "-x CONFIG SET requirepass" in script
        # The values travel on stdin and in REDISCLI_AUTH: no argv of redis-cli carries one.
        assert all("$new" not in line and "$cur" not in line.replace('REDISCLI_AUTH="$cur"', "")
                   for line in script.splitlines() if "redis-cli" in line and "printf" not in line)
        left = f"left={cache._grace_loops(cache.PASSWORD_GRACE_SECONDS, cache.RELOAD_SECONDS)}"
        assert left in script and cache.PASSWORD_GRACE_SECONDS == 180


def test_the_cache_exporter_follows_the_password_map_its_liveness_probe_reloads() -> None:
    deploy = built()[f"Deployment/{C.cache}"]
    exporter = container(deploy, "redis-exporter")
    env = {e["name"]: e for e in exporter["env"]}
    ref = {"secretKeyRef": {"name": C.db_credentials, "key": "cache-password"}}
    assert env["REDIS_PASSWORD"]["valueFrom"] == ref  # until the first reload
    assert env["REDIS_PASSWORD_FILE"]["value"] == f"{cache.AUTH_DIR}/{cache.EXPORTER_PASSWORDS}"
    assert exporter["livenessProbe"]["httpGet"] == {"path": "/-/reload", "port": "metrics"}
    assert {"name": "auth", "mountPath": cache.AUTH_DIR, "readOnly": True} in exporter["volumeMounts"]
    assert cache.EXPORTER_PASSWORDS in container(deploy, "maxmemory-reloader")["command"][-1]


def test_the_grace_is_whole_polls_and_at_least_one() -> None:
    assert cache._grace_loops(180, 5) == 36
    assert cache._grace_loops(7, 5) == 2  # rounded up: never shorter than asked
    assert cache._grace_loops(0, 5) == 1


# ------------------------------------------------------------------------------------------ database


def test_primary_statefulset() -> None:
    sts = built()[f"StatefulSet/{C.db_primary}"]
    assert sts["spec"]["replicas"] == 1
    assert sts["spec"]["updateStrategy"] == {"type": "OnDelete"}
    assert sts["spec"]["serviceName"] == C.db_primary
    claim = sts["spec"]["volumeClaimTemplates"][0]
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert claim["spec"]["storageClassName"] == "standard"
    pg = container(sts, "postgres")
    assert {m["mountPath"] for m in pg["volumeMounts"]} >= {"/var/lib/postgresql/data", "/scripts"}
    assert not any("docker-entrypoint" in m["mountPath"] for m in pg["volumeMounts"])
    assert {p["resourceName"]: p["restartPolicy"] for p in pg["resizePolicy"]} == {
        "cpu": "NotRequired", "memory": "NotRequired"}
    env = env_of(sts, "postgres")
    assert env["POSTGRES_ROLE"]["value"] == "primary"
    # The init scripts run in this order, from the scripts ConfigMap the container mounts.
    assert env["INIT_SCRIPTS"]["value"].split() == ["/scripts/primary-init.sh", "/scripts/app-role.sh"]
    held = by_key(build_children("shop", NS, SPECS["full"], hold_primary=True))[f"StatefulSet/{C.db_primary}"]
    assert held["spec"]["replicas"] == 0


def documented_env(script: str) -> tuple[set[str], set[str]]:
    """(all, required) variables a script documents at its top / checks with ${VAR:?}."""
    text = package_file(script)
    header = text.split("set -euo pipefail")[0]
    # Lines like "#   NAME   what it is" or "#   NAME, OTHER  what they are".
    documented = {n.strip() for names in re.findall(r"^#\s+([A-Z][A-Z0-9_]*(?:, [A-Z][A-Z0-9_]*)*)\s", header, re.M)
                  for n in names.split(",")}
    required = set(re.findall(r"\$\{([A-Z_]+):\?", text))
    return documented, required


START = {"PGDATA", "POSTGRES_ROLE", "POSTGRES_USER", "POSTGRES_PASSWORD", "SOCKET_DIR"}


@pytest.mark.parametrize(("script", "workload", "ctr", "init", "passed"), [
    ("postgres-start.sh", "db_primary", "postgres", False, START | {"POSTGRES_DB", "INIT_SCRIPTS"}),
    ("postgres-start.sh", "db_replicas", "postgres", False, START),
    ("primary-init.sh", "db_primary", "postgres", False,
     {"PGDATA", "POSTGRES_USER", "POSTGRES_DB", "REPLICATION_USER", "REPLICATION_PASSWORD", "MAX_SLOT_WAL_KEEP_SIZE",
      "MONITOR_USER", "MONITOR_PASSWORD", "OPERATOR_USER"}),
    ("app-role.sh", "db_primary", "postgres", False, {"POSTGRES_USER", "POSTGRES_DB", "APP_USER", "APP_PASSWORD"}),
    ("replica-bootstrap.sh", "db_replicas", "bootstrap", True,
     {"PGDATA", "PRIMARY_HOST", "PRIMARY_PORT", "REPLICATION_USER", "PRIMARY_CONNINFO", "REPLICA_NAME"}),
])
def test_scripts_get_the_variables_they_document(
    script: str, workload: str, ctr: str, init: bool, passed: set[str]
) -> None:
    documented, required = documented_env(script)
    env = {e["name"] for e in container(built()[f"StatefulSet/{getattr(C, workload)}"], ctr, init)["env"]}
    assert required <= env
    # What the manifest passes for the script is what the script documents (names cannot drift apart).
    assert passed <= env and passed <= documented


@pytest.mark.parametrize("workload", ["db_primary", "db_replicas"])
def test_postgres_runs_our_start_script_not_an_image_entrypoint(workload: str) -> None:
    sts = built()[f"StatefulSet/{getattr(C, workload)}"]
    pg = container(sts, "postgres")
    assert pg["command"] == ["bash", "/scripts/postgres-start.sh"]
    assert pg["args"][:2] == ["-c", "wal_level=replica"] and "postgres" not in pg["args"]
    scripts = next(m for m in pg["volumeMounts"] if m["mountPath"] == "/scripts")
    volume = next(v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == scripts["name"])
    assert "postgres-start.sh" in built()[f"ConfigMap/{volume['configMap']['name']}"]["data"]
    # The socket directory is our own emptyDir, whatever the image has at that path.
    env = env_of(sts, "postgres")
    socket = next(m for m in pg["volumeMounts"] if m["mountPath"] == env["SOCKET_DIR"]["value"])
    assert "emptyDir" in next(v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == socket["name"])
    assert env["POSTGRES_ROLE"]["value"] == ("primary" if workload == "db_primary" else "replica")


@pytest.mark.parametrize("workload", ["db_primary", "db_replicas"])
def test_postgres_readiness_connects_through_the_pod_ip(workload: str) -> None:
    """A server listening on loopback only (Debian's default listen_addresses) must not look ready. The
    query runs on the socket as the container's user (pg_hba peer): a changed password fails no probe."""
    sts = built()[f"StatefulSet/{getattr(C, workload)}"]
    pg = container(sts, "postgres")
    for probe in ("startupProbe", "readinessProbe"):
        script = pg[probe]["exec"]["command"][-1]
        assert 'pg_isready -h "$POD_IP"' in script and "127.0.0.1" not in script, probe
    readiness = pg["readinessProbe"]["exec"]["command"][-1]
    assert "psql -h /var/run/postgresql" in readiness and "PASSWORD" not in readiness
    assert env_of(sts, "postgres")["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}


def test_replicas_bootstrap_from_the_primary_with_the_same_image() -> None:
    sts = built()[f"StatefulSet/{C.db_replicas}"]
    boot = container(sts, "bootstrap", init=True)
    assert boot["image"] == container(sts, "postgres")["image"] == SPECS["full"].database.image
    assert boot["command"][-1].endswith("/replica-bootstrap.sh")
    env = {e["name"]: e for e in boot["env"]}
    assert env["PRIMARY_HOST"]["value"] == C.db_write
    # Replicas log in with the replication certificate over verified TLS, never a password.
    assert "REPLICATION_PASSWORD" not in env
    assert "sslmode=verify-full" in env["PRIMARY_CONNINFO"]["value"]
    assert "sslcert=/etc/postgres-tls/replication.crt" in env["PRIMARY_CONNINFO"]["value"]
    assert env["REPLICA_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Delete"
    assert "pg_is_in_recovery()" in container(sts, "postgres")["readinessProbe"]["exec"]["command"][-1]


def test_postgres_exporters_use_the_pinned_image_and_mounted_queries() -> None:
    m = built()
    for sts in (m[f"StatefulSet/{C.db_primary}"], m[f"StatefulSet/{C.db_replicas}"]):
        exporter = container(sts, "postgres-exporter")
        assert exporter["image"] == api.POSTGRES_EXPORTER_IMAGE and api.POSTGRES_EXPORTER_IMAGE.endswith(":v0.19.1")
        assert exporter["ports"][0]["containerPort"] == 9187
        (arg,) = exporter["args"]
        path = arg.removeprefix("--extend.query-path=")
        mount = next(v for v in exporter["volumeMounts"] if path.startswith(v["mountPath"] + "/"))
        volume = next(v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"])
        assert path.rsplit("/", 1)[1] in m[f"ConfigMap/{volume['configMap']['name']}"]["data"]


def test_read_and_write_services_select_by_role_which_the_pods_start_with() -> None:
    """The write role moves on failover: the Services select the role label, not the StatefulSet's tier."""
    m = built()
    assert m[f"Service/{C.db_read}"]["spec"]["selector"] == {INSTANCE_LABEL: C.owner, ROLE_LABEL: "replica"}
    assert m[f"Service/{C.db_write}"]["spec"]["selector"] == {INSTANCE_LABEL: C.owner, ROLE_LABEL: "primary"}
    labels = {n: m[f"StatefulSet/{n}"]["spec"]["template"]["metadata"]["labels"] for n in (C.db_primary, C.db_replicas)}
    assert labels[C.db_primary][ROLE_LABEL] == "primary" and labels[C.db_replicas][ROLE_LABEL] == "replica"
    assert m[f"Service/{C.db_primary}"]["spec"]["clusterIP"] == "None"
    assert m[f"Service/{C.db_replicas}"]["spec"]["clusterIP"] == "None"


# ------------------------------------------------------------------------------------------ network


def allowed(policy: dict[str, Any], port: int, protocol: str = "TCP") -> list[Any]:
    """The peers of every rule that lets `port` through (None: any peer)."""
    key = "ingress" if policy["spec"]["policyTypes"] == ["Ingress"] else "egress"
    peer = "from" if key == "ingress" else "to"
    port_spec = {"protocol": protocol, "port": port}
    return [rule.get(peer) for rule in policy["spec"][key] if port_spec in rule["ports"]]


def peer_tiers(peers: list[Any] | None) -> set[str]:
    assert peers is not None
    return {t for p in peers for e in p["podSelector"]["matchExpressions"] for t in e["values"]}


def open_ports(policy: dict[str, Any]) -> set[int]:
    key = "ingress" if policy["spec"]["policyTypes"] == ["Ingress"] else "egress"
    return {p["port"] for rule in policy["spec"][key] for p in rule["ports"]}


def test_data_stores_accept_only_their_clients() -> None:
    m = built()
    write = m[f"NetworkPolicy/{C.ingress_policy('db-write')}"]
    (peers,) = allowed(write, 5432)
    # Either Postgres pod may hold the write role (failover): each accepts the other, and the operator.
    assert peer_tiers(peers[:1]) == {"app", "workers", "db-read", "db-write"}
    assert peers[1]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"
    assert allowed(write, 9187) == [None]  # metrics from anywhere
    (peers,) = allowed(m[f"NetworkPolicy/{C.ingress_policy('db-read')}"], 5432)
    assert peer_tiers(peers[:1]) == {"app", "workers", "db-read", "db-write"}
    cache = m[f"NetworkPolicy/{C.ingress_policy('cache')}"]
    (peers,) = allowed(cache, 6379)
    assert peer_tiers(peers) == {"app", "workers"}
    assert allowed(cache, 9121) == [None]
    assert cache["spec"]["podSelector"]["matchLabels"][TIER_LABEL] == "cache"
    queue = m[f"NetworkPolicy/{C.ingress_policy('queue')}"]
    (peers,) = allowed(queue, 6379)
    assert peer_tiers(peers) == {"app", "workers"} and open_ports(queue) == {6379}


def test_the_app_is_open_on_its_port_and_workers_only_for_metrics() -> None:
    m = built()
    app = m[f"NetworkPolicy/{C.ingress_policy('app')}"]
    assert allowed(app, SPECS["full"].app.port) == [None] and open_ports(app) == {SPECS["full"].app.port}
    workers = m[f"NetworkPolicy/{C.ingress_policy('workers')}"]
    assert allowed(workers, 9100) == [None] and open_ports(workers) == {9100}


def test_egress_reaches_only_dns_and_the_scaledapps_own_stores() -> None:
    m = built()
    for tier in ("app", "workers"):
        egress = m[f"NetworkPolicy/{C.egress_policy(tier)}"]
        assert allowed(egress, 53, "UDP") == [None] and allowed(egress, 53, "TCP") == [None]
        (to_postgres,) = allowed(egress, 5432)
        (to_redis,) = allowed(egress, 6379)
        assert peer_tiers(to_postgres) == {"db-write", "db-read"} and peer_tiers(to_redis) == {"cache", "queue"}
        assert open_ports(egress) == {53, 5432, 6379}
    for tier in ("db-write", "db-read"):
        egress = m[f"NetworkPolicy/{C.egress_policy(tier)}"]
        (to_postgres,) = allowed(egress, 5432)  # replication between Postgres pods, whichever holds the role
        assert peer_tiers(to_postgres) == {"db-write", "db-read"} and open_ports(egress) == {53, 5432}
    for tier in ("cache", "queue"):
        assert m[f"NetworkPolicy/{C.egress_policy(tier)}"]["spec"]["egress"] == []  # a Redis connects nowhere
    for policy in (p for p in m.values() if p["kind"] == "NetworkPolicy"):
        for rule in policy["spec"].get("ingress", []) + policy["spec"].get("egress", []):
            for peer in rule.get("from", rule.get("to", [])):
                if "namespaceSelector" not in peer:  # in this namespace: only this ScaledApp's pods
                    assert peer["podSelector"]["matchLabels"][INSTANCE_LABEL] == C.owner


@pytest.mark.parametrize("spec_name", sorted(SPECS))
def test_every_pod_is_selected_by_an_ingress_and_an_egress_policy(spec_name: str) -> None:
    m = built(spec_name)
    policies = [p for p in m.values() if p["kind"] == "NetworkPolicy"]
    for workload in (w for w in m.values() if w["kind"] in ("Deployment", "StatefulSet")):
        labels = workload["spec"]["template"]["metadata"]["labels"]
        types = {t for p in policies if p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
                 for t in p["spec"]["policyTypes"]}
        assert types == {"Ingress", "Egress"}, workload["metadata"]["name"]
    # A tier switched off takes its policies with it.
    assert len(policies) == 2 * len({w["spec"]["template"]["metadata"]["labels"][TIER_LABEL]
                                     for w in m.values() if w["kind"] in ("Deployment", "StatefulSet")})


# ------------------------------------------------------------------------------------------ scaler


def test_replicas_body_is_minimal() -> None:
    assert replicas_body("StatefulSet", C.db_replicas, NS, 3) == {
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": C.db_replicas, "namespace": NS}, "spec": {"replicas": 3}}
    replicas = tiers.tier("db-read").workload(C)
    assert (replicas.kind, replicas.name) == ("StatefulSet", C.db_replicas)
    with pytest.raises(ValueError):
        replicas_body("Deployment", C.app, NS, -1)


def test_primary_resources_body_and_resize_patch() -> None:
    body = primary_resources_body(C, NS, "1", "2Gi")
    (ctr,) = body["spec"]["template"]["spec"]["containers"]
    # The size is the limits; the CPU request is a fifth of the limit, memory is reserved in full.
    assert ctr == {"name": "postgres", "resources": {"requests": {"cpu": "200m", "memory": "2Gi"},
                                                     "limits": {"cpu": "1", "memory": "2Gi"}}}
    assert body["metadata"] == {"name": C.db_primary, "namespace": NS}
    assert primary_pod_resize_patch("1", "2Gi")["spec"]["containers"] == [ctr]


def test_cache_memory_body_stores_bytes() -> None:
    assert cache_memory_body(C, NS, "128Mi") == {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": C.cache_config, "namespace": NS},
        "data": {"maxmemory": str(128 * 2**20)}}
    assert cache_memory_body(C, NS, 1000)["data"]["maxmemory"] == "1000"


def merge(base: Any, patch: Any) -> Any:
    """Server-side apply's merge, enough for these bodies: maps deep, lists of named items by name."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(patch, list) and all(isinstance(x, dict) and "name" in x for x in patch):
        out_list = list(base)
        for item in patch:
            idx = next((i for i, x in enumerate(out_list) if x.get("name") == item["name"]), None)
            out_list.append(item) if idx is None else out_list.__setitem__(idx, merge(out_list[idx], item))
        return out_list
    return copy.deepcopy(patch)


@pytest.mark.parametrize("spec_name", sorted(SPECS))
def test_initial_scaler_bodies_complete_the_reconciler_manifests(spec_name: str) -> None:
    spec = SPECS[spec_name]
    m = built(spec_name)
    for body in tiers.initial_scaler_bodies("shop", NS, spec):
        key = f"{body['kind']}/{body['metadata']['name']}"
        merged = merge(m[key], body)
        kubernetes_validate.validate(merged, K8S_VERSION, strict=True)
        m[key] = merged
    assert m[f"Deployment/{C.app}"]["spec"]["replicas"] == spec.app.replicas.min
    assert m[f"StatefulSet/{C.db_replicas}"]["spec"]["replicas"] == spec.database.read_replicas.min
    pg = container(m[f"StatefulSet/{C.db_primary}"], "postgres")
    assert pg["resources"]["limits"] == spec.database.resources.initial.model_dump()
    if spec.cache.enabled:
        assert m[f"ConfigMap/{C.cache_config}"]["data"]["maxmemory"] == str(64 * 2**20)
