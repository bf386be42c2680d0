"""Chaos drill: delete a pod of each tier under load and report before/after.

    python -m hack.chaos [--namespace demo] [--name demo] [--tiers app,cache,db-read,db-write,workers,queue]
                         [--seconds 90] [--kill-after 20] [--profile constant:rate=40] [--no-load] [--json PATH]
                         [--app-url URL]

First a baseline load run with nothing broken ("before"). Then, per tier: start the same load (a Job behind
the app's Service, hack/loadjob.py), after --kill-after seconds delete one Ready pod of the tier, measure
the time until the tier is back to as many Ready pods as before, let the load finish, and collect what the
operator did meanwhile (its Events and scaler decisions). Beside the load, a write probe (hack/writeprobe.py)
writes through the app 20 times a second and, after the drill, looks each acknowledged write up in the
primary: the table gives the longest time writes were down and how many acknowledged writes were lost.
The queue and workers drills also place orders before the kill and count the accepted ones the app no
longer knows after it. The table puts failed requests, p99, time to Ready, writes down and what was lost
next to the baseline. --no-load skips load and probes (e.g. on a control plane whose pods run nothing, as in
tests/cluster/test_chaos.py). The probes reach the app at --app-url, else its Service's cluster IP when this
machine routes to it (the local node), else through `kubectl port-forward`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hack import loadjob, writeprobe
from hack.kubeutil import DEFAULT_CONTEXT, Kubectl, KubectlFailedError, is_ready, pods, poll

TIERS = ("app", "cache", "db-read", "db-write", "workers", "queue")
INSTANCE_LABEL = "app.kubernetes.io/instance"
TIER_LABEL = "scaledapp.dev/tier"
ROLE_LABEL = "scaledapp.dev/role"
OPERATOR = "scaledapp-operator"


@dataclass
class Drill:
    tier: str
    pod: str = ""
    ready_before: int = 0
    seconds_to_ready: float | None = None
    sent: int | None = None
    failed: int | None = None
    errors: dict[str, int] = field(default_factory=dict)
    p99_ms: float | None = None
    operator_events: list[str] = field(default_factory=list)
    decisions: list[str] = field(default_factory=list)
    note: str = ""
    writes_down_s: float | None = None
    writes_acked: int | None = None
    writes_lost: int | None = None
    orders_accepted: int | None = None
    orders_lost: int | None = None
    killed_at: float | None = None


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def parse_time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def tier_pods(kubectl: Kubectl, namespace: str, name: str, tier: str) -> list[dict[str, Any]]:
    return pods(kubectl, namespace, [f"{INSTANCE_LABEL}={name}", f"{TIER_LABEL}={tier}"])


def operator_events(kubectl: Kubectl, namespace: str, name: str, since: dt.datetime) -> list[str]:
    """Events the operator posted about the ScaledApp since `since` (reason: message)."""
    out = []
    for event in kubectl.get("events", "-n", namespace)["items"]:
        involved = event.get("involvedObject", {})
        source = event.get("source", {}).get("component") or event.get("reportingComponent")
        when = parse_time(event.get("lastTimestamp") or event.get("eventTime") or event["metadata"].get(
            "creationTimestamp"))
        if involved.get("kind") == "ScaledApp" and involved.get("name") == name and source == OPERATOR \
                and when is not None and when >= since.replace(microsecond=0):
            out.append(f"{event.get('reason')}: {event.get('message', '')[:160]}")
    return out


def decisions(kubectl: Kubectl, namespace: str, name: str, since: dt.datetime) -> list[str]:
    """Scaler decisions in status.history made since `since`."""
    status = (kubectl.find("scaledapp", name, "-n", namespace) or {}).get("status") or {}
    out = []
    for action in status.get("history") or []:
        when = parse_time(action.get("time"))
        if when is not None and when >= since.replace(microsecond=0):
            applied = "applied" if action.get("applied") else "not applied"
            out.append(f"{action.get('kind')} {action.get('tier')} {action.get('from')}->{action.get('to')} "
                       f"({applied}): {action.get('reason', '')}")
    return out


def kill_and_wait(kubectl: Kubectl, namespace: str, name: str, drill: Drill, timeout: float) -> None:
    before = [p for p in tier_pods(kubectl, namespace, name, drill.tier) if is_ready(p)]
    drill.ready_before = len(before)
    if not before:
        drill.note = "no Ready pod of this tier (tier disabled or not up): skipped"
        return
    victim = sorted(before, key=lambda p: p["metadata"]["name"])[0]
    drill.pod = victim["metadata"]["name"]
    uid = victim["metadata"]["uid"]
    start = drill.killed_at = time.monotonic()
    kubectl.run("delete", "pod", "-n", namespace, drill.pod, "--wait=false")

    def recovered() -> bool:
        current = tier_pods(kubectl, namespace, name, drill.tier)
        ready = [p for p in current if is_ready(p) and p["metadata"]["uid"] != uid]
        return len(ready) >= drill.ready_before

    try:
        poll(recovered, timeout, f"{drill.tier} back to {drill.ready_before} Ready pod(s)")
        drill.seconds_to_ready = round(time.monotonic() - start, 1)
    except TimeoutError as exc:
        drill.note = str(exc)


ORDER_TIERS = ("queue", "workers")  # drills that also count accepted orders


def run_drill(kubectl: Kubectl, args: argparse.Namespace, tier: str, app_url: str | None = None) -> Drill:
    drill = Drill(tier)
    since = now()
    print(f"==> drill {tier}: " + ("delete one Ready pod" if args.no_load else
                                   f"load for {args.seconds:g}s, delete one Ready pod after {args.kill_after:g}s"),
          file=sys.stderr)
    job = None
    probe = None
    accepted: list[str] = []
    if not args.no_load:
        spec = loadjob.LoadSpec(args.namespace, args.name, args.profile, args.seconds, args.image)
        job = loadjob.start(kubectl, spec, f"chaos-{tier}-{time.strftime('%H%M%S')}")
        loadjob.wait_running(kubectl, args.namespace, job)
        if app_url:
            probe = writeprobe.WriteProbe(app_url, prefix=f"chaos-{tier}-{time.strftime('%H%M%S')}").start()
            if tier in ORDER_TIERS:
                accepted = writeprobe.post_orders(app_url, 20)
        time.sleep(args.kill_after)  # load runs undisturbed first: the drill's "before" inside the same run
    kill_and_wait(kubectl, args.namespace, args.name, drill, args.ready_timeout)
    if job is not None:
        report = loadjob.finish(kubectl, args.namespace, job, timeout=args.seconds + 180)
        drill.sent, drill.failed = report["sent"], loadjob.failed_requests(report)
        drill.errors, drill.p99_ms = report.get("errors", {}), report.get("p99_ms")
    if probe is not None and app_url:
        probe.stop()
        account_writes(kubectl, args, drill, probe)
        if accepted:
            drill.orders_accepted = len(accepted)
            drill.orders_lost = writeprobe.lost_orders(app_url, accepted)
    drill.operator_events = operator_events(kubectl, args.namespace, args.name, since)
    drill.decisions = decisions(kubectl, args.namespace, args.name, since)
    return drill


def account_writes(kubectl: Kubectl, args: argparse.Namespace, drill: Drill, probe: writeprobe.WriteProbe) -> None:
    """Writes down (the longest gap between acknowledged writes after the kill) and acknowledged writes the
    primary does not have."""
    drill.writes_acked = len(probe.ids())
    drill.writes_down_s = round(probe.writes_down(drill.killed_at), 1) if drill.killed_at else None
    if not probe.ids():
        return
    query = f"select id from items where name like '{probe.prefix}-%'"
    script = f'PGPASSWORD="$POSTGRES_PASSWORD" psql -h 127.0.0.1 -U postgres -d app -tAc "{query}"'
    failed: list[str] = []

    def ids_on_primary() -> tuple[set[int]] | None:  # a tuple: an empty set is an answer too
        # Right after a primary's drill there may be no Ready primary for a while (a failover, then the
        # switchover home), or the one asked may lose the role mid-query: ask again until the deadline.
        primary = [p["metadata"]["name"] for p in pods(kubectl, args.namespace, [
            f"{INSTANCE_LABEL}={args.name}", f"{ROLE_LABEL}=primary"]) if is_ready(p)]
        if not primary:
            return None
        try:
            out = kubectl.run("exec", "-n", args.namespace, primary[0], "-c", "postgres", "--", "sh", "-c", script,
                              quiet=True)
        except KubectlFailedError as exc:
            failed.append(str(exc))
            return None
        return ({int(line) for line in out.split() if line.strip()},)

    try:
        present = poll(ids_on_primary, args.ready_timeout, "a Ready primary answering", interval=2)[0]
    except TimeoutError as exc:
        why = f"{exc}; last error: {failed[-1]}" if failed else str(exc)
        drill.note = (drill.note + "; " if drill.note else "") + f"acknowledged writes not checked: {why}"
        return
    drill.writes_lost = len(probe.lost(present))


def baseline(kubectl: Kubectl, args: argparse.Namespace) -> Drill:
    before = Drill("(none: baseline)")
    print(f"==> baseline: load for {args.seconds:g}s with nothing broken", file=sys.stderr)
    spec = loadjob.LoadSpec(args.namespace, args.name, args.profile, args.seconds, args.image)
    job = loadjob.start(kubectl, spec, f"chaos-baseline-{time.strftime('%H%M%S')}")
    loadjob.wait_running(kubectl, args.namespace, job)
    report = loadjob.finish(kubectl, args.namespace, job, timeout=args.seconds + 180)
    before.sent, before.failed = report["sent"], loadjob.failed_requests(report)
    before.errors, before.p99_ms = report.get("errors", {}), report.get("p99_ms")
    return before


def fmt(value: object, suffix: str = "") -> str:
    return "-" if value is None else f"{value}{suffix}"


def table(rows: list[Drill]) -> str:
    lines = ["| tier killed | pod | Ready before | time to Ready | failed / sent | p99 | writes down | lost: writes, "
             "orders | operator did |",
             "|---|---|---|---|---|---|---|---|---|"]
    for d in rows:
        did = "; ".join(d.operator_events + d.decisions) or ("nothing (controllers replaced the pod)"
                                                                if d.pod else "-")
        failed = "-" if d.sent is None else f"{d.failed} / {d.sent}"
        p99 = "-" if d.p99_ms is None else f"{d.p99_ms:.0f} ms"
        lost = f"{fmt(d.writes_lost)} of {fmt(d.writes_acked)}" + (
            f", {fmt(d.orders_lost)} of {d.orders_accepted}" if d.orders_accepted is not None else "")
        lines.append(f"| {d.tier} | {d.pod or '-'} | {d.ready_before or '-'} | {fmt(d.seconds_to_ready, ' s')} | "
                     f"{failed} | {p99} | {fmt(d.writes_down_s, ' s')} | {lost} | "
                     f"{did}{' (' + d.note + ')' if d.note else ''} |")
    return "\n".join(lines)


@contextlib.contextmanager
def app_access(kubectl: Kubectl, args: argparse.Namespace) -> Iterator[str | None]:
    """A URL on which this machine reaches the app (None with --no-load: no probes)."""
    if args.no_load:
        yield None
        return
    if args.app_url:
        yield args.app_url
        return
    service = f"{args.name}-app"
    ip = kubectl.run("get", "service", service, "-n", args.namespace, "-o", "jsonpath={.spec.clusterIP}",
                     quiet=True).strip()
    direct = f"http://{ip}:8080"
    if writeprobe.reachable(direct):
        yield direct
        return
    forward = subprocess.Popen([*kubectl.base(), "port-forward", "-n", args.namespace, f"service/{service}", ":8080"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = forward.stdout.readline() if forward.stdout else ""
        port = line.rsplit(":", 1)[-1].split()[0] if "Forwarding from" in line else ""
        yield f"http://127.0.0.1:{port}" if port else None
    finally:
        forward.terminate()
        forward.wait(10)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m hack.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--namespace", default="demo")
    parser.add_argument("--name", default="demo", help="the ScaledApp")
    parser.add_argument("--tiers", default=",".join(TIERS), help="comma-separated, in this order")
    parser.add_argument("--seconds", type=float, default=90.0, help="load per drill")
    parser.add_argument("--kill-after", type=float, default=20.0, help="seconds of load before the kill")
    parser.add_argument("--profile", default="constant:rate=40", help="see python -m demo_app.load -h")
    parser.add_argument("--image", default=loadjob.DEMO_IMAGE)
    parser.add_argument("--ready-timeout", type=float, default=300.0, help="per tier")
    parser.add_argument("--no-load", action="store_true", help="only kill and time the recovery")
    parser.add_argument("--context", default=DEFAULT_CONTEXT, help="kubectl context ('' = current)")
    parser.add_argument("--kubeconfig", default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the drills as JSON")
    parser.add_argument("--app-url", default=None,
                        help="where this machine reaches the app (default: its Service IP, else a port-forward)")
    args = parser.parse_args(argv)
    unknown = set(args.tiers.split(",")) - set(TIERS)
    if unknown:
        parser.error(f"unknown tiers {sorted(unknown)}; choose from {', '.join(TIERS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    kubectl = Kubectl(context=args.context or None, kubeconfig=args.kubeconfig)
    try:
        app = kubectl.find("scaledapp", args.name, "-n", args.namespace)
        if app is None:
            print(f"no ScaledApp {args.namespace}/{args.name}: run `make deploy` first", file=sys.stderr)
            return 2
        rows = [] if args.no_load else [baseline(kubectl, args)]
        with app_access(kubectl, args) as app_url:
            rows += [run_drill(kubectl, args, tier, app_url) for tier in args.tiers.split(",")]
    except (KubectlFailedError, TimeoutError) as exc:
        print(f"chaos drill failed: {exc}", file=sys.stderr)
        return 1
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    missed = [r.tier for r in rows if r.pod and r.seconds_to_ready is None]
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
