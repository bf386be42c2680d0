"""`make demo` on the local real node: real pods, the real Prometheus, real load; a live timeline, a report, a plot.

    python -m devharness.demo.real [--duration 420] [--profile bottleneck-shift] [--every 5] [--out demo-results]

Expects `make cluster-up` (the local control plane with its real node; images imported). In order: the CRD;
the operator chart with its bundled Prometheus (helm release `scaledapp` in scaledapp-system, as `make deploy`
installs it); examples/demo-real.yaml in a fresh namespace until every tier is Ready and Prometheus scrapes
each; then the load profile's phases, each a load Job inside the cluster (hack/loadjob.py) against the app's
Service, while a line every few seconds shows the offered load, p95, the bottleneck, its pressure, ready
replicas and the operator's Events. At the end - or on Ctrl-C / SIGTERM - the Jobs and the namespace are
deleted and demo-results/<time>/ holds report.md, plot.png, the timeline, each Job's report, the final
ScaledApp, the namespace's Events and the operator's log lines about it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from hack import loadjob
from hack.kubeutil import Kubectl, KubectlFailedError

from demo_app.profiles import parse_mix, parse_profile
from devharness.demo.record import Recorder, Sample, prometheus_value, timeline_header, timeline_line
from devharness.demo.report import markdown, plot
from devharness.demo.stack import cluster_exports, load_example
from devharness.procs import REPO, HarnessError, poll
from scaledapp import api
from scaledapp.quantity import parse_cpu_millicores

CONTEXT = "scaledapp-local"  # the local cluster's kubeconfig context (hack/localcluster/cluster.sh)
SYSTEM_NS = "scaledapp-system"  # the CRD's default prometheusUrl points at the bundled Prometheus here
RELEASE = "scaledapp"
CHART = REPO / "charts" / "scaledapp-operator"
CRDS = REPO / "crds"
EXAMPLE = REPO / "examples" / "demo-real.yaml"
OPERATOR_DEPLOYMENT = f"{RELEASE}-scaledapp-operator"  # the chart's fullname for this release
PROMETHEUS_SERVICE = "prometheus"  # the chart's prometheus.serviceName
TIERS = ("app", "cache", "db-write", "db-read", "workers")  # every one is scraped (the queue Redis is not)
STATUS_TIERS = {"app": "app", "cache": "cache", "db-write": "dbWrite", "db-read": "dbRead", "workers": "workers"}
LOAD_CPU_REQUEST = "200m"  # per load Job: the node has 2 CPUs, and the tiers must be able to widen
JOB_START_SECONDS = 4.0  # a Job's pod runs a few seconds after it is created: it ends that much earlier


# ------------------------------------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class Phase:
    """One stretch of load: a `python -m demo_app.load` run of its own (one Job)."""

    name: str
    share: float  # of the load time
    profile: str  # demo_app.load --profile, e.g. "ramp:rate=10,peak=45" (the Job's length is its duration)
    mix: str  # demo_app.load --mix
    keys: int  # demo_app.load --keys: the items read (1..keys; the app seeds 1000)
    zipf: float  # demo_app.load --zipf: 0 = every item alike, 1.1 = a few hot ones
    expect: str  # the tier it is meant to press ("" = none): the report's "meant to press" column
    about: str  # what it is, for people

    def load_args(self) -> tuple[str, ...]:
        return ("--mix", self.mix, "--keys", str(self.keys), "--zipf", f"{self.zipf:g}")


@dataclass(frozen=True)
class Scheduled:
    phase: Phase
    start: float  # seconds after the load began
    length: float

    def rate_at(self, t: float) -> float:
        """Requests per second this phase offers at `t` seconds after the load began (0 outside it)."""
        return parse_profile(self.phase.profile, self.length).rate_at(t - self.start)


WARM_UP = Phase("warm-up", 0.05, "constant:rate=10", "read=1", 20, 1.1, "",
                "10 reads/s of 20 hot items: the cache fills")
CPU_HEAVY = Phase("cpu-heavy", 0.36, "ramp:rate=10,peak=40", "read=1", 20, 1.1, "app",
                  "reads of hot (cached) items ramp from 10 to 40/s; each burns 8 ms of app CPU")
REPORTS = Phase("reports", 0.31, "constant:rate=28", "read=1", 1000, 0.0, "db-read",
                "28 reads/s spread over all 1000 items: most miss the 10 s cache and run a 9 ms report "
                "query on a replica")
ORDER_SURGE = Phase("order-surge", 0.28, "constant:rate=13", "read=10,order=3", 20, 1.1, "workers",
                    "3 orders/s, each 1 s of one worker's time, beside 10 reads/s")

PLANS: dict[str, tuple[Phase, ...]] = {
    "bottleneck-shift": (WARM_UP, CPU_HEAVY, REPORTS, ORDER_SURGE),
    "app": (WARM_UP, CPU_HEAVY),
    "read-bottleneck": (WARM_UP, REPORTS),
    "orders": (WARM_UP, ORDER_SURGE),
}


def schedule(phases: Sequence[Phase], duration: float) -> list[Scheduled]:
    """The phases laid end to end over `duration` seconds, each getting its share (shares are normalised)."""
    total = sum(p.share for p in phases)
    out: list[Scheduled] = []
    start = 0.0
    for phase in phases:
        length = duration * phase.share / total
        out.append(Scheduled(phase, start, length))
        start += length
    return out


def phase_at(plan: Sequence[Scheduled], t: float) -> Scheduled | None:
    """The phase running `t` seconds after the load began (None before the first and after the last)."""
    for item in plan:
        if item.start <= t < item.start + item.length:
            return item
    return None


def validate(plan: Sequence[Scheduled]) -> None:
    """Every phase's profile and mix parse (before anything starts, not when its Job fails)."""
    for item in plan:
        parse_profile(item.phase.profile, item.length)
        parse_mix(item.phase.mix)


