"""The cache tier (Redis + redis_exporter) and the queue's own Redis.

How the cache widens without being emptied
------------------------------------------
A restart empties a Redis without persistence, so growing the cache must not restart it:

* The cache ConfigMap has two owners. `redis.conf` is the reconciler's; the key `maxmemory` (bytes)
  belongs to the scaler (field manager `scaledapp-scaler`, see scaler.cache_memory_body).
* Redis starts with `--maxmemory $(cat /etc/redis/maxmemory)` (the spec's initial size while the key
  does not exist yet) and includes redis.conf from the same mounted ConfigMap.
* A sidecar, `maxmemory-reloader`, runs the redis image itself (sh + redis-cli, no extra image):
  it polls the mounted file, which the kubelet refreshes in place when the ConfigMap changes, and runs
  `CONFIG SET maxmemory <bytes>` when the value differs from the last one applied.
* The container's memory LIMIT is sized for spec.cache.memory.max (+25% headroom for fragmentation,
  buffers and the allocator) from the start, so raising maxmemory never needs a bigger limit (which
  would mean a new pod). The memory REQUEST follows the initial size (+25%), so a small cache does
  not reserve its ceiling on the node. The price: the pod is Burstable and the node must be able to
  grant the max when the cache grows into it.

The queue Redis is separate because the cache evicts (allkeys-lru) and may be disabled: a job queue in
it could lose jobs exactly when memory is tight. The queue uses noeviction and is durable: a StatefulSet of
one pod whose append-only file is on a PersistentVolumeClaim and is fsynced before every reply
(`appendfsync always`), so an order the app acknowledged (202) survives the loss of the queue pod, and at
most one queue Redis exists at a time (a StatefulSet does not start a pod's replacement before the old one
is gone, where a Deployment could briefly run two and split the jobs). docs/failure.md argues the choice.

Both name their command and network settings (`redis-server`, bind 0.0.0.0, protected mode off): no image
entrypoint turns bare options into a command, and a Redis built with protected mode on (Debian's) refuses
every client outside the pod. Their readiness probes PING through the pod's own IP, the way clients
connect, so a Redis that only loopback can reach is never Ready.

Passwords
---------
Each Redis requires its own password from the credentials Secret (`cache-password`, `queue-password`;
secrets.py says why two): a client without it gets NOAUTH to everything but AUTH. NetworkPolicies keep
strangers out only where the network plugin enforces them; the password holds everywhere. The value never
appears in a manifest, an argv or a log:

* every Redis container mounts its key of the Secret as a file (`CREDENTIALS_DIR/password`), which the
  kubelet updates in place when the Secret is edited (within about a minute);
* the start script writes `requirepass` into a file on a memory emptyDir (mode 0600, the redis user's),
  `auth.conf`, and starts `redis-server ... --include <that file>`: `ps` shows the file's name, not the
  password. A start without a password fails (a Redis without one would answer anybody);
* `auth.conf` always names a password the running server takes: the probes and the sidecar log in with it
  through `REDISCLI_AUTH` (the variable redis-cli reads, so no `-a` in an argv);
* a sidecar (the cache's `maxmemory-reloader`, the queue's `password-reloader`) follows the mounted file:
  when it differs from `auth.conf`, it adds the new password (`ACL SETUSER default >...`, the value on
  redis-cli's stdin, `-x`), records it in `auth.conf`, and PASSWORD_GRACE_SECONDS later drops every other one
  (`CONFIG SET requirepass`). No restart: the cache keeps its data, the queue its connections. During the
  grace both passwords work, so a client whose own copy of the file is updated a little later (each kubelet
  syncs its pods on its own schedule) is not refused meanwhile;
* the cache's exporter logs in with `REDIS_PASSWORD` at start, then with the password map the sidecar writes
  next to `auth.conf` (`exporter.json`, redis_exporter's `REDIS_PASSWORD_FILE` format), which it reads again
  at every `/-/reload`: its liveness probe calls that endpoint, so the exporter follows an edit within a
  probe period, without a restart;
* the app and workers read `REDIS_PASSWORD_FILE` / `QUEUE_PASSWORD_FILE` at every new connection (app.py);
  `REDIS_PASSWORD` / `QUEUE_PASSWORD`, spliced into REDIS_URL / QUEUE_URL by `$(VAR)` expansion, are for apps
  that read only the URLs (they keep the value of their start).
"""

