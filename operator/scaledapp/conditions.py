"""Pure helpers for status: conditions that keep their transition time, and tier readiness from workloads."""

from __future__ import annotations

import datetime as dt
from typing import Any

from scaledapp import api
from scaledapp.policy import format_time

# Status conditions each writer owns (server-side apply per writer: neither drops the other's).
RECONCILER_CONDITIONS = ("Progressing", "Degraded")
SCALER_CONDITIONS = ("Ready", "MetricsAvailable", "Scaling", "AtCeiling")


def set_condition(
    conditions: list[dict[str, Any]],
    type_: str,
    status: bool | None,
    reason: str,
    message: str,
    generation: int | None = None,
    now: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """Return conditions with `type_` set; lastTransitionTime moves only when the status changes."""
    text = "Unknown" if status is None else ("True" if status else "False")
    out = [dict(c) for c in conditions if c.get("type") != type_]
    previous = next((c for c in conditions if c.get("type") == type_), None)
    since = previous.get("lastTransitionTime") if previous and previous.get("status") == text else None
    condition = api.Condition(
        type=type_, status=text, reason=reason, message=message,
        last_transition_time=since or format_time(now or dt.datetime.now(dt.UTC)), observed_generation=generation,
    )
    out.append(condition.model_dump(by_alias=True, exclude_none=True))
    return sorted(out, key=lambda c: str(c["type"]))


def condition_status(conditions: list[dict[str, Any]], type_: str) -> str | None:
    return next((str(c.get("status")) for c in conditions if c.get("type") == type_), None)


def workload_counts(workload: dict[str, Any] | None) -> api.TierStatus:
    """desired/ready of a Deployment or StatefulSet as the API server reports it (0/0 when absent)."""
    if not workload:
        return api.TierStatus()
    spec = workload.get("spec") or {}
    status = workload.get("status") or {}
    desired = spec.get("replicas")
    return api.TierStatus(
        desired=int(desired if desired is not None else 1),
        ready=int(status.get("readyReplicas") or status.get("ready_replicas") or 0),
    )


def readiness(tiers: api.TiersStatus, enabled: dict[str, bool]) -> tuple[bool, str]:
    """Ready when every enabled tier has all its desired replicas ready; the message names the laggards."""
    waiting = []
    for field_name, tier in tiers:
        if not enabled.get(field_name, True):
            continue
        if tier.desired == 0 and field_name not in ("db_read",):
            waiting.append(f"{field_name} has no replicas")
        elif tier.ready < tier.desired:
            waiting.append(f"{field_name} {tier.ready}/{tier.desired} ready")
    if waiting:
        return False, "waiting: " + ", ".join(waiting)
    return True, "every tier has its desired replicas ready"