def describe(plan: Sequence[Scheduled]) -> list[str]:
    return [f"{s.start:4.0f}s {s.phase.name:<12} {s.length:3.0f}s  {s.phase.about}"
            + (f"  -> {s.phase.expect}" if s.phase.expect else "") for s in plan]


def jobs_table(results: Sequence[tuple[Scheduled, str, dict[str, Any] | None]]) -> list[str]:
    """The load Jobs as the generator inside each measured them (client side, through the Service)."""
    lines = ["## Load Jobs (measured by the generator, through the app's Service)", "",
             "| phase | Job | sent | ok | failed | p50 | p95 | p99 |", "|---|---|---|---|---|---|---|---|"]
    for item, job, report in results:
        if report is None:
            lines.append(f"| {item.phase.name} | {job} | - | - | - | - | - | - |")
            continue
        errors = report.get("errors") or {}
        failed = sum(errors.values())
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(errors.items()))
        ms = [f"{report[k]:.0f} ms" if isinstance(report.get(k), int | float) else "-"
              for k in ("p50_ms", "p95_ms", "p99_ms")]
        lines.append(f"| {item.phase.name} | {job} | {report.get('sent', '-')} | {report.get('ok', '-')} | "
                     f"{failed}{f' ({kinds})' if kinds else ''} | {' | '.join(ms)} |")
    return [*lines, ""]


# ------------------------------------------------------------------------------------------------ the shell


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


