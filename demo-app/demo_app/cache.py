"""Read-through cache in Redis, with versioned entries so a lagging replica can never re-poison it.

Keys: `item:{id}` holds "<version>:<json>"; `item:{id}:written` holds the version of the latest write
for `recent_write_window_seconds`. A write deletes the entry and sets the marker; a reader that misses
and finds a marker reads the primary; a fill is refused if the marker or the cached entry is newer.
"""

from __future__ import annotations

from typing import Final

import redis.asyncio

from demo_app.deps import Dependency
from demo_app.models import Item
from demo_app.redispool import make_client
from demo_app.settings import Settings

# Fill only if nothing newer is known: closes the race where a reader fetched an old row from a
# replica before a write and stores it after the write's invalidation.
_FILL: Final = """
local marker = tonumber(redis.call('GET', KEYS[2]) or '0')
local mine = tonumber(ARGV[1])
if marker > mine then return 0 end
local current = redis.call('GET', KEYS[1])
if current then
  local cv = tonumber(string.match(current, '^(%d+):'))
  if cv and cv > mine then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"""


def item_key(item_id: int) -> str:
    return f"item:{item_id}"


def marker_key(item_id: int) -> str:
    return f"item:{item_id}:written"


def encode(item: Item) -> str:
    return f"{item.version}:{item.model_dump_json()}"


def decode(raw: bytes) -> Item:
    _, _, payload = raw.partition(b":")
    return Item.model_validate_json(payload)


class Cache:
    def __init__(self, settings: Settings, dep: Dependency) -> None:
        self.settings = settings
        self.dep = dep
        self.enabled = settings.cache_enabled
        self.client: redis.asyncio.Redis = make_client(
            dep.name, settings.cache_url, settings.cache_pool_size, settings.cache_timeout,
            password_file=settings.cache_password_file,
        )
        self._fill = self.client.register_script(_FILL)

    async def close(self) -> None:
        await self.client.aclose()

    async def lookup(self, item_id: int) -> tuple[Item | None, int | None]:
        """The cached item (if any) and the version of a recent write (if any), in one round trip."""

        async def run() -> list[bytes | None]:
            values = await self.client.mget(item_key(item_id), marker_key(item_id))
            return [v.encode() if isinstance(v, str) else v for v in values]

        raw_item, raw_marker = await self.dep.call("get", run)
        return (decode(raw_item) if raw_item else None), (int(raw_marker) if raw_marker else None)

    async def fill(self, item: Item) -> bool:
        ttl_ms = int(self.settings.cache_ttl_seconds * 1000)

        async def run() -> bool:
            keys = [item_key(item.id), marker_key(item.id)]
            stored = await self._fill(keys=keys, args=[item.version, encode(item), ttl_ms])
            return bool(stored)

        return await self.dep.call("set", run)

    async def invalidate(self, item: Item) -> None:
        window_ms = int(self.settings.recent_write_window_seconds * 1000)

        async def run() -> None:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.set(marker_key(item.id), item.version, px=window_ms)
                pipe.delete(item_key(item.id))
                await pipe.execute()

        await self.dep.call("invalidate", run)
