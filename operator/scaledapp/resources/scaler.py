"""Server-side-apply bodies for the fields the scaler owns (field manager `scaledapp-scaler`).

The reconciler's manifests never contain these fields, exactly as a Deployment's manifest leaves
`replicas` to an HPA; each body here holds only identity plus the owned fields, so applying it takes
ownership of those and nothing else:

* spec.replicas of the app Deployment, the workers Deployment and the replica StatefulSet;
* `resources` of the `postgres` container in the primary StatefulSet's template (the live pod is
  resized in place through the pods/resize subresource: see primary_pod_resize_patch): the size is
  the limits, the CPU request a fixed fraction of the CPU limit;
* the cache ConfigMap key `maxmemory` (bytes; see cache.py for how Redis picks it up live).

Apply these only to objects that exist (a partial body cannot create one).
"""

from __future__ import annotations

from typing import Literal

from scaledapp.resources import names
from scaledapp.resources.cache import MAXMEMORY_KEY
from scaledapp.resources.common import Manifest, cpu_request, memory_bytes
from scaledapp.resources.database import CONTAINER as PRIMARY_CONTAINER

WorkloadKind = Literal["Deployment", "StatefulSet"]


def _identity(api_version: str, kind: str, name: str, namespace: str) -> Manifest:
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": name, "namespace": namespace}}


def replicas_body(kind: WorkloadKind, name: str, namespace: str, replicas: int) -> Manifest:
    if replicas < 0:
        raise ValueError(f"replicas must be >= 0, got {replicas}")
    return {**_identity("apps/v1", kind, name, namespace), "spec": {"replicas": replicas}}


def _primary_resources(cpu: str, memory: str) -> Manifest:
    # The size is the limits. The CPU request is a fixed fraction of the limit (common.cpu_request), so the
    # pod is Burstable from its first start and every resize keeps it so (a resize cannot change the QoS
    # class), and a widened primary still fits a small node. Memory is reserved in full.
    return {"requests": {"cpu": cpu_request(cpu), "memory": memory}, "limits": {"cpu": cpu, "memory": memory}}


def primary_resources_body(child: names.ChildNames, namespace: str, cpu: str, memory: str) -> Manifest:
    """The primary's size in its StatefulSet template (OnDelete: takes effect at the next restart)."""
    return {
        **_identity("apps/v1", "StatefulSet", child.db_primary, namespace),
        "spec": {"template": {"spec": {"containers": [
            {"name": PRIMARY_CONTAINER, "resources": _primary_resources(cpu, memory)},
        ]}}},
    }


def primary_pod_resize_patch(cpu: str, memory: str) -> Manifest:
    """A strategic-merge patch for the live primary pod's `resize` subresource (pod `<db_primary>-0`)."""
    return {"spec": {"containers": [{"name": PRIMARY_CONTAINER, "resources": _primary_resources(cpu, memory)}]}}


def cache_memory_body(child: names.ChildNames, namespace: str, maxmemory: str | int) -> Manifest:
    """The cache size: a quantity ("128Mi") or bytes; stored as bytes, which redis-server accepts."""
    return {
        **_identity("v1", "ConfigMap", child.cache_config, namespace),
        "data": {MAXMEMORY_KEY: str(memory_bytes(maxmemory))},
    }