class RealCluster:
    """kubectl and helm against the local cluster, always with its explicit context and kubeconfig."""

    def __init__(self, exports: dict[str, str]) -> None:
        self.kubeconfig = exports["KUBECONFIG"]
        self.path = exports["PATH"]
        kubectl, helm = shutil.which("kubectl", path=self.path), shutil.which("helm", path=self.path)
        if kubectl is None or helm is None:
            raise HarnessError("kubectl or helm is not among the pinned binaries: run `make tools`")
        self.helm_path = helm
        self.kubectl = Kubectl(context=CONTEXT, kubeconfig=self.kubeconfig, binary=kubectl)

    def helm(self, *args: str, timeout: float = 600.0) -> str:
        cmd = [self.helm_path, *args, "--kube-context", CONTEXT, "--kubeconfig", self.kubeconfig]
        print("+ " + shlex.join(cmd), file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise HarnessError(f"helm {args[0]} failed: {proc.stderr.strip() or proc.stdout.strip()}")
        return proc.stdout

    def get(self, *args: str) -> dict[str, Any]:
        try:
            return self.kubectl.get(*args)
        except KubectlFailedError as exc:
            raise HarnessError(str(exc)) from exc

    def run(self, *args: str, input: str | None = None, timeout: float = 120.0, quiet: bool = False) -> str:
        try:
            return self.kubectl.run(*args, input=input, timeout=timeout, quiet=quiet)
        except KubectlFailedError as exc:
            raise HarnessError(str(exc)) from exc

    # ------------------------------------------------------------------ checks

    def real_node(self) -> str:
        """The name of a Ready node that is not one of kwok's (they run no containers)."""
        for node in self.get("nodes")["items"]:
            fake = "kwok.x-k8s.io/node" in (node["metadata"].get("annotations") or {})
            ready = any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions", []))
            if ready and not fake:
                return str(node["metadata"]["name"])
        raise HarnessError(f"no Ready real node in the cluster of {self.kubeconfig}: run `make cluster-up` "
                           "(LC_NODES=real, the default)")

    def cpu_room(self, node: str) -> tuple[int, int]:
        """(millicores the node can give, millicores its pods request already)."""
        allocatable = parse_cpu_millicores(str(self.get("node", node)["status"]["allocatable"]["cpu"]))
        requested = 0
        for pod in self.get("pods", "-A", "--field-selector", f"spec.nodeName={node}")["items"]:
            if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                continue
            for container in pod["spec"].get("containers", []):
                cpu = (container.get("resources", {}).get("requests") or {}).get("cpu")
                requested += parse_cpu_millicores(str(cpu)) if cpu else 0
        return allocatable, requested

    # ------------------------------------------------------------------ installs

    def install_crd(self) -> None:
        self.run("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))

        def established() -> bool:
            crd = self.get(f"crd/{api.PLURAL}.{api.GROUP}")
            return any(c.get("type") == "Established" and c.get("status") == "True"
                       for c in crd.get("status", {}).get("conditions") or [])

        poll(established, 60, "the ScaledApp CRD Established", 0.5)

    def install_chart(self) -> None:
        # One operator replica (still under leader election): the node has 2 CPUs, and the operator's log lines
        # are read from `kubectl logs deployment/...`, which would pick the idle standby half of the time.
        self.helm("upgrade", "--install", RELEASE, str(CHART), "--namespace", SYSTEM_NS, "--create-namespace",
                  "--set", "prometheus.enabled=true", "--set", "replicas=1", "--wait", "--timeout", "5m")

    def operator_image_current(self) -> None:
        """Restart the operator if its pod runs an older build of its image than the node now has (the chart
        names a tag, and an image rebuilt and imported under the same tag does not roll the Deployment)."""
        crictl = shutil.which("crictl", path=self.path) or next(
            (str(p) for p in sorted(Path.home().glob(".cache/scaledapp/bin/crictl-*/crictl"))), None)
        socket = Path("/run/scaledapp-node/containerd.sock")
        pods = self.get("pods", "-n", SYSTEM_NS, "-l",
                        f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=operator")["items"]
        running = {s.get("image", ""): s.get("imageID", "") for p in pods
                   for s in p.get("status", {}).get("containerStatuses") or []}
        if crictl is None or not socket.exists() or not running:
            return
        for image, image_id in running.items():
            proc = subprocess.run([crictl, "--runtime-endpoint", f"unix://{socket}", "inspecti", "-o", "json", image],
                                  capture_output=True, text=True, timeout=30, check=False)
            if proc.returncode != 0:
                return
            current = json.loads(proc.stdout).get("status", {}).get("id", "")
            if current and image_id and current not in image_id:
                say(f"the node has a newer build of {image} than the operator runs: restarting it")
                self.run("rollout", "restart", "-n", SYSTEM_NS, f"deployment/{OPERATOR_DEPLOYMENT}")
                self.run("rollout", "status", "-n", SYSTEM_NS, f"deployment/{OPERATOR_DEPLOYMENT}",
                         "--timeout=180s", timeout=200)
                return

    def prometheus_url(self) -> str:
        """The bundled Prometheus through its ClusterIP: the host reaches Service addresses directly."""
        ip = self.get("service", PROMETHEUS_SERVICE, "-n", SYSTEM_NS)["spec"]["clusterIP"]
        url = f"http://{ip}:9090"

        def ready() -> bool:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=3) as response:
                return bool(response.status == 200)

        poll(ready, 60, f"Prometheus at {url} ready", 1.0)
        return url


class Demo:
    """One run: a namespace with one ScaledApp and its load Jobs; everything it creates, close() deletes."""

    def __init__(self, cluster: RealCluster, namespace: str, out: Path, name: str = "demo") -> None:
        self.cluster, self.namespace, self.out, self.name = cluster, namespace, out, name
        self.jobs: list[tuple[Scheduled, str]] = []
        self.created = False
        self.started = dt.datetime.now(dt.UTC)

    def create(self, body: dict[str, Any]) -> None:
        self.cluster.run("create", "namespace", self.namespace)
        self.created = True
        poll(lambda: self.cluster.kubectl.find("serviceaccount", "default", "-n", self.namespace), 60,
             f"the default ServiceAccount in {self.namespace}", 0.5)
        body = {**body, "metadata": {**body.get("metadata", {}), "name": self.name, "namespace": self.namespace}}
        self.cluster.run("apply", "--server-side", "--field-manager=demo", "-f", "-", input=json.dumps(body))

    def status(self) -> dict[str, Any]:
        found = self.cluster.kubectl.find("scaledapp", self.name, "-n", self.namespace) or {}
        status: dict[str, Any] = found.get("status") or {}
        return status

    def wait_ready(self, timeout: float) -> None:
        """Until the ScaledApp says Ready, printing the tiers' ready/desired whenever they change."""
        start, last = time.monotonic(), ""

        def ready() -> bool:
            nonlocal last
            status = self.status()
            tiers = status.get("tiers") or {}
            counts = {tier: tiers.get(key) or {} for tier, key in STATUS_TIERS.items()}
            line = "  ".join(f"{tier} {c.get('ready', 0)}/{c.get('desired', '?')}" for tier, c in counts.items())
            if line != last:
                print(f"   {time.monotonic() - start:4.0f}s  {line}", flush=True)
                last = line
            return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])

        poll(ready, timeout, f"ScaledApp {self.namespace}/{self.name} Ready (kubectl -n {self.namespace} get pods)",
             2.0)

    def wait_scraped(self, prometheus: str, timeout: float) -> None:
        """Prometheus has an up target for every tier's pods (the operator's signals can be computed)."""
        sel = f'namespace="{self.namespace}",app_kubernetes_io_instance="{self.name}"'

        def scraped() -> bool:
            found = {t for t in TIERS if prometheus_value(
                prometheus, f'count(up{{{sel},scaledapp_dev_tier="{t}"}} == 1)') is not None}
            return found >= set(TIERS)

        poll(scraped, timeout, f"Prometheus scraping every tier (targets: {prometheus}/targets)", 2.0)

    def wait_metrics(self, timeout: float) -> bool:
        def available() -> bool:
            return any(c.get("type") == "MetricsAvailable" and c.get("status") == "True"
                       for c in self.status().get("conditions") or [])

        try:
            poll(available, timeout, "MetricsAvailable", 2.0)
        except HarnessError:
            return False
        return True

    def start_job(self, index: int, item: Scheduled, image: str) -> str:
        seconds = max(10.0, item.length - JOB_START_SECONDS)
        spec = loadjob.LoadSpec(self.namespace, self.name, item.phase.profile, seconds, image,
                                args=item.phase.load_args(), cpu_request=LOAD_CPU_REQUEST)
        quiet = dataclasses.replace(self.cluster.kubectl, echo=False)  # the timeline's "------ load:" line says it
        try:
            job = loadjob.start(quiet, spec, f"load-{index}-{item.phase.name}")
        except KubectlFailedError as exc:
            raise HarnessError(str(exc)) from exc
        self.jobs.append((item, job))
        return job

    def job_reports(self, wait: float) -> list[tuple[Scheduled, str, dict[str, Any] | None]]:
        """Each Job's report from its log (None if it did not finish: cut short or failed); waits up to `wait`
        seconds for Jobs still running."""
        deadline = time.monotonic() + wait
        out: list[tuple[Scheduled, str, dict[str, Any] | None]] = []
        for item, job in self.jobs:
            report = None
            with contextlib.suppress(KubectlFailedError, TimeoutError, ValueError):
                report = loadjob.finish(self.cluster.kubectl, self.namespace, job,
                                        timeout=max(1.0, deadline - time.monotonic()))
            out.append((item, job, report))
        return out

    def save_artifacts(self) -> None:
        """The final ScaledApp, the namespace's Events, the operator's log lines about this namespace."""
        for name, args in (("scaledapp.yaml", ("get", "scaledapp", self.name, "-n", self.namespace, "-o", "yaml")),
                           ("events.txt", ("get", "events", "-n", self.namespace, "--sort-by=.lastTimestamp")),
                           ("pods.txt", ("get", "pods", "-n", self.namespace, "-o", "wide"))):
            with contextlib.suppress(HarnessError, subprocess.TimeoutExpired):
                (self.out / name).write_text(self.cluster.run(*args, quiet=True, timeout=30))
        with contextlib.suppress(HarnessError, subprocess.TimeoutExpired):
            log = self.cluster.run("logs", "-n", SYSTEM_NS, f"deployment/{OPERATOR_DEPLOYMENT}",
                                   f"--since-time={self.started.isoformat(timespec='seconds')}", quiet=True,
                                   timeout=60)
            mine = [line for line in log.splitlines() if self.namespace in line]
            (self.out / "operator.log").write_text("\n".join(mine) + "\n")

    def close(self, wait: float = 180.0) -> None:
        """Stop the load, delete the namespace (its ScaledApp's finalizer is the running operator's) and wait."""
        if not self.created:
            return
        with contextlib.suppress(HarnessError, subprocess.TimeoutExpired):
            self.cluster.run("delete", "jobs", "--all", "-n", self.namespace, "--wait=false", timeout=60)
        start = time.monotonic()
        try:
            self.cluster.run("delete", "namespace", self.namespace, "--wait=false", timeout=60)
            poll(lambda: self.cluster.kubectl.find("namespace", self.namespace) is None, wait,
                 f"namespace {self.namespace} gone", 2.0)
            say(f"namespace {self.namespace} deleted in {time.monotonic() - start:.0f}s")
        except (HarnessError, subprocess.TimeoutExpired) as exc:
            print(f"(namespace {self.namespace} is not gone yet: {exc}; "
                  f"see kubectl --context {CONTEXT} get all -n {self.namespace})", file=sys.stderr)


