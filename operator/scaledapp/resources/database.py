"""The Postgres tiers: the primary (db-write) and streaming read replicas (db-read).

No image entrypoint is relied on. Every Postgres container runs the project's `postgres-start.sh`
(db-scripts ConfigMap) as its command, so the manifests need of an image only the server tools on PATH
and uid 999 with a passwd entry: the official image and a Debian-built one run them unchanged. The
script initialises a primary (initdb, then `primary-init.sh` and `app-role.sh` on a socket-only
temporary server), repairs a half-initialised one, listens on every address explicitly (Debian's
default is localhost), keeps its socket in an emptyDir, and turns SIGTERM into Postgres' fast shutdown
(the official image's STOPSIGNAL SIGINT). See the script's header.

* Primary: StatefulSet (1 pod, PVC from a volumeClaimTemplate), a headless Service for its stable
  DNS name and the `db-write` Service. The init scripts create the app, replication and exporter
  roles and the pg_hba entry for replication. updateStrategy OnDelete: a template change (notably the
  scaler's new `resources` for the `postgres` container) never restarts the primary; the scaler
  resizes the live pod in place and the template keeps the size for the next restart. The container's
  `resources` are the scaler's (scaler.primary_resources_body): the reconciler never writes them.
* Replicas: StatefulSet (replicas: the scaler's), each pod seeded by an initContainer running
  `replica-bootstrap.sh` in the same postgres image: pg_basebackup from the primary with its own
  replication slot; then `postgres-start.sh` (POSTGRES_ROLE=replica) starts the hot standby. The
  `db-read` Service selects replica pods only, and only ready ones (in recovery, accepting).
* Disruption budgets by role label, whichever StatefulSet the pod is in: the pod holding the write role may
  not be evicted at all (maxUnavailable 0: a drain waits until the failover guard has switched the role to a
  replica, dbguard.py), replicas one at a time. Both let an unhealthy pod go (it serves nothing).
* Probes connect through the pod's own IP with a password, as clients in other pods do.
* postgres_exporter sidecar on every Postgres pod (port 9187), with the project's extra queries
  mounted from the db-scripts ConfigMap. It reads its password from a pgpass file (`PGPASSFILE`), which its
  driver (lib/pq) reads at every new connection; the `pgpass-writer` sidecar keeps that file (0600, on a memory
  emptyDir) in step with the credentials Secret's `exporter-password`, mounted as a file that the kubelet
  updates when the Secret is edited. So after an edit (and password-sync's ALTER ROLE) the exporter's next
  connection logs in, without a restart of the pod or the container.
* The credentials Secret is the source of truth for the roles' passwords: the `password-sync` sidecar on
  every Postgres pod (pg_sidecars.password_sync_script) mounts every Postgres role's key and, when a file changed (and
  once at start), tries it with a TLS login; on the pod holding the write role (not in recovery) a password
  that does not log in is set with ALTER ROLE, over the Unix socket as the container's own user (`peer`).
  Replicas get it by replication. The operator reads nothing for this (no periodic Secret GET).
* TLS (resources/tls.py): every pod mounts the `db-tls` Secret (CA certificate, server certificate,
  replication client certificate) and runs with `ssl=on` and the pg_hba of `pg_hba()`, mounted from the
  db-scripts ConfigMap (`hba_file`), the same on every pod: no plain-text TCP connection is accepted,
  replicas stream with their client certificate (`cert`), the operator logs in with its own (`cert`), every
  other client with a password over TLS. The readiness query runs on the Unix socket with `peer`
  authentication (the container's own user, `postgres`), so no probe depends on a password.

The scripts are the package files in resources/files/, read once (package data, not outside I/O).
"""

from __future__ import annotations

import functools
from importlib import resources as importlib_resources

