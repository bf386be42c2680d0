"""Postgres: a write pool on the primary and a read pool on the replicas (the primary if there are none)."""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout
from psycopg_pool.base import AttemptWithBackoff

from demo_app.deps import Dependency, PoolExhaustedError, record_pool_wait
from demo_app.models import Item
from demo_app.schema import ensure_schema
from demo_app.settings import Settings

T = TypeVar("T")
Conn = psycopg.AsyncConnection[dict[str, Any]]

_SELECT: Final = "SELECT id, name, value, version FROM items WHERE id = %(id)s"
# The read-cost knob: a scalar subquery the planner runs once per statement, burning database CPU.
_SELECT_COSTLY: Final = _SELECT + " AND (SELECT count(*) FROM generate_series(1, %(cost)s)) >= 0"
_UPSERT: Final = """
INSERT INTO items (id, name, value) VALUES (%(id)s, %(name)s, %(value)s)
ON CONFLICT (id) DO UPDATE
   SET name = EXCLUDED.name, value = EXCLUDED.value, version = items.version + 1, updated_at = now()
RETURNING id, name, value, version
"""
_INSERT: Final = "INSERT INTO items (name, value) VALUES (%(name)s, %(value)s) RETURNING id, name, value, version"

# psycopg_pool retries a lost server after 1 s, then doubles (attempts at 1, 3, 7 s...). During a switchover the
# write Service has no endpoint for about a second, so the first retry fails and the next comes 2 s later: the
# client write gap measured 6.2 s against the operator's 0.5 s (bench/results/failover.md). Retrying from 0.1 s,
# growing 1.5x, reaches the new primary within half a second of its label, for ~15 attempts per connection over
# a dead minute. The pool has no setting for it: these are its class constants (tests/unit pins they exist).
RECONNECT_FIRST_DELAY: Final = 0.1
RECONNECT_GROWTH: Final = 1.5
AttemptWithBackoff.INITIAL_DELAY = RECONNECT_FIRST_DELAY
AttemptWithBackoff.DELAY_BACKOFF = RECONNECT_GROWTH


def _pool(
    dsn: str, size: int, name: str, settings: Settings, max_lifetime: float = 3600.0
) -> AsyncConnectionPool[Conn]:
    static: dict[str, Any] = {
        "autocommit": True,  # one statement, one transaction: reads hold no snapshot open
        "row_factory": dict_row,
        "application_name": f"scaledapp-{name}",  # who is who in pg_stat_activity
        "connect_timeout": max(2, math.ceil(settings.db_connect_timeout)),  # libpq: whole seconds, >= 2
        # The server cancels a slow statement itself, so the connection stays usable afterwards.
        "options": f"-c statement_timeout={int(settings.db_statement_timeout * 1000)}",
    }

    def kwargs() -> dict[str, Any]:
        """Per new connection: the password file is read each time (a changed password needs no restart)."""
        if not settings.db_password_file:
            return static
        with open(settings.db_password_file, encoding="utf-8") as f:
            return {**static, "password": f.read().strip()}

    return AsyncConnectionPool(
        dsn,
        min_size=size,
        max_size=size,
        kwargs=kwargs,
        open=False,
        name=name,
        timeout=settings.db_pool_timeout,
        max_lifetime=max_lifetime,
        # Keep retrying a lost server in the background, never give up for good.
        reconnect_timeout=60.0,
        connection_class=psycopg.AsyncConnection[dict[str, Any]],
    )


