"""SIGTERM: the app reports unready, finishes what is in flight, closes its pools and exits 0; the
worker finishes the job in hand."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.dataplane.promtext import scrape, value
from tests.support.dataplane import AppProcess, PostgresCluster, RedisServer, WorkerProcess, app_settings
from tests.support.wait import wait_for

pytestmark = pytest.mark.dataplane


def test_sigterm_drains_then_exits_cleanly(
    dataplane_dir: Path, healthy_dataplane: PostgresCluster, redis_server: RedisServer
) -> None:
    # Slow reads on purpose (the read-cost knob), no cache, so a request is in flight when SIGTERM comes.
    settings = app_settings(healthy_dataplane, redis_server, drain_seconds="1.5", cache_enabled="false",
                            read_query_cost_rows="3000000", log_level="info")
    app = AppProcess("app-drain", dataplane_dir / "logs", settings)
    app.start()
    try:
        start = time.perf_counter()
        assert httpx.get(f"{app.url}/items/7", timeout=10).status_code == 200
        slow = time.perf_counter() - start
        assert slow > 0.05, f"the read-cost knob had no effect ({slow:.3f}s)"

        results: list[int] = []

        def read() -> None:
            results.append(httpx.get(f"{app.url}/items/8", timeout=10).status_code)

        reader = threading.Thread(target=read)
        reader.start()
        wait_for(lambda: value(scrape(app.url + "/metrics"), "scaledapp_http_requests_in_flight") >= 1, 5,
                 "the slow request in flight", interval=0.005)
        app.send(signal.SIGTERM)
        draining = httpx.get(f"{app.url}/readyz", timeout=5)
        assert draining.status_code == 503 and draining.json()["reason"] == "draining"
        assert httpx.get(f"{app.url}/livez", timeout=5).status_code == 200
        reader.join(10)
        assert results == [200]
        assert app.wait_stopped(20) == 0
        assert "pools closed" in app.log_tail(20)
    finally:
        app.stop()


def test_worker_finishes_the_job_in_hand_on_sigterm(
    dataplane_dir: Path, demo_app: AppProcess, healthy_dataplane: PostgresCluster, redis_server: RedisServer
) -> None:
    settings = app_settings(healthy_dataplane, redis_server, job_duration_seconds="1.0", worker_concurrency="1")
    worker = WorkerProcess("worker-drain", dataplane_dir / "logs", settings)
    worker.start()
    try:
        status_url = demo_app.url + httpx.post(f"{demo_app.url}/orders", json={"item_id": 1}, timeout=5).json()[
            "status_url"]
        wait_for(lambda: httpx.get(status_url, timeout=5).json()["state"] in ("processing", "done"), 20,
                 "the job taken", interval=0.02)
        assert worker.signal_stop(signal.SIGTERM, timeout=20) == 0
        assert httpx.get(status_url, timeout=5).json()["state"] == "done"
    finally:
        worker.stop()
