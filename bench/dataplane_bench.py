"""Data-plane benchmark (not a test): one app process against real Redis and Postgres on loopback.

    .venv/bin/python bench/dataplane_bench.py [--seconds 10] [--concurrency 32] [--json PATH]

For a Zipf(1.1) read workload over 1000 keys it measures, per app process:
  * capacity: closed loop with --concurrency clients, throughput and p99, hot cache vs cache off;
  * latency at half that capacity: open loop (demo_app.load), p50/p99;
  * database queries per request with the cache on, from a cold cache, vs. without the cache
    (goal: at least 90 % fewer).
The load generator shares the machine with the app, Redis and Postgres, so absolute numbers are
a floor for this box, not a property of the app. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "demo-app")]

from tests.dataplane.promtext import scrape, value  # noqa: E402
from tests.support.dataplane import AppProcess, PostgresCluster, RedisServer, app_settings  # noqa: E402

from demo_app.load import LoadConfig, one_request, run_load  # noqa: E402
from demo_app.loadreport import percentile  # noqa: E402
from demo_app.profiles import ZipfKeys, parse_mix, parse_profile  # noqa: E402
from demo_app.rawhttp import RawClient  # noqa: E402

KEYS, ZIPF_S = 1000, 1.1


@dataclass
class Row:
    scenario: str
    capacity_rps: float
    capacity_p99_ms: float
    open_loop_rps: float
    open_loop_p50_ms: float
    open_loop_p99_ms: float
    errors: int


async def closed_loop(url: str, seconds: float, concurrency: int, seed: int = 3) -> tuple[float, float, int]:
    """Each client sends its next read when the previous answered: the process's throughput ceiling."""
    keys, latencies, errors = ZipfKeys(KEYS, ZIPF_S), [], 0
    client = RawClient(url, max_connections=concurrency, timeout=10, max_requests_per_connection=0)
    deadline = time.perf_counter() + seconds

    async def worker(rng: random.Random) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            outcome = await one_request(client, "read", keys.draw(rng), 0)
            if outcome.error is None:
                latencies.append(outcome.latency)
            else:
                errors += 1

    start = time.perf_counter()
    try:
        await asyncio.gather(*(worker(random.Random(seed + i)) for i in range(concurrency)))
    finally:
        await client.aclose()
    elapsed = time.perf_counter() - start
    latencies.sort()
    return len(latencies) / elapsed, percentile(latencies, 99) * 1000, errors


def db_queries(app: AppProcess) -> float:
    samples = scrape(app.url + "/metrics")
    name = "scaledapp_dependency_duration_seconds_count"
    return sum(value(samples, name, dependency=d, operation="get_item") for d in ("db-read", "db-write"))


def requests_served(app: AppProcess) -> float:
    samples = scrape(app.url + "/metrics")
    return value(samples, "scaledapp_http_requests_total", route="/items/{item_id}", method="GET", status="200")


def measure(name: str, app: AppProcess, seconds: float, concurrency: int) -> Row:
    if "hot" in name:  # warm every key, so the run measures the hit path
        with httpx.Client(base_url=app.url, timeout=10) as client:
            for k in range(1, KEYS + 1):
                client.get(f"/items/{k}")
    capacity, cap_p99, cap_errors = asyncio.run(closed_loop(app.url, seconds, concurrency))
    rate = max(1.0, capacity / 2)
    config = LoadConfig(url=app.url, profile=parse_profile(f"constant:rate={rate:.0f}", seconds), keys=KEYS,
                        zipf_s=ZIPF_S, mix=parse_mix("read=1"), progress=False)
    report = asyncio.run(run_load(config))
    errors = cap_errors + sum(report.errors.values())
    return Row(name, capacity, cap_p99, report.throughput_rps, report.p50_ms, report.p99_ms, errors)


def queries_per_request(app: AppProcess, cache: RedisServer, n: int, rate: float) -> float:
    """Database queries per read over n reads at `rate` (below capacity: overload would add fallback
    queries and timeouts that are not what is being measured)."""
    cache.client(0).flushdb()  # a cold cache
    q0, r0 = db_queries(app), requests_served(app)
    config = LoadConfig(url=app.url, profile=parse_profile(f"constant:rate={rate:.0f}", n / rate), keys=KEYS,
                        zipf_s=ZIPF_S,
                        mix=parse_mix("read=1"), seed=11, progress=False)
    asyncio.run(run_load(config))
    return (db_queries(app) - q0) / max(1.0, requests_served(app) - r0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each load phase")
    parser.add_argument("--concurrency", type=int, default=32, help="closed-loop clients")
    parser.add_argument("--requests", type=int, default=20_000, help="reads for the queries-per-request count")
    parser.add_argument("--json", help="also write the results as JSON here")
    args = parser.parse_args()

    base = REPO / ".dataplane" / f"bench-{time.strftime('%Y%m%d-%H%M%S')}"
    logs = base / "logs"
    logs.mkdir(parents=True)
    base.chmod(0o755)
    cache, pg = RedisServer(logs), PostgresCluster(base, logs)
    rows, qpr = [], {}
    try:
        cache.start()
        pg.start()
        for name, enabled in (("hot cache", "true"), ("cache off", "false")):
            # Generous deadlines and a lenient breaker: a timeout under saturation would turn into a
            # bypass or a fallback query and blur what is measured (errors are still reported).
            settings = app_settings(pg, cache, cache_enabled=enabled, seed_items=str(KEYS), log_level="warning",
                                    cache_timeout="2", db_pool_timeout="5", db_statement_timeout="10",
                                    breaker_failures="100000")
            app = AppProcess("bench-app", logs, settings)
            app.start()
            try:
                rows.append(measure(name, app, args.seconds, args.concurrency))
                rate = min(1000.0, rows[-1].capacity_rps / 3)
                # Without a cache every read is a query by construction: fewer reads suffice there.
                n = args.requests if enabled == "true" else min(args.requests, int(rate * args.seconds))
                qpr[name] = queries_per_request(app, cache, n, rate)
            finally:
                app.stop()
    finally:
        pg.stop()
        cache.stop()
        for data in (pg.primary.pgdata.parent, pg.replica.pgdata.parent):  # keep only the logs
            shutil.rmtree(data, ignore_errors=True)

    print(f"\nZipf({ZIPF_S}) reads over {KEYS} keys, one app process, loopback; load generator on the same box.\n")
    print("| scenario | capacity (req/s) | p99 at capacity (ms) | open loop at half capacity (req/s) "
          "| p50 (ms) | p99 (ms) | errors |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.scenario} | {r.capacity_rps:.0f} | {r.capacity_p99_ms:.1f} | {r.open_loop_rps:.0f} "
              f"| {r.open_loop_p50_ms:.1f} | {r.open_loop_p99_ms:.1f} | {r.errors} |")
    on, off = qpr["hot cache"], qpr["cache off"]
    saving = 1 - on / off if off else float("nan")
    print(f"\n| DB queries per read (cache on: {args.requests} reads from a cold cache) | value |\n|---|---|")
    print(f"| cache on | {on:.3f} |\n| cache off | {off:.3f} |\n| fewer with the cache | {saving:.1%} "
          f"({'meets' if saving >= 0.9 else 'MISSES'} the 90 % goal) |")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": [asdict(r) for r in rows], "queries_per_read": qpr,
                                               "saving": saving}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
