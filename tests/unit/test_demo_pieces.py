"""Small pure parts of the demo app: error classification, recent writes, cache encoding, reports."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math

import psycopg
import psycopg_pool
import pytest
import redis.exceptions

from demo_app.breaker import CircuitBreaker, State
from demo_app.cache import decode, encode
from demo_app.deps import Dependency, DependencyUnavailableError, PoolExhaustedError, classify
from demo_app.loadreport import Outcome, percentile, summarize
from demo_app.models import Item
from demo_app.service import RecentWrites


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (TimeoutError(), "timeout"),
        (redis.exceptions.TimeoutError(), "timeout"),
        (redis.exceptions.ConnectionError(), "unavailable"),
        (psycopg.OperationalError(), "unavailable"),
        (psycopg_pool.PoolTimeout(), "unavailable"),
        (PoolExhaustedError("db-read"), "pool_exhausted"),
        (ConnectionRefusedError(), "unavailable"),
        (psycopg.errors.UniqueViolation(), None),
        (ValueError(), None),
    ],
)
def test_classify(exc: BaseException, kind: str | None) -> None:
    assert classify(exc) == kind


def test_dependency_call_trips_the_breaker_and_then_fails_fast() -> None:
    dep = Dependency("cache", CircuitBreaker(2, 60.0), timeout=0.05)
    calls = 0

    async def down() -> None:
        nonlocal calls
        calls += 1
        raise redis.exceptions.ConnectionError("refused")

    async def scenario() -> list[str]:
        kinds = []
        for _ in range(4):
            try:
                await dep.call("get", down)
            except DependencyUnavailableError as exc:
                kinds.append(exc.kind)
        return kinds

    assert asyncio.run(scenario()) == ["unavailable", "unavailable", "circuit_open", "circuit_open"]
    assert calls == 2
    assert dep.breaker.state is State.OPEN


def test_dependency_call_times_out() -> None:
    dep = Dependency("queue", CircuitBreaker(5, 1.0), timeout=0.01)

    async def slow() -> None:
        await asyncio.sleep(1)

    with pytest.raises(DependencyUnavailableError) as err:
        asyncio.run(dep.call("enqueue", slow))
    assert err.value.kind == "timeout"
    assert err.value.retry_after_header == "1"


def test_answered_errors_pass_through_without_tripping() -> None:
    dep = Dependency("db-write", CircuitBreaker(1, 1.0), timeout=1)

    async def conflict() -> None:
        raise psycopg.errors.UniqueViolation()

    with pytest.raises(psycopg.errors.UniqueViolation):
        asyncio.run(dep.call("put_item", conflict))
    assert dep.breaker.state is State.CLOSED


def test_recent_writes_expire_and_stay_bounded() -> None:
    recent = RecentWrites(window=5.0, capacity=2)
    recent.note(1, 3, now=0.0)
    assert recent.version(1, now=4.9) == 3
    assert recent.version(1, now=5.0) is None
    recent.note(1, 1, now=10.0)
    recent.note(2, 1, now=10.0)
    recent.note(3, 1, now=10.0)
    assert recent.version(1, now=10.0) is None  # the oldest was evicted
    assert recent.version(3, now=10.0) == 1


def test_cache_encoding_round_trips_with_the_version_in_front() -> None:
    item = Item(id=7, name="a:b", value="x:y", version=42)
    raw = encode(item).encode()
    assert raw.startswith(b"42:")
    assert decode(raw) == item


def test_percentile_and_summary() -> None:
    assert math.isnan(percentile([], 50))
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 99), percentile(values, 100)) == (50.0, 99.0, 100.0)
    outcomes = [Outcome("read", 0.01 * i) for i in range(1, 101)] + [Outcome("write", 1.0, "http_503")]
    report = summarize(outcomes, elapsed=10.0, dropped=2)
    assert (report.sent, report.ok, report.throughput_rps) == (101, 100, 10.0)
    assert report.errors == {"http_503": 1, "dropped": 2}
    assert report.p99_ms == pytest.approx(990.0)
    assert report.by_operation == {"read": 100, "write": 1}
    assert '"p99_ms"' in report.to_json()
    assert "p99 990.0 ms" in report.to_text()


def test_the_load_client_replaces_a_connection_after_its_share_of_requests() -> None:
    """Behind a Service each new connection may land on another pod (one added since): a generator that kept
    its keep-alive connections for the whole run would never load the pods a scaler adds."""
    from demo_app.rawhttp import RawClient

    async def scenario(per_connection: int) -> tuple[int, int]:
        accepted = 0

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal accepted
            accepted += 1
            while await reader.readuntil(b"\r\n\r\n"):
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()

        async def serve_quietly(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                await serve(reader, writer)
            writer.close()

        server = await asyncio.start_server(serve_quietly, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = RawClient(f"http://127.0.0.1:{port}", timeout=5, max_requests_per_connection=per_connection)
        try:
            for _ in range(7):
                assert (await client.request("GET", "/items/1")).status == 200
        finally:
            await client.aclose()
            server.close()
            await server.wait_closed()
        return client.connections_opened, accepted

    assert asyncio.run(scenario(3)) == (3, 3)  # 3 + 3 + 1 requests
    assert asyncio.run(scenario(0)) == (1, 1)  # 0: one keep-alive connection for everything
    with pytest.raises(ValueError, match="max_requests_per_connection"):
        RawClient("http://127.0.0.1:1", max_requests_per_connection=-1)


def test_a_lost_database_is_retried_within_a_fraction_of_a_second_then_less_often() -> None:
    """The app's pools retry a lost server from 0.1 s, growing 1.5x (psycopg_pool's own default starts at 1 s
    and doubles, which left the app writing nowhere for seconds after a switchover had already finished)."""
    from psycopg_pool.base import AttemptWithBackoff

    import demo_app.db  # noqa: F401  (sets the pool's retry schedule on import)

    attempt = AttemptWithBackoff(timeout=60.0)
    delays = []
    for now in range(8):
        attempt.update_delay(float(now))
        delays.append(attempt.delay)
    assert 0.09 <= delays[0] <= 0.11
    assert all(later == pytest.approx(earlier * 1.5) for earlier, later in itertools.pairwise(delays))
