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
from scaledapp.resources import app, cache, database, workers
from scaledapp.resources.base import Build, Builder, ChildKind, Children
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
    "BUILDERS",
    "Build",
    "Builder",
    "ChildKind",
    "ChildNames",
    "Children",
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

# The registry: every builder module's BUILDER. A new tier's builder module is one entry here; within each
# apply phase, children come in this order (the database first: everything else connects to it).
BUILDERS: tuple[Builder, ...] = (database.BUILDER, cache.BUILDER, app.BUILDER, workers.BUILDER)


def build_children(
    name: str,
    namespace: str,
    spec: api.ScaledAppSpec,
    *,
    passwords: DbPasswords | None = None,
    hold_primary: bool = False,
    write_role_at: str | None = None,
) -> list[Manifest]:
    """Every reconciler-owned child, in apply order: the Secret, then every builder's ConfigMaps,
    NetworkPolicies (pods are fenced from their first moment), Services, then workloads and their budgets.

    passwords: include the credentials Secret (only when it does not exist yet; never overwrite).
    hold_primary: primary StatefulSet at 0 replicas, for the first apply (see the module docstring).
    write_role_at: the Postgres pod holding the write role (status.database.primary; None: the home primary).
    Disabled tiers (cache, workers) are absent: the shell deletes children it no longer gets here.
    """
    build = Build(ChildNames(name), namespace, spec, hold_primary, write_role_at)
    secret = [] if passwords is None else [credentials_secret(build.child, namespace, passwords)]
    return [*secret, *Children.joined(b.children(build) for b in BUILDERS).in_order()]


def all_child_kinds(name: str) -> list[ChildKind]:
    """(apiVersion, kind, name) of every child any spec can produce: what the shell prunes against."""
    child = ChildNames(name)
    return [("v1", "Secret", child.db_credentials), *(k for b in BUILDERS for k in b.kinds(child))]