from scaledapp import api
from scaledapp.resources import names, network, pg_sidecars, tls
from scaledapp.resources.base import Build, Builder, ChildKind, Children
from scaledapp.resources.common import (
    MI,
    POSTGRES_EXPORTER_PORT,
    POSTGRES_GID,
    POSTGRES_PORT,
    POSTGRES_UID,
    Manifest,
    container_security_context,
    cpu_request,
    env_field,
    env_secret,
    env_value,
    exec_probe,
    memory_bytes,
    object_meta,
    pod_ip_env,
    pod_security_context,
    pod_template,
    resources,
    scrape_annotations,
    selector,
    service,
)
from scaledapp.resources.pg_layout import (
    APP_ROLE,
    DATA_DIR,
    EXPORTER_QUERIES,
    HBA_KEY,
    PASSWORD_SYNC,
    PGDATA,
    POSTGRES_START,
    PRIMARY_INIT,
    QUERIES_KEY,
    REPLICA_BOOTSTRAP,
    SCRIPTS_DIR,
    SOCKET_DIR,
    TLS_DIR,
    TOPOLOGY_DIR,
    TOPOLOGY_KEY,
)
from scaledapp.resources.secrets import (
    APP_KEY,
    APP_USER,
    DATABASE,
    EXPORTER_KEY,
    EXPORTER_USER,
    REPLICATION_KEY,
    REPLICATION_USER,
    SUPERUSER,
    SUPERUSER_KEY,
)

WRITE_TIER = "db-write"
READ_TIER = "db-read"
CONTAINER = "postgres"  # the primary's container whose resources the scaler owns
# Run in this order by postgres-start.sh when it initialises the primary.
INIT_SCRIPTS = (PRIMARY_INIT, APP_ROLE)


@functools.cache
def package_file(name: str) -> str:
    """A file shipped in scaledapp/resources/files (cached: read once per process)."""
    return importlib_resources.files("scaledapp.resources").joinpath("files", name).read_text(encoding="utf-8")


def scripts_configmap(child: names.ChildNames, namespace: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(child.owner, namespace, child.db_scripts, WRITE_TIER, "db-scripts"),
        "data": {
            **{script: package_file(script)
               for script in (POSTGRES_START, *INIT_SCRIPTS, REPLICA_BOOTSTRAP, PASSWORD_SYNC)},
            QUERIES_KEY: package_file(EXPORTER_QUERIES),
            HBA_KEY: pg_hba(),
        },
    }


def topology_configmap(child: names.ChildNames, namespace: str) -> Manifest:
    """Which pod holds the write role, for the pods' scripts to read at start. The reconciler applies it
    with no data: the `primary` key belongs to the failover (field manager scaledapp-failover), and
    while it is absent the home primary holds the role."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(child.owner, namespace, child.db_topology, WRITE_TIER, "db-topology"),
    }


def _topology_env(child: names.ChildNames) -> list[Manifest]:
    return [
        env_value("TOPOLOGY_FILE", f"{TOPOLOGY_DIR}/{TOPOLOGY_KEY}"),
        env_value("HOME_PRIMARY", child.home_primary),
        env_field("POD_NAME", "metadata.name"),
    ]


def pg_hba(superuser: str = SUPERUSER, replication_user: str = REPLICATION_USER,
           operator_user: str = tls.OPERATOR_USER) -> str:
    """Who may connect, and how; the same file on every Postgres pod (`hba_file`), read again on reload.
    The first line that matches a connection decides it: nothing over TCP without TLS (no `host` line), the
    replication role and the operator by certificate only, every other role by password over TLS."""
    rows = [
        ("local", "all", superuser, "", "peer"),  # the container's own user: the probes, an operator's kubectl exec
        ("local", "all", "all", "", "scram-sha-256"),
        ("hostssl", "all", operator_user, "all", "cert"),
        ("hostssl", "replication", replication_user, "all", "cert"),
        ("hostssl", "all", "all", "all", "scram-sha-256"),
        # Implied by the absence of any `host` line; said for whoever reads the file.
        ("hostnossl", "all", "all", "all", "reject"),
        ("hostnossl", "replication", "all", "all", "reject"),
    ]
    header = ("# Written by the scaledapp operator (resources/database.py pg_hba); mounted from the db-scripts "
              "ConfigMap.\n")
    return header + "".join(f"{t:<10}{d:<12}{u:<20}{a:<6}{m}".rstrip() + "\n" for t, d, u, a, m in rows)


def tls_settings(tls_dir: str = TLS_DIR, hba_file: str = f"{SCRIPTS_DIR}/{HBA_KEY}") -> dict[str, str]:
    """The server's TLS and pg_hba settings. The files are read again on every reload (pg_reload_conf), which
    is how renewed certificates reach a running server without a restart."""
    return {
        "ssl": "on",
        "ssl_cert_file": f"{tls_dir}/{tls.TLS_CERT_KEY}",
        "ssl_key_file": f"{tls_dir}/{tls.TLS_KEY_KEY}",
        "ssl_ca_file": f"{tls_dir}/{tls.CA_CERT_KEY}",
        "ssl_min_protocol_version": "TLSv1.2",
        "hba_file": hba_file,
    }


def replication_conninfo(tls_dir: str = TLS_DIR, sslmode: str = "verify-full") -> str:
    """How a replica reaches its primary (libpq key=value; pg_basebackup -R writes it into primary_conninfo):
    TLS with the server's name checked against the CA, logging in with the replication certificate."""
    return (f"sslmode={sslmode} sslrootcert={tls_dir}/{tls.CA_CERT_KEY} "
            f"sslcert={tls_dir}/{tls.REPLICATION_CERT_KEY} sslkey={tls_dir}/{tls.REPLICATION_KEY_KEY}")


