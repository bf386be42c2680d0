"""The per-ScaledApp loops (runner.Runner): ticks, retries with backoff, resync, start/stop from watch events."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from scaledapp import kube, runner
from scaledapp.kube import KubeError

LOG = logging.getLogger("test")


def body(uid: str = "u1", **meta: Any) -> dict[str, Any]:
    return {"metadata": {"uid": uid, "name": "shop", "namespace": "ns", **meta}}


class Recorder:
    """A tick and a resync for runner.Runner that record their calls ("tick", "resync", "full"); the tick
    fails its first `failures` calls with a retryable error and otherwise asks for the next in `interval`."""

    def __init__(self, interval: float, failures: int = 0) -> None:
        self.calls: list[str] = []
        self.interval = interval
        self.failures = failures

    async def tick(self, _: dict[str, Any], __: Any) -> float:
        self.calls.append("tick")
        if self.calls.count("tick") <= self.failures:
            raise KubeError("apply status", 503, "brownout")
        return self.interval

    async def resync(self, _: dict[str, Any], __: Any, full: bool) -> None:
        self.calls.append("full" if full else "resync")


def test_retryable_statuses() -> None:
    assert all(runner.retryable(s) for s in (None, 0, 408, 409, 429, 500, 503, 504))
    assert not any(runner.retryable(s) for s in (400, 403, 404, 422))


def test_kube_errors_say_what_they_are_and_whether_to_retry_soon() -> None:
    """Typed by status at the Kubernetes boundary; retryable exactly where the loops' retryable(status) is."""
    unavailable, throttled, rejected = kube.UnavailableError, kube.ThrottledError, kube.RejectedError
    expected = {None: unavailable, 0: unavailable, 404: kube.NotFoundError, 409: kube.ConflictError,
                408: throttled, 429: throttled, 500: unavailable, 503: unavailable,
                400: rejected, 403: rejected, 422: rejected, 501: rejected}
    for status, kind in expected.items():
        error = KubeError.of("apply Deployment/shop-app", status, "why")
        assert type(error) is kind and isinstance(error, KubeError), status
        assert (error.status, error.message) == (status, "why")
        assert error.retryable == runner.retryable(status), status
    assert not KubeError.of("get", 403, "forbidden").retryable and KubeError.of("get", 429, "slow down").retryable


def test_backoff_grows_and_is_capped() -> None:
    assert all(0.5 <= runner.backoff(0) <= 1.0 for _ in range(50))
    assert all(runner.backoff(20, cap=30) <= 30 for _ in range(50))
    assert max(runner.backoff(4) for _ in range(200)) > 4


def test_a_failing_tick_is_retried_with_backoff_then_ticks_resume() -> None:
    recorder = Recorder(interval=0.01, failures=2)
    calls = recorder.calls

    async def scenario() -> None:
        loops = runner.Runner(recorder.tick, recorder.resync, resync_seconds=3600, initial_delay=(0, 0))
        loops.seen(body(), LOG)
        loops.seen(body(), LOG)  # a second event does not start a second loop
        assert len(loops) == 1
        await wait_until(lambda: calls.count("tick") > 3, seconds=10)  # backoff up to 1 s, then up to 2 s
        await loops.stop()

    asyncio.run(scenario())
    assert calls[:3] == ["tick", "tick", "tick"]
    assert "full" not in calls  # 503 is retried as it is; only non-retryable failures ask for a full resync


def test_mark_dirty_wakes_the_loop_for_a_full_resync_only_and_gone_stops_it() -> None:
    recorder = Recorder(interval=3600)
    calls = recorder.calls

    async def scenario() -> None:
        loops = runner.Runner(recorder.tick, recorder.resync, resync_seconds=3600, initial_delay=(0, 0))
        loops.seen(body(), LOG)
        await wait_until(lambda: calls == ["tick"])
        loops.mark_dirty("u1")
        await wait_until(lambda: "full" in calls)
        await asyncio.sleep(0.05)  # a window for a wrong early tick to show (the next is due in an hour)
        assert calls == ["tick", "full"]  # woken for the resync: the tick keeps its own time
        loops.seen(body(deletionTimestamp="2026-01-01T00:00:00Z"), LOG)
        assert len(loops) == 0
        await loops.stop()

    asyncio.run(scenario())


def test_daemons_run_one_coroutine_per_object_with_the_newest_body_and_stop_it() -> None:
    seen: list[Any] = []

    async def guard(live: runner.LiveBody, stopped: runner.Stopped) -> None:
        while not stopped:
            seen.append(live.get("spec", {}).get("n"))
            await stopped.wait(0.01)
        seen.append("stopped")

    async def scenario() -> None:
        daemons = runner.Daemons(grace=1)
        daemons.ensure({**body(), "spec": {"n": 1}}, guard)
        await wait_until(lambda: 1 in seen)
        daemons.ensure({**body(), "spec": {"n": 2}}, guard)  # same uid: the running one sees the new body
        assert len(daemons) == 1
        await wait_until(lambda: 2 in seen)
        await daemons.stop("u1")
        assert len(daemons) == 0

    asyncio.run(scenario())
    assert seen[0] == 1 and 2 in seen and seen[-1] == "stopped"