# ------------------------------------------------------------------------------------------------ main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devharness.demo.real", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=420.0, help="seconds of load (default 420)")
    parser.add_argument("--profile", choices=sorted(PLANS), default="bottleneck-shift")
    parser.add_argument("--every", type=float, default=5.0, help="seconds between timeline lines")
    parser.add_argument("--out", type=Path, default=REPO / "demo-results")
    parser.add_argument("--example", type=Path, default=EXAMPLE, help="the ScaledApp to run")
    parser.add_argument("--image", default=loadjob.DEMO_IMAGE, help="image of the load Jobs")
    parser.add_argument("--ready-timeout", type=float, default=300.0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = schedule(PLANS[args.profile], args.duration)
    validate(plan)
    out = (args.out / dt.datetime.now().strftime("%Y%m%d-%H%M%S")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    namespace = f"scaledapp-demo-{secrets.token_hex(2)}"
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        print(f"\n(signal {signum}: stopping the load, writing the report, deleting {namespace})", flush=True)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    started = time.monotonic()
    demo: Demo | None = None
    recorder: Recorder | None = None
    return_code = 0
    try:
        cluster = RealCluster(cluster_exports())
        node = cluster.real_node()
        allocatable, requested = cluster.cpu_room(node)
        say(f"real node {node}: {requested}m of {allocatable}m CPU requested before the demo; results in {out}")
        if allocatable - requested < 700:
            say(f"WARNING: {allocatable - requested}m CPU left to request; the widened tiers and the load Jobs "
                "may stay Pending (other workloads on the node?)")
        say("the CRD (server-side apply; helm never upgrades a chart's CRDs)")
        cluster.install_crd()
        say(f"the operator and the bundled Prometheus: helm release {RELEASE} in {SYSTEM_NS}")
        cluster.install_chart()
        cluster.operator_image_current()
        prometheus = cluster.prometheus_url()
        say(f"Prometheus answers at {prometheus} (the Service's ClusterIP)")
        demo = Demo(cluster, namespace, out)
        rel = args.example.relative_to(REPO) if args.example.is_relative_to(REPO) else args.example
        say(f"namespace {namespace}: ScaledApp {rel}; waiting for every tier to be Ready")
        demo.create(load_example(args.example))
        demo.wait_ready(args.ready_timeout)
        say(f"Ready after {time.monotonic() - started:.0f}s; waiting for Prometheus to scrape every tier")
        demo.wait_scraped(prometheus, 120)
        if not demo.wait_metrics(90):
            say("WARNING: the operator does not report MetricsAvailable yet; starting the load anyway")
        say(f"set up in {time.monotonic() - started:.0f}s; load profile {args.profile} for {args.duration:.0f}s, "
            "each phase a load Job in the namespace:")
        for line in describe(plan):
            print(f"   {line}", flush=True)
        signal.signal(signal.SIGINT, on_signal)  # from now on Ctrl-C ends the run early, with a report
        recorder = Recorder(cluster.kubeconfig, namespace, demo.name, prometheus, None)
        run_load(demo, recorder, plan, args, stop)
    except HarnessError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return_code = 1
    except KeyboardInterrupt:
        print("\n(interrupted)", file=sys.stderr)
        return_code = 130
    finally:
        if demo is not None:
            if recorder is not None:
                write_report(demo, recorder, plan, out, args, namespace)
                recorder.close()
            say(f"deleting namespace {namespace}")
            demo.close()
    say(f"total {time.monotonic() - started:.0f}s")
    return return_code


def run_load(demo: Demo, recorder: Recorder, plan: Sequence[Scheduled], args: argparse.Namespace,
             stop: threading.Event) -> None:
    """Start each phase's Job on time; one timeline line every `args.every` seconds until the end."""
    print(timeline_header(), flush=True)
    pending = list(enumerate(plan))
    while not stop.is_set():
        t = time.monotonic() - recorder.start
        if t >= args.duration:
            break
        while pending and pending[0][1].start <= t:
            index, item = pending.pop(0)
            job = demo.start_job(index, item, args.image)
            print(f"------ load: {item.phase.name} (Job {job}): {item.phase.about}", flush=True)
        sample = recorder.sample()
        offer(sample, plan)
        print(timeline_line(sample), flush=True)
        stop.wait(max(0.0, min(args.every, args.duration - (time.monotonic() - recorder.start))))


def offer(sample: Sample, plan: Sequence[Scheduled]) -> None:
    """The offered load and phase name at the sample's time (the profile is the input, not a measurement)."""
    current = phase_at(plan, sample.t)
    sample.load = sum(item.rate_at(sample.t) for item in plan)
    sample.phase = current.phase.name if current else ""


def write_report(demo: Demo, recorder: Recorder, plan: Sequence[Scheduled], out: Path, args: argparse.Namespace,
                 namespace: str) -> None:
    say("collecting the load Jobs' reports, the ScaledApp, its Events and the operator's log")
    reports = demo.job_reports(wait=30.0)
    demo.save_artifacts()
    (out / "jobs.json").write_text(json.dumps([{"phase": item.phase.name, "job": job, "report": report}
                                               for item, job, report in reports], indent=2) + "\n")
    recorder.write(out / "timeline.jsonl")
    title = f"ScaledApp demo: {args.profile} on the local real node"
    plot_path = out / "plot.png"
    plot(recorder.samples, plot_path, title, [(s.start, s.phase.name) for s in plan])
    rel = args.example.relative_to(REPO) if args.example.is_relative_to(REPO) else args.example
    settings = {"profile": args.profile, "namespace": namespace, "ScaledApp": str(rel),
                "where": "real pods on the local node; signals from the bundled Prometheus; load from Jobs in the "
                         "namespace",
                "load phases": "; ".join(f"{s.start:.0f}s {s.phase.name}" for s in plan)}
    text = markdown(recorder.samples, title=title, settings=settings, plot=plot_path.name,
                    phases=[(s.start, s.phase.name, s.phase.expect) for s in plan])
    (out / "report.md").write_text(text + "\n" + "\n".join(jobs_table(reports)))
    print(f"==> report: {out / 'report.md'}\n==> plot:   {plot_path}\n==> raw:    {out}/timeline.jsonl, jobs.json, "
          "scaledapp.yaml, events.txt, operator.log", flush=True)


if __name__ == "__main__":
    sys.exit(main())
