"""The load generator times every request from its scheduled start (no coordinated omission): a
client that could not send on time reports the wait as latency, and says how many requests were late."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from demo_app.load import LoadConfig, one_request, run_load
from demo_app.loadreport import Outcome, summarize
from demo_app.profiles import Profile
from demo_app.rawhttp import Response


class _StallingClient:
    """A fake RawClient: answers at once, except that the `stall_at`-th request blocks the whole event
    loop for `stall` seconds (a GC pause, a busy generator): the requests due meanwhile leave late."""

    def __init__(self, stall_at: int, stall: float) -> None:
        self.stall_at, self.stall, self.calls = stall_at, stall, 0

    async def request(self, method: str, path: str, body: object | None = None,
                      on_send: object | None = None) -> Response:
        self.calls += 1
        if callable(on_send):
            on_send(time.perf_counter())
        if self.calls == self.stall_at:
            time.sleep(self.stall)  # noqa: ASYNC251  # blocks the loop on purpose: nothing else is sent
        await asyncio.sleep(0)
        return Response(200, b"{}")

    async def aclose(self) -> None:
        return None


def test_summary_counts_late_requests_and_keeps_the_send_to_answer_time_apart() -> None:
    outcomes = [Outcome("read", 0.005) for _ in range(90)]
    outcomes += [Outcome("read", 0.5 + 0.01 * i, lateness=0.49 + 0.01 * i) for i in range(10)]
    report = summarize(outcomes, elapsed=10.0)
    assert report.late == 10
    assert report.late_max_ms == pytest.approx(580.0)
    assert report.late_p99_ms == pytest.approx(570.0)
    assert report.p99_ms == pytest.approx(580.0)  # from the schedule: the wait is latency
    assert report.service_p99_ms == pytest.approx(10.0)  # send to answer: what omission would show
    assert "10 sent > 10 ms after their schedule" in report.to_text()
    assert '"late": 10' in report.to_json()


def test_a_request_sent_late_counts_its_wait_as_latency() -> None:
    async def scenario() -> Outcome:
        client = _StallingClient(stall_at=0, stall=0.0)
        return await one_request(client, "read", 1, 0, scheduled=time.perf_counter() - 0.2)  # type: ignore[arg-type]

    outcome = asyncio.run(scenario())
    assert outcome.error is None
    assert outcome.latency >= 0.2
    assert outcome.lateness >= 0.2  # it was due 0.2 s before it could leave
    assert outcome.service < 0.1  # the fake answers at once (a loaded box may take a few ms)


def test_a_stalled_generator_reports_the_requests_it_could_not_send_on_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """50/s for 2 s; the 20th request freezes the loop for 0.5 s: ~25 requests were due meanwhile. Timed
    from their sends they would all look instant; timed from the schedule they waited up to 0.5 s."""
    client = _StallingClient(stall_at=20, stall=0.5)
    monkeypatch.setattr("demo_app.load.RawClient", lambda *args, **kwargs: client)
    config = LoadConfig(url="http://127.0.0.1:1", profile=Profile("constant", rate=50, duration=2.0), progress=False)
    report = asyncio.run(run_load(config))
    assert report.sent == 100 and report.ok == 100
    assert 20 <= report.late <= 60, report.to_text()  # ~25 due in the stall; a loaded box adds a few late ones
    assert report.late_max_ms >= 400, report.to_text()
    assert report.p99_ms >= 400, report.to_text()
    assert report.service_p99_ms < 100, report.to_text()


def test_requests_waiting_for_a_connection_are_late() -> None:
    """One connection and a server that holds one answer for 0.4 s: the requests queued behind it leave late."""

    async def scenario() -> tuple[int, float, float]:
        served = 0

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal served
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
                while await reader.readuntil(b"\r\n\r\n"):
                    served += 1
                    if served == 5:
                        await asyncio.sleep(0.4)
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    await writer.drain()
            writer.close()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        config = LoadConfig(url=f"http://127.0.0.1:{port}", profile=Profile("constant", rate=100, duration=1.0),
                            connections=1, conn_requests=0, progress=False)
        try:
            report = await run_load(config)
        finally:
            server.close()
            await server.wait_closed()
        return report.late, report.p99_ms, report.service_p99_ms

    late, p99, service_p99 = asyncio.run(scenario())
    assert late >= 30  # ~40 due during the hold
    assert p99 >= 300
    assert service_p99 < 100