from __future__ import annotations

from scaledapp import api
from scaledapp.resources import names, network
from scaledapp.resources.base import Build, Builder, ChildKind, Children
from scaledapp.resources.common import (
    REDIS_EXPORTER_PORT,
    REDIS_GID,
    REDIS_PORT,
    REDIS_UID,
    Manifest,
    container_security_context,
    disruption_budget,
    env_secret,
    env_value,
    exec_probe,
    format_memory,
    http_probe,
    memory_bytes,
    object_meta,
    pod_ip_env,
    pod_security_context,
    pod_template,
    resources,
    scrape_annotations,
    selector,
    service,
    sidecar_loop,
    tcp_probe,
)
from scaledapp.resources.secrets import CACHE_KEY, QUEUE_KEY

TIER = "cache"
QUEUE_TIER = names.QUEUE_TIER
CONFIG_DIR = "/etc/redis"
MAXMEMORY_KEY = "maxmemory"  # ConfigMap key owned by the scaler
HEADROOM = 1.25  # container memory = maxmemory * 1.25 (Redis needs room beyond its dataset)
RELOAD_SECONDS = 5

REDIS_CONF = """\
# Managed by the ScaledApp operator (reconciler). maxmemory is not here: it is the scaler's key.
bind 0.0.0.0
protected-mode no
port 6379
dir /data
"""

# The variable redis-cli reads its password from (probes, sidecars): set in the script, never from the spec.
PASSWORD_ENV = "REDISCLI_AUTH"
# The Redis' key of the credentials Secret, mounted as a file (the kubelet updates it when the Secret changes).
CREDENTIALS_DIR = "/etc/redis-credentials"
PASSWORD_FILE = f"{CREDENTIALS_DIR}/password"
# A memory emptyDir for the config file that holds `requirepass` (see the docstring) and the exporter's map.
AUTH_DIR = "/run/redis-auth"
AUTH_FILE = "auth.conf"
EXPORTER_PASSWORDS = "exporter.json"
REDIS_ADDR = f"redis://127.0.0.1:{REDIS_PORT}"
# How long the previous password is still taken after Redis was given a new one. The kubelet brings an edited
# Secret into each pod's files within its sync period (1 min) plus its cache's, on each pod's own schedule: the
# Redis pod may see the edit a minute or more before a client pod does. Three minutes cover that spread.
PASSWORD_GRACE_SECONDS = 180


def _cli(port: int) -> str:
    """The redis-cli the sidecars run (tests point it at another port)."""
    return f"redis-cli -h 127.0.0.1 -p {port}"


def _current(auth_dir: str) -> str:
    """Shell: the password the running server takes (the one `auth.conf` names)."""
    return f"$(sed -n 's/^requirepass //p' {auth_dir}/{AUTH_FILE} 2>/dev/null)"


def render_auth(auth_dir: str = AUTH_DIR, password_file: str = PASSWORD_FILE) -> str:
    """Shell lines writing the mounted password into `auth_dir`/auth.conf (mode 0600), which redis-server
    includes; they stop the container when there is no password."""
    return (f'p="$(cat {password_file} 2>/dev/null)"\n'
            f'[ -n "$p" ] || {{ echo "no Redis password in {password_file}: not starting" >&2; exit 1; }}\n'
            f"(umask 077; printf 'requirepass %s\\n' \"$p\" > {auth_dir}/{AUTH_FILE})\n")


