"""The order queue in Redis: a list of waiting job ids, a zset of their enqueue times (for the oldest
job's age), and a hash per job with its state. Workers move a job to a processing list atomically.

A job is tried at most `max_attempts` times, whether its work failed or its worker vanished holding it; then
it is dead: kept (no expiry) on the dead list for inspection, never retried by itself. A poison order can
therefore not occupy the workers forever."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
import uuid
from dataclasses import dataclass
from typing import Any, Final

import redis.asyncio

from demo_app import metrics
from demo_app.deps import Dependency, DependencyUnavailableError
from demo_app.redispool import make_client

WAITING: Final = "orders:waiting"
ENQUEUED_AT: Final = "orders:enqueued_at"
PROCESSING: Final = "orders:processing"
DEAD: Final = "orders:dead"

# Move a taken job on after a failed attempt: queued again, or dead once it has had its attempts. Shared by
# the failure path and the stale sweep, so both count the same way. Returns 1 when the job died.
_RETRY_OR_BURY_FN: Final = """
local function retry_or_bury(id, key, now, max_attempts, detail, front)
  redis.call('LREM', KEYS[1], 1, id)
  local attempts = redis.call('HINCRBY', key, 'attempts', 1)
  if attempts >= max_attempts then
    redis.call('HSET', key, 'state', 'dead', 'finished_at', now, 'detail', detail)
    redis.call('PERSIST', key)
    redis.call('LPUSH', KEYS[4], id)
    return 1
  end
  redis.call('HSET', key, 'state', 'queued', 'detail', detail)
  if front then redis.call('RPUSH', KEYS[2], id) else redis.call('LPUSH', KEYS[2], id) end
  redis.call('ZADD', KEYS[3], redis.call('HGET', key, 'enqueued_at') or now, id)
  return 0
end
"""

# A failed job goes to the back of the queue (others should not wait behind a job that just failed).
# KEYS: processing, waiting, enqueued_at, dead. ARGV: now, max attempts, job id, job key, detail.
_RETRY_OR_BURY: Final = _RETRY_OR_BURY_FN + """
return retry_or_bury(ARGV[3], ARGV[4], ARGV[1], tonumber(ARGV[2]), ARGV[5], false)
"""

# Atomically move on every job taken longer than the visibility timeout ago (its worker died holding it): to
# the front (the end BLMOVE takes from; it has waited longest), or dead if that was its last attempt.
# KEYS: processing, waiting, enqueued_at, dead. ARGV: now, visibility seconds, job key prefix, max attempts.
# Returns {queued again, dead}.
_REQUEUE_STALE: Final = _RETRY_OR_BURY_FN + """
local queued, dead = 0, 0
for _, id in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local key = ARGV[3] .. id
  local taken = tonumber(redis.call('HGET', key, 'started_at') or redis.call('HGET', key, 'enqueued_at') or ARGV[1])
  if tonumber(ARGV[1]) - taken > tonumber(ARGV[2]) then
    if retry_or_bury(id, key, ARGV[1], tonumber(ARGV[4]), 'its worker vanished while holding it', true) == 1 then
      dead = dead + 1
    else
      queued = queued + 1
    end
  end
