"""A Prometheus that does not answer is asked once, not once per ScaledApp tick (prometheus.DOWN_SECONDS)."""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import Iterator

import pytest

from scaledapp import prometheus


class _Failing(http.server.BaseHTTPRequestHandler):
    requests = 0

    def do_GET(self) -> None:
        type(self).requests += 1
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def failing_url() -> Iterator[str]:
    """A real HTTP server on loopback that answers every query with 503."""
    _Failing.requests = 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


QUERIES = {"a": "up", "b": "up", "c": "up"}


def test_other_ticks_hold_at_once_while_it_is_taken_as_down(failing_url: str) -> None:
    client = prometheus.Prometheus(failing_url, timeout=5, down_seconds=3600)
    first = asyncio.run(client.snapshot(QUERIES))
    assert first.unreachable and first.unknown == ["a", "b", "c"]
    assert _Failing.requests == 1  # one query, not all three
    again = [asyncio.run(client.snapshot(QUERIES)) for _ in range(5)]
    assert _Failing.requests == 1
    assert all(a.unreachable and a.errors == first.errors for a in again)


def test_it_is_asked_again_once_the_memory_has_passed(failing_url: str) -> None:
    client = prometheus.Prometheus(failing_url, timeout=5, down_seconds=0)
    for expected in (1, 2, 3):
        assert asyncio.run(client.snapshot(QUERIES)).unreachable
        assert _Failing.requests == expected
