"""Reconcile: build every child from the spec (pure), server-side apply it as `scaledapp-reconciler`.

The reconciler never writes the fields the scaler owns (replicas, the primary's resources, the cache's
maxmemory); it only asks the scaler to set their initial sizes once, when a child is new.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from typing import Any

import pydantic

from scaledapp import api, conditions, dbtls, resources, scaler
from scaledapp.kube import Kube, KubeError
from scaledapp.reasons import ConditionType, Reason
from scaledapp.resources import names, secrets
from scaledapp.resources.common import Manifest

WORKLOADS = ("Deployment", "StatefulSet")


def owner_reference(owner: Manifest) -> Manifest:
    meta = owner["metadata"]
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def adopt(manifest: Manifest, owner: Manifest) -> Manifest:
    """Owner reference on every child: garbage collection removes them with the ScaledApp."""
    manifest.setdefault("metadata", {})["ownerReferences"] = [owner_reference(owner)]
    return manifest


def invalid_spec_message(error: pydantic.ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"])
        parts.append(f"spec.{where}: {item['msg']}")
    return "; ".join(parts)


async def _report(
    kube: Kube, owner: Manifest, generation: int | None, *, ok: bool, reason: Reason, message: str
) -> None:
    current = (owner.get("status") or {}).get("conditions") or []
    stamp = conditions.Observed(generation)
    conds = conditions.set_condition(current, ConditionType.PROGRESSING, ok, reason, message, stamp)
    conds = conditions.set_condition(conds, ConditionType.DEGRADED, not ok, Reason.AS_EXPECTED if ok else reason,
                                     "" if ok else message, stamp)
    status: dict[str, Any] = {"conditions": [c for c in conds if c["type"] in conditions.RECONCILER_CONDITIONS]}
    observed = generation if ok else (owner.get("status") or {}).get("observedGeneration")
    if observed is not None:
        status["observedGeneration"] = observed
    meta = owner["metadata"]
    await kube.apply_status(meta["name"], meta["namespace"], status, names.RECONCILER_MANAGER)
    if not ok:
        await kube.post_event(owner, "Warning", reason, message)


async def reconcile(kube: Kube, owner: Manifest, logger: logging.Logger | logging.LoggerAdapter[Any]) -> None:
    meta = owner["metadata"]
    name, namespace, generation = meta["name"], meta["namespace"], meta.get("generation")
    try:
        spec = api.spec_of(owner)
    except pydantic.ValidationError as exc:  # the schema should have caught it; report, never crash
        message = invalid_spec_message(exc)
        logger.error("invalid spec: %s", message)
        await _report(kube, owner, generation, ok=False, reason=Reason.INVALID_SPEC, message=message)
        return
    child = names.ChildNames(name)
    try:
        await _ensure_credentials(kube, owner, child, namespace)
        await _ensure_tls(kube, owner, spec)
        await apply_children(kube, owner, spec)
    except KubeError as exc:
        logger.error("reconcile failed: %s", exc)
        await _report(kube, owner, generation, ok=False, reason=Reason.APPLY_FAILED, message=str(exc))
        raise
    message = f"applied every child of generation {generation}"
    logger.info(message)
    first_time = not (owner.get("status") or {}).get("observedGeneration")
    await _report(kube, owner, generation, ok=True, reason=Reason.APPLIED, message=message)
    if first_time:
        await kube.post_event(owner, "Normal", Reason.CREATED, "created every tier: " + ", ".join(_summary(spec))
                              + f"; credentials in Secret {child.db_credentials}, Postgres certificates in Secret "
                              f"{child.db_tls}")


def _summary(spec: api.ScaledAppSpec) -> list[str]:
    tiers = [f"app ({spec.app.replicas.min}-{spec.app.replicas.max} pods)"]
    if spec.cache.enabled:
        tiers.append(f"cache ({spec.cache.memory.initial})")
    tiers.append(f"db-write ({spec.database.resources.initial.cpu} CPU)")
    tiers.append(f"db-read ({spec.database.read_replicas.min}-{spec.database.read_replicas.max} replicas)")
    if spec.workers.enabled:
        tiers.append(f"workers ({spec.workers.replicas.min}-{spec.workers.replicas.max})")
    return tiers


# The credentials as last seen, per ScaledApp uid, in memory only (never logged, never in status): a deleted
# Secret is put back with the same values, so the database roles and every running pod stay in step with it.
# Read back at every reconcile and resync, so an edited Secret (a password changed by hand, which each Postgres
# pod's password-sync sidecar then sets in the database: resources/pg_sidecars.py) is what a later deletion
# restores. With no memory (an operator restarted after the deletion) new values are generated, and the pods'
# sidecars make the database agree once the kubelet brings them into their files.
_KNOWN_CREDENTIALS: dict[str, dict[str, str]] = {}


async def _ensure_credentials(kube: Kube, owner: Manifest, child: names.ChildNames, namespace: str) -> None:
    """Generated once, never overwritten, never logged: the Secret is created only when absent (a create that
    finds it there changes nothing), with the values it last had if this process has seen it, else new ones.
    Once seen, it is read first (one call at each resync, where a create that fails and a read made two).

    A Secret made before a key existed (the Redis passwords came after the database's) gets the missing keys,
    freshly generated, and nothing else: the keys it has are never rewritten, and the patch applies only to
    the version just read (kube.add_secret_keys)."""
    uid = str(owner["metadata"].get("uid") or "")
    known = _KNOWN_CREDENTIALS.get(uid)
    live = await kube.get("v1", "Secret", child.db_credentials, namespace) if known else None
    if live is None:
        passwords = secrets.DbPasswords.from_secret_data(known) if known else secrets.generate_passwords()
        secret = adopt(secrets.credentials_secret(child, namespace, passwords), owner)
        if await kube.create_once(secret):
            _KNOWN_CREDENTIALS[uid] = dict(secret["data"])
            if known:
                await kube.post_event(owner, "Warning", Reason.CREDENTIALS_RESTORED,
                                      f"Secret {child.db_credentials} was deleted: restored with the same values")
            elif not api.never_reconciled(owner):  # a new ScaledApp's Created Event names its Secrets (one call)
                await kube.post_event(owner, "Normal", Reason.CREDENTIALS_GENERATED,
                                      f"generated the database and Redis credentials in Secret {child.db_credentials}")
            return
        # There already: read it back by name (it may have been edited: the pods make the database agree with it).
        live = await kube.get("v1", "Secret", child.db_credentials, namespace)
        if live is None:  # deleted since the create found it: the next resync creates it
            return
    data = dict(live.get("data") or {})
    missing = [key for key in secrets.KEYS if key not in data]
    if missing:
        # The values this process last saw (a key removed by hand), else new ones (a key the Secret never had).
        values = known or secrets.credentials_secret(child, namespace, secrets.generate_passwords())["data"]
        added = {key: values[key] for key in missing}
        version = str(live["metadata"].get("resourceVersion") or "")
        if not await kube.add_secret_keys(child.db_credentials, namespace, added, version):
            return  # changed or gone meanwhile: the next reconcile or resync reads it again
        data.update(added)
        await kube.post_event(owner, "Normal", Reason.CREDENTIALS_GENERATED,
                              f"added {', '.join(missing)} to Secret {child.db_credentials} (its other keys"
                              " unchanged)")
    _KNOWN_CREDENTIALS[uid] = {key: data[key] for key in secrets.KEYS}


async def _ensure_tls(kube: Kube, owner: Manifest, spec: api.ScaledAppSpec) -> None:
    """The Postgres CA and the TLS Secret every Postgres pod mounts: issued before the pods that need them,
    renewed before they expire (dbtls.py; the certificates themselves: resources/tls.py)."""
    await dbtls.ensure(kube, owner, spec, lambda m: adopt(m, owner), names.RECONCILER_MANAGER)


async def apply_children(
    kube: Kube, owner: Manifest, spec: api.ScaledAppSpec, only: Collection[tuple[str, str]] | None = None
) -> list[Manifest]:
    """Server-side apply every child (or only those `only` names by (kind, name)); returns what the server
    answered.

    A new primary is held at 0 replicas until the scaler has given it its size: a pod created without
    resources could never be resized in place. The scaler's sizing apply gives it its one pod; should the
    scaler own it already (the watch had not shown it yet), the primary is applied again at 1 replica.
    """
    meta = owner["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    child = names.ChildNames(name)
    new = api.never_reconciled(owner)  # its children are not there yet: no read, nothing to prune
    # A new ScaledApp's primary is read from the watch cache only: there when a first reconcile that failed
    # half-way is retried (its primary, sized, must not be held at 0 again).
    primary = (kube.cache.get("StatefulSet", child.db_primary, namespace) if new
               else await kube.get("apps/v1", "StatefulSet", child.db_primary, namespace))
    hold = primary is None or not scaler.owned_by_scaler(primary)
    write_role_at = ((owner.get("status") or {}).get("database") or {}).get("primary")
    wanted = [m for m in resources.build_children(name, namespace, spec, hold_primary=hold, write_role_at=write_role_at)
              if only is None or (m["kind"], m["metadata"]["name"]) in only]
    # Two waves, each applied concurrently: what pods need (config, policies, services), then workloads.
    applied: list[Manifest] = []
    sized = scaler.sized_children(name, namespace, spec)  # their answers are read whole by set_initial_sizes
    for wave in ([m for m in wanted if m["kind"] not in WORKLOADS], [m for m in wanted if m["kind"] in WORKLOADS]):
        applied += [a if (a.get("kind"), a.get("metadata", {}).get("name")) in sized else brief(a)
                    for a in await asyncio.gather(
                        *(kube.apply(adopt(m, owner), names.RECONCILER_MANAGER) for m in wave))]
    released = await scaler.set_initial_sizes(kube, owner, spec, applied, release=child.db_primary if hold else None)
    applied = [brief(a) for a in applied]
    if hold and not released and any(
            m["metadata"]["name"] == child.db_primary and m["kind"] == "StatefulSet" for m in applied):
        unheld = [m for m in resources.build_children(name, namespace, spec, write_role_at=write_role_at)
                  if m["kind"] == "StatefulSet" and m["metadata"]["name"] == child.db_primary]
        applied.append(brief(await kube.apply(adopt(unheld[0], owner), names.RECONCILER_MANAGER)))
    if only is None and not new:
        await _prune(kube, owner, {(m["kind"], m["metadata"]["name"]) for m in applied})
    return applied


def brief(answer: Manifest) -> Manifest:
    """What a reconcile reads of an apply's answer: identity, versions, and which managers own fields. Whole
    answers (managedFields, templates, status) were held by every reconcile in flight until it ended: at 500 new
    ScaledApps reconciling at once, a large part of the operator's peak memory."""
    meta = answer.get("metadata") or {}
    return {"apiVersion": answer.get("apiVersion"), "kind": answer.get("kind"), "metadata": {
        **{k: meta[k] for k in ("name", "namespace", "uid", "generation", "resourceVersion") if k in meta},
        "managedFields": [{"manager": f.get("manager")} for f in meta.get("managedFields") or []]}}


async def _prune(kube: Kube, owner: Manifest, kept: set[tuple[str, str]]) -> None:
    """Delete children the spec no longer asks for (a tier switched off); only ones this ScaledApp owns."""
    meta = owner["metadata"]
    for api_version, kind, child_name in resources.all_child_kinds(meta["name"]):
        if kind == "Secret" or (kind, child_name) in kept:
            continue
        live = await kube.get(api_version, kind, child_name, meta["namespace"])
        refs = (live or {}).get("metadata", {}).get("ownerReferences") or []
        if any(r.get("uid") == meta["uid"] for r in refs) and await kube.delete(
                api_version, kind, child_name, meta["namespace"]):
            await kube.post_event(owner, "Normal", Reason.PRUNED, f"deleted {kind} {child_name}: no longer in the spec")


def put_back(before: Manifest | None, after: Manifest) -> bool:
    """Did the repair apply change the child? Objects with a generation (workloads) changed only if
    it grew: their resourceVersion also moves with every status update their controller writes
    between our read and our apply (replicas rolling out after a scaler step), which is not a repair.
    Objects without one (ConfigMaps, Services) changed if their resourceVersion did."""
    old, new = (before or {}).get("metadata", {}), after.get("metadata", {})
    if old.get("generation") is not None and new.get("generation") is not None:
        return bool(new["generation"] != old["generation"])
    return bool(new.get("resourceVersion") != old.get("resourceVersion"))


async def repair_child(
    kube: Kube,
    child: Manifest,
    owner_name: str,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    *,
    deleted: bool,
) -> None:
    """Re-apply the one child that drifted; an Event says so when something was really put back."""
    namespace = child["metadata"]["namespace"]
    owner = await kube.get(api.API_VERSION, api.KIND, owner_name, namespace)
    if owner is None or owner["metadata"].get("deletionTimestamp"):
        return  # the ScaledApp is going away: garbage collection, not drift
    # While a reconcile of this generation is under way its own applies show up here too: repair anyway
    # (an apply is idempotent), but only a settled ScaledApp gets a "Repaired" Event.
    settled = (owner.get("status") or {}).get("observedGeneration") == owner["metadata"].get("generation")
    try:
        spec = api.spec_of(owner)
    except pydantic.ValidationError:
        return  # reported by reconcile
    kind, child_name = child["kind"], child["metadata"]["name"]
    child_names = names.ChildNames(owner_name)
    if kind == "Secret" and child_name == child_names.db_credentials:
        await _ensure_credentials(kube, owner, child_names, namespace)
        return
    # Compare with a fresh read, not the (older) event body.
    live = None if deleted else await kube.get(child["apiVersion"], kind, child_name, namespace)
    applied = await apply_children(kube, owner, spec, only={(kind, child_name)})
    if not applied:
        return
    if settled and (deleted or put_back(live, applied[-1])):
        verb = "recreated" if deleted else "reverted a change to"
        logger.info("drift: %s %s/%s", verb, kind, child_name)
        await kube.post_event(owner, "Normal", Reason.REPAIRED, f"{verb} {kind} {child_name}")


async def resync(
    kube: Kube,
    owner: Manifest,
    present: Callable[[str, str, str], bool],
    logger: logging.Logger | logging.LoggerAdapter[Any],
    *,
    full: bool = False,
) -> list[str]:
    """The periodic safety net behind the drift handlers: put back any child the watches have not seen
    (`present(kind, namespace, name)`) and the credentials Secret if it was deleted; with `full`, reconcile
    everything (after a repair gave up). At steady state this costs one create-if-absent of the Secret."""
    if api.never_reconciled(owner):
        return []  # its first reconcile (kopf's handler, retried by kopf) is still on the way: it makes them all
    if full:
        await reconcile(kube, owner, logger)
        return ["*"]
    meta = owner["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    try:
        spec = api.spec_of(owner)
    except pydantic.ValidationError:
        return []
    await _ensure_credentials(kube, owner, names.ChildNames(name), namespace)
    await _ensure_tls(kube, owner, spec)
    missing = [(m["kind"], m["metadata"]["name"]) for m in resources.build_children(name, namespace, spec)
               if not present(m["kind"], namespace, m["metadata"]["name"])]
    if missing:
        await apply_children(kube, owner, spec, only=set(missing))  # one build of the children for all of them
    for kind, child_name in missing:
        logger.info("resync: recreated %s/%s", kind, child_name)
        await kube.post_event(owner, "Normal", Reason.REPAIRED, f"resync recreated {kind} {child_name}")
    return [f"{k}/{n}" for k, n in missing]
