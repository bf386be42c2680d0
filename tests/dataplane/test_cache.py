"""The read-through cache: hits spare the database, writes never leave a stale value to be served."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from demo_app.breaker import CircuitBreaker
from demo_app.cache import Cache, item_key
from demo_app.deps import Dependency
from demo_app.models import Item
from demo_app.settings import Settings
from tests.dataplane.promtext import delta, scrape
from tests.support.dataplane import AppProcess, RedisServer

pytestmark = pytest.mark.dataplane


def test_second_read_is_a_cache_hit_and_spares_the_database(demo_app: AppProcess, redis_server: RedisServer) -> None:
    item_id = 101
    redis_server.client().delete(item_key(item_id))  # start cold
    before = scrape(demo_app.url + "/metrics")
    first = httpx.get(f"{demo_app.url}/items/{item_id}", timeout=5)
    middle = scrape(demo_app.url + "/metrics")
    second = httpx.get(f"{demo_app.url}/items/{item_id}", timeout=5)
    after = scrape(demo_app.url + "/metrics")

    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    db_reads = "scaledapp_dependency_duration_seconds_count"
    assert delta(before, middle, "scaledapp_cache_requests_total", result="miss") == 1
    assert delta(before, middle, db_reads, dependency="db-read", operation="get_item") == 1
    assert delta(middle, after, "scaledapp_cache_requests_total", result="hit") == 1
    assert delta(middle, after, db_reads, dependency="db-read", operation="get_item") == 0
    assert delta(middle, after, db_reads, dependency="db-write", operation="get_item") == 0


def test_a_write_invalidates_so_no_stale_value_is_served(demo_app: AppProcess, redis_server: RedisServer) -> None:
    item_id = 102
    cache = redis_server.client()
    with httpx.Client(base_url=demo_app.url, timeout=5) as client:
        assert client.get(f"/items/{item_id}").status_code == 200  # now cached
        for i in range(20):
            written = client.put(f"/items/{item_id}", json={"name": "n", "value": f"v{i}"})
            assert written.status_code == 200
            cached = cache.get(item_key(item_id))
            assert cached is None or int(cached.split(b":")[0]) >= written.json()["version"]
            read = client.get(f"/items/{item_id}")
            assert read.status_code == 200
            assert read.json() == written.json(), f"write {i}: read {read.json()} after {written.json()}"


def test_a_fill_older_than_the_latest_write_is_refused(redis_server: RedisServer) -> None:
    """The race a lagging replica would cause: a reader fetched version 1 before the write of version 2
    and tries to cache it after the write's invalidation."""
    settings = Settings(APP_CACHE_URL=redis_server.url(2))  # type: ignore[call-arg]

    async def scenario() -> tuple[bool, bool, bool, Item | None]:
        cache = Cache(settings, Dependency("cache", CircuitBreaker(5, 1.0), timeout=1.0))
        try:
            old, new = Item(id=5, name="a", value="old", version=1), Item(id=5, name="a", value="new", version=2)
            await cache.invalidate(new)
            stale_fill = await cache.fill(old)
            fresh_fill = await cache.fill(new)
            late_stale_fill = await cache.fill(old)  # marker aside, the cached entry is newer too
            cached, marker = await cache.lookup(5)
            assert marker == 2
            return stale_fill, fresh_fill, late_stale_fill, cached
        finally:
            await cache.close()

    stale_fill, fresh_fill, late_stale_fill, cached = asyncio.run(scenario())
    assert (stale_fill, fresh_fill, late_stale_fill) == (False, True, False)
    assert cached is not None and cached.value == "new"