def postgres_settings(spec: api.DatabaseSpec) -> list[str]:
    """`postgres -c` arguments, identical on primary and replicas. WAL senders and slots are sized for the API's
    replica ceiling, not the spec's max: a hot standby refuses to start with fewer than its primary, and the
    primary (OnDelete) keeps its start-up value while the replicas roll, so a value that followed
    readReplicas.max would break every replica when max is lowered. max_slot_wal_keep_size and
    hot_standby_feedback are set by primary-init.sh (ALTER SYSTEM), and pg_basebackup copies them."""
    # Every replica, the primary's home pod re-seeding after a failover, a basebackup and the operator.
    senders = api.MAX_READ_REPLICAS + 3
    settings = {
        "wal_level": "replica",
        "max_wal_senders": str(senders),
        "max_replication_slots": str(senders),
        "hot_standby": "on",
        **tls_settings(),
    }
    if spec.synchronous:
        # Quorum of one: a commit returns once any replica has flushed its WAL. Set on every pod (a standby
        # ignores it), so whichever pod is promoted keeps the guarantee.
        settings["synchronous_standby_names"] = "ANY 1 (*)"
    return [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]


def slot_wal_keep_size(spec: api.DatabaseSpec) -> str:
    """An orphaned or lagging slot must not fill the volume: it may retain a quarter of it."""
    return f"{max(64, memory_bytes(spec.storage) // 4 // MI)}MB"


def readiness_query(lag_seconds: float) -> str:
    """Ready to serve its role: a primary always; a standby unless it lags, i.e. it has WAL received but not
    replayed and its last replayed transaction is older than `lag_seconds` (an idle primary sends nothing, so
    a caught-up standby is never "lagging" for want of new transactions). A lagging replica leaves the read
    Service and comes back when it catches up."""
    return ("select not pg_is_in_recovery() or pg_last_wal_receive_lsn() is null"
            " or pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn()"
            # No quotes: the query travels inside a single-quoted shell word (the probe command).
            f" or now() - pg_last_xact_replay_timestamp() <= make_interval(secs => {lag_seconds:g})")


def _probes(query: str) -> Manifest:
    # TCP through the pod's own IP, as clients in other pods connect: a server listening on loopback only
    # is never started/ready, nor is the init-time temporary server (socket only). The query runs on the
    # Unix socket as the container's own user (pg_hba `peer`): it needs no password, so a password changed
    # in the credentials Secret never fails a probe.
    isready = f'pg_isready -h "$POD_IP" -p {POSTGRES_PORT} -q'
    sql = f"psql -h {SOCKET_DIR} -p {POSTGRES_PORT} -U {SUPERUSER} -d postgres -tAc '{query}'"
    # Liveness asks only whether the server process answers (restarting cannot fix the pod network).
    alive = f"pg_isready -h 127.0.0.1 -p {POSTGRES_PORT} -q"
    return {
        # Generous: initdb and the init scripts (primary) or WAL replay to consistency (replica).
        # Short periods: the write role is back in the Service as soon as a restarted primary answers (a pod
        # kill costs writes the restart plus at most one period), and a dead one is out within 4 s. Both probes
        # are a connection or two, cheap beside what the server does.
        "startupProbe": exec_probe(isready, period=1, failures=600),
        "readinessProbe": exec_probe(f'{isready} && test "$({sql})" = t', period=2, failures=2, timeout=2),
        # Alive while accepting (0) or rejecting connections (1: starting, shutting down, recovering).
        "livenessProbe": exec_probe(f"{alive}; test $? -le 1", period=10, failures=6, timeout=5),
    }


