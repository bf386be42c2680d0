"""Failover on the real node, measured: how long writes are down and what is lost when the primary goes.

    python -m bench.failover [--runs 5] [--modes sync,async] [--out bench/results/failover.md]

Brings the local real node up if it is not (`hack/localcluster/cluster.sh up`), installs the chart in fresh
namespaces and runs one ScaledApp (the scaler off: only the failure machinery acts) through these drills,
with a write probe (hack/writeprobe.py) writing through the app 20 times a second:

* primary pod deleted (`kubectl delete pod`), --runs times: writes down until the app's writes succeed again;
* primary hung (every postgres process SIGSTOPped), --runs times: writes down until the failover's new primary
  takes them, the switchover home's own gap once the old primary is re-seeded, acknowledged writes lost;
* the same hang without synchronous commits, --runs times: acknowledged writes lost (may be non-zero: that is
  the point), and the switchover home without synchronous commits;
* the price of synchronous commits: the probe's write latency (median, p95) with and without.

Prints a markdown report and writes it to --out. Takes about 15 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from hack.writeprobe import WriteProbe
from tests.support.cluster import REAL, KubectlError, start_cluster
from tests.support.release import NAME, Deployed, apply_scaledapp, release
from tests.support.wait import wait_for

ROOT = Path(__file__).resolve().parents[1]
HOME = f"{NAME}-db-0"


def say(text: str) -> None:
    print(f"==> {text}", file=sys.stderr, flush=True)


def database(stack: Deployed) -> dict[str, Any]:
    return dict(stack.scaledapp().get("status", {}).get("database") or {})


def settled(stack: Deployed) -> None:
    """Role home, phase Healthy, a replica serving reads: the starting point of every drill."""
    def ready() -> bool:
        db = database(stack)
        if db.get("phase") != "Healthy" or db.get("primary") != HOME:
            return False
        pods = stack.cluster.get_json("pods", "-n", stack.apps, "-l", f"app.kubernetes.io/instance={NAME}")["items"]
        return all(any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
                   for p in pods if p["metadata"]["labels"].get("scaledapp.dev/role"))
    wait_for(ready, timeout=600, what="the write role home and every Postgres pod Ready", interval=2)


def acked_since(probe: WriteProbe, moment: float, count: int = 3, timeout: float = 300.0) -> None:
    wait_for(lambda: probe.acked_after(moment) >= count, timeout=timeout, what="writes again", interval=0.2)


def ids_in_database(stack: Deployed, prefix: str) -> set[int]:
    """The probe's rows on the pod labelled primary; retried while that pod is still (re)starting."""
    def read() -> tuple[set[int]]:  # a tuple: an empty set is an answer too
        out = stack.psql(stack.pod_named("primary"), f"select id from items where name like '{prefix}-%'")
        return ({int(line) for line in out.split() if line.strip()},)

    return wait_for(read, timeout=120, what="the primary answering", interval=2, ignore=(KubectlError,))[0]


def kill_drill(stack: Deployed, n: int) -> dict[str, float]:
    settled(stack)
    probe = WriteProbe(stack.service_url(f"{NAME}-app", 8080), prefix=f"kill{n}").start()
    try:
        acked_since(probe, 0)
        killed = stack.delete_pod_until_replaced(HOME)
        acked_since(probe, time.monotonic())
        time.sleep(2)  # a little after, so the gap is closed on both sides
    finally:
        probe.stop()
    lost = len(probe.lost(ids_in_database(stack, f"kill{n}")))
    return {"down": probe.writes_down(killed), "lost": lost, "acked": len(probe.ids())}


def hang_drill(stack: Deployed, n: int) -> dict[str, float]:
    settled(stack)
    epoch = int(database(stack).get("epoch") or 0)
    prefix = f"hang{n}"
    probe = WriteProbe(stack.service_url(f"{NAME}-app", 8080), prefix=prefix).start()
    try:
        acked_since(probe, 0)
        frozen = time.monotonic()
        stack.cluster.kubectl("exec", "-n", stack.apps, HOME, "-c", "postgres", "--", "sh", "-c", "kill -STOP -1")
        wait_for(lambda: int(database(stack).get("epoch") or 0) > epoch, timeout=180, what="the failover",
                 interval=0.5)
        failed_over = time.monotonic()
        acked_since(probe, failed_over)  # writes on the new primary, not those in flight at the freeze
        failover_down = probe.writes_down(frozen)
        # Writes back after the failover (with synchronous commits: once the old primary, re-seeded, streams):
        # the switchover's gap is measured from here on, never the failover's own.
        resumed = min(t for t in probe.times() if t > failed_over)
        home = wait_for(lambda: (database(stack).get("lastMove") or {}).get("kind") == "switchover"
                        and database(stack), timeout=600, what="the switchover home", interval=1)
        switched = time.monotonic()
        time.sleep(5)
        switch_gap = max(probe.writes_down(max(switched - 10, resumed)), 0.0)
    finally:
        probe.stop()
    lost = len(probe.lost(ids_in_database(stack, prefix)))
    return {"down": failover_down, "switch": switch_gap, "guard": float(home["lastMove"].get("seconds") or 0),
            "lost": lost, "acked": len(probe.ids())}


