"""While Prometheus stays down, the log says so once, not at every tick of every ScaledApp."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any, cast

import pytest

from scaledapp import api, observe, tiers
from scaledapp.kube import Kube
from scaledapp.reasons import Reason

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
LOG = logging.getLogger("test-observe")


def _context(status: dict[str, Any]) -> observe.Shell:
    spec = api.ScaledAppSpec()
    return observe.Shell(cast(Kube, None), {"metadata": {"name": "shop", "namespace": "prod"}}, spec,
                         api.ScaledAppStatus.model_validate(status), NOW, LOG, "shop", "prod", 1, False)


def _tick_logs(status: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> list[int]:
    async def refused(*_: Any, **__: Any) -> tuple[None, str]:  # Prometheus' answer, without a network
        return None, "ConnectionError: refused"

    monkeypatch.setattr(observe, "observe", refused)
    context = _context(status)
    reading = tiers.read({t.name: None for t in tiers.TIERS}, context.spec)
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger=LOG.name):
        tick = asyncio.run(observe._tick(context, reading))
    assert tick.snapshot is None  # holds either way
    return [r.levelno for r in caplog.records if "did not answer" in r.getMessage()]


def _metrics(status: str, reason: str) -> dict[str, Any]:
    return {"conditions": [{"type": "MetricsAvailable", "status": status, "reason": reason, "message": "m",
                            "lastTransitionTime": "2026-12-01T11:00:00Z"}]}


def test_a_warning_when_prometheus_stops_answering(monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    assert _tick_logs({}, monkeypatch, caplog) == [logging.WARNING]
    assert _tick_logs(_metrics("True", Reason.SIGNALS_KNOWN), monkeypatch, caplog) == [logging.WARNING]
    assert _tick_logs(_metrics("False", Reason.SIGNALS_MISSING), monkeypatch, caplog) == [logging.WARNING]


def test_debug_only_while_it_stays_down(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    assert _tick_logs(_metrics("False", Reason.PROMETHEUS_UNAVAILABLE), monkeypatch, caplog) == [logging.DEBUG]
