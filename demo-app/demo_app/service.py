"""What the routes do: the read path (cache, then replicas, then the primary), the write path, orders.

Stale reads after a write: a write bumps the row's version, deletes the cache entry and leaves a
short-lived marker (`item:{id}:written`, see cache.py). A reader that misses the cache and finds the
marker reads the primary, not a replica that may not have replayed the write yet; and a cache fill
carrying an older version than the marker or the cached entry is refused. This pod also remembers its
own recent writes in memory, so read-your-writes holds here even while the cache is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict

from demo_app import metrics
from demo_app.cache import Cache
from demo_app.db import Database
from demo_app.deps import DependencyUnavailableError
from demo_app.models import Item, ItemIn
from demo_app.queue import JobQueue
from demo_app.settings import Settings


def burn_cpu(milliseconds: float) -> None:
    """Spend this much CPU time on purpose (the app-tier bottleneck knob); blocks the event loop."""
    if milliseconds <= 0:
        return
    end = time.thread_time() + milliseconds / 1000.0
    x = 0
    while time.thread_time() < end:
        for i in range(200):
            x ^= i * i


class RecentWrites:
    """id -> (version, expiry) of this pod's writes within the window; bounded in size."""

    def __init__(self, window: float, capacity: int = 10_000) -> None:
        self.window = window
        self.capacity = capacity
        self._entries: OrderedDict[int, tuple[int, float]] = OrderedDict()

    def note(self, item_id: int, version: int, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._entries[item_id] = (version, now + self.window)
        self._entries.move_to_end(item_id)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def version(self, item_id: int, now: float | None = None) -> int | None:
        now = time.monotonic() if now is None else now
        entry = self._entries.get(item_id)
        if entry is None:
            return None
        if entry[1] <= now:
            del self._entries[item_id]
            return None
        return entry[0]


class Service:
    def __init__(self, settings: Settings, db: Database, cache: Cache, queue: JobQueue) -> None:
        self.settings = settings
        self.db = db
        self.cache = cache
        self.queue = queue
        self.recent = RecentWrites(settings.recent_write_window_seconds)
        self._loading: dict[tuple[int, bool], asyncio.Future[Item | None]] = {}

    async def _read_db(self, item_id: int, *, fresh: bool) -> Item | None:
        """Replicas normally; the primary when the key was just written. Each falls back to the other,
        so reads survive either one being down (a fallback to a replica may be a little stale)."""
        first_primary = fresh or not self.settings.has_replicas
        try:
            return await self.db.get_item(item_id, primary=first_primary)
        except DependencyUnavailableError as first:
            if not self.settings.has_replicas:
                raise
            try:
                return await self.db.get_item(item_id, primary=not first_primary)
            except DependencyUnavailableError:
                raise first from None

    async def get_item(self, item_id: int) -> Item | None:
        burn_cpu(self.settings.cpu_work_ms)
        known = self.recent.version(item_id)
        marker: int | None = None
        cache_usable = self.cache.enabled
        if cache_usable:
            try:
                cached, marker = await self.cache.lookup(item_id)
            except DependencyUnavailableError:
                cache_usable = False
            else:
                if cached is not None and (known is None or cached.version >= known):
                    metrics.CACHE_REQUESTS.labels("hit").inc()
                    return cached
                metrics.CACHE_REQUESTS.labels("miss").inc()
        if not cache_usable:
            metrics.CACHE_REQUESTS.labels("bypass").inc()
        return await self._load(item_id, fresh=marker is not None or known is not None, fill=cache_usable)

    async def _load(self, item_id: int, *, fresh: bool, fill: bool) -> Item | None:
        """Database read plus cache fill, coalesced: concurrent misses for one key in this process share
        one query (a hot key expiring must not send a burst of identical queries to the database)."""
        if not fill:
            # No cache in play (off or down): every read is its own query, so "cache off" really puts
            # the whole read load on the database (the knob that makes db-read the bottleneck).
            return await self._read_db(item_id, fresh=fresh)
        key = (item_id, fresh)  # a fresh read never joins a possibly stale one
        pending = self._loading.get(key)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                if not pending.cancelled():
                    raise  # this request was cancelled, not the shared read
            if key in self._loading:  # the leader was cancelled and another one took over
                return await self._load(item_id, fresh=fresh, fill=fill)
        future: asyncio.Future[Item | None] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            item = await self._read_db(item_id, fresh=fresh)
            if item is not None and fill:
                # A failed fill is counted by the dependency; the reader already has its answer.
                with contextlib.suppress(DependencyUnavailableError):
                    await self.cache.fill(item)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody was waiting
            raise
        else:
            future.set_result(item)
            return item
        finally:
            del self._loading[key]

    async def _after_write(self, item: Item) -> Item:
        self.recent.note(item.id, item.version)
        if self.cache.enabled:
            # If this fails (counted), the entry, if Redis kept it, expires within the TTL, and this
            # pod's RecentWrites keeps its own readers off it meanwhile.
            with contextlib.suppress(DependencyUnavailableError):
                await self.cache.invalidate(item)
        return item

    async def put_item(self, item_id: int, body: ItemIn) -> Item:
        burn_cpu(self.settings.cpu_work_ms)
        return await self._after_write(await self.db.put_item(item_id, body.name, body.value))

    async def create_item(self, body: ItemIn) -> Item:
        burn_cpu(self.settings.cpu_work_ms)
        return await self._after_write(await self.db.create_item(body.name, body.value))