def _postgres_container(child: names.ChildNames, spec: api.ScaledAppSpec, role: str) -> Manifest:
    db = spec.database
    return {
        "name": CONTAINER,
        "image": db.image,
        # Our script, not the image's entrypoint: the same on every image (see the module docstring).
        "command": ["bash", f"{SCRIPTS_DIR}/{POSTGRES_START}"],
        "args": postgres_settings(db),
        # For postgres-start.sh (documented at its top) and the probes.
        "env": [
            env_value("PGDATA", PGDATA),
            env_value("POSTGRES_ROLE", role),
            env_value("POSTGRES_USER", SUPERUSER),
            env_secret("POSTGRES_PASSWORD", child.db_credentials, SUPERUSER_KEY),
            env_value("SOCKET_DIR", SOCKET_DIR),
            pod_ip_env(),
            *_topology_env(child),
        ],
        "ports": [{"name": "postgres", "containerPort": POSTGRES_PORT, "protocol": "TCP"}],
        **_probes(readiness_query(spec.scaling.targets.replication_lag_seconds)),
        # Writable root: what our script and the server write is on volumes (data, socket, shm), but no
        # image has been checked to write nothing else; `restricted` does not require a read-only root.
        "securityContext": container_security_context(read_only_root=False),
        "volumeMounts": [
            {"name": "data", "mountPath": DATA_DIR},
            {"name": "shm", "mountPath": "/dev/shm"},
            {"name": "run", "mountPath": SOCKET_DIR},
            {"name": "scripts", "mountPath": SCRIPTS_DIR, "readOnly": True},
            {"name": "topology", "mountPath": TOPOLOGY_DIR, "readOnly": True},
            {"name": "tls", "mountPath": TLS_DIR, "readOnly": True},
        ],
    }


def _volumes(child: names.ChildNames) -> list[Manifest]:
    return [
        {"name": "scripts", "configMap": {"name": child.db_scripts, "defaultMode": 0o555}},
        # Parallel queries use POSIX shared memory; a container's default /dev/shm is 64Mi.
        {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "256Mi"}},
        # The Unix socket and its lock file: writable by uid 999 on any image.
        {"name": "run", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        # Read at start by the scripts; optional, so a pod starts (as the home topology) before it exists.
        {"name": "topology", "configMap": {"name": child.db_topology, "optional": True}},
        # Certificates and keys: root-owned, group fsGroup (postgres), 0640, which Postgres and libpq accept
        # for a key. The kubelet replaces them in place when the operator renews them.
        {"name": "tls", "secret": {"secretName": child.db_tls, "defaultMode": 0o640}},
        *pg_sidecars.volumes(child),
    ]


def _claim(owner: str, tier: str, spec: api.DatabaseSpec) -> Manifest:
    claim_spec: Manifest = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": spec.storage}}}
    if spec.storage_class_name:
        claim_spec["storageClassName"] = spec.storage_class_name
    return {"metadata": {"name": "data", "labels": names.labels(owner, tier)}, "spec": claim_spec}


def _pod_base() -> Manifest:
    return {
        "securityContext": pod_security_context(POSTGRES_UID, POSTGRES_GID),
        # postgres-start.sh makes SIGTERM a fast shutdown, which checkpoints first: give it time rather
        # than SIGKILL (crash recovery at the next start).
        "terminationGracePeriodSeconds": 60,
    }


def _bootstrap(child: names.ChildNames, db: api.DatabaseSpec) -> Manifest:
    """replica-bootstrap.sh as an initContainer on every Postgres pod: it reads the topology and seeds the
    pod when it is a replica without data, or one that ran as a primary before a failover moved the role."""
    return {
        "name": "bootstrap",
        "image": db.image,
        "command": ["bash", f"{SCRIPTS_DIR}/{REPLICA_BOOTSTRAP}"],
        # For replica-bootstrap.sh (documented at its top).
        "env": [
            env_value("PGDATA", PGDATA),
            env_value("PRIMARY_HOST", child.db_write),
            env_value("PRIMARY_PORT", str(POSTGRES_PORT)),
            env_value("REPLICATION_USER", REPLICATION_USER),
            # No password: the replication role logs in with its certificate, over TLS (pg_hba `cert`).
            env_value("PRIMARY_CONNINFO", replication_conninfo()),
            # Becomes application_name on the primary and, sanitised, the replication slot name.
            env_field("REPLICA_NAME", "metadata.name"),
            *_topology_env(child),
        ],
        "resources": resources("50m", "128Mi", limit_cpu="500m", limit_memory="256Mi"),
        "securityContext": container_security_context(read_only_root=False),
        "volumeMounts": [
            {"name": "data", "mountPath": DATA_DIR},
            {"name": "scripts", "mountPath": SCRIPTS_DIR, "readOnly": True},
            {"name": "topology", "mountPath": TOPOLOGY_DIR, "readOnly": True},
            {"name": "tls", "mountPath": TLS_DIR, "readOnly": True},
        ],
    }


