"""Operator at scale: N ScaledApps through the operator against a raw `kubectl apply --server-side` of the same
children, in the same throw-away control plane (kwok nodes, ports moved, state in a temp folder).

For each N, two arms, each in a fresh namespace:

- raw: the children the operator would create for each of the N ScaledApps, rendered offline with the
  operator's own builders (`resources.build_children` with generated-once passwords, the Postgres CA and TLS
  Secrets issued by its own `resources.tls`, and the scaler's starting sizes merged in, as the operator's first
  reconcile leaves them), written to files of --batch ScaledApps each
  and applied by `kubectl apply --server-side` (--raw-jobs files at a time).
- operator: the operator as a real process watching its namespace; the N ScaledApps are created in one
  `kubectl create`.

Both arms are timed from their first request until the same condition holds: every workload (Deployments and
StatefulSets) of every ScaledApp exists with the replicas the rendered children ask for, all of them ready
(kwok fakes the pods; the local provisioner binds the StatefulSets' volume claims). A kubectl watch per
workload kind sees it. The operator arm also reports when every ScaledApp says Ready=True (its own status
write), its peak RSS, its Kubernetes API calls per ScaledApp until Ready, and its API calls per ScaledApp per
tick over --steady seconds once everything is Ready (Prometheus queries are not Kubernetes calls).

Each arm gets a control plane of its own, started afresh (the raw arm first): the objects of an arm that ran
before are not idle. At 500 ScaledApps the controller-manager's volume binder, which goes through every claim and
volume in the cluster each 15 s, bound the operator arm's claims minutes late while the raw arm's 1,500 stayed.

    python -m bench.operator_scale [N ...] [--batch 25] [--raw-jobs 4] [--steady 30] [--operator LABEL=DIR ...]
                                                                                             (default N: 1 50)
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.support.operator import crd_is_established, free_port

from scaledapp import api, resources, tiers
from scaledapp.resources import names, tls
from scaledapp.resources.secrets import REPLICATION_USER

ROOT = Path(__file__).resolve().parents[1]
CLUSTER_SH = ROOT / "hack" / "localcluster" / "cluster.sh"
CRD = ROOT / "crds" / "scaledapps.scaledapp.dev.yaml"
# Private ports for the throw-away control plane (outside the NodePort range, clear of the other local clusters).
PORTS = {"LC_ETCD_PORT": "25379", "LC_ETCD_PEER_PORT": "25380", "LC_APISERVER_PORT": "25443",
         "LC_KCM_PORT": "25257", "LC_SCHEDULER_PORT": "25259", "LC_KWOK_PORT": "25247"}
# A bound against a run that hangs, not a goal: at 900 s, a slower day's operator arm (raw 774 s) was cut off
# 64 workloads short of the end, and its ratio was lost.
DEADLINE_SECONDS = 1800
WORKLOADS = ("Deployment", "StatefulSet")
SPEC: dict[str, Any] = {"scaling": {"intervalSeconds": 5, "prometheusUrl": "http://127.0.0.1:9"}}
# No Prometheus here: each tick holds after one refused connection (loopback discard port).
INTERVAL_SECONDS = 5


def progress(text: str) -> None:
    print(f"\r\033[K{text}", end="", file=sys.stderr, flush=True)


class Bench:
    def __init__(self, state: Path) -> None:
        self.base_env = {**os.environ, **PORTS, "LC_NODES": "kwok"}
        self.env = dict(self.base_env)
        self.state = state
        self.planes = 0

    def cluster(self, *args: str) -> str:
        out = subprocess.run([str(CLUSTER_SH), *args], env=self.env, capture_output=True, text=True, timeout=300)
        if out.returncode != 0:
            raise RuntimeError(f"cluster.sh {' '.join(args)} failed:\n{out.stderr[-2000:]}")
        return out.stdout

    def up(self) -> None:
        """A new control plane with the ScaledApp CRD, its state in a folder of its own."""
        self.planes += 1
        plane = self.state / f"plane-{self.planes}"
        plane.mkdir()
        self.env = {**self.base_env, "SCALEDAPP_STATE": str(plane)}
        self.cluster("up")
        exported = dict(line.removeprefix("export ").split("=", 1)
                        for line in self.cluster("env").splitlines() if line.startswith("export "))
        self.env.update({k: v.strip("'\"") for k, v in exported.items()})
        self.kubectl("apply", "--server-side", "-f", str(CRD))
        deadline = time.monotonic() + 60
        while not crd_is_established(self.kubectl("get", "crd/scaledapps.scaledapp.dev", "-o", "json")):
            if time.monotonic() > deadline:
                raise RuntimeError("the ScaledApp CRD never became Established")
            time.sleep(0.2)

    @contextlib.contextmanager
    def control_plane(self) -> Iterator[None]:
        print("==> starting a control plane of its own for the next arm", file=sys.stderr)
        try:
            self.up()
            yield
        finally:
            self.cluster("down")

    def kubectl(self, *args: str, stdin: str | None = None, timeout: float = 600) -> str:
        out = subprocess.run(["kubectl", *args], env=self.env, input=stdin, capture_output=True, text=True,
                             timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)}: {out.stderr[-1000:]}")
        return out.stdout


# ------------------------------------------------------------------------------------------- what both arms make


def app_name(i: int) -> str:
    return f"app-{i:04d}"


def _merge(into: Any, patch: Any) -> Any:
    """Deep-merge an apply body into another (lists of named maps merge by name, as the API's list keys do)."""
    if isinstance(into, dict) and isinstance(patch, dict):
        out = dict(into)
        for key, value in patch.items():
            out[key] = _merge(into[key], value) if key in into else copy.deepcopy(value)
        return out
    if isinstance(into, list) and isinstance(patch, list) and all(isinstance(x, dict) and "name" in x
                                                                   for x in [*into, *patch]):
        by_name = {x["name"]: x for x in into}
        merged = [_merge(x, next((p for p in patch if p["name"] == x["name"]), {})) for x in into]
        return merged + [copy.deepcopy(p) for p in patch if p["name"] not in by_name]
    return copy.deepcopy(patch)


def children(name: str, namespace: str) -> list[dict[str, Any]]:
    """What the operator's first reconcile leaves for one ScaledApp: every child (the Secret with generated-once
    passwords, the primary at 1 replica) with the scaler's starting sizes merged in. No owner references: there
    is no ScaledApp in the raw arm."""
    spec = api.parse_spec(SPEC)
    built = resources.build_children(name, namespace, spec, passwords=resources.generate_passwords())
    # The Postgres CA and TLS Secrets the operator issues before its first apply, issued the same way.
    child, now = names.ChildNames(name), dt.datetime.now(dt.UTC)
    ca = tls.new_ca(f"{name} Postgres CA ({namespace})", now)
    built += [tls.ca_secret(child, namespace, ca),
              tls.tls_secret(child, namespace, tls.issue_server_tls(ca, child, namespace, REPLICATION_USER, now))]
    sizes = {(b["kind"], b["metadata"]["name"]): b for b in tiers.initial_scaler_bodies(name, namespace, spec)}
    return [_merge(m, sizes.get((m["kind"], m["metadata"]["name"]), {})) for m in built]


def expected_workloads(n: int, namespace: str) -> dict[tuple[str, str], int]:
    """(kind, name) -> the replicas every workload of the N ScaledApps must have ready."""
    out: dict[tuple[str, str], int] = {}
    for i in range(n):
        for m in children(app_name(i), namespace):
            if m["kind"] in WORKLOADS:
                out[(m["kind"], m["metadata"]["name"])] = int(m["spec"].get("replicas", 1))
    return out


def scaledapps(n: int, namespace: str) -> str:
    items = [{"apiVersion": api.API_VERSION, "kind": api.KIND,
              "metadata": {"name": app_name(i), "namespace": namespace}, "spec": SPEC} for i in range(n)]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


# ---------------------------------------------------------------------------------------------------- watching


class Watch:
    """`kubectl get KIND --watch` with a jsonpath line per object: the latest line of each object by name."""

    def __init__(self, bench: Bench, kind: str, namespace: str, template: str) -> None:
        self.latest: dict[str, list[str]] = {}
        self.changed = threading.Condition()
        self.proc = subprocess.Popen(
            ["kubectl", "get", kind, "-n", namespace, "--watch", "-o", f"jsonpath={template}" + '{"\\n"}'],
            env=bench.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            fields = line.rstrip("\n").split("|")
            with self.changed:
                self.latest[fields[0]] = fields[1:]
                self.changed.notify_all()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


class Workloads:
    """Every expected workload at its replicas, all ready: the one finish line of both arms."""

    TEMPLATE = "{.metadata.name}|{.spec.replicas}|{.status.readyReplicas}"

    def __init__(self, bench: Bench, namespace: str, expected: dict[tuple[str, str], int]) -> None:
        self.expected = expected
        self.watches = {kind: Watch(bench, kind.lower() + "s", namespace, self.TEMPLATE) for kind in WORKLOADS}

    def ready(self) -> int:
        count = 0
        for (kind, name), replicas in self.expected.items():
            fields = self.watches[kind].latest.get(name)
            if fields and fields[0] == str(replicas) and fields[1] == str(replicas):
                count += 1
        return count

    def wait(self, start: float, label: str, deadline: float) -> tuple[float | None, int]:
        """Seconds from `start` until every workload is ready (None: not by the deadline), and how many were."""
        total, shown = len(self.expected), -1
        while True:
            ready = self.ready()
            if ready == total:
                return time.monotonic() - start, ready
            if ready != shown:
                progress(f"  {label}: {ready}/{total} workloads ready after {time.monotonic() - start:.0f}s")
                shown = ready
            if time.monotonic() > deadline:
                return None, ready
            with self.watches[WORKLOADS[0]].changed:  # woken by either watch (or each half second)
                self.watches[WORKLOADS[0]].changed.wait(0.5)

    def stop(self) -> None:
        for watch in self.watches.values():
            watch.stop()


# ---------------------------------------------------------------------------------------------------- the arms


def raw_arm(bench: Bench, n: int, batch: int, jobs: int, expected: dict[tuple[str, str], int]) -> dict[str, Any]:
    namespace = f"scale-raw-{n}"
    bench.kubectl("create", "namespace", namespace)
    folder = bench.state / f"raw-{n}"
    folder.mkdir()
    files = []
    for first in range(0, n, batch):
        items = [m for i in range(first, min(n, first + batch)) for m in children(app_name(i), namespace)]
        path = folder / f"apps-{first:04d}.json"
        path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        files.append(path)
    watch = Workloads(bench, namespace, expected)
    try:
        start = time.monotonic()
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            list(pool.map(lambda path: bench.kubectl("apply", "--server-side", "--field-manager=raw-apply",
                                                     "-f", str(path)), files))
        applied = time.monotonic() - start
        seconds, ready = watch.wait(start, f"raw N={n}", start + DEADLINE_SECONDS)
    finally:
        watch.stop()
        print(file=sys.stderr)
    return {"seconds": seconds, "applied": applied, "ready": ready, "files": len(files)}


def operator_metrics(port: int) -> dict[str, Any]:
    """The operator's /metrics: its Kubernetes API calls so far (in all, by method and by the work they served)
    and its resident memory."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    by_method: dict[str, float] = {}
    by_work: dict[str, float] = {}
    by_call: dict[str, float] = {}  # "POST 409 reconcile": which work made which calls, and how they ended
    for labels, value in re.findall(r'^scaledapp_operator_kube_requests_total\{([^}]*)\} (\S+)$', text, re.MULTILINE):
        method = (re.findall(r'method="(\w+)"', labels) or ["?"])[0]
        work = (re.findall(r'work="(\w+)"', labels) or ["other"])[0]  # no label: operators before it
        by_method[method] = by_method.get(method, 0.0) + float(value)
        by_work[work] = by_work.get(work, 0.0) + float(value)
        code = (re.findall(r'code="(\w+)"', labels) or ["?"])[0]
        by_call[f"{method} {code} {work}"] = by_call.get(f"{method} {code} {work}", 0.0) + float(value)
    rss = re.search(r"^process_resident_memory_bytes (\S+)$", text, re.MULTILINE)
    return {"calls": sum(by_method.values()), "by_method": by_method, "by_work": by_work, "by_call": by_call,
            "rss_mib": float(rss.group(1)) / 2**20 if rss else float("nan")}


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def operator_arm(bench: Bench, n: int, steady: float, expected: dict[tuple[str, str], int], label: str,
                 source: Path | None, profile: Path | None = None, calls: bool = False) -> dict[str, Any]:
    """The operator (this checkout's, or the copy of its package folder in `source`) on N new ScaledApps."""
    namespace = f"scale-op-{label}-{n}"
    bench.kubectl("create", "namespace", namespace)
    liveness, metrics_port = free_port(), free_port()
    log = (bench.state / f"operator-{label}-{n}.log").open("w")
    env = dict(bench.env)
    if source is not None and (source.parent / "SOURCE").exists():  # which commit a copied folder came from
        print(f"  operator {label}: {(source.parent / 'SOURCE').read_text().strip()}", file=sys.stderr)
    if source is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(source), *filter(None, [env.get("PYTHONPATH")])])
    operator = subprocess.Popen(
        [sys.executable, "-m", "scaledapp", "-n", namespace, "--log-format", "json", *(["-v"] if calls else []),
         "--liveness", f"http://127.0.0.1:{liveness}/healthz", f"--metrics-port={metrics_port}"],
        env=env, stdout=log, stderr=subprocess.STDOUT)
    watch = Workloads(bench, namespace, expected)
    apps = Watch(bench, "scaledapps", namespace, '{.metadata.name}|{.status.conditions[?(@.type=="Ready")].status}')
    try:
        _wait_up(liveness, operator)
        # --profile: py-spy samples the operator until all is Ready (collapsed stacks, for a flame graph)
        spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(operator.pid),
                                "--nonblocking", "--rate", "25", "--format", "raw",
                                "-o", str(profile / f"operator-{label}-{n}.txt")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) if profile else None
        start = time.monotonic()
        cpu0 = cpu_seconds(operator.pid)
        bench.kubectl("create", "-f", "-", stdin=scaledapps(n, namespace))
        seconds, ready = watch.wait(start, f"operator ({label}) N={n}", start + DEADLINE_SECONDS)
        at_ready = operator_metrics(metrics_port)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=60)
        cpu_ready = cpu_seconds(operator.pid) - cpu0
        deadline = time.monotonic() + 120
        while sum(f[:1] == ["True"] for f in apps.latest.values()) < n and time.monotonic() < deadline:
            time.sleep(0.2)
        apps_ready = sum(f[:1] == ["True"] for f in apps.latest.values())
        status_seconds = time.monotonic() - start if apps_ready == n else None
        before = operator_metrics(metrics_port)
        time.sleep(steady)
        after = operator_metrics(metrics_port)
        rss = peak_rss_mib(operator.pid)
    finally:
        apps.stop()
        watch.stop()
        operator.terminate()
        operator.wait(timeout=60)
        log.close()
        breakdown = calls_by_resource(Path(log.name), n) if calls else {}
        if profile is not None:  # the operator's log beside its profile (the state folder goes at the end)
            shutil.copy(log.name, profile / Path(log.name).name)
        print(file=sys.stderr)
    ticks = steady / INTERVAL_SECONDS
    return {"label": label, "seconds": seconds, "ready": ready, "status_seconds": status_seconds,
            "apps_ready": apps_ready, "by_method": at_ready["by_method"], "by_call": at_ready["by_call"],
            "rss_mib": rss,
            "rss_end_mib": after["rss_mib"], "calls_to_ready": at_ready["calls"] / n,
            "calls_per_tick": (after["calls"] - before["calls"]) / n / ticks, "cpu_to_ready": cpu_ready,
            "steady_by_work": {w: (v - before["by_work"].get(w, 0.0)) / n / ticks
                               for w, v in after["by_work"].items() if v > before["by_work"].get(w, 0.0)},
            "breakdown": breakdown}


