"""hack/chaos.py on the local control plane: it deletes one pod per tier and times the recovery.

kwok pods run nothing, so the drill runs with --no-load here; the load half (a Job running the demo image)
needs real containers and is exercised on kind (`make chaos`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.cluster import Cluster, ready_pods
from tests.support.operator import OperatorProcess
from tests.support.wait import wait_for

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]
TIERS = ("app", "cache", "db-read", "db-write", "workers", "queue")


def test_chaos_drill_kills_one_pod_per_tier_and_times_the_recovery(
    cluster: Cluster, operator: OperatorProcess, namespace: str, tmp_path: Path
) -> None:
    body = yaml.safe_load((ROOT / "examples" / "minimal.yaml").read_text())
    body["metadata"] = {"name": "drill"}
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(body))

    def every_tier_ready() -> bool:
        return all(ready_pods(cluster, namespace, f"app.kubernetes.io/instance=drill,scaledapp.dev/tier={t}")
                   for t in TIERS)

    wait_for(every_tier_ready, 180, "a Ready pod in every tier")
    before = {p["metadata"]["uid"] for p in cluster.get_json("pods", "-n", namespace)["items"]}
    out = tmp_path / "drills.json"
    proc = subprocess.run(
        [sys.executable, "-m", "hack.chaos", "--no-load", "--context", "", "--kubeconfig", str(cluster.kubeconfig),
         "--namespace", namespace, "--name", "drill", "--ready-timeout", "120", "--json", str(out)],
        capture_output=True, text=True, timeout=900, cwd=ROOT, check=False,
        env={**os.environ, "PATH": cluster.env["PATH"]},  # cwd ROOT: python -m finds hack there
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    drills: list[dict[str, Any]] = json.loads(out.read_text())
    assert [d["tier"] for d in drills] == list(TIERS)
    for drill in drills:
        assert drill["pod"], drill
        assert drill["seconds_to_ready"] is not None and drill["seconds_to_ready"] >= 0, drill
        assert drill["ready_before"] >= 1
    # It printed every command it ran, and the table.
    assert proc.stderr.count("kubectl") >= len(TIERS) and " delete pod " in proc.stderr
    assert "| tier killed |" in proc.stdout and "| db-write |" in proc.stdout
    after = {p["metadata"]["uid"] for p in cluster.get_json("pods", "-n", namespace)["items"]}
    killed = {d["pod"] for d in drills}
    assert len(before - after) >= len(killed), "each drill deleted a real pod"
