"""The load generator's CLI against the real app: the schedule is kept and the report is right."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.dataplane import REPO, AppProcess, WorkerProcess, app_env

pytestmark = pytest.mark.dataplane


def test_a_short_mixed_run_reports_every_request(demo_app: AppProcess, demo_worker: WorkerProcess) -> None:
    cmd = [sys.executable, "-m", "demo_app.load", "--url", demo_app.url, "--profile", "step:rate=50,peak=150,at=1",
           "--duration", "2", "--mix", "read=8,write=1,order=1", "--keys", "200", "--json", "-", "--quiet"]
    done = subprocess.run(cmd, env=app_env({}), cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    text, _, payload = done.stdout.partition("{")
    report = json.loads("{" + payload)
    assert abs(report["sent"] - 200) <= 2  # 50/s for 1 s, then 150/s for 1 s
    assert report["errors"] == {}
    assert report["ok"] == report["sent"]
    assert set(report["by_operation"]) == {"read", "write", "order"}
    assert report["p50_ms"] <= report["p95_ms"] <= report["p99_ms"]
    assert "throughput" in text and "p99" in text
