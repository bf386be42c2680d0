"""The data plane the signal tests run the engine against: the session's Postgres primary + replica, a cache
Redis and a queue Redis of their own (the cache test shrinks maxmemory; the queue must never evict), the
three exporters, a real Prometheus, and per scenario a fresh app process and worker with that scenario's
knobs. Every target is labelled as the cluster's pods would be, under a namespace of its own per
scenario, so one scenario's series can never leak into the next one's queries.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import redis.exceptions

from devharness.prometheus import LocalPrometheus, Target
from scaledapp import api, observe
from scaledapp.decide import Decision, Tick, decide
from scaledapp.observation import Snapshot
from scaledapp.sizes import TierName
from scaledapp.tiers import initial_sizes
from tests.dataplane.promtext import scrape
from tests.support.dataplane import (
    MONITOR_PASSWORD,
    MONITOR_USER,
    REPO,
    AppProcess,
    PostgresCluster,
    RedisServer,
    WorkerProcess,
    app_env,
    app_settings,
)
from tests.support.prometheus import Harness
from tests.support.wait import wait_for

INSTANCE = "shop"  # the ScaledApp's name: the app.kubernetes.io/instance label of every target
# Prometheus here scrapes every second; the rate window is one tick (intervalSeconds 5): ~5 samples, enough for
# rate() and histogram quantiles, and each tick judges the last interval (the operator: 1 m at a 15 s scrape).
WINDOW = "5s"


@dataclass
class TickLog:
    """What the engine said at each tick, for the failure message and the report."""

    lines: list[str] = field(default_factory=list)

    def add(self, tick: int, decision: Decision, snapshot: Snapshot | None) -> None:
        pressures = ", ".join(
            f"{e.tier}={e.pressure if e.pressure is not None else 'unknown'} ({e.signal}={e.value})"
            for e in decision.pressures
        )
        self.lines.append(f"tick {tick}: bottleneck={decision.bottleneck} reason={decision.reason} | {pressures}")
        if snapshot is not None:  # every raw signal: what a failure needs to be understood
            for tier_name, signals in snapshot.signals.items():
                values = ", ".join(f"{k}={v:.4g}" if v is not None else f"{k}=None" for k, v in signals.items())
                self.lines.append(f"    {tier_name}: {values}")

    def __repr__(self) -> str:  # pytest shows repr() in assertion messages
        return str(self)

    def __str__(self) -> str:
        return "\n".join(self.lines)


class Engine:
    """The operator's observe -> decide, with its memory (scaler state, last action) carried between ticks."""

    def __init__(self, spec: api.ScaledAppSpec, namespace: str) -> None:
        self.spec = spec
        self.namespace = namespace
        self.state = api.ScalerState()
        self.last_action: api.Action | None = None
        self.log = TickLog()
        self.snapshot: Snapshot | None = None  # the last tick's signals

    def evaluate(self, tick: int = 0) -> Decision:
        now = dt.datetime.now(dt.UTC)
        snapshot, _why = asyncio.run(observe.observe(self.spec, INSTANCE, self.namespace, now, window=WINDOW))
        self.snapshot = snapshot
        decision = decide(Tick(self.spec, snapshot, initial_sizes(self.spec), self.state, self.last_action, now))
        self.state, self.last_action = decision.state, decision.last_action
        self.log.add(tick, decision, snapshot)
        return decision

    def wait_for_calm(self, timeout: float = 30.0) -> Decision:
        """Poll until every tier's signals are known (rates need two scrapes) and no tier is named: the
        baseline before a bottleneck is induced (fails if the idle plane keeps naming one)."""

        def calm() -> Decision | None:
            decision = self.evaluate()
            metrics = next(c for c in decision.conditions if c.type == "MetricsAvailable")
            return decision if metrics.status == "True" and decision.bottleneck is None else None

        try:
            decision = wait_for(calm, timeout, f"every signal of {self.namespace} known, no tier named", interval=1.0)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log}") from None
        # The ticks that follow start from a fresh memory, as for a new ScaledApp: no cooldown from a
        # step decided while the baseline was still settling.
        self.state, self.last_action = api.ScalerState(), None
        return decision

    def load_visible(self) -> bool:
        """Does Prometheus show the load yet (requests served or in flight)? Observes, decides nothing."""
        now = dt.datetime.now(dt.UTC)
        snapshot, _why = asyncio.run(observe.observe(self.spec, INSTANCE, self.namespace, now, window=WINDOW))
        app = snapshot.tier("app") if snapshot is not None else {}
        return (app.get("requests_per_second") or 0.0) > 0 or (app.get("in_flight_per_pod") or 0.0) > 0

    def signal(self, tier: TierName, name: str) -> float | None:
        assert self.snapshot is not None
        return self.snapshot.tier(tier).get(name)

    def first_named(self, app: AppProcess, max_ticks: int) -> tuple[int, Decision]:
        """Once the load reaches the app, tick every spec.scaling.interval (the operator's cadence) until a
        tick names a bottleneck: (tick number, that decision), or the last decision and max_ticks + 1."""
        interval = self.spec.scaling.interval_seconds
        served = requests_served(app)
        # The load generator is a new Python process (~1 s to start): the clock starts at its first request.
        wait_for(lambda: requests_served(app) > served, 15, f"the load to reach {app.name}", interval=0.05)
        # Ticks count from the moment the metrics pipeline shows the load (scrape and discovery lag on a busy
        # box is Prometheus', not the engine's): "named within two ticks" is the engine's own reaction.
        wait_for(self.load_visible, 20, f"the load on {app.name} visible in Prometheus", interval=0.5)
        start = time.monotonic()
        decision: Decision | None = None
        for tick in range(1, max_ticks + 1):
            time.sleep(max(0.0, start + tick * interval - time.monotonic()))  # the tick clock, not a readiness wait
            decision = self.evaluate(tick)
            if decision.bottleneck is not None:
                return tick, decision
        assert decision is not None
        return max_ticks + 1, decision


