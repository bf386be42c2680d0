"""`kubectl scaledapp` against a status fixture (tests/fixtures/scaledapp_decided.yaml) and a fake API client."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from scaledapp import api, kubectl_plugin
from scaledapp.kubectl_plugin import parse_args, render_history, render_recommendation, render_why, run

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "scaledapp_decided.yaml"
NOW = dt.datetime(2026, 1, 1, 12, 0, 30, tzinfo=dt.UTC)


def fixture() -> dict[str, Any]:
    obj: dict[str, Any] = yaml.safe_load(FIXTURE.read_text())
    return obj


class FakeClient:
    def __init__(self, obj: dict[str, Any], after_patch: dict[str, Any] | None = None) -> None:
        self.obj = obj
        self.after_patch = after_patch
        self.patches: list[dict[str, Any]] = []
        self.gets = 0

    def get(self, name: str, namespace: str) -> dict[str, Any]:
        assert (name, namespace) == ("demo", "shop")
        self.gets += 1
        return self.after_patch if self.after_patch is not None and self.patches else self.obj

    def patch(self, name: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self.patches.append(body)
        out = copy.deepcopy(self.obj)
        out["metadata"]["generation"] += 1
        return out


def test_the_fixture_is_a_status_the_operator_could_write() -> None:
    obj = fixture()
    api.ScaledAppStatus.model_validate(obj["status"])
    api.parse_spec(obj["spec"])


def test_why_answers_why_this_tier_on_one_screen() -> None:
    text = render_why(fixture(), NOW)
    lines = text.splitlines()
    assert len(lines) <= 40 and max(map(len, lines)) <= 200
    assert "Bottleneck: db-read" in text
    assert "Latest decision: Cooldown: holding: db-read is the bottleneck" in text
    # each tier's signal, value, target and pressure, the chosen one marked
    row = next(line for line in lines if line.startswith("db-read "))
    assert all(part in row for part in ("1.83", "read_latency_p95", "0.0915", "0.05", "2/2", "<- bottleneck"))
    assert "Why db-read: read_latency_p95 0.0915 vs target 0.05 -> pressure 1.83" in text
    # why the others were not chosen
    assert "workers: back-off: widening it did not lower its pressure; skipped until 2026-01-01T12:05:00Z (270s left)" \
        in text
    assert "app: hot too, but db-read is more pressed" in text
    assert "cache: calm: 0.41 is below 0.90" in text
    assert "db-write: unknown" in text
    # the cooldowns and windows in force
    assert "cooldown: 30s left of 60s" in text
    assert "verify-after-act: the last step (widen db-read 1 -> 2) is not judged yet" in text
    assert "Last action: widen db-read 1 -> 2 at 2026-01-01T12:00:00Z (applied; verdict pending" in text


def test_why_shows_the_windows_and_a_pause() -> None:
    obj = fixture()
    obj["spec"]["scaling"]["stabilization"] = {"scaleUpSeconds": 120, "scaleDownSeconds": 300}
    obj["metadata"]["annotations"] = {api.PAUSE_ANNOTATION: "true"}
    obj["status"]["scaler"]["calmSince"] = "2026-01-01T11:59:30Z"
    text = render_why(obj, NOW)
    assert "PAUSED" in text.splitlines()[0]
    assert "scale-up window: app hot since 2026-01-01T11:59:50Z (40s of 120s: 80s to go)" in text
    assert "scale-up window: db-read hot since 2026-01-01T11:58:00Z (150s of 120s: met)" in text
    assert "scale-down window: every tier calm since 2026-01-01T11:59:30Z (60s of 300s: 240s to go)" in text


def test_why_without_status_says_so() -> None:
    text = render_why({"metadata": {"name": "demo", "namespace": "shop"}, "spec": {}}, NOW)
    assert "No evidence in status yet" in text and "Bottleneck: none" in text


def test_history_lists_every_decision_with_its_verdict() -> None:
    lines = render_history(fixture()).splitlines()
    assert lines[0].split() == ["TIME", "TIER", "KIND", "FROM", "TO", "APPLIED", "PRESSURE", "VERDICT", "REASON"]
    assert lines[1].split()[:8] == ["2026-01-01T11:50:00Z", "workers", "widen", "1", "2", "yes", "1.6", "ineffective"]
    assert "pending" in lines[2]
    assert render_history({"status": {}}) == "No decisions yet (status.history is empty)."


@pytest.mark.parametrize(("command", "patch"), [
    ("pause", {"metadata": {"annotations": {"scaledapp.dev/paused": "true"}}}),
    ("resume", {"metadata": {"annotations": {"scaledapp.dev/paused": None}}}),
    ("auto", {"spec": {"scaling": {"mode": "Auto"}}}),
])
def test_pause_resume_and_auto_patch_the_scaledapp(command: str, patch: dict[str, Any]) -> None:
    client, said = FakeClient(fixture()), []
    assert run(parse_args([command, "demo"]), client, "shop", out=said.append) == 0
    assert client.patches == [patch]
    assert "shop/demo" in said[0]


def test_recommend_switches_the_mode_and_waits_for_the_first_recommend_decision() -> None:
    decided = fixture()
    decided["metadata"]["generation"] = 4
    decided["spec"]["scaling"]["mode"] = "Recommend"
    decided["status"]["conditions"][-1] = {
        "type": "Scaling", "status": "False", "reason": "Recommended", "observedGeneration": 4,
        "message": "would widen app 3 -> 4 (Recommend mode): app is the bottleneck: cpu_utilization 0.868 vs 0.7"}
    client, said, slept = FakeClient(fixture(), after_patch=decided), [], []
    assert run(parse_args(["recommend", "demo", "--wait", "30"]), client, "shop", out=said.append,
               sleep=slept.append) == 0
    assert client.patches == [{"spec": {"scaling": {"mode": "Recommend"}}}]
    assert slept == [1.0]
    assert said[-1].startswith("Auto would act: would widen app 3 -> 4 (Recommend mode)")


def test_recommend_says_when_no_decision_came_in_time() -> None:
    client, said = FakeClient(fixture()), []
    run(parse_args(["recommend", "demo", "--wait", "0"]), client, "shop", out=said.append, sleep=lambda _s: None)
    assert said[1].startswith("(no Recommend-mode decision within 0s")
    assert render_recommendation(fixture()).startswith("Auto would hold: Cooldown: holding: db-read")


def test_why_json_carries_the_status_fields() -> None:
    said: list[str] = []
    run(parse_args(["why", "demo", "-o", "json"]), FakeClient(fixture()), "shop", out=said.append)
    data = json.loads(said[0])
    assert data["bottleneck"] == "db-read" and data["paused"] is False and len(data["pressures"]) == 5


def test_the_console_script_is_kubectl_scaledapp() -> None:
    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert 'kubectl-scaledapp = "scaledapp.kubectl_plugin:main"' in text
    assert kubectl_plugin.main.__module__ == "scaledapp.kubectl_plugin"
