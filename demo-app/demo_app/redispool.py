"""A redis-py blocking pool that reports how long callers waited for a connection, and logs in with the
password in a file, read again at each new connection."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio
import redis.exceptions
from redis.asyncio.connection import AbstractConnection, BlockingConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.credentials import CredentialProvider

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


class PasswordFile(CredentialProvider):
    """The password in a file (a mounted Secret key), read at every new connection: redis-py asks its
    credential provider each time it connects, so a password edited in the Secret reaches a running pod once
    the kubelet has updated the file, without a restart. Open connections stay logged in."""

    def __init__(self, path: str) -> None:
        self.path = path

    def get_credentials(self) -> tuple[str]:
        with open(self.path, encoding="utf-8") as f:
            return (f.read().strip(),)

    async def get_credentials_async(self) -> tuple[str]:
        return self.get_credentials()


def without_password(url: str) -> str:
    """The URL without its user-info (redis-py refuses a password and a credential provider together)."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=host))


def make_client(
    dependency: str, url: str, max_connections: int, timeout: float, socket_timeout: float | None = None,
    password_file: str = "",
) -> redis.asyncio.Redis:
    """A client whose every step (pool wait, connect, each reply) is bounded by `timeout`. With a
    `password_file`, it logs in with that file's content (read per connection) instead of the URL's password."""
    extra: dict[str, Any] = {}
    if password_file:
        url = without_password(url)
        extra["credential_provider"] = PasswordFile(password_file)
    pool = TimedBlockingPool.from_url(
        url,
        **extra,
        dependency=dependency,
        max_connections=max_connections,
        timeout=timeout,
        socket_connect_timeout=timeout,
        socket_timeout=socket_timeout if socket_timeout is not None else timeout,
        # Retries would multiply the deadline; the breaker and the caller decide what to do instead.
        retry=Retry(NoBackoff(), 0),
    )
    return redis.asyncio.Redis(connection_pool=pool)