class Database:
    def __init__(self, settings: Settings, read: Dependency, write: Dependency) -> None:
        self.settings = settings
        self.read = read
        self.write = write
        self.write_pool = _pool(settings.db_write_dsn, settings.db_write_pool_size, "db-write", settings)
        self.read_pool = (
            _pool(settings.db_read_dsn, settings.db_read_pool_size, "db-read", settings,
                  max_lifetime=settings.db_read_max_lifetime_seconds)
            if settings.has_replicas
            else self.write_pool
        )
        # Connections each pool has handed out: tells "all busy" from "none could be made".
        self._checked_out: dict[int, int] = {id(self.write_pool): 0, id(self.read_pool): 0}

    async def open(self) -> None:
        # wait=False: the app starts (and serves from whatever is up) even if a database is down.
        await self.write_pool.open(wait=False)
        if self.read_pool is not self.write_pool:
            await self.read_pool.open(wait=False)

    async def close(self) -> None:
        await self.write_pool.close(timeout=5.0)
        if self.read_pool is not self.write_pool:
            await self.read_pool.close(timeout=5.0)

    async def _with_conn(
        self, pool: AsyncConnectionPool[Conn], dependency: str, fn: Callable[[Conn], Awaitable[T]]
    ) -> T:
        for attempt in (1, 2):
            start = time.perf_counter()
            try:
                conn = await pool.getconn(timeout=self.settings.db_pool_timeout)
            except PoolTimeout as exc:
                record_pool_wait(dependency, time.perf_counter() - start)
                if self._checked_out[id(pool)] >= (pool.max_size or 0):
                    raise PoolExhaustedError(dependency) from exc
                raise
            record_pool_wait(dependency, time.perf_counter() - start)
            self._checked_out[id(pool)] += 1
            try:
                return await fn(conn)
            except psycopg.OperationalError:
                # A pooled connection that died while idle (server restarted): one retry on a fresh one.
                if attempt == 1 and conn.broken:
                    continue
                raise
            finally:
                self._checked_out[id(pool)] -= 1
                await pool.putconn(conn)
        raise AssertionError("unreachable")

    def _deadline(self) -> float:
        return self.settings.db_pool_timeout * 2 + self.settings.db_statement_timeout + 0.5

    async def _fetch_item(self, conn: Conn, item_id: int) -> Item | None:
        cost = self.settings.read_query_cost_rows
        query, params = (_SELECT_COSTLY, {"id": item_id, "cost": cost}) if cost else (_SELECT, {"id": item_id})
        cur = await conn.execute(query, params)
        row = await cur.fetchone()
        return Item(**row) if row else None

    async def get_item(self, item_id: int, *, primary: bool = False) -> Item | None:
        dep, pool = (self.write, self.write_pool) if primary else (self.read, self.read_pool)

        async def run() -> Item | None:
            return await self._with_conn(pool, dep.name, lambda c: self._fetch_item(c, item_id))

        return await dep.call("get_item", run, deadline=self._deadline())

    async def _returning(self, conn: Conn, query: str, params: dict[str, Any]) -> Item:
        cur = await conn.execute(query, params)
        row = await cur.fetchone()
        if row is None:
            raise RuntimeError("write returned no row")
        return Item(**row)

    async def put_item(self, item_id: int, name: str, value: str) -> Item:
        params = {"id": item_id, "name": name, "value": value}

        async def run() -> Item:
            return await self._with_conn(
                self.write_pool, self.write.name, lambda c: self._returning(c, _UPSERT, params)
            )

        return await self.write.call("put_item", run, deadline=self._deadline())

    async def create_item(self, name: str, value: str) -> Item:
        params = {"name": name, "value": value}

        async def run() -> Item:
            return await self._with_conn(
                self.write_pool, self.write.name, lambda c: self._returning(c, _INSERT, params)
            )

        return await self.write.call("create_item", run, deadline=self._deadline())

    async def _select_one(self, conn: Conn) -> bool:
        await conn.execute("SELECT 1")
        return True

    async def ping(self, *, primary: bool, deadline: float) -> bool:
        dep, pool = (self.write, self.write_pool) if primary else (self.read, self.read_pool)

        async def run() -> bool:
            return await self._with_conn(pool, dep.name, self._select_one)

        return await dep.call("ping", run, deadline=deadline)

    async def ensure_schema(self) -> None:
        async def apply(conn: Conn) -> None:
            await ensure_schema(conn, self.settings.seed_items)

        async def run() -> None:
            await self._with_conn(self.write_pool, self.write.name, apply)

        await self.write.call("schema", run, deadline=self._deadline() + 10.0)
