"""The app tier: Deployment, Service, PodDisruptionBudget; and the environment app and workers share.

Environment of app and worker containers (generic names; the demo app reads these):

    POD_NAME, POD_NAMESPACE   downward API (metadata.name, metadata.namespace)
    CPU_LIMIT_MILLICORES      downward API: limits.cpu of the container, divisor 1m
    PORT                      app only: the port to listen on (spec.app.port)
    METRICS_PORT              workers only: the port of the worker's /metrics
    DB_WRITE_HOST             the db-write Service (the primary)
    DB_READ_HOST              the db-read Service (ready replicas; the primary when replicas.max is 0)
    DB_PORT, DB_NAME, DB_USER
    DB_PASSWORD               secretKeyRef into the credentials Secret
    DB_PASSWORD_FILE          the app role's password, the credentials Secret's key mounted as a file: read
                              at every new connection, so an edited password reaches running pods
    DB_SSLROOTCERT            the Postgres CA's certificate (the db-tls Secret's ca.crt, mounted)
    DB_WRITE_DSN, DB_READ_DSN libpq key=value DSNs built from the above with $(VAR) expansion, so
                              the password still comes only from the Secret; TLS with the server's
                              name checked against the CA (sslmode=verify-full)
    CACHE_ENABLED             "true" / "false" (spec.cache.enabled)
    REDIS_PASSWORD            secretKeyRef: the cache's password (only when the cache is enabled)
    REDIS_PASSWORD_FILE       the cache's password, the Secret's key mounted as a file (only when the cache is
                              enabled): read at every new connection, so an edited password reaches running pods
    REDIS_URL                 redis://:$(REDIS_PASSWORD)@<cache Service>:6379/0 (only when the cache is enabled)
    CACHE_TTL_SECONDS         spec.cache.ttlSeconds
    QUEUE_PASSWORD            secretKeyRef: the queue's password
    QUEUE_PASSWORD_FILE       the queue's password, mounted as a file (as REDIS_PASSWORD_FILE)
    QUEUE_URL                 redis://:$(QUEUE_PASSWORD)@<queue Service>:6379/0: the queue's own Redis, never
                              evicted

Both Redis require their password (cache.py). It is in the URLs, as the database's is in the DSNs, so an
app that reads REDIS_URL / QUEUE_URL authenticates without knowing about it; the spec holds only the
`$(VAR)` reference, the kubelet expands it in the container's environment. The environment is fixed at the
container's start: an app that follows an edited password reads the *_FILE variables at each new connection
(the demo app does); one that reads only the URLs keeps the old password until its pod restarts, and is
refused new connections once Redis drops the old password (cache.PASSWORD_GRACE_SECONDS after the edit).

User variables from spec.app.env replace ours of the same name and follow the rest.
`spec.replicas` is never set here: the scaler owns it (see scaler.py).
"""

from __future__ import annotations

from scaledapp import api
from scaledapp.quantity import parse_cpu_millicores
from scaledapp.resources import names, network, tls
from scaledapp.resources.base import Build, Builder, ChildKind, Children
from scaledapp.resources.common import (
    APP_UID,
    POSTGRES_PORT,
    REDIS_PORT,
    Manifest,
    container_security_context,
    cpu_request,
    disruption_budget,
    env_field,
    env_resource,
    env_secret,
    env_value,
    http_probe,
    merge_env,
    object_meta,
    pod_security_context,
    pod_template,
    resources,
    scrape_annotations,
    selector,
    service,
)
from scaledapp.resources.secrets import APP_KEY, APP_USER, CACHE_KEY, DATABASE, QUEUE_KEY

TIER = "app"
CONTAINER = "app"
# The pod stays in the endpoints this long after deletion starts, so kube-proxy and load balancers stop
# sending it new requests before the app sees SIGTERM; then the app drains in-flight requests.
PRE_STOP_SECONDS = 5
TERMINATION_GRACE_SECONDS = 45


def container_resources(amounts: api.AppResources) -> Manifest:
    """App and worker container resources: the spec's limits; CPU request cpuRequest (capped at the limit)
    or a fifth of the limit. Memory request = limit: memory cannot be taken back from a running pod."""
    request = amounts.cpu_request or cpu_request(amounts.cpu)
    if parse_cpu_millicores(request) > parse_cpu_millicores(amounts.cpu):
        request = amounts.cpu
    return resources(request, amounts.memory, limit_cpu=amounts.cpu, limit_memory=amounts.memory)


