"""One scaler tick: observe (workloads + one Prometheus snapshot), judge and decide (pure), act, explain.

The scaler writes only its own fields, as field manager `scaledapp-scaler`: replicas of the
horizontal tiers, the cache's maxmemory, the primary's resources. Everything it must remember lives
in status, so a restarted operator resumes cooldowns and windows where they were.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any, cast

import pydantic

from scaledapp import api, conditions, prometheus, tiers
from scaledapp.decide import Decision, decide, status_fields
from scaledapp.kube import Kube, KubeError, without_nulls
from scaledapp.policy import Sizes, Snapshot, Step, TierName, changed_tiers
from scaledapp.resources import names
from scaledapp.resources.cache import MAXMEMORY_KEY
from scaledapp.resources.database import CONTAINER as PRIMARY_CONTAINER
from scaledapp.resources.scaler import (
    cache_memory_body,
    initial_scaler_bodies,
    primary_pod_resize_patch,
    primary_resources_body,
    replicas_body,
)
from scaledapp.tiers.base import RATE_WINDOW, Scope

Manifest = dict[str, Any]
Logger = logging.Logger | logging.LoggerAdapter[Any]
RETRY_SECONDS = 30  # when the spec cannot be read at all


@dataclass(frozen=True)
class Workloads:
    app: Manifest | None
    workers: Manifest | None
    db_read: Manifest | None
    db_write: Manifest | None
    cache_config: Manifest | None

    @property
    def complete(self) -> bool:
        return self.app is not None and self.db_read is not None and self.db_write is not None


async def read_workloads(kube: Kube, name: str, namespace: str) -> Workloads:
    """The five scaler-owned workloads, from the watch cache (a GET only for one not seen yet)."""
    child = names.ChildNames(name)
    return Workloads(
        app=await kube.get_cached("apps/v1", "Deployment", child.app, namespace),
        workers=await kube.get_cached("apps/v1", "Deployment", child.workers, namespace),
        db_read=await kube.get_cached("apps/v1", "StatefulSet", child.db_replicas, namespace),
        db_write=await kube.get_cached("apps/v1", "StatefulSet", child.db_primary, namespace),
        cache_config=await kube.get_cached("v1", "ConfigMap", child.cache_config, namespace),
    )


def _replicas(workload: Manifest | None, default: int) -> int:
    value = ((workload or {}).get("spec") or {}).get("replicas")
    return int(value) if value is not None else default


def _primary_resources(workload: Manifest | None, spec: api.ScaledAppSpec) -> tuple[str, str]:
    containers = ((((workload or {}).get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers")
    for container in containers or []:
        if container.get("name") == PRIMARY_CONTAINER:
            limits = (container.get("resources") or {}).get("limits") or {}
            return (str(limits.get("cpu", spec.database.resources.initial.cpu)),
                    str(limits.get("memory", spec.database.resources.initial.memory)))
    return spec.database.resources.initial.cpu, spec.database.resources.initial.memory


def sizes_of(workloads: Workloads, spec: api.ScaledAppSpec) -> Sizes:
    """What the scaler-owned fields say now (the spec's starting points where a field is not set yet)."""
    cpu, memory = _primary_resources(workloads.db_write, spec)
    maxmemory = ((workloads.cache_config or {}).get("data") or {}).get(MAXMEMORY_KEY) or spec.cache.memory.initial
    return Sizes.from_quantities(
        app_replicas=_replicas(workloads.app, spec.app.replicas.min),
        db_read_replicas=_replicas(workloads.db_read, spec.database.read_replicas.min),
        workers_replicas=_replicas(workloads.workers, spec.workers.replicas.min),
        cache_memory=str(maxmemory),
        db_write_cpu=cpu,
        db_write_memory=memory,
    )


def tiers_status(workloads: Workloads, sizes: Sizes) -> api.TiersStatus:
    return api.TiersStatus(
        app=conditions.workload_counts(workloads.app),
        cache=api.TierStatus(desired=1, ready=1 if workloads.cache_config else 0, size=sizes.cache_memory),
        db_read=conditions.workload_counts(workloads.db_read),
        db_write=conditions.workload_counts(workloads.db_write).model_copy(
            update={"size": f"{sizes.db_write_cpu} CPU, {sizes.db_write_memory}"}),
        workers=conditions.workload_counts(workloads.workers),
    )


def settling_tiers(status: api.TiersStatus) -> set[TierName]:
    """Tiers still rolling out their last change: a step is judged only once it has taken effect."""
    out: set[TierName] = set()
    for tier_name, counts in (("app", status.app), ("db-read", status.db_read), ("workers", status.workers),
                              ("db-write", status.db_write)):
        if counts.ready < counts.desired:
            out.add(tier_name)  # type: ignore[arg-type]
    return out


def owned_by_scaler(live: Manifest) -> bool:
    return any(f.get("manager") == names.SCALER_MANAGER for f in live["metadata"].get("managedFields") or [])


async def set_initial_sizes(kube: Kube, owner: Manifest, spec: api.ScaledAppSpec, applied: list[Manifest]) -> None:
    """Give each scaler-owned field of the children just `applied` (the server's answers, with their
    managedFields) its starting size, once: later the scaler's own decisions stand."""
    meta = owner["metadata"]
    answers = {(m["kind"], m["metadata"]["name"]): m for m in applied}
    for body in initial_scaler_bodies(meta["name"], meta["namespace"], spec):
        live = answers.get((body["kind"], body["metadata"]["name"]))
        if live is not None and not owned_by_scaler(live):
            await kube.apply(body, names.SCALER_MANAGER)


def size_body(tier_name: TierName, child: names.ChildNames, namespace: str, size: Sizes) -> Manifest:
    """The server-side-apply body that gives one tier its new size (scaler-owned fields only)."""
    if tier_name == "app":
        return replicas_body("Deployment", child.app, namespace, size.app_replicas)
    if tier_name == "workers":
        return replicas_body("Deployment", child.workers, namespace, size.workers_replicas)
    if tier_name == "db-read":
        return replicas_body("StatefulSet", child.db_replicas, namespace, size.db_read_replicas)
    if tier_name == "cache":
        return cache_memory_body(child, namespace, size.cache_memory_bytes)
    return primary_resources_body(child, namespace, size.db_write_cpu, size.db_write_memory)


async def apply_sizes(kube: Kube, name: str, namespace: str, before: Sizes, after: Sizes) -> list[str]:
    """Patch only the workloads whose size changed; returns what was done, for the log."""
    child = names.ChildNames(name)
    done = []
    for tier_name in changed_tiers(before, after):
        await kube.apply(size_body(tier_name, child, namespace, after), names.SCALER_MANAGER)
        if tier_name == "db-write":
            # The template keeps the size for a restart (OnDelete); the live pod is resized in place.
            patch = primary_pod_resize_patch(after.db_write_cpu, after.db_write_memory)
            if not await kube.resize_pod(f"{child.db_primary}-0", namespace, patch):
                done.append("db-write: in-place resize unavailable; the new size applies at the next restart")
        done.append(tier_name)
    return done


def _status_model(raw: Manifest | None) -> api.ScaledAppStatus:
    try:
        return api.ScaledAppStatus.model_validate(raw or {})
    except pydantic.ValidationError:
        return api.ScaledAppStatus()  # a hand-edited status must not stop the scaler


async def observe(
    spec: api.ScaledAppSpec, name: str, namespace: str, now: dt.datetime, window: str = RATE_WINDOW
) -> tuple[Snapshot | None, str]:
    """One Prometheus snapshot of every enabled tier's signals; None (and why) when Prometheus is unreachable.
    `window` is the rate window: tests and the twin scrape every second and use a shorter one."""
    queries = tiers.queries(spec, Scope(namespace, name), window)
    flat = {f"{tier_name}|{signal}": promql
            for tier_name, signals in queries.items() for signal, promql in signals.items()}
    refused = prometheus.refusal(spec.scaling.prometheus_url)
    if refused:
        return None, refused
    client = prometheus.client_for(spec.scaling.prometheus_url, spec.scaling.query_timeout_seconds)
    result = await client.snapshot(flat)
    if result.unreachable:
        return None, next(iter(result.errors.values()), "no answer")
    signals: dict[TierName, dict[str, float | None]] = {t: {} for t in queries}
    for key, value in result.values.items():
        tier_name, signal = key.split("|", 1)
        signals[cast(TierName, tier_name)][signal] = value
    return Snapshot(time=now, signals=signals), ""


async def tick(kube: Kube, body: Manifest, logger: Logger) -> float:
    """Observe, judge, decide, act, explain. Returns the seconds until the next tick."""
    meta = body["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    try:
        spec = api.parse_spec(body.get("spec"))
    except pydantic.ValidationError:
        return RETRY_SECONDS  # the reconciler reports invalid specs
    now = dt.datetime.now(dt.UTC)
    status = _status_model(body.get("status"))
    workloads = await read_workloads(kube, name, namespace)
    sizes = sizes_of(workloads, spec)
    tier_counts = tiers_status(workloads, sizes)
    ready, ready_message = conditions.readiness(tier_counts, {"workers": spec.workers.enabled,
                                                              "cache": spec.cache.enabled})
    conds = [c.model_dump(by_alias=True, exclude_none=True) for c in status.conditions]
    conds = conditions.set_condition(conds, "Ready", ready, "AllTiersReady" if ready else "TiersNotReady",
                                     ready_message, meta.get("generation"), now)
    patch: Manifest = {"app": f"{tier_counts.app.ready}/{tier_counts.app.desired}",
                       "tiers": tier_counts.model_dump(by_alias=True, exclude_none=True)}
    if workloads.complete:
        decision = await _decide_and_act(kube, spec, name, namespace, meta, status, sizes, tier_counts, now, logger)
        patch.update(status_fields(decision, status.history, status.last_action))
        for cond in decision.conditions:
            conds = conditions.set_condition(conds, cond.type, _bool(cond.status), cond.reason, cond.message,
                                             meta.get("generation"), now)
        refused = prometheus.refusal(spec.scaling.prometheus_url)
        if refused and spec.scaling.mode != api.ScalingMode.OFF:
            conds = conditions.set_condition(conds, "MetricsAvailable", False, "PrometheusUrlNotAllowed", refused,
                                             meta.get("generation"), now)
        await _explain(kube, body, status, decision, logger)
    patch["conditions"] = [c for c in conds if c["type"] in conditions.SCALER_CONDITIONS]
    current = dict(body.get("status") or {})
    current["conditions"] = [c for c in current.get("conditions") or []
                             if c.get("type") in conditions.SCALER_CONDITIONS]
    # Compare what would go on the wire: empty maps and nulls are dropped from an apply body, so an all-empty
    # status.scaler is absent from the live status and compared raw it looked changed: one PATCH every tick.
    wire = without_nulls(patch)
    gone = any(key not in wire and current.get(key) for key in patch)  # a field emptied: the apply removes it
    if gone or changed(current, wire):  # an unchanged status is not written (no watch event)
        await kube.apply_status(name, namespace, patch, names.SCALER_MANAGER)
    return float(spec.scaling.interval_seconds)


def changed(current: Manifest, patch: Manifest) -> bool:
    """Would merging `patch` into the status `current` change anything?"""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(current.get(key), dict):
            if changed(current[key], value):
                return True
        elif current.get(key) != value:
            return True
    return False


async def _decide_and_act(kube: Kube, spec: api.ScaledAppSpec, name: str, namespace: str, meta: Manifest,
                          status: api.ScaledAppStatus, sizes: Sizes, tier_counts: api.TiersStatus,
                          now: dt.datetime, logger: Logger) -> Decision:
    snapshot, why = (None, "scaler is off") if spec.scaling.mode == api.ScalingMode.OFF else \
        await observe(spec, name, namespace, now)
    if snapshot is None and spec.scaling.mode != api.ScalingMode.OFF:
        logger.warning("Prometheus at %s did not answer (%s): holding", spec.scaling.prometheus_url, why)
    paused = (meta.get("annotations") or {}).get(api.PAUSE_ANNOTATION, "").lower() == "true"
    decision = decide(spec, snapshot, sizes, status.scaler, status.last_action, now,
                      paused=paused, settling=settling_tiers(tier_counts))
    if decision.desired != sizes:
        try:
            done = await apply_sizes(kube, name, namespace, sizes, decision.desired)
        except KubeError as exc:
            logger.error("could not apply %s: %s", decision.step, exc)
            raise
        for note in (d for d in done if "unavailable" in d):
            logger.warning(note)
            await kube.post_event({"metadata": meta}, "Warning", "ResizeAtRestart", note)
    return decision


def _bool(status: str) -> bool | None:
    return None if status == "Unknown" else status == "True"


async def _explain(kube: Kube, body: Manifest, before: api.ScaledAppStatus, decision: Decision,
                   logger: Logger) -> None:
    """One structured log line per decision; an Event when something was decided or a state flipped."""
    action = decision.action
    fields = {
        "bottleneck": decision.bottleneck or "-",
        "reason": decision.reason,
        "action": f"{action.kind} {action.tier} {action.from_}->{action.to}" if action else "hold",
        "applied": bool(action and action.applied),
        "pressures": {e.tier: e.pressure for e in decision.pressures},
    }
    logger.info("decision %s: %s", " ".join(f"{k}={v}" for k, v in fields.items()), decision.message)
    previous = {c.type: c for c in before.conditions}
    if action is not None:
        reason = {"widen": "Widened", "narrow": "Narrowed"}.get(action.kind, "Decided") if action.applied \
            else "Recommended"
        await kube.post_event(body, "Normal", reason, decision.message)
    for cond in decision.conditions:
        old = previous.get(cond.type)
        flipped = old is None or old.status != cond.status or old.reason != cond.reason
        if flipped and cond.type == "MetricsAvailable" and cond.status == "False":
            await kube.post_event(body, "Warning", "MetricsUnavailable", f"holding: {cond.message}")
        if flipped and cond.type == "AtCeiling" and cond.status == "True":
            await kube.post_event(body, "Warning", cond.reason, cond.message)
    if decision.verified is not None and decision.verified.verdict == "ineffective":
        await kube.post_event(body, "Warning", "IneffectiveStep",
                              f"widening {decision.verified.tier} did not lower its pressure; backing off")


def step_summary(step: Step | None) -> str:
    return "none" if step is None else f"{step.kind} {step.tier} {step.from_text}->{step.to_text}"
