"""Degrade, don't die: each dependency stopped for real, and started again before the test ends."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from tests.dataplane.promtext import delta, scrape
from tests.support.dataplane import AppProcess, PostgresCluster, RedisServer
from tests.support.wait import wait_for

pytestmark = pytest.mark.dataplane


def timed(fn: object, *args: object, **kwargs: object) -> tuple[httpx.Response, float]:
    start = time.perf_counter()
    response = fn(*args, **kwargs)  # type: ignore[operator]
    return response, time.perf_counter() - start


def reads_served_by_the_replica_again(app: AppProcess, client: httpx.Client) -> None:
    """After an outage the read pool reconnects in the background (reads fall back to the primary
    meanwhile): wait until a cache miss is served by db-read again, so later tests start clean."""
    ids = iter(range(450, 500))

    def replica_read() -> bool:
        before = scrape(app.url + "/metrics")
        client.get(f"/items/{next(ids)}").raise_for_status()
        after = scrape(app.url + "/metrics")
        return delta(before, after, "scaledapp_dependency_duration_seconds_count", dependency="db-read",
                     operation="get_item") == 1 and delta(before, after, "scaledapp_dependency_errors_total",
                                                          dependency="db-read", kind="unavailable") == 0

    wait_for(replica_read, 20, "reads served by the replica again", interval=0.2)


@pytest.fixture
def client(demo_app: AppProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=demo_app.url, timeout=10) as c:
        yield c


def test_with_redis_stopped_reads_come_from_the_database_and_orders_fail_fast(
    demo_app: AppProcess, redis_server: RedisServer, healthy_dataplane: PostgresCluster, client: httpx.Client
) -> None:
    before = scrape(demo_app.url + "/metrics")
    redis_server.stop()
    try:
        for item_id in range(301, 311):
            response, elapsed = timed(client.get, f"/items/{item_id}")
            assert response.status_code == 200, response.text
            assert elapsed < 2.0
        order, elapsed = timed(client.post, "/orders", json={"item_id": 1})
        assert order.status_code == 503
        assert order.headers["retry-after"].isdigit()
        assert elapsed < 2.0
        assert client.get("/readyz").status_code == 200  # the cache is not needed to serve
        after = scrape(demo_app.url + "/metrics")
        assert delta(before, after, "scaledapp_cache_requests_total", result="bypass") == 10
        cache_errors = sum(
            delta(before, after, "scaledapp_dependency_errors_total", dependency="cache", kind=k)
            for k in ("unavailable", "timeout", "circuit_open")
        )
        assert cache_errors >= 10
    finally:
        redis_server.start()
    wait_for(lambda: client.post("/orders", json={"item_id": 1}).status_code == 202, 20,
             "orders accepted again after Redis is back")

    def cache_hit() -> bool:
        client.get("/items/449")
        before = scrape(demo_app.url + "/metrics")
        client.get("/items/449")
        return delta(before, scrape(demo_app.url + "/metrics"), "scaledapp_cache_requests_total", result="hit") == 1

    wait_for(cache_hit, 20, "cache hits again after Redis is back", interval=0.2)


def test_with_the_primary_stopped_writes_fail_fast_and_reads_go_on(
    demo_app: AppProcess, healthy_dataplane: PostgresCluster, client: httpx.Client
) -> None:
    pg = healthy_dataplane
    pg.primary.stop()
    try:
        timings = []
        for i in range(8):
            response, elapsed = timed(client.put, "/items/401", json={"name": "p", "value": f"v{i}"})
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"].isdigit()
            assert response.json()["dependency"] == "db-write"
            timings.append(elapsed)
        assert max(timings) < 3.0, timings
        assert min(timings[-3:]) < 0.2, f"the breaker should make later writes fail at once: {timings}"
        for item_id in range(402, 407):
            response = client.get(f"/items/{item_id}")
            assert response.status_code == 200, response.text
        assert client.get("/readyz").status_code == 200  # the replica is a database
    finally:
        pg.primary.start()
    wait_for(lambda: client.put("/items/401", json={"name": "p", "value": "back"}).status_code == 200, 30,
             "writes succeed again after the primary is back")
    wait_for(pg.streaming, 30, "the replica streaming again", interval=0.2)


def test_readyz_follows_the_databases_and_livez_does_not(
    demo_app: AppProcess, healthy_dataplane: PostgresCluster, client: httpx.Client
) -> None:
    pg = healthy_dataplane
    assert client.get("/readyz").status_code == 200
    pg.replica.stop()
    pg.primary.stop()
    try:
        wait_for(lambda: client.get("/readyz").status_code == 503, 15, "/readyz false with no database")
        assert client.get("/livez").status_code == 200
        assert "no database" in client.get("/readyz").json()["reason"]
    finally:
        pg.primary.start()
        pg.replica.start()
    wait_for(lambda: client.get("/readyz").status_code == 200, 30, "/readyz true with the databases back")
    assert client.get("/livez").status_code == 200
    wait_for(pg.streaming, 30, "the replica streaming again", interval=0.2)
    reads_served_by_the_replica_again(demo_app, client)
