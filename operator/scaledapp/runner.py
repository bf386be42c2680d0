"""The per-ScaledApp loops, run by the operator itself instead of kopf daemons and timers.

kopf puts a finalizer on every object that has a daemon or a timer, and removes it only when the daemon has
stopped. In a namespaced install the operator's Role lives in the namespace it serves: when that namespace is
deleted the Role can go before the ScaledApps, the operator can no longer remove its finalizer, and the
namespace hangs in Terminating. Nothing here needs a finalizer (every child goes with its owner through
ownerReferences), so the ticks run as plain asyncio tasks, one per ScaledApp, started and stopped from the
ScaledApp watch (kopf.on.event, which adds no finalizer).

Each loop also retries: a tick that fails (API timeouts, 429, 5xx, conflicts) is tried again with exponential
backoff, and every `resync_seconds` the loop re-checks the ScaledApp's children against what the watches have
seen (no API call when nothing is missing) and, when a repair gave up earlier, reconciles it fully. A new
ScaledApp's first resync waits for it to settle (ResyncClock): while it rolls out, its reconcile (retried by kopf)
and the drift handlers are at work, and a resync then only re-read what they had just written.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from typing import Any

from scaledapp.kube import RETRYABLE

Manifest = dict[str, Any]
Logger = logging.Logger | logging.LoggerAdapter[Any]
Tick = Callable[[Manifest, Logger], Awaitable[float]]
Resync = Callable[[Manifest, Logger, bool], Awaitable[None]]
Settled = Callable[[Manifest], bool]

UNSETTLED_PERIODS = 3  # a ScaledApp that never settles (e.g. a claim no volume binds) is resynced after this many
HURRY_GAP_SECONDS = 30.0  # a resync brought forward (Runner.hurry) comes at most this often per ScaledApp


def retryable(status: int | None) -> bool:
    """Worth retrying soon (kube.RETRYABLE), for any exception with a `status`, or none."""
    return status is None or status in RETRYABLE


def backoff(attempt: int, base: float = 1.0, cap: float = 60.0) -> float:
    """Exponential with full jitter: attempt 0 -> up to 1 s, 1 -> 2 s, ... capped."""
    return float(random.uniform(base / 2, min(cap, base * 2 ** attempt)))


class ResyncClock:
    """When one ScaledApp's periodic resync is due. The first comes a period (spread over half a period more,
    so many ScaledApps' do not meet) after the ScaledApp was first seen settled, or UNSETTLED_PERIODS periods
    after its loop started if it never settles; then one every period, or sooner when hurried."""

    def __init__(self, period: float, start: float, spread: Callable[[], float] | None = None) -> None:
        self.period = period
        self._spread = spread or (lambda: random.uniform(1.0, 1.5))
        self._latest_first = start + UNSETTLED_PERIODS * period * self._spread()
        self._next: float | None = None
        self._last: float | None = None

    def note(self, now: float, settled: bool) -> None:
        """Schedule the first resync once the ScaledApp is seen settled (or has waited too long)."""
        if self._next is None:
            if settled:
                self._next = now + self.period * self._spread()
            elif now >= self._latest_first:
                self._next = now

    def due(self, now: float, settled: bool) -> bool:
        self.note(now, settled)
        return self._next is not None and now >= self._next

    def done(self, now: float) -> None:
        self._last = now
        self._next = now + self.period

    @property
    def scheduled(self) -> float | None:
        """When the next resync is due, once that is known."""
        return self._next

    def hurry(self, now: float, gap: float) -> bool:
        """Bring the next resync forward to now, or to `gap` after the last one; True if it is due now. Not
        before the ScaledApp has settled once: while it rolls out its reconcile and repairs are at work."""
        if self._next is None:
            return False
        soonest = now if self._last is None else max(now, self._last + gap)
        self._next = min(self._next, soonest)
        return now >= self._next


class Runner:
    """One task per ScaledApp uid: scaler ticks, retries with backoff, periodic resync."""

    def __init__(self, tick: Tick, resync: Resync, *, resync_seconds: float = 300.0,
                 initial_delay: tuple[float, float] = (1.0, 5.0), settled: Settled = lambda _body: True) -> None:
        self._tick = tick
        self._resync = resync
        self._settled = settled
        self.resync_seconds = resync_seconds
        self.initial_delay = initial_delay
        self._bodies: dict[str, Manifest] = {}
        self._loggers: dict[str, Logger] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._dirty: set[str] = set()
        self._wake: dict[str, Alarm] = {}
        self._clocks: dict[str, ResyncClock] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def seen(self, body: Manifest, logger: Logger) -> None:
        """A watch event: keep the newest body; start the loop if it is not running."""
        meta = body["metadata"]
        uid = meta["uid"]
        if meta.get("deletionTimestamp"):
            self.gone(uid)
            return
        self._bodies[uid] = body
        self._loggers[uid] = logger
        task = self._tasks.get(uid)
        if task is None or task.done():
            self._wake[uid] = Alarm()
            self._tasks[uid] = asyncio.create_task(self._loop(uid), name=f"scaledapp-{meta.get('namespace')}-"
                                                                      f"{meta.get('name')}")

    def gone(self, uid: str) -> None:
        self._bodies.pop(uid, None)
        self._loggers.pop(uid, None)
        self._dirty.discard(uid)
        self._wake.pop(uid, None)
        self._clocks.pop(uid, None)
        task = self._tasks.pop(uid, None)
        if task is not None:
            task.cancel()

    def mark_dirty(self, uid: str) -> None:
        """A repair gave up: reconcile this ScaledApp fully at its loop's next turn (soon)."""
        self._dirty.add(uid)
        wake = self._wake.get(uid)
        if wake is not None:
            wake.set()

    def hurry(self, uid: str) -> None:
        """Something the resync mends may be missing (one of its workloads is short of ready pods: a new pod
        may wait on a Secret someone deleted, which no watch shows): resync soon, at most once per
        HURRY_GAP_SECONDS, once the ScaledApp has settled. Its ticks keep their own time."""
        clock, body = self._clocks.get(uid), self._bodies.get(uid)
        if clock is None or body is None:
            return
        now = time.monotonic()
        clock.note(now, self._settled(body))  # settled since the loop's last turn: it counts already
        if clock.hurry(now, HURRY_GAP_SECONDS):
            wake = self._wake.get(uid)
            if wake is not None:
                wake.set()

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        for uid in list(self._tasks):
            self.gone(uid)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _sleep(self, uid: str, seconds: float) -> None:
        wake = self._wake.get(uid)
        if wake is None:
            await asyncio.sleep(seconds)
            return
        await wake.sleep(seconds)
        wake.clear()

    async def _loop(self, uid: str) -> None:
        await asyncio.sleep(random.uniform(*self.initial_delay))  # spread many ScaledApps' ticks apart
        failures = 0
        clock = self._clocks[uid] = ResyncClock(self.resync_seconds, time.monotonic())
        next_tick = time.monotonic()
        while uid in self._bodies:
            body, logger = self._bodies[uid], self._loggers[uid]
            try:
                dirty = uid in self._dirty
                if dirty or clock.due(time.monotonic(), self._settled(body)):
                    self._dirty.discard(uid)
                    await self._resync(body, logger, dirty)
                    clock.done(time.monotonic())
                # Woken early for a resync (mark_dirty, hurry): the tick keeps its interval, which the scaler's
                # judgement of a step (did it help?) is timed by.
                if time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + await self._tick(self._bodies.get(uid, body), logger)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                status = getattr(exc, "status", None)
                if not retryable(status):
                    self._dirty.add(uid)  # e.g. 403 until RBAC is fixed: try the full path again, slowly
                interval = backoff(failures, cap=60.0)
                next_tick = time.monotonic() + interval
                failures += 1
                logger.warning("tick failed (%s); retrying in %.1f s (attempt %d)", exc, interval, failures)
            wake_at = next_tick  # or sooner for a resync due before it (overdue: one that failed waits the backoff)
            if clock.scheduled is not None and clock.scheduled > time.monotonic():
                wake_at = min(next_tick, clock.scheduled)
            await self._sleep(uid, max(0.0, wake_at - time.monotonic()))


