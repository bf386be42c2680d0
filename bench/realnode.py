"""The real node's goals, measured: warm `cluster up`, image rebuilds, a ScaledApp to Ready, memory at rest.

Needs root and the built tools (`make tools node-images`). It takes the machine's one real node DOWN and up
again (the warm start is from nothing running, with the caches warm), so run it when nothing else uses it:

    python -m bench.realnode [--runs 3] [--out bench/results/realnode.md]

Prints a markdown table and writes it to --out.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_SH = ROOT / "hack" / "localcluster" / "cluster.sh"
IMAGES_SH = ROOT / "hack" / "images" / "build.sh"
CHART = ROOT / "charts" / "scaledapp-operator"
CRD = ROOT / "crds" / "scaledapps.scaledapp.dev.yaml"
EXAMPLE = ROOT / "examples" / "minimal.yaml"
ENV = {**os.environ, "LC_NODES": "real"}
# Processes of the node and the control plane (by executable name), for the memory at rest.
HOST_PROCESSES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy",
                  "containerd", "containerd-shim-runc-v2", "local-path-provisioner")


def run(cmd: Sequence[str], timeout: float = 900.0) -> str:
    proc = subprocess.run(list(cmd), capture_output=True, text=True, env=ENV, timeout=timeout, check=False, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return proc.stdout


def timed(action: Callable[[], object]) -> float:
    start = time.monotonic()
    action()
    return time.monotonic() - start


def say(text: str) -> None:
    print(f"==> {text}", file=sys.stderr, flush=True)


class Node:
    def __init__(self) -> None:
        self.kubectl = ""
        self.helm = ""

    def up(self) -> None:
        run([str(CLUSTER_SH), "up"])
        exported = dict(line.removeprefix("export ").split("=", 1)
                        for line in run([str(CLUSTER_SH), "env"]).splitlines() if line.startswith("export "))
        ENV.update(exported)
        path = exported["PATH"].split(os.pathsep)
        self.kubectl = next(str(Path(p) / "kubectl") for p in path if (Path(p) / "kubectl").exists())
        self.helm = next(str(Path(p) / "helm") for p in path if (Path(p) / "helm").exists())

    def k(self, *args: str, timeout: float = 300.0) -> str:
        return run([self.kubectl, *args], timeout=timeout)


def memory_at_rest_mib(node: Node, namespace: str) -> dict[str, float]:
    """RSS of the host processes, and the working set of every pod (kubelet's summary: what the pods use)."""
    rss: dict[str, float] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            name = (proc / "exe").resolve().name
            status = (proc / "status").read_text()
        except OSError:
            continue
        if name in HOST_PROCESSES:
            kib = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
            rss[name] = rss.get(name, 0.0) + kib / 1024
    summary = json.loads(node.k("get", "--raw", "/api/v1/nodes/scaledapp-node/proxy/stats/summary"))
    pods = {"pods: " + ns: 0.0 for ns in ("kube-system", "scaledapp-system", namespace)}
    for pod in summary["pods"]:
        key = "pods: " + pod["podRef"]["namespace"]
        if key in pods:
            pods[key] += pod.get("memory", {}).get("workingSetBytes", 0) / 2**20
    return {**rss, **pods}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.realnode", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "realnode.md")
    args = parser.parse_args(argv)
    node = Node()

    say("image rebuild with nothing changed (hack/images/build.sh)")
    rebuilds = [timed(lambda: run([str(IMAGES_SH)])) for _ in range(args.runs)]
    say(f"warm `cluster.sh up` from down, {args.runs} runs (caches warm: binaries, images, containerd's store)")
    ups = []
    for _ in range(args.runs):
        run([str(CLUSTER_SH), "down"])
        ups.append(timed(node.up))
    say("CRD, chart with the bundled Prometheus")
    node.k("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    node.k("wait", "--for=condition=Established", "crd/scaledapps.scaledapp.dev", "--timeout=60s")
    run([node.helm, "upgrade", "--install", "scaledapp", str(CHART), "-n", "scaledapp-system", "--create-namespace",
         "--set", "prometheus.enabled=true", "--wait", "--timeout", "5m", f"--kubeconfig={ENV['KUBECONFIG']}"])
    readies: list[float] = []
    last = ""
    for _ in range(args.runs):
        namespace = f"bench-{secrets.token_hex(2)}"
        node.k("create", "namespace", namespace)
        say(f"kubectl apply examples/minimal.yaml in {namespace} -> every tier Ready")
        start = time.monotonic()
        node.k("apply", "-n", namespace, "-f", str(EXAMPLE))
        node.k("wait", "-n", namespace, "--for=condition=Ready", "scaledapp/demo", "--timeout=600s", timeout=620)
        readies.append(time.monotonic() - start)
        last = namespace
        if len(readies) < args.runs:
            node.k("delete", "namespace", namespace, "--timeout=180s", timeout=200)
    say("one ScaledApp at rest for 60 s, then memory")
    time.sleep(60)  # "at rest" means after start-up churn: a fixed settle time is what is being measured
    memory = memory_at_rest_mib(node, last)
    node.k("delete", "namespace", last, "--wait=false")

    def row(what: str, values: list[float], goal: str) -> str:
        return (f"| {what} | {statistics.median(values):.1f} s | {min(values):.1f}-{max(values):.1f} s | "
                f"{len(values)} | {goal} |")

    lines = [f"## Real node ({dt.date.today().isoformat()}, `python -m bench.realnode --runs {args.runs}`)", "",
             "| what | median | range | runs | goal |", "|---|---|---|---|---|",
             row("warm `make cluster-up` to node + DNS Ready (from down)", ups, "<= 20 s"),
             row("image rebuild, nothing changed (`hack/images/build.sh`)", rebuilds, "<= 10 s"),
             row("`kubectl apply` minimal.yaml -> ScaledApp Ready (every tier)", readies, "<= 60 s"), "",
             "Memory at rest, control plane + node + the chart (operator, Prometheus) + one minimal ScaledApp:", "",
             "| part | MiB |", "|---|---|",
             *[f"| {name} | {mib:.0f} |" for name, mib in sorted(memory.items())],
             f"| **total** | **{sum(memory.values()):.0f}** |", ""]
    text = "\n".join(lines)
    print(text)
    args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