def cache_start_script(config_dir: str = CONFIG_DIR, auth_dir: str = AUTH_DIR,
                       password_file: str = PASSWORD_FILE) -> str:
    """The cache container's command (sh -c); the paths are arguments so tests can run it locally."""
    return render_auth(auth_dir, password_file) + f"""\
m="$(cat {config_dir}/{MAXMEMORY_KEY} 2>/dev/null)"
[ -n "$m" ] || m="$INITIAL_MAXMEMORY"
exec redis-server {config_dir}/redis.conf --maxmemory "$m" --maxmemory-policy allkeys-lru \\
--save "" --appendonly no --include {auth_dir}/{AUTH_FILE}
"""


def queue_start_script(auth_dir: str = AUTH_DIR, password_file: str = PASSWORD_FILE) -> str:
    """The queue container's command (sh -c, $0 redis-server): redis-server with the container's args."""
    return render_auth(auth_dir, password_file) + f'exec redis-server "$@" --include {auth_dir}/{AUTH_FILE}\n'


def _password_sync(auth_dir: str, password_file: str, cli: str, grace_seconds: float, period: float) -> str:
    """Loop body: follow the mounted password (see the docstring). Sets `cur`, the password Redis takes now.
    Values travel on stdin (`-x`, printf is a shell builtin) and in REDISCLI_AUTH, never in an argv."""
    grace_loops = _grace_loops(grace_seconds, period)
    return f"""\
  new="$(cat {password_file} 2>/dev/null)"
  cur="{_current(auth_dir)}"
  if [ -n "$new" ] && [ -n "$cur" ] && [ "$new" != "$cur" ]; then
    if [ "$(printf '>%s' "$new" | {PASSWORD_ENV}="$cur" {cli} -x ACL SETUSER default)" = OK ]; then
      (umask 077; printf 'requirepass %s\\n' "$new" > {auth_dir}/{AUTH_FILE}.new) \\
        && mv -f {auth_dir}/{AUTH_FILE}.new {auth_dir}/{AUTH_FILE}
      cur="$new"; left={grace_loops}
      echo "the Secret's password changed: Redis takes the new one, and the previous one for {grace_seconds:g}s more"
    fi
  elif [ "$left" -gt 0 ] && [ -n "$cur" ]; then
    left=$((left - 1))
    if [ "$left" -eq 0 ]; then
      if [ "$(printf '%s' "$cur" | {PASSWORD_ENV}="$cur" {cli} -x CONFIG SET requirepass)" = OK ]; then
        echo "Redis takes only the current password"
      else left=1; fi
    fi
  fi
"""


def _exporter_passwords(auth_dir: str, redis_addr: str) -> str:
    """Loop body: the exporter's password map (JSON) follows `cur` (quotes and backslashes escaped)."""
    target = f"{auth_dir}/{EXPORTER_PASSWORDS}"
    return f"""\
  if [ -n "$cur" ] && [ "$cur" != "$exported" ]; then
    esc="$(printf '%s' "$cur" | sed 's/[\\\\"]/\\\\&/g')"
    (umask 077; printf '{{"{redis_addr}": "%s"}}\\n' "$esc" > {target}.new) \\
      && mv -f {target}.new {target} && exported="$cur"
  fi
"""


