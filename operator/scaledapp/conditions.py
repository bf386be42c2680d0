"""Status conditions, pure: the scaler's three decision conditions, conditions that keep their transition
time, and readiness from the tiers' workloads."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scaledapp import api, tiers
from scaledapp.clock import format_time
from scaledapp.plan import ConditionParts
from scaledapp.reasons import ConditionType, Reason
from scaledapp.sizes import Blocked

# Status conditions each writer owns (server-side apply per writer: neither drops the other's).
RECONCILER_CONDITIONS = (ConditionType.PROGRESSING, ConditionType.DEGRADED)
SCALER_CONDITIONS = (
    ConditionType.READY,
    ConditionType.METRICS_AVAILABLE,
    ConditionType.SCALING,
    ConditionType.AT_CEILING,
)


@dataclass(frozen=True)
class Observed:
    """Which spec generation a condition speaks of, and when it is set (None: the wall clock)."""

    generation: int | None = None
    now: dt.datetime | None = None


def set_condition(
    conditions: list[dict[str, Any]],
    type_: str,
    status: bool | None,
    reason: str,
    message: str,
    observed: Observed = Observed(),
) -> list[dict[str, Any]]:
    """Return conditions with `type_` set; lastTransitionTime moves only when the status changes."""
    now, generation = observed.now, observed.generation
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


def is_ready(owner: Mapping[str, Any]) -> bool:
    """The ScaledApp's Ready condition is True: every tier has what it asked for."""
    conditions = (owner.get("status") or {}).get("conditions") or []
    return condition_status(conditions, ConditionType.READY) == "True"


def conditions_for(
    metrics: ConditionParts | None, scaling: ConditionParts, ceiling: Blocked | None = None
) -> list[api.Condition]:
    """The scaler's three conditions. `metrics` None: the scaler is off and observed nothing."""
    if metrics is None:
        metrics_parts: ConditionParts = ("Unknown", Reason.SCALER_OFF, "the scaler is off")
        ceiling_parts: ConditionParts = ("Unknown", Reason.SCALER_OFF, "the scaler is off")
    else:
        metrics_parts = metrics
        if ceiling is not None:  # a tier seen at its ceiling is, even while another tier is blind
            ceiling_parts = ("True", ceiling.reason, f"{ceiling.tier}: {ceiling.message}")
        elif metrics[0] != "True":
            ceiling_parts = ("Unknown", Reason.METRICS_UNAVAILABLE, "cannot tell without metrics")
        else:
            ceiling_parts = ("False", Reason.BELOW_CEILING, "the bottleneck (if any) can still be widened")
    return [
        _condition(ConditionType.METRICS_AVAILABLE, metrics_parts),
        _condition(ConditionType.SCALING, scaling),
        _condition(ConditionType.AT_CEILING, ceiling_parts),
    ]


def _condition(type_: ConditionType, parts: ConditionParts) -> api.Condition:
    status, reason, message = parts
    return api.Condition.model_validate(
        {"type": type_.value, "status": status, "reason": reason.value, "message": message}
    )


def set_ready(
    conditions: list[dict[str, Any]], status: api.TiersStatus, spec: api.ScaledAppSpec, observed: Observed
) -> list[dict[str, Any]]:
    """Return conditions with Ready set from the tiers' readiness."""
    ready, message = readiness(status, spec)
    reason = Reason.ALL_TIERS_READY if ready else Reason.TIERS_NOT_READY
    return set_condition(conditions, ConditionType.READY, ready, reason, message, observed)


@dataclass(frozen=True)
class TickOutcome:
    """What one tick's conditions come from: the tiers' readiness, the decision's three conditions (None:
    no decision this tick) and why the Prometheus URL is refused (None: it is not, or the scaler is off)."""

    tiers: api.TiersStatus
    spec: api.ScaledAppSpec
    decided: list[api.Condition] | None
    refused: str | None


def for_tick(conditions: list[dict[str, Any]], outcome: TickOutcome, observed: Observed) -> list[dict[str, Any]]:
    """The conditions after one tick: Ready from the tiers, then the decision's (transition times kept)."""
    out = set_ready(conditions, outcome.tiers, outcome.spec, observed)
    for cond in outcome.decided or []:
        status = None if cond.status == "Unknown" else cond.status == "True"
        out = set_condition(out, cond.type, status, cond.reason, cond.message, observed)
    if outcome.decided is not None and outcome.refused:  # the chart's Prometheus URL policy said no
        out = set_condition(out, ConditionType.METRICS_AVAILABLE, False, Reason.PROMETHEUS_URL_NOT_ALLOWED,
                            outcome.refused, observed)
    return out


def readiness(status: api.TiersStatus, spec: api.ScaledAppSpec) -> tuple[bool, str]:
    """Ready when every enabled tier has all its desired replicas ready; the message names the laggards."""
    waiting = tiers.waiting(status, spec)
    if waiting:
        return False, "waiting: " + ", ".join(waiting)
    return True, "every tier has its desired replicas ready"