def warm_cache(app: AppProcess, keys: int) -> None:
    """Read items 1..keys once, so later reads of them are cache hits (the TTL is 60 s)."""
    with httpx.Client(base_url=app.url, timeout=10) as client:
        for key in range(1, keys + 1):
            assert client.get(f"/items/{key}").status_code == 200


def requests_served(app: AppProcess) -> float:
    samples = scrape(f"{app.url}/metrics")
    return sum(v for (name, _labels), v in samples.items() if name == "scaledapp_http_requests_total")


class SignalPlane:
    def __init__(self, base: Path, pg: PostgresCluster, harness: Harness) -> None:
        self.base = base
        self.pg = pg
        logs = base / "logs"
        self.cache = RedisServer(logs, name="signals-cache")
        self.queue = RedisServer(logs, name="signals-queue")
        self.harness = harness
        self.prom: LocalPrometheus | None = None

    def start(self) -> None:
        for server in (self.pg.primary, self.pg.replica):
            if not server.running:  # an earlier test's outage drill may have left one stopped
                server.start()
        self.cache.start()
        self.queue.start()
        h = self.harness
        self.cache_exporter = h.redis_exporter(self.cache.address, name="signals-redis-exporter",
                                              password=self.cache.password)
        p, r = self.pg.primary, self.pg.replica
        self.primary_exporter = h.postgres_exporter(f"{p.host}:{p.port}", MONITOR_USER, MONITOR_PASSWORD,
                                                    name="signals-pg-primary-exporter")
        self.replica_exporter = h.postgres_exporter(f"{r.host}:{r.port}", MONITOR_USER, MONITOR_PASSWORD,
                                                    name="signals-pg-replica-exporter")
        self.prom = h.prometheus(name="signals-prometheus")

    def stop(self) -> None:
        if self.prom is not None:
            self.prom.stop()
        for server in (self.cache_exporter, self.primary_exporter, self.replica_exporter):
            server.stop()
        self.cache.stop()
        self.queue.stop()

    def spec(self, base: api.ScaledAppSpec) -> api.ScaledAppSpec:
        assert self.prom is not None
        scaling = base.scaling.model_copy(update={"prometheus_url": self.prom.url})
        return base.model_copy(update={"scaling": scaling})

    def settings(self, **overrides: str) -> dict[str, str]:
        settings = app_settings(self.pg, self.cache, **overrides)
        settings["APP_QUEUE_URL"] = self.queue.url(0)
        return settings

    @contextlib.contextmanager
    def scenario(self, name: str, **overrides: str) -> Iterator[tuple[AppProcess, WorkerProcess, str]]:
        """A fresh app and worker with these APP_* overrides, scraped under namespace sig-<name>; yields
        (app, worker, namespace). Afterwards both Redis are emptied and the cache's maxmemory restored."""
        assert self.prom is not None
        namespace = f"sig-{name}"
        logs = self.base / "logs"
        app = AppProcess(f"signals-{name}-app", logs, self.settings(**overrides))
        worker = WorkerProcess(f"signals-{name}-worker", logs, self.settings(**overrides))

        def target(address: str, pod: str, tier: str) -> Target:
            return Target(address, namespace=namespace, pod=f"{INSTANCE}-{pod}", instance=INSTANCE, tier=tier)

        # Targets first: Prometheus takes ~5 s to pick up a change, which overlaps the processes' start.
        self.prom.set_targets([
            target(f"{app.host}:{app.port}", "app-0", "app"),
            target(f"{worker.host}:{worker.metrics_port}", "workers-0", "workers"),
            target(self.cache_exporter.address, "cache-0", "cache"),
            target(self.primary_exporter.address, "db-0", "db-write"),
            target(self.replica_exporter.address, "db-read-0", "db-read"),
        ])
        try:
            app.start()
            worker.start()
            self.prom.wait_for_targets(timeout=30)
            yield app, worker, namespace
        finally:
            app.stop()
            worker.stop()
            self.prom.set_targets([])
            for server in (self.cache, self.queue):
                client = server.client()
                client.flushall()
                client.config_set("maxmemory", "256mb")


