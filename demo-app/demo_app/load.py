"""`python -m demo_app.load`: an open-loop load generator for the demo app (see --help).

Latency is measured from each request's SCHEDULED start, not from when it was sent. A client that is
backed up (its event loop busy, every connection taken, a server that stopped answering) sends late;
timing from the send would hide exactly the queueing the run is meant to expose ("coordinated
omission"). How late each request left is reported separately (`late`, `late_p99_ms`, `late_max_ms`),
and so is the send-to-answer time a closed-loop client would have reported (`service_p99_ms`).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from demo_app.loadreport import LATE_SECONDS, Outcome, Report, summarize
from demo_app.profiles import PROFILE_HELP, Profile, ZipfKeys, arrival_times, choose, parse_mix, parse_profile
from demo_app.rawhttp import HttpError, RawClient


@dataclass
class LoadConfig:
    url: str
    profile: Profile
    keys: int = 1000
    zipf_s: float = 1.1
    mix: dict[str, float] | None = None
    timeout: float = 5.0
    max_in_flight: int = 512
    seed: int = 1
    poisson: bool = False
    progress: bool = True
    conn_requests: int = 100  # requests per connection before a new one (0: keep it): spreads over a Service
    connections: int = 0  # at most this many connections at once (0: max_in_flight); more requests wait
    late_seconds: float = LATE_SECONDS  # a request sent later than this after its schedule counts as late


async def one_request(client: RawClient, op: str, key: int, seq: int, scheduled: float | None = None) -> Outcome:
    """One read, write or order; every failure is a data point, never a crash of the generator.

    `scheduled` (time.perf_counter() units) is when the request was due: its latency counts from then,
    so time spent waiting to be sent is latency too. None: it is due now (a closed-loop caller)."""
    due = time.perf_counter() if scheduled is None else scheduled
    sent: list[float] = []
    try:
        if op == "read":
            resp = await client.request("GET", f"/items/{key}", on_send=sent.append)
        elif op == "write":
            resp = await client.request("PUT", f"/items/{key}", {"name": f"item-{key}", "value": f"load-{seq}"},
                                        on_send=sent.append)
        else:
            resp = await client.request("POST", "/orders", {"item_id": key, "quantity": 1}, on_send=sent.append)
        error = None if resp.status < 400 else f"http_{resp.status}"
    except HttpError as exc:
        error = exc.kind
    except (OSError, ValueError) as exc:
        error = type(exc).__name__
    end = time.perf_counter()
    # Never sent (no connection, or the deadline passed waiting for one): late by all of its time.
    lateness = (sent[0] if sent else end) - due
    return Outcome(op, end - due, error, lateness=max(0.0, lateness))


def _progress(start: float, outcomes: list[Outcome], in_flight: int, dropped: int, final: bool = False) -> None:
    elapsed = time.perf_counter() - start
    recent = sorted(o.latency for o in outcomes[-2000:] if o.error is None)
    p99 = recent[int(0.99 * (len(recent) - 1))] * 1000 if recent else float("nan")
    errors = sum(1 for o in outcomes if o.error) + dropped
    line = (
        f"t={elapsed:6.1f}s done={len(outcomes):7d} err={errors:5d} "
        f"rate={len(outcomes) / max(elapsed, 1e-9):7.1f}/s p99(recent)={p99:7.1f}ms in-flight={in_flight:4d}"
    )
    end = "\n" if final or not sys.stderr.isatty() else ""
    print(("\r" if sys.stderr.isatty() else "") + line, end=end, file=sys.stderr, flush=True)


async def run_load(config: LoadConfig) -> Report:
    """Send requests on the profile's schedule and summarise. Bounded: the schedule ends at
    profile.duration, and at most max_in_flight requests are outstanding (extra arrivals are dropped)."""
    rng = random.Random(config.seed)
    keys = ZipfKeys(config.keys, config.zipf_s)
    mix = config.mix or parse_mix("read=1")
    outcomes: list[Outcome] = []
    tasks: set[asyncio.Task[None]] = set()
    dropped = 0
    client = RawClient(config.url, config.connections or config.max_in_flight, config.timeout, config.conn_requests)
    try:

        async def fire(op: str, key: int, seq: int, due: float) -> None:
            outcomes.append(await one_request(client, op, key, seq, scheduled=due))

        start = time.perf_counter()
        next_progress = start + 1.0
        schedule_rng = random.Random(config.seed + 1) if config.poisson else None
        for seq, at in enumerate(arrival_times(config.profile, schedule_rng)):
            delay = start + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(tasks) >= config.max_in_flight:
                dropped += 1
                continue
            # Due at start + at even when this loop wakes late: the delay is the request's latency.
            task = asyncio.create_task(fire(choose(mix, rng.random()), keys.draw(rng), seq, start + at))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            if config.progress and time.perf_counter() >= next_progress:
                _progress(start, outcomes, len(tasks), dropped)
                next_progress += 1.0
        if tasks:
            await asyncio.wait(set(tasks), timeout=config.timeout + 1.0)
        for task in list(tasks):  # should not happen (each request has a timeout); never hang on it
            task.cancel()
            outcomes.append(Outcome("unknown", config.timeout, "unfinished"))
        elapsed = time.perf_counter() - start
        if config.progress:
            _progress(start, outcomes, len(tasks), dropped, final=True)
    finally:
        await client.aclose()
    return summarize(outcomes, elapsed, dropped, late_seconds=config.late_seconds)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m demo_app.load",
        description="Open-loop load for the ScaledApp demo service: reads (GET /items/{id}), writes "
        "(PUT /items/{id}) and orders (POST /orders), keys drawn from a Zipf distribution.",
        epilog=PROFILE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="base URL of the app (default: %(default)s)")
    parser.add_argument("--profile", default="constant:rate=50", help="rate profile, see below (default: %(default)s)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load (default: %(default)s)")
    parser.add_argument("--keys", type=int, default=1000, help="key space 1..N (default: %(default)s)")
    parser.add_argument("--zipf", type=float, default=1.1, help="Zipf exponent s; 0 = uniform (default: %(default)s)")
    parser.add_argument(
        "--mix", default="read=0.9,write=0.08,order=0.02", help="operation weights (default: %(default)s)"
    )
    parser.add_argument("--timeout", type=float, default=5.0, help="per-request timeout, s (default: %(default)s)")
    parser.add_argument("--max-in-flight", type=int, default=512, help="cap on outstanding requests; arrivals "
                        "beyond it are dropped and reported (default: %(default)s)")
    parser.add_argument("--conn-requests", type=int, default=100, help="requests per keep-alive connection before "
                        "it is replaced, so a Service spreads the load over pods added meanwhile; 0 = never "
                        "(default: %(default)s)")
    parser.add_argument("--connections", type=int, default=0, help="cap on open connections; requests beyond "
                        "it wait for one, and that wait counts as latency (0 = --max-in-flight; default: %(default)s)")
    parser.add_argument("--late-ms", type=float, default=LATE_SECONDS * 1000, help="a request sent more than this "
                        "after its scheduled time is reported as late (default: %(default)s)")
    parser.add_argument("--poisson", action="store_true", help="Poisson arrivals instead of evenly spaced ones")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default: %(default)s)")
    parser.add_argument("--json", metavar="PATH", help="also write the report as JSON to PATH ('-' = stdout)")
    parser.add_argument("--quiet", action="store_true", help="no live progress line")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = LoadConfig(
            url=args.url,
            profile=parse_profile(args.profile, args.duration),
            keys=args.keys,
            zipf_s=args.zipf,
            mix=parse_mix(args.mix),
            timeout=args.timeout,
            max_in_flight=args.max_in_flight,
            seed=args.seed,
            poisson=args.poisson,
            progress=not args.quiet,
            conn_requests=args.conn_requests,
            connections=args.connections,
            late_seconds=args.late_ms / 1000,
        )
        if config.conn_requests < 0:
            raise ValueError("--conn-requests must be >= 0")
        if config.connections < 0 or config.late_seconds < 0:
            raise ValueError("--connections and --late-ms must be >= 0")
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = asyncio.run(run_load(config))
    print(report.to_text())
    if args.json == "-":
        print(report.to_json())
    elif args.json:
        Path(args.json).write_text(report.to_json() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