def _grace_loops(grace_seconds: float, period: float) -> int:
    return max(1, int(-(-grace_seconds // period)))


def reloader_script(config_dir: str = CONFIG_DIR, auth_dir: str = AUTH_DIR, password_file: str = PASSWORD_FILE,
                    port: int = REDIS_PORT, grace_seconds: float = PASSWORD_GRACE_SECONDS,
                    period: float = RELOAD_SECONDS) -> str:
    """The cache's sidecar: follows the mounted password (and writes the exporter's map), and applies a changed
    maxmemory without a restart. It retries until redis accepts (redis may still be starting), and only
    remembers a value once CONFIG SET answered OK. The first drop of other passwords comes one grace after its
    own start (a no-op unless the sidecar restarted within a grace)."""
    maxmemory = f"""\
  m="$(cat {config_dir}/{MAXMEMORY_KEY} 2>/dev/null)"
  if [ -n "$m" ] && [ "$m" != "$last" ] && [ -n "$cur" ]; then
    if [ "$({PASSWORD_ENV}="$cur" {_cli(port)} CONFIG SET maxmemory "$m")" = OK ]; then
      echo "maxmemory set to $m"; last="$m"
    fi
  fi
"""
    return sidecar_loop(f'last=""; exported=""; left={_grace_loops(grace_seconds, period)}',
                        _password_sync(auth_dir, password_file, _cli(port), grace_seconds, period)
                        + _exporter_passwords(auth_dir, f"redis://127.0.0.1:{port}") + maxmemory, period)


def password_reloader_script(auth_dir: str = AUTH_DIR, password_file: str = PASSWORD_FILE, port: int = REDIS_PORT,
                             grace_seconds: float = PASSWORD_GRACE_SECONDS, period: float = RELOAD_SECONDS) -> str:
    """The queue's sidecar: follows the mounted password, as the cache's does."""
    return sidecar_loop(f"left={_grace_loops(grace_seconds, period)}",
                        _password_sync(auth_dir, password_file, _cli(port), grace_seconds, period), period)


# Through the pod IP (downward API), not 127.0.0.1: protected mode and a loopback-only bind answer
# loopback and refuse every other pod, and readiness must test what clients depend on. It authenticates
# with the password the server takes (auth.conf): a PING without it answers NOAUTH, never PONG.
_PING = f'test "$({PASSWORD_ENV}="{_current(AUTH_DIR)}" redis-cli -h "$POD_IP" ping)" = PONG'


def cache_limits(spec: api.CacheSpec) -> Manifest:
    """Redis container resources: limit sized for the max cache, request for the initial one."""
    request = format_memory(int(memory_bytes(spec.memory.initial) * HEADROOM))
    limit = format_memory(int(memory_bytes(spec.memory.max) * HEADROOM))
    # CPU: Redis runs commands on one thread, so one core is its ceiling whatever the limit; the request
    # is what an idle cache needs (the scaler reads Redis CPU in cores, not against the request).
    return resources("50m", request, limit_cpu="1", limit_memory=limit)


def cache_config(child: names.ChildNames, namespace: str) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": object_meta(child.owner, namespace, child.cache_config, TIER),
        "data": {"redis.conf": REDIS_CONF},
    }


def _redis_pod_base() -> Manifest:
    return {"securityContext": pod_security_context(REDIS_UID, REDIS_GID), "terminationGracePeriodSeconds": 30}


def _auth_volume() -> Manifest:
    # In memory: the rendered password never reaches the node's disk.
    return {"name": "auth", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}}


def _auth_mount(read_only: bool = False) -> Manifest:
    return {"name": "auth", "mountPath": AUTH_DIR, **({"readOnly": True} if read_only else {})}


def _credentials_volume(child: names.ChildNames, key: str) -> Manifest:
    """This Redis' key of the credentials Secret only, as `password` (root-owned, group the redis group)."""
    return {"name": "credentials", "secret": {"secretName": child.db_credentials, "defaultMode": 0o440,
                                              "items": [{"key": key, "path": "password"}]}}


def _credentials_mount() -> Manifest:
    return {"name": "credentials", "mountPath": CREDENTIALS_DIR, "readOnly": True}


def _sidecar_resources() -> Manifest:
    return resources("5m", "16Mi", limit_cpu="50m", limit_memory="32Mi")


def _cache_sidecars(child: names.ChildNames, image: str, config_mount: Manifest) -> list[Manifest]:
    """The reloader (maxmemory and the password) and the exporter."""
    reloader: Manifest = {
        "name": "maxmemory-reloader",
        "image": image,
        "command": ["sh", "-c", reloader_script()],
        "resources": _sidecar_resources(),
        "securityContext": container_security_context(),
        # Not subPath: only a whole-directory ConfigMap or Secret mount sees updates.
        "volumeMounts": [config_mount, _credentials_mount(), _auth_mount()],
    }
    exporter: Manifest = {
        "name": "redis-exporter",
        "image": api.REDIS_EXPORTER_IMAGE,
        "env": [env_value("REDIS_ADDR", REDIS_ADDR),
                # The password of the container's start, until the first reload of the map below.
                env_secret("REDIS_PASSWORD", child.db_credentials, CACHE_KEY),
                env_value("REDIS_PASSWORD_FILE", f"{AUTH_DIR}/{EXPORTER_PASSWORDS}")],
        "ports": [{"name": "metrics", "containerPort": REDIS_EXPORTER_PORT, "protocol": "TCP"}],
        # The exporter reads its password map again at each /-/reload (and answers 500 while the reloader has
        # not written it yet): a liveness probe on it is how an edited password reaches the exporter within a
        # period, with no restart; a minute of failures (no map at all) restarts this container only.
        "livenessProbe": http_probe("/-/reload", "metrics", period=15, failures=4),
        "resources": resources("10m", "32Mi", limit_cpu="100m", limit_memory="64Mi"),
        "securityContext": container_security_context(),
        "volumeMounts": [_auth_mount(read_only=True)],
    }
    return [reloader, exporter]


def cache_deployment(child: names.ChildNames, namespace: str, spec: api.ScaledAppSpec) -> Manifest:
    cache = spec.cache
    config_mount = {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}
    redis: Manifest = {
        "name": "redis",
        "image": cache.image,
        "command": ["sh", "-c", cache_start_script()],
        "env": [env_value("INITIAL_MAXMEMORY", str(memory_bytes(cache.memory.initial))), pod_ip_env()],
        "ports": [{"name": "redis", "containerPort": REDIS_PORT, "protocol": "TCP"}],
        "resources": cache_limits(cache),
        "readinessProbe": exec_probe(_PING, period=5, failures=2),
        # Liveness by TCP: a Redis that is LOADING or busy answers errors to PING but is alive.
        "livenessProbe": tcp_probe("redis", period=10, failures=3),
        "securityContext": container_security_context(),
        "volumeMounts": [config_mount, {"name": "data", "mountPath": "/data"}, _auth_mount(), _credentials_mount()],
    }
    pod = pod_template(
        child.owner,
        TIER,
        {
            **_redis_pod_base(),
            "containers": [redis, *_cache_sidecars(child, cache.image, config_mount)],
            "volumes": [
                {"name": "config", "configMap": {"name": child.cache_config}},
                {"name": "data", "emptyDir": {"sizeLimit": "64Mi"}},
                _auth_volume(),
                _credentials_volume(child, CACHE_KEY),
            ],
        },
        annotations=scrape_annotations(REDIS_EXPORTER_PORT),
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_meta(child.owner, namespace, child.cache, TIER),
        "spec": {
            # One Redis: the tier widens in memory, not in replicas, so the reconciler owns this.
            "replicas": 1,
            "selector": selector(child.owner, TIER),
            "revisionHistoryLimit": 3,
            # Start the new Redis before stopping the old: the app keeps a (cold) cache throughout.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": pod,
        },
    }


def cache_service(child: names.ChildNames, namespace: str) -> Manifest:
    return service(child.owner, namespace, child.cache, TIER, [("redis", REDIS_PORT, "redis")])


def cache_pdb(child: names.ChildNames, namespace: str) -> Manifest:
    """One pod: a drain may evict it (common.disruption_budget says why); the app reads through meanwhile."""
    return disruption_budget(child.owner, namespace, child.cache, TIER)


QUEUE_MAXMEMORY = 96 * 1024 * 1024


QUEUE_STORAGE = "1Gi"  # the AOF of QUEUE_MAXMEMORY of jobs, rewritten now and then, with room to spare


def queue_statefulset(child: names.ChildNames, namespace: str, spec: api.ScaledAppSpec) -> Manifest:
    redis: Manifest = {
        "name": "redis",
        "image": spec.cache.image,
        # Our own command, not options for an image entrypoint to complete: the script writes the password
        # file and execs redis-server with these args ($0 is its name). The network settings the cache has in
        # redis.conf are explicit here rather than the build's defaults (protected mode).
        "command": ["sh", "-c", queue_start_script(), "redis-server"],
        "args": ["--bind", "0.0.0.0", "--protected-mode", "no", "--port", str(REDIS_PORT),
                 # noeviction: a full queue refuses new jobs (the app sees errors) instead of dropping old ones.
                 "--maxmemory", str(QUEUE_MAXMEMORY), "--maxmemory-policy", "noeviction",
                 # Durable: every write is on the volume before Redis answers it (an accepted order is never
                 # lost with the pod); no RDB snapshots beside the AOF.
                 "--appendonly", "yes", "--appendfsync", "always", "--save", "", "--dir", "/data"],
        "env": [pod_ip_env()],
        "ports": [{"name": "redis", "containerPort": REDIS_PORT, "protocol": "TCP"}],
        "resources": resources("25m", "128Mi", limit_cpu="500m"),
        "readinessProbe": exec_probe(_PING, period=5, failures=2),
        "livenessProbe": tcp_probe("redis", period=10, failures=3),
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "data", "mountPath": "/data"}, _auth_mount(), _credentials_mount()],
    }
    reloader: Manifest = {
        "name": "password-reloader",
        "image": spec.cache.image,
        "command": ["sh", "-c", password_reloader_script()],
        "resources": _sidecar_resources(),
        "securityContext": container_security_context(),
        "volumeMounts": [_credentials_mount(), _auth_mount()],
    }
    pod = pod_template(child.owner, QUEUE_TIER,
                       {**_redis_pod_base(), "containers": [redis, reloader],
                        "volumes": [_auth_volume(), _credentials_volume(child, QUEUE_KEY)]})
    claim: Manifest = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": QUEUE_STORAGE}}}
    if spec.database.storage_class_name:  # the cluster's choice of durable storage, as for Postgres
        claim["storageClassName"] = spec.database.storage_class_name
    return {
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": object_meta(child.owner, namespace, child.queue, QUEUE_TIER),
        "spec": {
            "replicas": 1,
            "serviceName": child.queue,
            "selector": selector(child.owner, QUEUE_TIER),
            "updateStrategy": {"type": "RollingUpdate"},
            # The jobs outlive a pod, not the ScaledApp.
            "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Retain"},
            "template": pod,
            "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": names.labels(child.owner, QUEUE_TIER)},
                                      "spec": claim}],
        },
    }