class Stopped:
    """What kopf.DaemonStopped offers a loop (`while not stopped: ...; await stopped.wait(seconds)`), for the
    long-running per-object coroutines the operator runs itself (`Daemons`)."""

    def __init__(self) -> None:
        self._event = Alarm()

    def __bool__(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        self._event.set()

    async def wait(self, seconds: float | None = None) -> bool:
        """Sleep until stopped or `seconds` passed; True when stopped."""
        await self._event.sleep(seconds)
        return self._event.is_set()


class Alarm:
    """An asyncio.Event that can also be slept on with a timeout cheaply: `sleep(seconds)` waits on one future
    and one timer. asyncio.wait_for(event.wait(), timeout) starts a task and cancels it at every timeout, and
    500 ScaledApps' guards sleep that way every second (a tenth of the operator's busy CPU at N=500, py-spy)."""

    def __init__(self) -> None:
        self._set = False
        self._waiters: set[asyncio.Future[None]] = set()

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        for waiter in self._waiters:
            _wake(waiter)

    def clear(self) -> None:
        self._set = False

    async def sleep(self, seconds: float | None) -> None:
        """Until set, or `seconds` passed (None: until set)."""
        if self._set:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.add(waiter)
        timer = loop.call_later(seconds, _wake, waiter) if seconds is not None else None
        try:
            await waiter
        finally:
            self._waiters.discard(waiter)
            if timer is not None:
                timer.cancel()


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class LiveBody(Mapping[str, Any]):
    """The newest body of one object as the watch delivers it (like the body kopf gives a daemon)."""

    def __init__(self, store: dict[str, Manifest], uid: str) -> None:
        self._store = store
        self._uid = uid

    def _current(self) -> Manifest:
        return self._store.get(self._uid) or {}

    def __getitem__(self, key: str) -> Any:
        return self._current()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())


