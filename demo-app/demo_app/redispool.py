"""A redis-py blocking pool that reports how long callers waited for a connection."""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio
import redis.exceptions
from redis.asyncio.connection import AbstractConnection, BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from demo_app.deps import PoolExhaustedError, record_pool_wait


class TimedBlockingPool(BlockingConnectionPool):
    """Blocks (up to `timeout`) for a free connection instead of failing at once, and observes the wait
    into scaledapp_dependency_pool_wait_seconds{dependency}."""

    def __init__(self, dependency: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dependency = dependency

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        start = time.perf_counter()
        try:
            conn: AbstractConnection = await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
            return conn
        except redis.exceptions.ConnectionError as exc:
            if str(exc) == "No connection available.":  # every pooled connection is busy
                raise PoolExhaustedError(self.dependency) from exc
            raise
        finally:
            record_pool_wait(self.dependency, time.perf_counter() - start)


def make_client(
    dependency: str, url: str, max_connections: int, timeout: float, socket_timeout: float | None = None
) -> redis.asyncio.Redis:
    """A client whose every step (pool wait, connect, each reply) is bounded by `timeout`."""
    pool = TimedBlockingPool.from_url(
        url,
        dependency=dependency,
        max_connections=max_connections,
        timeout=timeout,
        socket_connect_timeout=timeout,
        socket_timeout=socket_timeout if socket_timeout is not None else timeout,
        # Retries would multiply the deadline; the breaker and the caller decide what to do instead.
        retry=Retry(NoBackoff(), 0),
    )
    return redis.asyncio.Redis(connection_pool=pool)
