"""PURE builders: a ScaledApp spec in, the manifests of its children out (plain dicts, no I/O).

The shell server-side-applies `build_children(...)` with field manager `scaledapp-reconciler` and adds
owner references; the scaler applies the bodies of `scaler.py` with `scaledapp-scaler`.

First reconcile of a new ScaledApp (so the primary's first pod already has its resources, and its QoS
class, which an in-place resize cannot change):

1. create the Secret: `build_children(..., passwords=generate_passwords(), hold_primary=True)`;
2. apply `scaledapp.tiers.initial_scaler_bodies(...)` as `scaledapp-scaler` (each tier's starting size);
3. from then on: `build_children(...)` without passwords (the Secret is never re-applied).
"""

from __future__ import annotations

from scaledapp import api
from scaledapp.resources import app, cache, database, network, workers
from scaledapp.resources.common import Manifest
from scaledapp.resources.names import ChildNames
from scaledapp.resources.scaler import (
    cache_memory_body,
    primary_pod_resize_patch,
    primary_resources_body,
    replicas_body,
)
from scaledapp.resources.secrets import DbPasswords, credentials_secret, generate_passwords

__all__ = [
    "ChildNames",
    "DbPasswords",
    "Manifest",
    "all_child_kinds",
    "build_children",
    "cache_memory_body",
    "generate_passwords",
    "primary_pod_resize_patch",
    "primary_resources_body",
    "replicas_body",
]


def build_children(
    name: str,
    namespace: str,
    spec: api.ScaledAppSpec,
    *,
    passwords: DbPasswords | None = None,
    hold_primary: bool = False,
    write_role_at: str | None = None,
) -> list[Manifest]:
    """Every reconciler-owned child, in apply order: Secret and ConfigMaps, NetworkPolicies (pods are
    fenced from their first moment), Services, then workloads from the database up to the app.

    passwords: include the credentials Secret (only when it does not exist yet; never overwrite).
    hold_primary: primary StatefulSet at 0 replicas, for the first apply (see the module docstring).
    write_role_at: the Postgres pod holding the write role (status.database.primary; None: the home primary).
    Disabled tiers (cache, workers) are absent: the shell deletes children it no longer gets here.
    """
    child = ChildNames(name)
    out: list[Manifest] = []
    if passwords is not None:
        out.append(credentials_secret(child, namespace, passwords))
    out.append(database.scripts_configmap(child, namespace))
    out.append(database.topology_configmap(child, namespace))
    if spec.cache.enabled:
        out.append(cache.cache_config(child, namespace))
    out += network.network_policies(child, namespace, spec)
    out += database.database_services(child, namespace)
    out.append(cache.queue_service(child, namespace))
    if spec.cache.enabled:
        out.append(cache.cache_service(child, namespace))
    out.append(app.app_service(child, namespace, spec))
    out.append(database.primary_statefulset(child, namespace, spec, replicas=0 if hold_primary else 1,
                                            write_role_at=write_role_at))
    out.append(database.replica_statefulset(child, namespace, spec))
    out.append(cache.queue_statefulset(child, namespace, spec))
    out.append(cache.queue_pdb(child, namespace))
    if spec.cache.enabled:
        out.append(cache.cache_deployment(child, namespace, spec))
        out.append(cache.cache_pdb(child, namespace))
    out.append(app.app_deployment(child, namespace, spec))
    out.append(app.app_pdb(child, namespace))
    out += database.database_budgets(child, namespace)
    if spec.workers.enabled:
        out.append(workers.workers_deployment(child, namespace, spec))
        out.append(workers.workers_pdb(child, namespace))
    return out


def all_child_kinds(name: str) -> list[tuple[str, str, str]]:
    """(apiVersion, kind, name) of every child any spec can produce: what the shell prunes against."""
    child = ChildNames(name)
    return [
        ("v1", "Secret", child.db_credentials),
        ("v1", "ConfigMap", child.db_scripts),
        ("v1", "ConfigMap", child.db_topology),
        ("v1", "ConfigMap", child.cache_config),
        *[("networking.k8s.io/v1", "NetworkPolicy", policy(t))
          for t in ("app", "workers", "db-write", "db-read", "queue", "cache")
          for policy in (child.ingress_policy, child.egress_policy)],
        *[("v1", "Service", n) for n in (child.db_primary, child.db_write, child.db_replicas, child.db_read,
                                          child.queue, child.cache, child.app)],
        ("apps/v1", "StatefulSet", child.db_primary),
        ("apps/v1", "StatefulSet", child.db_replicas),
        ("apps/v1", "StatefulSet", child.queue),
        # child.queue was a Deployment before the queue became durable: listed so an upgrade prunes it.
        *[("apps/v1", "Deployment", n) for n in (child.queue, child.cache, child.app, child.workers)],
        *[("policy/v1", "PodDisruptionBudget", n)
          for n in (child.app, child.cache, child.queue, child.workers, child.db_primary_budget,
                    child.db_replica_budget)],
    ]