API_LINE = re.compile(r"API (GET|POST|PUT|PATCH|DELETE) (\S+)")


def calls_by_resource(log: Path, n: int) -> dict[str, float]:
    """The operator's Kubernetes calls per ScaledApp over its whole run, by method and resource ("PATCH
    statefulsets", "PATCH scaledapps/status"), from its debug log's `API <method> <path>` lines."""
    counts: dict[str, int] = {}
    for line in log.read_text(errors="replace").splitlines():
        found = API_LINE.search(line)
        if not found:
            continue
        parts = found.group(2).split("?")[0].strip("/").split("/")
        # .../namespaces/NS/RESOURCE/NAME[/SUB]: the resource and its subresource, without names
        at = parts.index("namespaces") + 2 if "namespaces" in parts else len(parts) - 2
        resource = "/".join([parts[at], *parts[at + 2:at + 3]]) if at < len(parts) else parts[-1]
        key = f"{found.group(1)} {resource}"
        counts[key] = counts.get(key, 0) + 1
    return {key: count / n for key, count in sorted(counts.items(), key=lambda kv: -kv[1])}


def _wait_up(port: int, operator: subprocess.Popen[Any]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if operator.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("operator did not start")
        time.sleep(0.2)


def _fmt(seconds: float | None) -> str:
    return "not Ready" if seconds is None else f"{seconds:.1f} s"


def table(rows: Iterable[dict[str, Any]]) -> list[str]:
    lines = ["| ScaledApps | raw apply: all workloads ready | operator | operator: all workloads ready | ratio "
             "| operator: every ScaledApp Ready=True | operator peak RSS | API calls per ScaledApp to Ready "
             "| API calls per ScaledApp per tick (steady) | operator CPU to Ready |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        raw, op = r["raw"], r["operator"]
        ratio = f"{op['seconds'] / raw['seconds']:.2f}x" if op["seconds"] and raw["seconds"] else "-"
        lines.append(
            f"| {r['n']} | {_fmt(raw['seconds'])} (applied in {raw['applied']:.1f} s) | {op['label']} "
            f"| {_fmt(op['seconds'])} "
            f"| {ratio} | {_fmt(op['status_seconds'])} ({op['apps_ready']}/{r['n']}) | {op['rss_mib']:.0f} MiB "
            f"| {op['calls_to_ready']:.1f} | {op['calls_per_tick']:.2f}{_by_work(op)} | {op['cpu_to_ready']:.0f} s |")
    return lines


def _by_work(op: dict[str, Any]) -> str:
    """Which work made the steady-state calls (the operator's `work` label), e.g. ` (resync 0.02)`."""
    works = op.get("steady_by_work") or {}
    return " (" + ", ".join(f"{w} {v:.2f}" for w, v in sorted(works.items())) + ")" if works else ""


def _interrupted(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through the arms' and the cluster's teardown


def main(argv: list[str] | None = None) -> int:
    # TERM, and INT even when started in the background (where a shell leaves INT ignored), stop the operator,
    # the watches and the control plane on the way out.
    signal.signal(signal.SIGTERM, _interrupted)
    signal.signal(signal.SIGINT, _interrupted)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sizes", nargs="*", type=int, default=[1, 50])
    parser.add_argument("--batch", type=int, default=25, help="ScaledApps' children per raw apply file")
    parser.add_argument("--raw-jobs", type=int, default=4, help="raw apply files applied at once")
    parser.add_argument("--steady", type=float, default=30.0, help="seconds of steady state to count calls over")
    parser.add_argument("--profile", type=Path,
                        help="py-spy the operator until Ready; collapsed stacks and the operator's log here")
    parser.add_argument("--calls", action="store_true",
                        help="run the operator with debug logging and print its calls per ScaledApp by resource")
    parser.add_argument("--operator", action="append", default=[], metavar="LABEL=DIR",
                        help="an operator arm running the scaledapp package found in DIR (e.g. an older commit's "
                             "operator/ folder, for a before/after in the same run); repeatable, in this order; "
                             "default: this checkout's, labelled 'this'")
    args = parser.parse_args(argv)
    arms: list[tuple[str, Path | None]] = [(a.split("=", 1)[0], Path(a.split("=", 1)[1]).resolve())
                                           for a in args.operator] or [("this", None)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="scaledapp-scale-") as tmp:
        bench = Bench(Path(tmp))
        for n in args.sizes:
            expected = expected_workloads(n, "-")
            with bench.control_plane():
                raw = raw_arm(bench, n, args.batch, args.raw_jobs, expected)
            for label, source in arms:
                with bench.control_plane():
                    op = operator_arm(bench, n, args.steady, expected, label, source, args.profile, args.calls)
                rows.append({"n": n, "raw": raw, "operator": op})
                print("\n".join(table(rows[-1:])), file=sys.stderr)
    print("\n".join(table(rows)))
    for r in rows:
        op = r["operator"]
        calls = ", ".join(f"{m} {v / r['n']:.1f}" for m, v in sorted(op["by_method"].items()))
        print(f"\nN={r['n']} `{op['label']}`: API calls per ScaledApp to Ready by method: {calls}; RSS at the end "
              f"{op['rss_end_mib']:.0f} MiB.", end="")
        by_call = sorted(op["by_call"].items(), key=lambda kv: -kv[1])
        print(f"\nN={r['n']} `{op['label']}`: to Ready by method, status and work: "
              + ", ".join(f"{k} {v / r['n']:.2f}" for k, v in by_call if v / r["n"] >= 0.01), end="")
        if op["breakdown"]:
            print(f"\nN={r['n']} `{op['label']}`: calls per ScaledApp over the whole run (to Ready and the steady "
                  "seconds) by resource: " + ", ".join(f"{k} {v:.2f}" for k, v in op["breakdown"].items()), end="")
    print()
    for label, source in arms:
        print(f"\nOperator `{label}`: " + (f"the scaledapp package in {source}" if source else "this checkout's") + ".")
    print("\nEach arm on a control plane of its own, started afresh. "
          f"Raw apply: the same children in files of {args.batch} ScaledApps, `kubectl apply --server-side`, "
          f"{args.raw_jobs} files at a time. Steady state: {args.steady:.0f} s after every ScaledApp is Ready, "
          f"ticks every {INTERVAL_SECONDS} s.")
    print("Goals: 500 ScaledApps ready in <= 1.25x the raw apply; RSS at 500 < 250 MiB; 0 API calls per "
          "ScaledApp per tick at steady state. Command: `python -m bench.operator_scale " +
          " ".join(str(s) for s in args.sizes) + "`.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
