"""Pieces every builder shares: metadata, security contexts, probes, scrape annotations, quantities.

Everything here is pure: plain dicts in, plain dicts out. Owner references are not set here: the
shell adds them (kopf.adopt) so builders stay independent of the live object.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from scaledapp.quantity import format_cpu, parse_bytes, parse_cpu_millicores
from scaledapp.resources import names

Manifest = dict[str, Any]

# Numeric UIDs: the `restricted` Pod Security profile needs runAsNonRoot, and the kubelet can only
# verify "non-root" for a numeric user. 999 is the `postgres` user of the official (Debian) postgres
# image and of the Debian-built one, with a passwd entry (initdb needs one), and the `redis` user of the
# Alpine redis image. No image entrypoint is relied on: the manifests name their commands.
APP_UID = 10001
POSTGRES_UID = 999
POSTGRES_GID = 999
REDIS_UID = 999
REDIS_GID = 1000  # the alpine image's `redis` group

POSTGRES_PORT = 5432
REDIS_PORT = 6379
POSTGRES_EXPORTER_PORT = 9187
REDIS_EXPORTER_PORT = 9121
WORKER_METRICS_PORT = 9100  # the worker serves only /metrics, on this port

MI = 1024 * 1024

# Containers whose CPU limit is a budget the scaler reads (app and worker utilisation is usage over the
# LIMIT; the Postgres tiers are widened in limit or in number) reserve only this fraction of it: a small
# node can schedule every tier, and a pod bursts up to its limit when the node has the CPU (Burstable).
CPU_REQUEST_DIVISOR = 5


def memory_bytes(quantity: str | int) -> int:
    """A memory quantity in bytes ('64Mi' -> 67108864); ints are bytes already (one parser: quantity.py)."""
    return quantity if isinstance(quantity, int) else parse_bytes(quantity)


def format_memory(n_bytes: int) -> str:
    """Bytes as a readable quantity: whole Mi when exact (what people write), plain bytes otherwise."""
    return f"{n_bytes // MI}Mi" if n_bytes % MI == 0 else str(n_bytes)


def object_meta(
    owner: str,
    namespace: str,
    name: str,
    tier: str,
    component: str | None = None,
    annotations: Mapping[str, str] | None = None,
) -> Manifest:
    meta: Manifest = {"name": name, "namespace": namespace, "labels": names.labels(owner, tier, component)}
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def scrape_annotations(port: int, path: str = "/metrics") -> dict[str, str]:
    """The prometheus.io/* pod annotations the Prometheus `kubernetes-pods` job keeps and relabels."""
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(port), "prometheus.io/path": path}


def pod_security_context(uid: int, gid: int | None = None) -> Manifest:
    gid = uid if gid is None else gid
    return {
        "runAsNonRoot": True,
        "runAsUser": uid,
        "runAsGroup": gid,
        # fsGroup makes fresh volumes writable by the user; OnRootMismatch skips the recursive chown
        # of a big data volume on every restart.
        "fsGroup": gid,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context(read_only_root: bool = True) -> Manifest:
    """What `restricted` demands of every container, plus a read-only root where the image allows."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": read_only_root,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def cpu_request(limit: str) -> str:
    """The CPU request for a CPU limit: a CPU_REQUEST_DIVISOR-th of it, in whole millicores (at least 1m)."""
    millicores = parse_cpu_millicores(limit)
    return format_cpu(max(1, -(-millicores // CPU_REQUEST_DIVISOR)))


def resources(cpu: str, memory: str, limit_cpu: str | None = None, limit_memory: str | None = None) -> Manifest:
    """Requests, and limits (equal to the requests unless given)."""
    return {
        "requests": {"cpu": cpu, "memory": memory},
        "limits": {"cpu": limit_cpu or cpu, "memory": limit_memory or memory},
    }


def http_probe(
    path: str, port: int | str, period: int, failures: int, timeout: int = 2, initial_delay: int = 0
) -> Manifest:
    probe: Manifest = {
        "httpGet": {"path": path, "port": port},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": timeout,
    }
    if initial_delay:
        probe["initialDelaySeconds"] = initial_delay
    return probe


def exec_probe(script: str, period: int, failures: int, timeout: int = 3) -> Manifest:
    """A shell-script probe: images here have /bin/sh, and a script can test output, not just exit codes."""
    return {
        "exec": {"command": ["sh", "-c", script]},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": timeout,
    }


def tcp_probe(port: int | str, period: int, failures: int, timeout: int = 2) -> Manifest:
    return {
        "tcpSocket": {"port": port},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": timeout,
    }


def env_value(name: str, value: str) -> Manifest:
    return {"name": name, "value": value}


def env_secret(name: str, secret: str, key: str) -> Manifest:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def env_field(name: str, field_path: str) -> Manifest:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": field_path}}}


def pod_ip_env() -> Manifest:
    """POD_IP (downward API): probes connect through it, the way clients in other pods do, so a server
    that only loopback can reach (a localhost bind, Redis protected mode) is never Ready."""
    return env_field("POD_IP", "status.podIP")


def env_resource(name: str, container: str, resource: str, divisor: str) -> Manifest:
    return {
        "name": name,
        "valueFrom": {"resourceFieldRef": {"containerName": container, "resource": resource, "divisor": divisor}},
    }


def merge_env(ours: Sequence[Manifest], theirs: Sequence[Manifest]) -> list[Manifest]:
    """Our variables, each replaced in place by a user variable of the same name, then the user's others.

    In place, because `$(VAR)` references only see variables defined earlier; and without duplicates,
    because server-side apply merges env by name and rejects a list with a name twice.
    """
    by_name = {e["name"]: e for e in theirs}
    out = [by_name.pop(e["name"], e) for e in ours]
    return out + [e for e in theirs if e["name"] in by_name]


def pod_template(
    owner: str,
    tier: str,
    spec: Manifest,
    annotations: Mapping[str, str] | None = None,
    component: str | None = None,
) -> Manifest:
    """A pod template carrying the instance and tier labels Prometheus relabels into series labels."""
    meta: Manifest = {"labels": names.labels(owner, tier, component)}
    if annotations:
        meta["annotations"] = dict(annotations)
    # Nothing in these pods talks to the Kubernetes API: no token in them.
    return {"metadata": meta, "spec": {"automountServiceAccountToken": False, "enableServiceLinks": False, **spec}}


def selector(owner: str, tier: str) -> Manifest:
    return {"matchLabels": names.selector_labels(owner, tier)}


def disruption_budget(owner: str, namespace: str, name: str, tier: str) -> Manifest:
    """A PodDisruptionBudget over one tier's pods: voluntary evictions (drains) take one pod at a time.

    maxUnavailable 1, never minAvailable, and the same for a tier of one pod (cache, queue): a budget
    that a single pod can never satisfy (minAvailable 1, maxUnavailable 0) refuses every eviction, so
    every `kubectl drain` and node upgrade would hang on it for good (or until a managed cluster's
    drain timeout forces the eviction anyway). A single-instance tier survives a drain by how it
    restarts instead: the cache comes back empty while the app reads through; the queue's orders are
    on its volume, and orders are refused (503) for the restart. For those two the budget only writes
    the choice down (one pod, one allowed disruption); for the app and workers it holds drains to one
    pod at a time. Unhealthy pods may always be evicted: a pod that is not Ready serves nothing, and
    keeping it would block the drain for no one."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": object_meta(owner, namespace, name, tier),
        "spec": {
            "maxUnavailable": 1,
            "selector": selector(owner, tier),
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def service(
    owner: str,
    namespace: str,
    name: str,
    tier: str,
    ports: Sequence[tuple[str, int, int | str]],
    headless: bool = False,
) -> Manifest:
    """A Service over one tier's pods; ports are (name, port, targetPort)."""
    spec: Manifest = {
        "selector": names.selector_labels(owner, tier),
        "ports": [{"name": n, "port": p, "targetPort": t, "protocol": "TCP"} for n, p, t in ports],
    }
    if headless:
        # Headless: stable per-pod DNS for StatefulSet pods, published before they are ready so a
        # replica's bootstrap can resolve its peers while they start.
        spec.update({"clusterIP": "None", "publishNotReadyAddresses": True})
    else:
        spec["type"] = "ClusterIP"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(owner, namespace, name, tier),
        "spec": spec,
    }


# A sidecar's shell loop ends at once on SIGTERM. Its sh is the container's PID 1 and acted on the signal only once
# the foreground `sleep` ended, so a pod being deleted waited up to a period for each such loop: the primary's
# replacement came seconds later (bench.failover, pod deleted: writes down 6.8 s -> 11.6 s median with 5 s loops).
SIDECAR_TRAP = "trap 'exit 0' TERM INT\n"


def pause(seconds: float) -> str:
    """Shell: wait `seconds`, interruptibly (a trapped signal ends `wait` at once, not `sleep`)."""
    return f"sleep {seconds:g} & wait $!"


def sidecar_loop(prelude: str, body: str, period: float) -> str:
    """Shell: `prelude` once, then `body` (indented lines, each ending in a newline) every `period` seconds until
    the container is told to stop (SIDECAR_TRAP)."""
    return f"{prelude}\n{SIDECAR_TRAP}while true; do\n{body}  {pause(period)}\ndone\n"