def queue_service(child: names.ChildNames, namespace: str) -> Manifest:
    return service(child.owner, namespace, child.queue, QUEUE_TIER, [("redis", REDIS_PORT, "redis")])


def queue_pdb(child: names.ChildNames, namespace: str) -> Manifest:
    """One pod: a drain may evict it (common.disruption_budget says why); accepted orders wait on its volume."""
    return disruption_budget(child.owner, namespace, child.queue, QUEUE_TIER)


def _children(build: Build) -> Children:
    """The queue's Redis always (the app enqueues even without workers); the cache's only when enabled."""
    child, namespace, spec = build.child, build.namespace, build.spec
    out = Children(policies=network.tier_policies(child, namespace, spec, QUEUE_TIER),
                   services=[queue_service(child, namespace)],
                   workloads=[queue_statefulset(child, namespace, spec), queue_pdb(child, namespace)])
    if spec.cache.enabled:
        out.configs.append(cache_config(child, namespace))
        out.policies += network.tier_policies(child, namespace, spec, TIER)
        out.services.append(cache_service(child, namespace))
        out.workloads += [cache_deployment(child, namespace, spec), cache_pdb(child, namespace)]
    return out


def _kinds(child: names.ChildNames) -> list[ChildKind]:
    return [
        ("v1", "ConfigMap", child.cache_config),
        *network.policy_kinds(child, QUEUE_TIER),
        *network.policy_kinds(child, TIER),
        *[("v1", "Service", n) for n in (child.queue, child.cache)],
        ("apps/v1", "StatefulSet", child.queue),
        # child.queue was a Deployment before the queue became durable: listed so an upgrade prunes it.
        *[("apps/v1", "Deployment", n) for n in (child.queue, child.cache)],
        *[("policy/v1", "PodDisruptionBudget", n) for n in (child.queue, child.cache)],
    ]


BUILDER = Builder(TIER, _children, _kinds)
