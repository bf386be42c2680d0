"""The decision trace: each decision's fields are structured fields of its JSON log record, not message text."""

from __future__ import annotations

import io
import json
import logging

from pythonjsonlogger.json import JsonFormatter

from scaledapp import trace
from tests.unit.test_operator_metrics import _decision


def _json_lines(decision: object) -> list[dict[str, object]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())  # what kopf's --log-format json builds on
    logger = logging.getLogger("test-trace")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    trace.log_decision(logger, decision)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_widening_step_is_logged_with_tier_direction_pressures_evidence_and_reason() -> None:
    (record,) = _json_lines(_decision())
    fields = record["decision"]
    assert isinstance(fields, dict)
    assert fields["tier"] == "db-read" and fields["direction"] == "widen" and fields["applied"] is True
    assert fields["reason"] == "Widened" and fields["bottleneck"] == "db-read"
    assert fields["pressures"] == {"app": 0.5, "db-read": 1.8, "cache": None}
    assert fields["evidence"][1] == {"tier": "db-read", "signal": "read_latency", "value": 0.09, "target": 0.05,
                                     "pressure": 1.8}
    assert (fields["from"], fields["to"]) == ("1", "2")
    assert fields["verified"] == {"tier": "app", "kind": "widen", "verdict": "effective"}
    # The message stays short and human; it starts with "decision " (tests/cluster count ticks by it).
    assert str(record["message"]).startswith("decision widen db-read (Widened): ")


def test_a_hold_names_the_bottleneck_and_a_recommendation_says_it_was_not_applied() -> None:
    (hold,) = _json_lines(_decision(action=None, verified=None, reason="Cooldown", message="holding: cooldown"))
    assert hold["decision"]["direction"] == "hold" and hold["decision"]["tier"] == "db-read"  # type: ignore[index]
    assert hold["message"] == "decision hold db-read (Cooldown): holding: cooldown"
    fields = trace.decision_fields(_decision(action=_decision().action.model_copy(update={"applied": False}),
                                             reason="Recommended", recommendation="would widen db-read"))
    assert fields["applied"] is False and fields["recommendation"] == "would widen db-read"
    assert "(recommended only)" in trace.summary(fields)
