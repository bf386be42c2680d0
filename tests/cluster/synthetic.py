"""Synthetic pods for one ScaledApp: tiny HTTP servers exposing fixed Prometheus text with the exact metric
names of docs/metrics.md, one per tier, labelled through file_sd as that ScaledApp's pods.

The text is fixed except where a test turns a knob: gauges are set values, counters grow at a set rate
(so rate() is that rate). The defaults are a calm, idle service; `hot_queue()` makes the workers tier the
bottleneck (a backlog of queued jobs), the one knob the scaler tests need.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from devharness.prometheus import Target

Series = str  # a metric name with its label set, as written in the exposition: name{a="b"}


@dataclass
class PodMetrics:
    """One pod's /metrics: gauges at fixed values, counters growing at fixed rates from the start."""

    gauges: dict[Series, float] = field(default_factory=dict)
    counter_rates: dict[Series, float] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def text(self) -> str:
        with self.lock:
            elapsed = time.monotonic() - self.started
            lines = [f"{series} {value!r}" for series, value in self.gauges.items()]
            lines += [f"{series} {rate * elapsed!r}" for series, rate in self.counter_rates.items()]
        return "\n".join(lines) + "\n"

    def set(self, series: Series, value: float) -> None:
        with self.lock:
            self.gauges[series] = value


def _histogram(name: str, labels: str) -> dict[Series, float]:
    """An empty histogram (no observations yet), as prometheus_client exposes a labelled child."""
    sep = "," if labels else ""
    return {f'{name}_bucket{{{labels}{sep}le="+Inf"}}': 0.0, f"{name}_sum{{{labels}}}": 0.0,
            f"{name}_count{{{labels}}}": 0.0}


def app_pod() -> PodMetrics:
    gauges: dict[Series, float] = {
        "scaledapp_http_requests_in_flight": 1.0,
        "scaledapp_cpu_limit_cores": 0.5,
        "scaledapp_queue_depth": 0.0,
        "scaledapp_queue_oldest_age_seconds": 0.0,
        'scaledapp_cache_requests_total{result="hit"}': 0.0,
        'scaledapp_cache_requests_total{result="miss"}': 0.0,
        'scaledapp_http_requests_total{route="/items/{item_id}",method="GET",status="200"}': 0.0,
        **_histogram("scaledapp_http_request_duration_seconds", 'route="/items/{item_id}",method="GET"'),
        **_histogram("scaledapp_dependency_duration_seconds", 'dependency="db-read",operation="get_item"'),
        **_histogram("scaledapp_dependency_duration_seconds", 'dependency="db-write",operation="put_item"'),
        **_histogram("scaledapp_dependency_pool_wait_seconds", 'dependency="db-read"'),
    }
    # An idle app still spends a little CPU (10 % of its 500m limit).
    return PodMetrics(gauges=gauges, counter_rates={"process_cpu_seconds_total": 0.05})


def workers_pod() -> PodMetrics:
    return PodMetrics(
        gauges={"scaledapp_queue_depth": 0.0, "scaledapp_queue_oldest_age_seconds": 0.0,
                "scaledapp_worker_concurrency": 1.0, "scaledapp_worker_jobs_in_progress": 0.0,
                'scaledapp_worker_jobs_total{status="done"}': 0.0, "scaledapp_cpu_limit_cores": 0.5},
        counter_rates={"process_cpu_seconds_total": 0.01},
    )


def cache_pod() -> PodMetrics:
    return PodMetrics(
        gauges={"redis_up": 1.0, "redis_memory_used_bytes": 8.0 * 2**20, "redis_memory_max_bytes": 64.0 * 2**20,
                "redis_evicted_keys_total": 0.0, "redis_keyspace_hits_total": 0.0,
                "redis_keyspace_misses_total": 0.0, "redis_connected_clients": 3.0},
        counter_rates={"redis_cpu_user_seconds_total": 0.01, "redis_cpu_sys_seconds_total": 0.005},
    )


def postgres_pod(server: str, replica: bool) -> PodMetrics:
    gauges: dict[Series, float] = {
        "pg_up": 1.0,
        f'pg_settings_max_connections{{server="{server}"}}': 100.0,
        f'pg_stat_activity_count{{datname="app",state="active",usename="app",server="{server}"}}': 1.0,
        f'pg_stat_activity_count{{datname="app",state="idle",usename="app",server="{server}"}}': 4.0,
        f'pg_locks_waiting_count{{server="{server}"}}': 0.0,
        f'pg_locks_waiting_max_seconds{{server="{server}"}}': 0.0,
        "pg_replication_is_replica": 1.0 if replica else 0.0,
        "pg_replication_lag_seconds": 0.0,
    }
    return PodMetrics(gauges=gauges)


class _Handler(BaseHTTPRequestHandler):
    pod: PodMetrics

    def do_GET(self) -> None:
        body = self.pod.text().encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:  # one line per scrape would be noise
        return


@dataclass
class SyntheticApp:
    """The five pods of ScaledApp `name` in `namespace`, each served on its own loopback port."""

    namespace: str
    name: str
    pods: dict[str, PodMetrics]  # tier -> metrics
    servers: dict[str, ThreadingHTTPServer]

    def targets(self) -> list[Target]:
        return [
            Target(f"127.0.0.1:{server.server_address[1]}", namespace=self.namespace, pod=f"{self.name}-{tier}-0",
                   instance=self.name, tier=tier)
            for tier, server in self.servers.items()
        ]

    def hot_queue(self, depth: float = 200.0, age: float = 120.0) -> None:
        """A backlog: both the app and the workers report it (the tier takes the max)."""
        for tier in ("app", "workers"):
            self.pods[tier].set("scaledapp_queue_depth", depth)
            self.pods[tier].set("scaledapp_queue_oldest_age_seconds", age)


@contextmanager
def synthetic_app(namespace: str, name: str) -> Iterator[SyntheticApp]:
    pods = {"app": app_pod(), "workers": workers_pod(), "cache": cache_pod(),
            "db-write": postgres_pod("127.0.0.1:5432", replica=False),
            "db-read": postgres_pod("127.0.0.1:5432", replica=True)}
    servers: dict[str, ThreadingHTTPServer] = {}
    try:
        for tier, pod in pods.items():
            handler = type(f"Handler_{tier.replace('-', '_')}", (_Handler,), {"pod": pod})
            server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
            servers[tier] = server
            threading.Thread(target=server.serve_forever, daemon=True, name=f"synthetic-{tier}").start()
        yield SyntheticApp(namespace, name, pods, servers)
    finally:
        for server in servers.values():
            server.shutdown()
            server.server_close()