def _postgres_pod(child: names.ChildNames, tier: str, spec: Manifest, role: str) -> Manifest:
    pod = pod_template(child.owner, tier, spec, annotations=scrape_annotations(POSTGRES_EXPORTER_PORT))
    pod["metadata"]["labels"][names.ROLE_LABEL] = role
    return pod


def primary_statefulset(
    child: names.ChildNames, namespace: str, spec: api.ScaledAppSpec, replicas: int = 1,
    write_role_at: str | None = None,
) -> Manifest:
    """The primary's home. `replicas` is 0 only for the very first apply (see build_children(hold_primary)).
    `write_role_at`: the pod holding the write role (None: this StatefulSet's pod); a new pod here starts
    labelled a replica while a failover has the role elsewhere."""
    db = spec.database
    postgres = _postgres_container(child, spec, "primary")
    postgres["env"] += [
        env_value("POSTGRES_DB", DATABASE),
        env_value("INIT_SCRIPTS", " ".join(f"{SCRIPTS_DIR}/{script}" for script in INIT_SCRIPTS)),
        # For primary-init.sh and app-role.sh (documented at their tops).
        env_value("REPLICATION_USER", REPLICATION_USER),
        env_secret("REPLICATION_PASSWORD", child.db_credentials, REPLICATION_KEY),
        env_value("MAX_SLOT_WAL_KEEP_SIZE", slot_wal_keep_size(db)),
        env_value("MONITOR_USER", EXPORTER_USER),
        env_secret("MONITOR_PASSWORD", child.db_credentials, EXPORTER_KEY),
        env_value("APP_USER", APP_USER),
        env_secret("APP_PASSWORD", child.db_credentials, APP_KEY),
        # For primary-init.sh: the superuser role the operator's certificate logs in as (no password).
        env_value("OPERATOR_USER", tls.OPERATOR_USER),
    ]
    # Resize in place, never restart: shared_buffers keeps its start-up size, the rest uses the room.
    postgres["resizePolicy"] = [
        {"resourceName": "cpu", "restartPolicy": "NotRequired"},
        {"resourceName": "memory", "restartPolicy": "NotRequired"},
    ]
    role = "primary" if write_role_at in (None, child.home_primary) else "replica"
    pod = _postgres_pod(child, WRITE_TIER, {
        **_pod_base(), "initContainers": [_bootstrap(child, db)],
        "containers": [postgres, *pg_sidecars.containers(db.image)],
        "volumes": _volumes(child),
    }, role)
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": object_meta(child.owner, namespace, child.db_primary, WRITE_TIER),
        "spec": {
            # The primary is not cloned: one pod, owned by the reconciler (widened vertically instead).
            "replicas": replicas,
            "serviceName": child.db_primary,
            "selector": selector(child.owner, WRITE_TIER),
            "updateStrategy": {"type": "OnDelete"},
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
            "template": pod,
            "volumeClaimTemplates": [_claim(child.owner, WRITE_TIER, db)],
        },
    }


def replica_statefulset(child: names.ChildNames, namespace: str, spec: api.ScaledAppSpec) -> Manifest:
    db = spec.database
    postgres = _postgres_container(child, spec, "replica")
    # Replicas are widened by number, not size: their resources are the reconciler's, limits at the
    # primary's initial size, the CPU request a fraction of it (as the primary's: scaler.py).
    initial = db.resources.initial
    postgres["resources"] = resources(cpu_request(initial.cpu), initial.memory,
                                      limit_cpu=initial.cpu, limit_memory=initial.memory)
    pod = _postgres_pod(
        child, READ_TIER,
        {
            **_pod_base(),
            "initContainers": [_bootstrap(child, db)],
            "containers": [postgres, *pg_sidecars.containers(db.image)],
            "volumes": _volumes(child),
            "affinity": _apart_from_other_postgres(child),
        },
        "replica",
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": object_meta(child.owner, namespace, child.db_replicas, READ_TIER),
        "spec": {
            "serviceName": child.db_replicas,
            "selector": selector(child.owner, READ_TIER),
            # Replicas are independent of each other: start and stop them together.
            "podManagementPolicy": "Parallel",
            "updateStrategy": {"type": "RollingUpdate"},
            # A removed replica's volume goes too: a later scale-up re-seeds from a fresh basebackup
            # instead of resuming from a slot the failover guard dropped after the scale-down.
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Delete"},
            "template": pod,
            "volumeClaimTemplates": [_claim(child.owner, READ_TIER, db)],
        },
    }


