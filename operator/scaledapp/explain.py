"""The tick's explain phase: say what the tick saw and decided. One structured log line and the operator's
metrics, Events for what was decided or flipped, and the scaler's status fields with its four conditions
(Ready from the workloads; MetricsAvailable, Scaling and AtCeiling from the decision), written only when
they changed."""

from __future__ import annotations

import time

from scaledapp import api, conditions, metrics, trace
from scaledapp.decide import STATUS_FIELDS, Decision, status_fields
from scaledapp.kube import without_nulls
from scaledapp.observe import Observed, Shell
from scaledapp.reasons import ConditionType, Reason
from scaledapp.resources import names
from scaledapp.resources.common import Manifest


async def explain(shell: Shell, observed: Observed, decision: Decision | None) -> None:
    """Report the tick: log, metrics and Events (a decision only), then status."""
    if decision is not None:
        await _tell(shell, observed, decision)
    else:
        metrics.record_tiers(shell.body, observed.reading.status)
    await _write_status(shell, observed, decision)


async def _tell(shell: Shell, observed: Observed, decision: Decision) -> None:
    """One structured log line per decision; an Event when something was decided or a state flipped."""
    kube, body, action = shell.kube, shell.body, decision.action
    trace.log_decision(shell.logger, decision)  # the decision as structured fields (scaledapp.trace)
    metrics.record_tiers(body, observed.reading.status)
    metrics.record_tick(body, decision)
    if action is not None:
        reason = Reason.RECOMMENDED if not action.applied else {
            "widen": Reason.WIDENED, "narrow": Reason.NARROWED}.get(action.kind, Reason.DECIDED)
        await kube.post_event(body, "Normal", reason, decision.message)
    previous = {c.type: c for c in shell.status.conditions}
    for cond in decision.conditions:
        old = previous.get(cond.type)
        flipped = old is None or old.status != cond.status or old.reason != cond.reason
        if flipped and cond.type == ConditionType.METRICS_AVAILABLE and cond.status == "False":
            await kube.post_event(body, "Warning", Reason.METRICS_UNAVAILABLE, f"holding: {cond.message}")
        if flipped and cond.type == ConditionType.AT_CEILING and cond.status == "True":
            await kube.post_event(body, "Warning", cond.reason, cond.message)
    if decision.verified is not None and decision.verified.verdict == "ineffective":
        await kube.post_event(body, "Warning", Reason.INEFFECTIVE_STEP,
                              f"widening {decision.verified.tier} did not lower its pressure; backing off")


def _patch(shell: Shell, observed: Observed, decision: Decision | None) -> Manifest:
    """The scaler's status fields: the tiers' counts, the decision's fields and the scaler's conditions."""
    counts = observed.reading.status
    patch: Manifest = {"app": f"{counts.app.ready}/{counts.app.desired}",
                       "tiers": counts.model_dump(by_alias=True, exclude_none=True)}
    if decision is not None:
        patch.update(status_fields(decision, shell.status.history, shell.status.last_action))
    else:
        # No decision this tick (the write role moving, a workload not back yet): the decision's fields stay as
        # they are. A server-side apply without a field its manager owned removes it: the cooldown, the windows
        # and the history went with every failover.
        current = shell.body.get("status") or {}
        patch.update({key: current[key] for key in DECISION_FIELDS if key in current})
    refused = observed.refused if shell.spec.scaling.mode != api.ScalingMode.OFF else None
    conds = conditions.for_tick(
        [c.model_dump(by_alias=True, exclude_none=True) for c in shell.status.conditions],
        conditions.TickOutcome(counts, shell.spec, None if decision is None else decision.conditions, refused),
        conditions.Observed(shell.generation, shell.now),
    )
    patch["conditions"] = [c for c in conds if c["type"] in conditions.SCALER_CONDITIONS]
    return patch


# The status fields a decision writes (decide.status_fields), as on the wire.
DECISION_FIELDS = tuple(api.ScaledAppStatus.model_fields[name].alias or name for name in STATUS_FIELDS)
PROGRESS_SECONDS = 30.0  # while a ScaledApp is not Ready, how often its tiers' ready counts alone are written
# uid -> (time.monotonic(), body) of the scaler's last status write, in memory: see _write_status.
_WRITTEN: dict[str, tuple[float, Manifest]] = {}


def forget(uid: str) -> None:
    """The ScaledApp is gone: drop what the scaler remembers of its status writes."""
    _WRITTEN.pop(uid, None)


async def record(shell: Shell, observed: Observed, decision: Decision) -> None:
    """The tick's status before its step is applied (scaler.tick says why); explain then writes it no more."""
    await _write_status(shell, observed, decision)


async def _write_status(shell: Shell, observed: Observed, decision: Decision | None) -> None:
    """Server-side apply the scaler's status fields, only when they change (no watch event otherwise).

    Not again what this process wrote last (under load the watch brings our own write back after the next tick,
    which compared with the older body and wrote the same status again, with new transition times: kopf hands
    a ScaledApp's events on only after its reconcile, so at 500 new ScaledApps the bodies stayed minutes old
    and every tick rewrote the status), and while the ScaledApp is not Ready and stays so, a change of its
    ready counts alone at most every PROGRESS_SECONDS (pods arriving changed the status at nearly every tick:
    a write, and a watch event for every watcher, each time)."""
    patch = _patch(shell, observed, decision)
    current = dict(shell.body.get("status") or {})
    current["conditions"] = [c for c in current.get("conditions") or []
                             if c.get("type") in conditions.SCALER_CONDITIONS]
    # Compare what would go on the wire: empty maps and nulls are dropped from an apply body, so an all-empty
    # status.scaler is absent from the live status and compared raw it looked changed: one PATCH every tick.
    wire = without_nulls(patch)
    gone = any(key not in wire and current.get(key) for key in patch)  # a field emptied: the apply removes it
    if not (gone or changed(current, wire)):
        return
    uid, now = str(shell.meta.get("uid") or ""), time.monotonic()
    last = _WRITTEN.get(uid)
    if last is not None and not gone:
        when, written = last
        # A body older than our last write gives unchanged conditions a new transition time: not a change.
        if timeless(written) == timeless(wire) or (progress_only(written, wire) and now - when < PROGRESS_SECONDS):
            return
    await shell.kube.apply_status(shell.name, shell.namespace, patch, names.SCALER_MANAGER)
    _WRITTEN[uid] = (now, wire)


def timeless(status: Manifest) -> Manifest:
    """The status with its conditions' transition times left out."""
    return {**status, "conditions": [{k: v for k, v in c.items() if k != "lastTransitionTime"}
                                     for c in status.get("conditions") or []]}


def progress_only(before: Manifest, after: Manifest) -> bool:
    """Do the scaler's status fields differ only in ready counts, with Ready False before and after?"""
    def ready(status: Manifest) -> Manifest:
        return next((c for c in status.get("conditions") or [] if c.get("type") == ConditionType.READY), {})

    if not ready(before).get("status") == ready(after).get("status") == "False":
        return False

    def rest(status: Manifest) -> Manifest:
        out = {k: v for k, v in status.items() if k not in ("app", "tiers", "conditions")}
        out["conditions"] = [{k: v for k, v in c.items() if k != "message"} if c.get("type") == ConditionType.READY
                             else c for c in status.get("conditions") or []]
        return out

    return timeless(rest(before)) == timeless(rest(after))


def changed(current: Manifest, patch: Manifest) -> bool:
    """Would merging `patch` into the status `current` change anything?"""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(current.get(key), dict):
            if changed(current[key], value):
                return True
        elif current.get(key) != value:
            return True
    return False