def test_an_alarm_sleeps_until_set_or_the_time_is_up_and_leaves_nothing_behind() -> None:
    from scaledapp.runner import Alarm

    async def run() -> None:
        loop = asyncio.get_running_loop()
        alarm = Alarm()
        start = loop.time()
        await alarm.sleep(0.05)  # nobody sets it: the time is up
        assert loop.time() - start >= 0.04 and not alarm.is_set()
        sleeper = asyncio.create_task(alarm.sleep(60))
        await asyncio.sleep(0)
        alarm.set()  # wakes the sleeper long before its time
        await asyncio.wait_for(sleeper, 1)
        await alarm.sleep(60)  # set: returns at once
        alarm.clear()
        cancelled = asyncio.create_task(alarm.sleep(60))
        await asyncio.sleep(0)
        cancelled.cancel()
        await asyncio.gather(cancelled, return_exceptions=True)
        assert not alarm._waiters

    asyncio.run(run())


def test_the_first_resync_waits_a_period_after_the_scaledapp_settles_then_one_each_period() -> None:
    clock = runner.ResyncClock(300.0, start=0.0, spread=lambda: 1.0)
    assert not clock.due(100.0, settled=False)
    assert not clock.due(400.0, settled=False)  # a period after the start, still rolling out: not yet
    assert not clock.due(500.0, settled=True)  # settled at 500: due a period later
    assert not clock.due(799.0, settled=True)
    assert clock.due(800.0, settled=False)  # once scheduled, due whatever the state
    clock.done(810.0)
    assert not clock.due(1109.0, settled=True) and clock.due(1110.0, settled=True)


def test_a_scaledapp_that_never_settles_is_resynced_all_the_same() -> None:
    clock = runner.ResyncClock(300.0, start=0.0, spread=lambda: 1.0)
    assert not clock.due(899.0, settled=False)
    assert clock.due(runner.UNSETTLED_PERIODS * 300.0, settled=False)
    clock.done(900.0)
    assert not clock.due(1199.0, settled=False) and clock.due(1200.0, settled=False)


def test_the_loop_resyncs_only_once_the_scaledapp_has_settled() -> None:
    recorder = Recorder(interval=0.01)
    calls = recorder.calls

    def settled(owner: dict[str, Any]) -> bool:
        return bool(owner["metadata"].get("labels"))

    async def scenario() -> None:
        loops = runner.Runner(recorder.tick, recorder.resync, resync_seconds=0.5, initial_delay=(0, 0),
                              settled=settled)
        loops.seen(body(), LOG)
        started = asyncio.get_running_loop().time()
        await wait_until(lambda: asyncio.get_running_loop().time() - started > 0.75)
        assert "resync" not in calls  # past a period (0.5-0.75 s), unsettled: it waits (for 3 periods)
        loops.seen(body(labels={"settled": "yes"}), LOG)
        await wait_until(lambda: "resync" in calls)
        await loops.stop()

    asyncio.run(scenario())


def test_a_hurried_resync_comes_now_then_no_sooner_than_the_gap_and_never_before_the_scaledapp_settles() -> None:
    clock = runner.ResyncClock(300.0, start=0.0, spread=lambda: 1.0)
    assert not clock.hurry(10.0, gap=30.0) and clock.scheduled is None  # rolling out: its reconcile is at work
    assert not clock.due(20.0, settled=True)  # settled at 20: the periodic one at 320
    assert clock.hurry(25.0, gap=30.0) and clock.due(25.0, settled=True)  # no resync yet: now
    clock.done(26.0)
    assert not clock.hurry(40.0, gap=30.0) and clock.scheduled == 56.0  # a gap after the last one
    assert clock.due(56.0, settled=True)
    clock.done(57.0)
    assert clock.scheduled == 357.0
    assert clock.hurry(400.0, gap=30.0)  # long after the last: at once


def test_hurry_resyncs_a_settled_scaledapp_soon_once_per_gap_without_an_extra_tick() -> None:
    recorder = Recorder(interval=3600)
    calls = recorder.calls

    async def scenario() -> None:
        loops = runner.Runner(recorder.tick, recorder.resync, resync_seconds=3600, initial_delay=(0, 0),
                              settled=lambda owner: bool(owner["metadata"].get("labels")))
        loops.seen(body(), LOG)
        await wait_until(lambda: calls == ["tick"])
        loops.hurry("u1")  # not settled yet: nothing
        loops.hurry("nobody")  # no such loop: nothing
        await asyncio.sleep(0.05)  # a window for a wrong resync to show
        assert calls == ["tick"]
        loops.seen(body(labels={"settled": "yes"}), LOG)  # settled after the loop's last turn: counts at once
        loops.hurry("u1")
        await wait_until(lambda: "resync" in calls)
        loops.hurry("u1")  # within the gap after that one: not now
        await asyncio.sleep(0.05)  # a window for a wrong early tick or resync to show
        assert calls == ["tick", "resync"]
        await loops.stop()

    asyncio.run(scenario())


async def wait_until(condition: Any, seconds: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "not within the deadline"
        await asyncio.sleep(0.005)