def _role_service(child: names.ChildNames, namespace: str, name: str, tier: str, role: str) -> Manifest:
    """A Service over the Postgres pods of one role, whichever StatefulSet they belong to (the write role
    moves on failover; replicas of either StatefulSet serve reads). Services route to Ready pods only."""
    manifest = service(child.owner, namespace, name, tier, [("postgres", POSTGRES_PORT, "postgres")])
    manifest["spec"]["selector"] = {names.INSTANCE_LABEL: child.owner, names.ROLE_LABEL: role}
    return manifest


def _apart_from_other_postgres(child: names.ChildNames) -> Manifest:
    """Prefer nodes without another Postgres of this app: a replica beside the primary adds no capacity
    when the node is the limit."""
    return {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
        "weight": 50,
        "podAffinityTerm": {
            "topologyKey": "kubernetes.io/hostname",
            "labelSelector": {
                "matchLabels": {names.INSTANCE_LABEL: child.owner},
                "matchExpressions": [{"key": names.TIER_LABEL, "operator": "In",
                                      "values": [WRITE_TIER, READ_TIER]}],
            },
        },
    }]}}


def database_services(child: names.ChildNames, namespace: str) -> list[Manifest]:
    port = [("postgres", POSTGRES_PORT, "postgres")]
    return [
        service(child.owner, namespace, child.db_primary, WRITE_TIER, port, headless=True),
        _role_service(child, namespace, child.db_write, WRITE_TIER, "primary"),
        service(child.owner, namespace, child.db_replicas, READ_TIER, port, headless=True),
        _role_service(child, namespace, child.db_read, READ_TIER, "replica"),
    ]


def _role_budget(child: names.ChildNames, namespace: str, name: str, tier: str, role: str,
                 max_unavailable: int) -> Manifest:
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": object_meta(child.owner, namespace, name, tier),
        "spec": {
            "maxUnavailable": max_unavailable,
            "selector": {"matchLabels": {names.INSTANCE_LABEL: child.owner, names.ROLE_LABEL: role}},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def database_budgets(child: names.ChildNames, namespace: str) -> list[Manifest]:
    return [
        _role_budget(child, namespace, child.db_primary_budget, WRITE_TIER, "primary", 0),
        _role_budget(child, namespace, child.db_replica_budget, READ_TIER, "replica", 1),
    ]


def _children(build: Build) -> Children:
    """Both Postgres tiers; the primary held at 0 replicas on the first apply (see build_children)."""
    child, namespace, spec = build.child, build.namespace, build.spec
    primary = primary_statefulset(child, namespace, spec, replicas=0 if build.hold_primary else 1,
                                  write_role_at=build.write_role_at)
    return Children(
        configs=[scripts_configmap(child, namespace), topology_configmap(child, namespace)],
        policies=[p for tier in (WRITE_TIER, READ_TIER) for p in network.tier_policies(child, namespace, spec, tier)],
        services=database_services(child, namespace),
        workloads=[primary, replica_statefulset(child, namespace, spec), *database_budgets(child, namespace)],
    )


def _kinds(child: names.ChildNames) -> list[ChildKind]:
    return [
        *[("v1", "ConfigMap", n) for n in (child.db_scripts, child.db_topology)],
        *[k for tier in (WRITE_TIER, READ_TIER) for k in network.policy_kinds(child, tier)],
        *[("v1", "Service", n) for n in (child.db_primary, child.db_write, child.db_replicas, child.db_read)],
        *[("apps/v1", "StatefulSet", n) for n in (child.db_primary, child.db_replicas)],
        *[("policy/v1", "PodDisruptionBudget", n) for n in (child.db_primary_budget, child.db_replica_budget)],
    ]


BUILDER = Builder("database", _children, _kinds)