def dependency_env(child: names.ChildNames, spec: api.ScaledAppSpec, container: str) -> list[Manifest]:
    """Where the dependencies are and how to log in: shared by app and worker containers."""
    read_host = child.db_read if spec.database.read_replicas.max > 0 else child.db_write
    dsn = ("host=$({host}) port=$(DB_PORT) dbname=$(DB_NAME) user=$(DB_USER) password=$(DB_PASSWORD)"
           " sslmode=verify-full sslrootcert=$(DB_SSLROOTCERT)")
    env = [
        env_field("POD_NAME", "metadata.name"),
        env_field("POD_NAMESPACE", "metadata.namespace"),
        env_resource("CPU_LIMIT_MILLICORES", container, "limits.cpu", "1m"),
        env_value("DB_WRITE_HOST", child.db_write),
        env_value("DB_READ_HOST", read_host),
        env_value("DB_PORT", str(POSTGRES_PORT)),
        env_value("DB_NAME", DATABASE),
        env_value("DB_USER", APP_USER),
        env_secret("DB_PASSWORD", child.db_credentials, APP_KEY),
        env_value("DB_PASSWORD_FILE", f"{CREDENTIALS_DIR}/{APP_KEY}"),
        env_value("DB_SSLROOTCERT", tls.CLIENT_CA_FILE),
        # Dependent variables must come after what they reference.
        env_value("DB_WRITE_DSN", dsn.format(host="DB_WRITE_HOST")),
        env_value("DB_READ_DSN", dsn.format(host="DB_READ_HOST")),
        env_value("CACHE_ENABLED", "true" if spec.cache.enabled else "false"),
    ]
    if spec.cache.enabled:
        env += [
            env_secret("REDIS_PASSWORD", child.db_credentials, CACHE_KEY),
            env_value("REDIS_PASSWORD_FILE", f"{CREDENTIALS_DIR}/{CACHE_KEY}"),
            env_value("REDIS_URL", f"redis://:$(REDIS_PASSWORD)@{child.cache}:{REDIS_PORT}/0"),
        ]
    env += [
        env_value("CACHE_TTL_SECONDS", str(spec.cache.ttl_seconds)),
        env_secret("QUEUE_PASSWORD", child.db_credentials, QUEUE_KEY),
        env_value("QUEUE_PASSWORD_FILE", f"{CREDENTIALS_DIR}/{QUEUE_KEY}"),
        env_value("QUEUE_URL", f"redis://:$(QUEUE_PASSWORD)@{child.queue}:{REDIS_PORT}/0"),
    ]
    return env


def db_ca_volume(child: names.ChildNames) -> Manifest:
    """The Postgres CA's certificate only (not the server's key): what app and worker pods verify against."""
    return {"name": "db-ca", "secret": {"secretName": child.db_tls, "defaultMode": 0o444,
                                        "items": [{"key": tls.CA_CERT_KEY, "path": tls.CA_CERT_KEY}]}}


CREDENTIALS_DIR = "/etc/scaledapp-db-credentials"


def db_volumes(child: names.ChildNames, spec: api.ScaledAppSpec) -> list[Manifest]:
    """What app and worker pods mount of the credentials and TLS Secrets: the CA's certificate, the app role's
    password and the passwords of the Redis they use (the cache's only when it is enabled)."""
    keys = [APP_KEY, *([CACHE_KEY] if spec.cache.enabled else []), QUEUE_KEY]
    return [db_ca_volume(child),
            {"name": "db-credentials", "secret": {"secretName": child.db_credentials, "defaultMode": 0o440,
                                                  "items": [{"key": k, "path": k} for k in keys]}}]


DB_MOUNTS: list[Manifest] = [{"name": "db-ca", "mountPath": tls.CLIENT_CA_DIR, "readOnly": True},
                             {"name": "db-credentials", "mountPath": CREDENTIALS_DIR, "readOnly": True}]


def app_deployment(child: names.ChildNames, namespace: str, spec: api.ScaledAppSpec) -> Manifest:
    app = spec.app
    env = merge_env([*dependency_env(child, spec, CONTAINER), env_value("PORT", str(app.port))],
                    [e.model_dump() for e in app.env])
    container: Manifest = {
        "name": CONTAINER,
        "image": app.image,
        "ports": [{"name": "http", "containerPort": app.port, "protocol": "TCP"}],
        "env": env,
        # The CPU limit is what the app reports as its CPU budget (utilisation = usage / limit); the
        # request is smaller so a small node fits every tier (Burstable).
        "resources": container_resources(app.resources),
        # The startup probe holds liveness off while the app opens its pools (up to 60 s).
        "startupProbe": http_probe(app.probes.liveness_path, "http", period=2, failures=30),
        "readinessProbe": http_probe(app.probes.readiness_path, "http", period=5, failures=2),
        "livenessProbe": http_probe(app.probes.liveness_path, "http", period=10, failures=3),
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}},
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *[dict(m) for m in DB_MOUNTS]],
    }
    pod = pod_template(
        child.owner,
        TIER,
        {
            "securityContext": pod_security_context(APP_UID),
            "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
            "containers": [container],
            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}, *db_volumes(child, spec)],
            # Spread replicas over nodes when possible, so one node loss does not take the tier.
            "topologySpreadConstraints": [{
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": selector(child.owner, TIER),
            }],
        },
        annotations=scrape_annotations(app.port),
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_meta(child.owner, namespace, child.app, TIER),
        "spec": {
            "selector": selector(child.owner, TIER),
            "revisionHistoryLimit": 5,
            # maxUnavailable 0: a rollout never lowers serving capacity below the current replicas.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": pod,
        },
    }


def app_service(child: names.ChildNames, namespace: str, spec: api.ScaledAppSpec) -> Manifest:
    return service(child.owner, namespace, child.app, TIER, [("http", spec.app.port, "http")])


def app_pdb(child: names.ChildNames, namespace: str) -> Manifest:
    # maxUnavailable, not minAvailable: with a single replica minAvailable 1 would block node drains.
    return disruption_budget(child.owner, namespace, child.app, TIER)


def _children(build: Build) -> Children:
    child, namespace, spec = build.child, build.namespace, build.spec
    return Children(policies=network.tier_policies(child, namespace, spec, TIER),
                    services=[app_service(child, namespace, spec)],
                    workloads=[app_deployment(child, namespace, spec), app_pdb(child, namespace)])


def _kinds(child: names.ChildNames) -> list[ChildKind]:
    return [*network.policy_kinds(child, TIER), ("v1", "Service", child.app), ("apps/v1", "Deployment", child.app),
            ("policy/v1", "PodDisruptionBudget", child.app)]


BUILDER = Builder(TIER, _children, _kinds)
