"""The decision trace: every tick's decision as structured fields of one log record, not inside its message.

With `--log-format json` (the chart's default) kopf's JSON formatter writes the record's extras as fields, so each
decision line carries a `decision` object:

    {"message": "decision hold db-read (Cooldown): holding: ...", "decision": {"tier": "db-read", "direction": "hold",
     "reason": "Cooldown", "applied": false, "bottleneck": "db-read", "pressures": {"app": 0.4, "db-read": 1.7},
     "evidence": [{"tier": "db-read", "signal": "read_latency_p95", "value": 0.09, "target": 0.05,
                   "pressure": 1.7}, ...], "explanation": "holding: db-read is the bottleneck: ...", ...}}

A log pipeline can then filter on `decision.direction != "hold"` or chart `decision.pressures.app` without parsing
text. With the plain formats the message alone is printed (kept short and readable).
"""

from __future__ import annotations

import logging
from typing import Any

Logger = logging.Logger | logging.LoggerAdapter[Any]
TRACE_KEY = "decision"


def decision_fields(decision: Any) -> dict[str, Any]:
    """The trace of one scaledapp.decide.Decision as plain JSON types (pure)."""
    action = decision.action
    evidence = [{"tier": e.tier, "signal": e.signal, "value": e.value, "target": e.target, "pressure": e.pressure}
                for e in decision.pressures]
    fields: dict[str, Any] = {
        "tier": action.tier if action is not None else decision.bottleneck or None,
        "direction": action.kind if action is not None else "hold",
        "applied": bool(action is not None and action.applied),
        "reason": decision.reason,
        "bottleneck": decision.bottleneck or None,
        "pressures": {e.tier: e.pressure for e in decision.pressures},
        "evidence": evidence,
        "explanation": decision.message,
    }
    if action is not None:
        fields["from"] = action.from_
        fields["to"] = action.to
    if decision.verified is not None:
        fields["verified"] = {"tier": decision.verified.tier, "kind": decision.verified.kind,
                              "verdict": decision.verified.verdict}
    if decision.recommendation:
        fields["recommendation"] = decision.recommendation
    return fields


def summary(fields: dict[str, Any]) -> str:
    """The short message of the record: `decision widen db-read (Widened): ...`, `decision hold (WithinTarget): ...`."""
    tier = f" {fields['tier']}" if fields.get("tier") else ""
    applied = "" if fields["direction"] == "hold" or fields["applied"] else " (recommended only)"
    return f"decision {fields['direction']}{tier}{applied} ({fields['reason']}): {fields['explanation']}"


def log_decision(logger: Logger, decision: Any) -> dict[str, Any]:
    """Log one decision at INFO with its trace as structured fields; returns the fields."""
    fields = decision_fields(decision)
    logger.info(summary(fields), extra={TRACE_KEY: fields})
    return fields
