"""One guarded call to a dependency: a deadline, a circuit breaker, and the per-dependency metrics."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg
import psycopg_pool
import redis.exceptions

from demo_app import metrics
from demo_app.breaker import CircuitBreaker

T = TypeVar("T")


class DependencyUnavailableError(Exception):
    """The dependency could not answer (down, too slow, circuit open, pool exhausted): a 503, not a 500."""

    def __init__(self, dependency: str, kind: str, retry_after: float = 1.0) -> None:
        super().__init__(f"{dependency} unavailable ({kind})")
        self.dependency = dependency
        self.kind = kind
        self.retry_after = retry_after

    @property
    def retry_after_header(self) -> str:
        return str(max(1, math.ceil(self.retry_after)))


class PoolExhaustedError(Exception):
    """Raised by our pools when no connection frees up in time (the app's pool, not the server, is full)."""


def record_pool_wait(dependency: str, seconds: float) -> None:
    metrics.DEP_POOL_WAIT.labels(dependency).observe(seconds)


def classify(exc: BaseException) -> str | None:
    """The error kind for an exception that means "the dependency did not answer", else None."""
    if isinstance(exc, PoolExhaustedError | psycopg_pool.TooManyRequests):
        return "pool_exhausted"
    if isinstance(exc, TimeoutError | redis.exceptions.TimeoutError | psycopg.errors.QueryCanceled):
        return "timeout"
    if isinstance(exc, psycopg_pool.PoolTimeout):
        # The db module raises PoolExhaustedError when all live connections were busy; a bare PoolTimeout
        # means the pool could not make any, i.e. the server is unreachable.
        return "unavailable"
    if isinstance(exc, redis.exceptions.ConnectionError | psycopg.OperationalError | psycopg.InterfaceError):
        return "unavailable"
    if isinstance(exc, OSError):
        return "unavailable"
    return None


class Dependency:
    """A named dependency (cache, db-read, db-write, queue) with its own breaker and default deadline."""

    def __init__(self, name: str, breaker: CircuitBreaker, timeout: float) -> None:
        self.name = name
        self.breaker = breaker
        self.timeout = timeout
        # When a call last succeeded (monotonic): proof of reachability that costs no probe.
        self.last_success = float("-inf")
        self._state_gauge = metrics.CIRCUIT_STATE.labels(name)

    def _publish_state(self) -> None:
        self._state_gauge.set(int(self.breaker.state))

    def _fail(self, kind: str) -> DependencyUnavailableError:
        metrics.DEP_ERRORS.labels(self.name, kind).inc()
        return DependencyUnavailableError(self.name, kind, retry_after=max(1.0, self.breaker.retry_after()))

    async def call(
        self, operation: str, fn: Callable[[], Awaitable[T]], deadline: float | None = None
    ) -> T:
        """Run `fn` under a deadline. Dependency failures become DependencyUnavailableError (and feed the
        breaker); other errors (e.g. a constraint violation) mean the dependency answered: re-raised."""
        if not self.breaker.allow():
            self._publish_state()
            raise self._fail("circuit_open")
        start = time.perf_counter()
        try:
            async with asyncio.timeout(deadline if deadline is not None else self.timeout):
                result = await fn()
        except asyncio.CancelledError:
            self.breaker.abandon()
            raise
        except Exception as exc:
            kind = classify(exc)
            if kind is None:
                self.breaker.record_success()
                metrics.DEP_ERRORS.labels(self.name, "error").inc()
                raise
            if kind != "pool_exhausted":  # our own pool being full says nothing about the server
                self.breaker.record_failure()
            self._publish_state()
            raise self._fail(kind) from exc
        finally:
            # The whole call as the caller waited for it, pool wait included (also reported alone).
            metrics.DEP_DURATION.labels(self.name, operation).observe(time.perf_counter() - start)
        self.breaker.record_success()
        self.last_success = time.monotonic()
        self._publish_state()
        return result
