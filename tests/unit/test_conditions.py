"""conditions.is_ready: what the loops take as a settled ScaledApp (its first resync waits for it)."""

from __future__ import annotations

from typing import Any

from scaledapp import conditions


def owner(*statuses: tuple[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": "shop"}, "status": {"conditions": [{"type": t, "status": s} for t, s in statuses]}}


def test_ready_only_when_the_ready_condition_is_true() -> None:
    assert conditions.is_ready(owner(("Scaling", "False"), ("Ready", "True")))
    assert not conditions.is_ready(owner(("Ready", "False")))
    assert not conditions.is_ready(owner(("Ready", "Unknown")))
    assert not conditions.is_ready(owner(("MetricsAvailable", "True")))
    assert not conditions.is_ready({"metadata": {"name": "shop"}})  # new: no status yet
    assert not conditions.is_ready({"metadata": {"name": "shop"}, "status": None})