end
return {queued, dead}
"""


def _b(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value


@dataclass(frozen=True)
class Job:
    id: str
    payload: dict[str, Any]


def job_key(job_id: str) -> str:
    return f"order:{job_id}"


class JobQueue:
    def __init__(
        self,
        dep: Dependency,
        url: str,
        pool_size: int,
        timeout: float,
        job_ttl_seconds: int,
        block_seconds: int = 0,
        max_attempts: int = 3,
        password_file: str = "",
    ) -> None:
        self.dep = dep
        self.job_ttl_seconds = job_ttl_seconds
        self.max_attempts = max_attempts
        self.block_seconds = block_seconds
        # A blocking dequeue holds the socket for block_seconds: its reply timeout must cover that.
        self.client: redis.asyncio.Redis = make_client(
            dep.name, url, pool_size, timeout, socket_timeout=timeout + block_seconds, password_file=password_file
        )

    async def close(self) -> None:
        await self.client.aclose()

    async def enqueue(self, payload: dict[str, Any]) -> str:
        job_id = uuid.uuid4().hex
        now = time.time()

        async def run() -> None:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(
                    job_key(job_id),
                    mapping={"state": "queued", "enqueued_at": now, "payload": json.dumps(payload)},
                )
                pipe.expire(job_key(job_id), self.job_ttl_seconds)
                pipe.zadd(ENQUEUED_AT, {job_id: now})
                pipe.lpush(WAITING, job_id)
                await pipe.execute()

        await self.dep.call("enqueue", run)
        return job_id

    async def get(self, job_id: str) -> dict[str, str] | None:
        async def run() -> dict[bytes, bytes]:
            fields = await self.client.hgetall(job_key(job_id))
            return {_b(k): _b(v) for k, v in fields.items()}

        raw = await self.dep.call("get_order", run)
        if not raw:
            return None
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def dequeue(self) -> Job | None:
        """Take the oldest waiting job (blocking up to block_seconds); None if there was none."""

        async def run() -> bytes | None:
            taken = await self.client.blmove(WAITING, PROCESSING, self.block_seconds, "RIGHT", "LEFT")
            return None if taken is None else _b(taken)

        raw = await self.dep.call("dequeue", run, deadline=self.dep.timeout + self.block_seconds)
        if raw is None:
            return None
        job_id = raw.decode()

        async def started() -> bytes | None:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.zrem(ENQUEUED_AT, job_id)
                pipe.hset(job_key(job_id), mapping={"state": "processing", "started_at": time.time()})
                pipe.hget(job_key(job_id), "payload")
                payload = (await pipe.execute())[-1]
            return None if payload is None else _b(payload)

        payload = await self.dep.call("update_order", started)
        return Job(job_id, json.loads(payload) if payload else {})

    async def fail(self, job_id: str, detail: str) -> bool:
        """A taken job's work failed: queue it again at the back, or bury it once it has had max_attempts
        (kept on the dead list, never retried by itself). True when it died."""

        async def run() -> int:
            keys = [PROCESSING, WAITING, ENQUEUED_AT, DEAD]
            args: list[str | float] = [time.time(), self.max_attempts, job_id, job_key(job_id), detail[:500]]
            return int(await self.client.eval(_RETRY_OR_BURY, len(keys), *keys, *args))

        return await self.dep.call("update_order", run) == 1

    async def dead(self) -> list[str]:
        """The ids of the dead jobs, newest first."""

        async def run() -> list[bytes]:
            return [_b(v) for v in await self.client.lrange(DEAD, 0, -1)]

        return [raw.decode() for raw in await self.dep.call("dead_orders", run)]

    async def finish(self, job_id: str, state: str, detail: str = "") -> None:
        async def run() -> None:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(job_key(job_id), mapping={"state": state, "finished_at": time.time(), "detail": detail})
                pipe.lrem(PROCESSING, 1, job_id)
                await pipe.execute()

        await self.dep.call("update_order", run)

    async def requeue_stale(self, visibility_seconds: float) -> tuple[int, int]:
        """Queue again the jobs whose worker vanished mid-job (taken > visibility_seconds ago); they go
        to the front (the end BLMOVE takes from) since they have waited longest, unless that was their last
        attempt (then they are dead). Returns (queued again, dead)."""

        async def run() -> tuple[int, int]:
            keys = [PROCESSING, WAITING, ENQUEUED_AT, DEAD]
            args: list[str | float] = [time.time(), visibility_seconds, job_key(""), self.max_attempts]
            queued, dead = await self.client.eval(_REQUEUE_STALE, len(keys), *keys, *args)
            return int(queued), int(dead)

        return await self.dep.call("requeue", run)

    async def stats(self) -> tuple[int, float]:
        """(jobs waiting, age in seconds of the oldest waiting job, 0 if none)."""

        async def run() -> tuple[int, list[tuple[bytes, float]]]:
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.llen(WAITING)
                pipe.zrange(ENQUEUED_AT, 0, 0, withscores=True)
                depth, oldest = await pipe.execute()
            return int(depth), list(oldest)

        depth, oldest = await self.dep.call("depth", run)
        age = max(0.0, time.time() - oldest[0][1]) if oldest else 0.0
        return depth, age


async def sample_queue(queue: JobQueue, stop: asyncio.Event, interval: float) -> None:
    """Publish queue depth and oldest-job age every `interval` until `stop` is set. The app and the
    workers both run this, so the backlog stays visible even when no worker is alive."""
    while not stop.is_set():
        depth: float
        age: float
        try:
            depth, age = await queue.stats()
        except DependencyUnavailableError:
            # Unknown is not zero: NaN makes the operator hold instead of scaling workers down.
            depth, age = math.nan, math.nan
        metrics.QUEUE_DEPTH.set(depth)
        metrics.QUEUE_OLDEST_AGE.set(age)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
