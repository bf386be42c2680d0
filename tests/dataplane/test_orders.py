"""Orders: accepted at once with 202, done later by the worker; a burst queues up and drains."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest

from demo_app.queue import DEAD, PROCESSING, WAITING, job_key
from tests.support.dataplane import AppProcess, PostgresCluster, RedisServer, WorkerProcess, app_settings
from tests.support.wait import wait_for

pytestmark = pytest.mark.dataplane


def test_a_queued_order_is_processed_by_the_worker(demo_app: AppProcess, demo_worker: WorkerProcess) -> None:
    accepted = httpx.post(f"{demo_app.url}/orders", json={"item_id": 3, "quantity": 2}, timeout=5)
    assert accepted.status_code == 202
    status_url = demo_app.url + accepted.json()["status_url"]
    assert accepted.headers["location"] == accepted.json()["status_url"]
    done = wait_for(lambda: (o := httpx.get(status_url, timeout=5).json())["state"] == "done" and o,
                    15, "the order to be done", interval=0.05)
    assert float(done["finished_at"]) >= float(done["started_at"]) >= float(done["enqueued_at"])
    assert httpx.get(f"{demo_app.url}/orders/no-such-job", timeout=5).status_code == 404


async def _burst(url: str, n: int, concurrency: int) -> list[httpx.Response]:
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:

        async def one(i: int) -> httpx.Response:
            async with gate:
                return await client.post("/orders", json={"item_id": 1 + i % 50})

        return await asyncio.gather(*(one(i) for i in range(n)))


def test_a_burst_far_above_the_workers_rate_is_accepted_and_drains(
    demo_app: AppProcess, demo_worker: WorkerProcess, redis_server: RedisServer
) -> None:
    # The worker does 2 jobs at a time, 50 ms each: ~40 jobs/s. 300 orders arrive within about a second.
    n = 300
    queue = redis_server.client(1)
    responses = asyncio.run(_burst(demo_app.url, n, concurrency=32))
    assert [r.status_code for r in responses] == [202] * n
    backlog = queue.llen(WAITING)
    assert backlog > n / 3, f"expected a backlog, the workers kept up ({backlog} waiting)"

    wait_for(lambda: queue.llen(WAITING) == 0 and queue.llen(PROCESSING) == 0, 60, "the backlog to drain",
             interval=0.2)
    ids = [r.json()["job_id"] for r in responses]
    states = queue.pipeline()
    for job_id in ids:
        states.hget(job_key(job_id), "state")
    assert set(states.execute()) == {b"done"}


def test_a_job_held_by_a_killed_worker_is_queued_again_and_done(
    demo_app: AppProcess, demo_worker: WorkerProcess, dataplane_dir: Path, pg_cluster: PostgresCluster,
    redis_server: RedisServer,
) -> None:
    demo_worker.stop()  # only the doomed worker may take the order
    # A worker with slow jobs is killed (SIGKILL: no chance to finish) while it holds an order.
    settings = app_settings(pg_cluster, redis_server, job_duration_seconds="30", job_visibility_seconds="2")
    doomed = WorkerProcess("doomed-worker", dataplane_dir / "logs", settings)
    doomed.start()
    accepted = httpx.post(f"{demo_app.url}/orders", json={"item_id": 7}, timeout=5)
    status_url = demo_app.url + accepted.json()["status_url"]

    def state() -> str:
        return str(httpx.get(status_url, timeout=5).json()["state"])

    wait_for(lambda: state() == "processing", 15, "the order taken")
    doomed.send(signal.SIGKILL)
    doomed.wait_stopped(10)
    # A healthy worker's sweep finds the orphan, queues it again, and does it.
    rescuer = WorkerProcess("rescuer-worker", dataplane_dir / "logs",
                            {**settings, "APP_JOB_DURATION_SECONDS": "0.05"})
    rescuer.start()
    try:
        wait_for(lambda: state() == "done", 30, "the orphaned order done by another worker")
        assert httpx.get(status_url, timeout=5).json()["attempts"] == "1"
    finally:
        rescuer.stop()
        demo_worker.start()


def test_a_poison_order_stops_after_its_attempts_and_is_kept_while_others_are_done(
    demo_app: AppProcess, demo_worker: WorkerProcess, dataplane_dir: Path, pg_cluster: PostgresCluster,
    redis_server: RedisServer,
) -> None:
    demo_worker.stop()  # only the worker that refuses item 13 takes orders
    settings = app_settings(pg_cluster, redis_server, job_duration_seconds="0.02",
                            job_fail_item_ids="[13]", job_max_attempts="3")
    picky = WorkerProcess("picky-worker", dataplane_dir / "logs", settings)
    picky.start()
    queue = redis_server.client(1)
    try:
        poison = httpx.post(f"{demo_app.url}/orders", json={"item_id": 13}, timeout=5).json()
        good = httpx.post(f"{demo_app.url}/orders", json={"item_id": 14}, timeout=5).json()

        def order(accepted: dict[str, str]) -> dict[str, str]:
            return dict(httpx.get(demo_app.url + accepted["status_url"], timeout=5).json())

        wait_for(lambda: order(poison)["state"] == "dead", 30, "the poison order dead", interval=0.1)
        dead = order(poison)
        assert dead["attempts"] == "3" and "refused" in dead["detail"]
        assert order(good)["state"] == "done"
        # Kept for inspection: on the dead list, no expiry, out of the waiting and processing lists.
        assert queue.lrange(DEAD, 0, -1).count(poison["job_id"].encode()) == 1
        assert queue.ttl(job_key(poison["job_id"])) == -1
        assert poison["job_id"].encode() not in queue.lrange(WAITING, 0, -1) + queue.lrange(PROCESSING, 0, -1)
        wait_for(lambda: 'scaledapp_worker_jobs_total{status="dead"} 1.0' in httpx.get(picky.metrics_url).text,
                 10, "the dead job counted")
    finally:
        picky.stop()
        demo_worker.start()
