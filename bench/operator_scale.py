"""Operator at scale: apply N ScaledApps and measure time until all are Ready, peak RSS, API calls each.

Runs its own throw-away local control plane (ports moved, state in a temp folder) and the operator
as a real process, so a running cluster is untouched. Prints a markdown table.

    python -m bench.operator_scale [N ...]      (default: 1 50 500)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.support.operator import crd_is_established

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_SH = ROOT / "hack" / "localcluster" / "cluster.sh"
CRD = ROOT / "crds" / "scaledapps.scaledapp.dev.yaml"
PORTS = {"LC_ETCD_PORT": "22379", "LC_ETCD_PEER_PORT": "22380", "LC_APISERVER_PORT": "26443",
         "LC_KCM_PORT": "30257", "LC_SCHEDULER_PORT": "30259", "LC_KWOK_PORT": "30247"}
LIVENESS_PORT = 28081
DEADLINE_SECONDS = 900


def progress(text: str) -> None:
    print(f"\r\033[K{text}", end="", file=sys.stderr, flush=True)


class Bench:
    def __init__(self, state: Path) -> None:
        self.env = {**os.environ, **PORTS, "SCALEDAPP_STATE": str(state), "LC_NODES": "kwok"}
        self.state = state

    def cluster(self, *args: str) -> str:
        out = subprocess.run([str(CLUSTER_SH), *args], env=self.env, capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            raise RuntimeError(f"cluster.sh {' '.join(args)} failed:\n{out.stderr[-2000:]}")
        return out.stdout

    def up(self) -> None:
        self.cluster("up")
        exported = dict(line.removeprefix("export ").split("=", 1)
                        for line in self.cluster("env").splitlines() if line.startswith("export "))
        self.env.update({k: v.strip("'\"") for k, v in exported.items()})

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        out = subprocess.run(["kubectl", *args], env=self.env, input=stdin, capture_output=True, text=True,
                             timeout=300)
        if out.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {out.stderr[-1000:]}")
        return out.stdout


def scaledapps(n: int, namespace: str) -> str:
    items = [{
        "apiVersion": "scaledapp.dev/v1alpha1", "kind": "ScaledApp",
        "metadata": {"name": f"app-{i:04d}", "namespace": namespace},
        # No Prometheus here: each tick holds after one refused connection (loopback discard port).
        "spec": {"scaling": {"intervalSeconds": 5, "prometheusUrl": "http://127.0.0.1:9"}},
    } for i in range(n)]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def ready_count(bench: Bench, namespace: str) -> int:
    items = json.loads(bench.kubectl("get", "scaledapps", "-n", namespace, "-o", "json"))["items"]
    conditions = [(i.get("status") or {}).get("conditions", []) for i in items]
    return sum(any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds) for conds in conditions)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def operator_up() -> bool:
    with urllib.request.urlopen(f"http://127.0.0.1:{LIVENESS_PORT}/healthz", timeout=5) as response:
        return bool(response.status == 200)


def api_calls_logged(log: Path) -> int:
    """The operator logs its API call count when it stops (kopf caches the liveness probe's values)."""
    found = re.findall(r"operator stopping after (\d+) Kubernetes API calls", log.read_text())
    return int(found[-1]) if found else -1


def run(bench: Bench, n: int) -> dict[str, Any]:
    namespace = f"scale-{n}"
    bench.kubectl("create", "namespace", namespace)
    log_path = bench.state / f"operator-{n}.log"
    log = log_path.open("w")
    env = dict(bench.env)  # scaledapp is installed into the venv (`make venv`)
    operator = subprocess.Popen(
        [sys.executable, "-m", "scaledapp", "-n", namespace, "--log-format", "json",
         "--liveness", f"http://127.0.0.1:{LIVENESS_PORT}/healthz", "--metrics-port=0"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if operator_up():
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("operator did not start") from None
                time.sleep(0.2)
        start = time.monotonic()
        bench.kubectl("create", "-f", "-", stdin=scaledapps(n, namespace))
        ready, shown = 0, -1
        while ready < n and time.monotonic() - start < DEADLINE_SECONDS:
            ready = ready_count(bench, namespace)
            if ready != shown:
                progress(f"  N={n}: {ready}/{n} Ready after {time.monotonic() - start:.0f}s")
                shown = ready
            time.sleep(1)
        elapsed = time.monotonic() - start
        rss = peak_rss_mib(operator.pid)
    finally:
        operator.terminate()
        operator.wait(timeout=60)
        print(file=sys.stderr)
    calls = api_calls_logged(log_path)
    return {"n": n, "ready": ready, "seconds": elapsed, "rss_mib": rss, "calls_per_app": calls / n}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sizes", nargs="*", type=int, default=[1, 50, 500])
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="scaledapp-scale-") as tmp:
        bench = Bench(Path(tmp))
        print("==> starting a private control plane for the benchmark", file=sys.stderr)
        bench.up()
        try:
            bench.kubectl("apply", "--server-side", "-f", str(CRD))
            deadline = time.monotonic() + 60
            while not crd_is_established(bench.kubectl("get", "crd/scaledapps.scaledapp.dev", "-o", "json")):
                if time.monotonic() > deadline:
                    raise RuntimeError("the ScaledApp CRD never became Established")
                time.sleep(0.2)
            rows = [run(bench, n) for n in args.sizes]
        finally:
            bench.cluster("down")
    print("| ScaledApps | all Ready after | Ready | operator peak RSS | operator API calls per ScaledApp |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['n']} | {r['seconds']:.1f} s | {r['ready']}/{r['n']} | {r['rss_mib']:.0f} MiB "
              f"| {r['calls_per_app']:.1f} |")
    print("\nGoal: 500 Ready in under 60 s with RSS under 250 MB. Command: `python -m bench.operator_scale`.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