Daemon = Callable[[LiveBody, Stopped], Coroutine[Any, Any, None]]


class Daemons:
    """kopf daemons without kopf's finalizer: one long-running coroutine per object uid, started by the first
    watch event, fed the newest body, stopped (cooperatively, then cancelled after `grace`) when the object
    is deleted. Use from a kopf.on.event handler:

        if event["type"] == "DELETED": await memo.guards.stop(uid)
        else: memo.guards.ensure(dict(body), lambda live, stopped: run_guard(..., live, ..., stopped))
    """

    def __init__(self, grace: float = 10.0) -> None:
        self.grace = grace
        self._bodies: dict[str, Manifest] = {}
        self._stopped: dict[str, Stopped] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def ensure(self, body: Manifest, start: Daemon) -> None:
        meta = body["metadata"]
        uid = meta["uid"]
        if meta.get("deletionTimestamp"):
            self._begin_stop(uid)
            return
        self._bodies[uid] = body
        task = self._tasks.get(uid)
        if task is None or task.done():
            stopped = self._stopped[uid] = Stopped()
            self._tasks[uid] = asyncio.create_task(start(LiveBody(self._bodies, uid), stopped))

    def _begin_stop(self, uid: str) -> asyncio.Task[None] | None:
        stopped = self._stopped.pop(uid, None)
        if stopped is not None:
            stopped.set()
        self._bodies.pop(uid, None)
        return self._tasks.pop(uid, None)

    async def stop(self, uid: str) -> None:
        task = self._begin_stop(uid)
        if task is None:
            return
        done, _ = await asyncio.wait({task}, timeout=self.grace)
        if not done:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    async def stop_all(self) -> None:
        await asyncio.gather(*(self.stop(uid) for uid in list(self._tasks)))
