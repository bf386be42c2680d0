"""The tick's act phase: apply the decided sizes, as field manager `scaledapp-scaler`, to each resized
tier's workload (the body and any in-place resize are the tier's: `TierModel.size_body`, `live_resize`);
and, once after the first reconcile, each tier's starting size."""

from __future__ import annotations

import asyncio

from scaledapp import tiers
from scaledapp.api import ScaledAppSpec
from scaledapp.decide import Decision
from scaledapp.kube import Kube, KubeError
from scaledapp.observe import Shell
from scaledapp.reasons import Reason
from scaledapp.resources import names
from scaledapp.resources.common import Manifest
from scaledapp.sizes import Sizes


async def act(shell: Shell, sizes: Sizes, decision: Decision) -> None:
    """Apply the decided sizes (nothing when they did not change); a resize that must wait for a restart
    is reported."""
    try:
        done = await apply_sizes(shell.kube, shell.name, shell.namespace, sizes, decision.desired)
    except KubeError as exc:
        shell.logger.error("could not apply %s: %s", decision.step, exc)
        raise
    for note in (d for d in done if "unavailable" in d):
        shell.logger.warning(note)
        await shell.kube.post_event({"metadata": shell.meta}, "Warning", Reason.RESIZE_AT_RESTART, note)


async def apply_sizes(kube: Kube, name: str, namespace: str, before: Sizes, after: Sizes) -> list[str]:
    """Patch only the workloads whose size changed; returns what was done, for the log."""
    done = []
    for change in tiers.size_changes(names.ChildNames(name), namespace, before, after):
        await kube.apply(change.body, names.SCALER_MANAGER)
        if change.resize is not None:
            pod, patch = change.resize
            if not await kube.resize_pod(pod, namespace, patch):
                done.append(f"{change.tier}: in-place resize unavailable; the new size applies at the next restart")
        done.append(change.tier)
    return done


def sized_children(name: str, namespace: str, spec: ScaledAppSpec) -> frozenset[tuple[str, str]]:
    """(kind, name) of the children that carry a scaler-owned size."""
    return frozenset((b["kind"], b["metadata"]["name"]) for b in tiers.initial_scaler_bodies(name, namespace, spec))


def has_sizes(live: Manifest, body: Manifest) -> bool:
    """The live object already has every value of the size body: a Deployment or StatefulSet created without
    replicas has the API's default of 1, the starting size of a tier whose minimum is 1. The scaler then need
    not apply it (a call per such tier and new ScaledApp) and owns the field from its first step on."""
    return _contains(live.get("spec"), body.get("spec")) and _contains(live.get("data"), body.get("data"))


def _contains(live: object, want: object) -> bool:
    if want is None:
        return True
    if isinstance(want, dict):
        return isinstance(live, dict) and all(_contains(live.get(k), v) for k, v in want.items())
    if isinstance(want, list):  # lists of named items (containers): matched by name
        by_name = {i.get("name"): i for i in live if isinstance(i, dict)} if isinstance(live, list) else {}
        return all(isinstance(w, dict) and _contains(by_name.get(w.get("name")), w) for w in want)
    return bool(live == want)


def owned_by_scaler(live: Manifest) -> bool:
    return any(f.get("manager") == names.SCALER_MANAGER for f in live["metadata"].get("managedFields") or [])


async def set_initial_sizes(
    kube: Kube, owner: Manifest, spec: ScaledAppSpec, applied: list[Manifest], release: str | None = None
) -> bool:
    """Give each scaler-owned field of the children just `applied` (the server's answers, with their
    managedFields) its starting size, once: later the scaler's own decisions stand.

    `release`: the StatefulSet held at 0 replicas until it is sized (the primary, resources/__init__.py): its
    sizing apply also gives it its one pod, instead of the reconciler applying it again (a call per new
    ScaledApp). Returns whether it did."""
    meta = owner["metadata"]
    answers = {(m["kind"], m["metadata"]["name"]): m for m in applied}
    new = [body for body in tiers.initial_scaler_bodies(meta["name"], meta["namespace"], spec)
           if (live := answers.get((body["kind"], body["metadata"]["name"]))) is not None
           and not owned_by_scaler(live) and not has_sizes(live, body)]
    released = False
    for body in new:
        if body["kind"] == "StatefulSet" and body["metadata"]["name"] == release:
            body["spec"]["replicas"] = 1
            released = True
    await asyncio.gather(*(kube.apply(body, names.SCALER_MANAGER) for body in new))  # one round trip, not five
    return released