@contextlib.contextmanager
def load(url: str, log_dir: Path, *, name: str, profile: str, duration: float, keys: int, mix: str,
         zipf: float = 0.0, max_in_flight: int = 64) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m demo_app.load` in its own process (so it does not steal the test's time slices), bounded
    by `duration` and `max_in_flight`; stopped on exit if still running."""
    cmd = [sys.executable, "-m", "demo_app.load", "--url", url, "--profile", profile, "--duration", str(duration),
           "--keys", str(keys), "--zipf", str(zipf), "--mix", mix, "--max-in-flight", str(max_in_flight),
           "--timeout", "3", "--quiet", "--json", str(log_dir / f"load-{name}.json")]
    with (log_dir / f"load-{name}.log").open("ab") as out:
        proc = subprocess.Popen(cmd, env=app_env({}), cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=30)


@contextlib.contextmanager
def row_locks(dsn: str, ids: list[int], writers: int = 4, hold_seconds: int = 90) -> Iterator[None]:
    """One session holds FOR UPDATE locks on these rows in an open transaction (a long batch job, say) and
    `writers` other sessions try to update them and queue behind it: lock waits the server itself reports.
    Every session is bounded by server-side timeouts; on exit the holder rolls back and the writers finish."""
    holder = psycopg.connect(dsn, connect_timeout=3)
    threads: list[threading.Thread] = []
    try:
        holder.execute(f"SET idle_in_transaction_session_timeout = '{int(hold_seconds)}s'")
        holder.execute("SELECT id FROM items WHERE id = ANY(%s) FOR UPDATE", (ids,)).fetchall()

        def write(item_id: int) -> None:
            with psycopg.connect(dsn, connect_timeout=3, autocommit=True) as conn:
                conn.execute(f"SET statement_timeout = '{int(hold_seconds)}s'")
                with contextlib.suppress(psycopg.errors.QueryCanceled):
                    conn.execute("UPDATE items SET value = value WHERE id = %s", (item_id,))

        threads = [threading.Thread(target=write, args=(ids[i % len(ids)],), daemon=True) for i in range(writers)]
        for thread in threads:
            thread.start()
        yield
    finally:
        holder.rollback()
        holder.close()
        for thread in threads:
            thread.join(timeout=30)


@contextlib.contextmanager
def crowded_cache(server: RedisServer, maxmemory: str, keys_per_second: int = 500,
                  value_bytes: int = 200, max_seconds: float = 60.0) -> Iterator[None]:
    """Shrink the cache to `maxmemory`, fill it until Redis evicts, and keep another key family writing to
    it (sessions, say) while the block runs: a cache too small for what is asked of it.

    The steady writer matters: every new client connection (the exporter connects per scrape) takes
    buffer memory, Redis evicts keys to make room, and frees the buffers a moment later; a cache of a few
    MiB is then hundreds of KiB under maxmemory and stops evicting until something fills it again.

    A write Redis refuses (OOM: a moment when connection buffers alone exceed maxmemory and no key is left
    to evict) is dropped and the writer goes on, as a session store's client would; once a refusal ended
    the writer, the cache stopped evicting and the test saw a full cache with no evictions."""
    client = server.client()
    client.config_set("maxmemory", maxmemory)
    payload = b"x" * value_bytes
    written = 0
    batch = max(1, keys_per_second // 10)

    def write_batch() -> None:
        nonlocal written
        # Small pipelines: a big one's query buffer would itself count as used memory while parsed.
        with client.pipeline(transaction=False) as pipe:
            for i in range(written, written + batch):
                pipe.set(f"other:{i}", payload)
            with contextlib.suppress(redis.exceptions.OutOfMemoryError):
                pipe.execute()
        written += batch

    def evicting() -> bool:
        write_batch()
        return int(client.info("stats")["evicted_keys"]) > 0

    wait_for(evicting, 30, f"the cache to evict at maxmemory {maxmemory}", interval=0.0)
    stop = threading.Event()

    def keep_writing() -> None:
        deadline = time.monotonic() + max_seconds
        while not stop.wait(0.1) and time.monotonic() < deadline:  # paced writes, bounded in time
            write_batch()

    thread = threading.Thread(target=keep_writing, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)
