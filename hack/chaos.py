"""Chaos drill: delete a pod of each tier under load and report before/after.

    python -m hack.chaos [--namespace demo] [--name demo] [--tiers app,cache,db-read,db-write,workers,queue]
                         [--seconds 90] [--kill-after 20] [--profile constant:rate=40] [--no-load] [--json PATH]

First a baseline load run with nothing broken ("before"). Then, per tier: start the same load (a Job behind
the app's Service, hack/loadjob.py), after --kill-after seconds delete one Ready pod of the tier, measure
the time until the tier is back to as many Ready pods as before, let the load finish, and collect what the
operator did meanwhile (its Events and scaler decisions). The table at the end puts failed requests, p99
and time to Ready of every drill next to the baseline. --no-load skips the load (e.g. on a control plane
whose pods run nothing, as in tests/cluster/test_chaos.py).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hack import loadjob
from hack.kubeutil import DEFAULT_CONTEXT, Kubectl, KubectlFailedError, is_ready, pods, poll

TIERS = ("app", "cache", "db-read", "db-write", "workers", "queue")
INSTANCE_LABEL = "app.kubernetes.io/instance"
TIER_LABEL = "scaledapp.dev/tier"
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
    start = time.monotonic()
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


def run_drill(kubectl: Kubectl, args: argparse.Namespace, tier: str) -> Drill:
    drill = Drill(tier)
    since = now()
    print(f"==> drill {tier}: " + ("delete one Ready pod" if args.no_load else
                                   f"load for {args.seconds:g}s, delete one Ready pod after {args.kill_after:g}s"),
          file=sys.stderr)
    job = None
    if not args.no_load:
        spec = loadjob.LoadSpec(args.namespace, args.name, args.profile, args.seconds, args.image)
        job = loadjob.start(kubectl, spec, f"chaos-{tier}-{time.strftime('%H%M%S')}")
        loadjob.wait_running(kubectl, args.namespace, job)
        time.sleep(args.kill_after)  # load runs undisturbed first: the drill's "before" inside the same run
    kill_and_wait(kubectl, args.namespace, args.name, drill, args.ready_timeout)
    if job is not None:
        report = loadjob.finish(kubectl, args.namespace, job, timeout=args.seconds + 180)
        drill.sent, drill.failed = report["sent"], loadjob.failed_requests(report)
        drill.errors, drill.p99_ms = report.get("errors", {}), report.get("p99_ms")
    drill.operator_events = operator_events(kubectl, args.namespace, args.name, since)
    drill.decisions = decisions(kubectl, args.namespace, args.name, since)
    return drill


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
    lines = ["| tier killed | pod | Ready before | time to Ready | failed / sent | p99 | operator did |",
             "|---|---|---|---|---|---|---|"]
    for d in rows:
        did = "; ".join(d.operator_events + d.decisions) or ("nothing (controllers replaced the pod)"
                                                                if d.pod else "-")
        failed = "-" if d.sent is None else f"{d.failed} / {d.sent}"
        p99 = "-" if d.p99_ms is None else f"{d.p99_ms:.0f} ms"
        lines.append(f"| {d.tier} | {d.pod or '-'} | {d.ready_before or '-'} | {fmt(d.seconds_to_ready, ' s')} | "
                     f"{failed} | {p99} | {did}{' (' + d.note + ')' if d.note else ''} |")
    return "\n".join(lines)


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
        rows += [run_drill(kubectl, args, tier) for tier in args.tiers.split(",")]
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
