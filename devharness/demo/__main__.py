"""`make demo TWIN=1`: the closed loop on one machine against the simulated twin, live, then a report and a plot.

    python -m devharness.demo [--duration 420] [--profile bottleneck-shift] [--out demo-results]

(`make demo` itself runs the real data plane on the local real node: devharness/demo/real.py.)
Expects a kwok control plane to be up (`LC_NODES=kwok make cluster-up`, which `make demo TWIN=1` runs). Starts
Prometheus, the operator, one ScaledApp (examples/demo-twin.yaml) and the live twin, prints a line
every few seconds (load, p95, bottleneck, pressure, replicas, the operator's Scaling reason, its
Events), and at the end - or on Ctrl-C - stops all of it and writes report.md, plot.png and the raw
timeline under demo-results/<time>/.
"""

from __future__ import annotations

import argparse
import datetime as dt
import secrets
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from devharness.demo.record import Recorder, timeline_header, timeline_line
from devharness.demo.report import markdown, plot
from devharness.demo.stack import Stack, cluster_env, load_example
from devharness.procs import REPO, HarnessError
from devharness.twin.scenarios import PROFILES, scenario

EXAMPLE = REPO / "examples" / "demo-twin.yaml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devharness.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=420.0, help="seconds of load (default 420)")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="bottleneck-shift")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--every", type=float, default=5.0, help="seconds between timeline lines")
    parser.add_argument("--out", type=Path, default=REPO / "demo-results")
    parser.add_argument("--example", type=Path, default=EXAMPLE, help="the ScaledApp to run")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = (args.out / stamp).resolve()
    out.mkdir(parents=True, exist_ok=True)
    kubeconfig, kubectl = cluster_env()
    namespace = f"scaledapp-demo-{secrets.token_hex(2)}"
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        print(f"\n(signal {signum}: stopping and writing the report)", flush=True)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    stack = Stack(out, kubeconfig, kubectl, namespace)
    recorder: Recorder | None = None
    started = time.monotonic()
    try:
        print(f"==> demo: namespace {namespace}, profile {args.profile}, {args.duration:.0f}s; logs in {out}")
        stack.up(load_example(args.example), args.profile, args.seed)
        print(f"==> up in {time.monotonic() - started:.0f}s: Prometheus {stack.prometheus.url}, operator pid "
              f"{stack.operator.pid}, twin pid {stack.twin.pid}")
        print_phases(args.profile)
        signal.signal(signal.SIGINT, on_signal)  # from now on Ctrl-C ends the run early, with a report
        recorder = Recorder(kubeconfig, namespace, stack.name, stack.prometheus.url, stack.trace)
        print(timeline_header(), flush=True)
        deadline = time.monotonic() + args.duration
        phase = ""
        while not stop.is_set() and time.monotonic() < deadline:
            sample = recorder.sample()
            if sample.phase and sample.phase != phase:
                phase = sample.phase
                print(f"------ load: {phase}", flush=True)
            print(timeline_line(sample), flush=True)
            if not stop.is_set():  # Ctrl-C reaches the children too (one process group): not a crash
                stack.twin.check_alive()
                stack.operator.check_alive()
            stop.wait(args.every)
    except HarnessError as exc:
        print(f"demo failed: {exc}", file=sys.stderr)
        return_code = 1
    except KeyboardInterrupt:
        print("\n(interrupted while starting)", file=sys.stderr)
        return_code = 130
    else:
        return_code = 0
    finally:
        print("==> stopping the twin, the operator and Prometheus; deleting the namespace", flush=True)
        stack.close()
        if recorder is not None:
            write_report(recorder, out, args, namespace)
            recorder.close()
    print(f"==> total {time.monotonic() - started:.0f}s")
    return return_code


def print_phases(profile: str) -> None:
    phases = scenario(profile).phases
    print("==> load profile: " + "; ".join(f"{p.start:.0f}s {p.name}" for p in phases))


def write_report(recorder: Recorder, out: Path, args: argparse.Namespace, namespace: str) -> None:
    recorder.write(out / "timeline.jsonl")
    title = f"ScaledApp demo: {args.profile} on the live twin"
    plot_path = out / "plot.png"
    plot(recorder.samples, plot_path, title, [(p.start, p.name) for p in scenario(args.profile).phases])
    settings = {"profile": args.profile, "seed": str(args.seed), "namespace": namespace,
                "ScaledApp": str(args.example.relative_to(REPO) if args.example.is_relative_to(REPO) else args.example),
                "load phases": "; ".join(f"{p.start:.0f}s {p.name}" for p in scenario(args.profile).phases)}
    report = out / "report.md"
    phases = [(p.start, p.name, p.expect) for p in scenario(args.profile).phases]
    report.write_text(markdown(recorder.samples, title=title, settings=settings, plot=plot_path.name,
                               phases=phases))
    print(f"==> report: {report}\n==> plot:   {plot_path}\n==> raw:    {out / 'timeline.jsonl'}, "
          f"{out / 'trace.jsonl'}, logs {out}/*.log")


if __name__ == "__main__":
    sys.exit(main())