def latency(stack: Deployed, prefix: str, seconds: float = 20.0) -> tuple[float, float]:
    """Median and p95 of the probe's acknowledged-write round trips (through the app, over its Service)."""
    settled(stack)
    probe = WriteProbe(stack.service_url(f"{NAME}-app", 8080), prefix=prefix, interval=0.02)
    samples = probe.timed_writes(seconds)
    return statistics.median(samples) * 1000, statistics.quantiles(samples, n=20)[18] * 1000


def stats(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} s (range {min(values):.1f}-{max(values):.1f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.failover", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "failover.md")
    parser.add_argument("--modes", default="sync,async",
                        help="which ScaledApps to drill: sync (kills, hangs), async (hangs), or both")
    args = parser.parse_args(argv)
    modes = {m.strip() for m in args.modes.split(",") if m.strip()}
    cluster = start_cluster(REAL)
    results: dict[str, Any] = {}
    for synchronous in [s for s in (True, False) if ("sync" if s else "async") in modes]:
        with release(cluster, "fo") as stack:
            say(f"ScaledApp with synchronous={synchronous}")
            apply_scaledapp(stack, {"database": {"synchronous": synchronous}, "scaling": {"mode": "Off"}})
            key = "sync" if synchronous else "async"
            results[f"{key} latency"] = latency(stack, f"lat-{key}")
            if synchronous:
                results["kill"] = []
                for n in range(args.runs):
                    say(f"primary pod deleted, run {n + 1}/{args.runs}")
                    results["kill"].append(kill_drill(stack, n))
            runs = args.runs
            results[f"{key} hang"] = []
            for n in range(runs):
                say(f"primary hung ({key}), run {n + 1}/{runs}")
                results[f"{key} hang"].append(hang_drill(stack, n))
    kills, hangs, async_hangs = results.get("kill", []), results.get("sync hang", []), results.get("async hang", [])
    lines = [f"## Failover on the real node ({dt.date.today().isoformat()}, "
             f"`python -m bench.failover --runs {args.runs}" + (f" --modes {args.modes}`)" if modes != {"sync", "async"}
                                                                 else "`)"), "",
             "One minimal ScaledApp (failover after the default 10 s), a write probe through the app 20 times a "
             "second; writes down = the longest gap between acknowledged writes after the fault.", "",
             "| drill | runs | writes down | guard's own time | acknowledged writes lost | goal |",
             "|---|---|---|---|---|---|"]
    if kills:
        lines.append(f"| primary pod deleted (restart in place) | {len(kills)} | "
                     f"{stats([r['down'] for r in kills])} | - | {sum(int(r['lost']) for r in kills)} of "
                     f"{sum(int(r['acked']) for r in kills)} | <= 10 s median |")
    for label, runs, goal in (("synchronous", hangs, "0 lost"), ("asynchronous", async_hangs, "measured")):
        if not runs:
            continue
        lines += [f"| primary hung -> failover ({label}) | {len(runs)} | {stats([r['down'] for r in runs])} | - "
                  f"| {sum(int(r['lost']) for r in runs)} of {sum(int(r['acked']) for r in runs)} | {goal} |",
                  f"| switchover home after it ({label}) | {len(runs)} | {stats([r['switch'] for r in runs])} "
                  f"| {stats([r['guard'] for r in runs])} | (in the row above) | <= 5 s |"]
    lines += ["",
              "A hang is detected once the primary has not been Ready for the failover delay (10 s) after its "
              "readiness probe failed twice (2 s period): most of the hang's writes-down time is that delay, by "
              "design (a restart within it keeps the role). The switchover's gap is the longest between "
              "acknowledged writes from 10 s before the switchover is seen in status (or from the first write after "
              "the failover, if later: never the failover's own gap) to 5 s after; the guard's own "
              "time runs from its decision to the new primary's label (fence, catch-up, the old primary's clean "
              "shutdown, promotion), and the client's gap adds the Service's move (kube-proxy) and the app's "
              "reconnection. The old primary rejoins as a standby without a new base backup, and with synchronous "
              "commits the new primary commits locally until it streams (docs/failure.md).", ""]
    lines += ["| write through the app | median | p95 |", "|---|---|---|"]
    for key, label in (("sync latency", "synchronous commits"), ("async latency", "asynchronous")):
        if key in results:
            lines.append(f"| {label} | {results[key][0]:.1f} ms | {results[key][1]:.1f} ms |")
    lines.append("")
    text = "\n".join(lines)
    print(text)
    args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
