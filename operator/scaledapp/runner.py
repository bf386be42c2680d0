"""The per-ScaledApp loops, run by the operator itself instead of kopf daemons and timers.

kopf puts a finalizer on every object that has a daemon or a timer, and removes it only when the daemon has
stopped. In a namespaced install the operator's Role lives in the namespace it serves: when that namespace is
deleted the Role can go before the ScaledApps, the operator can no longer remove its finalizer, and the
namespace hangs in Terminating. Nothing here needs a finalizer (every child goes with its owner through
ownerReferences), so the ticks run as plain asyncio tasks, one per ScaledApp, started and stopped from the
ScaledApp watch (kopf.on.event, which adds no finalizer).

Each loop also retries: a tick that fails (API timeouts, 429, 5xx, conflicts) is tried again with exponential
backoff, and every `resync_seconds` the loop re-checks the ScaledApp's children against what the watches have
seen (no API call when nothing is missing) and, when a repair gave up earlier, reconciles it fully.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

Manifest = dict[str, Any]
Logger = logging.Logger | logging.LoggerAdapter[Any]
Tick = Callable[[Manifest, Logger], Awaitable[float]]
Resync = Callable[[Manifest, Logger, bool], Awaitable[None]]

RETRYABLE = {0, 408, 409, 429, 500, 502, 503, 504}  # 0: no answer at all (timeout, connection refused)


def retryable(status: int | None) -> bool:
    return status is None or status in RETRYABLE


def backoff(attempt: int, base: float = 1.0, cap: float = 60.0) -> float:
    """Exponential with full jitter: attempt 0 -> up to 1 s, 1 -> 2 s, ... capped."""
    return float(random.uniform(base / 2, min(cap, base * 2 ** attempt)))


class Runner:
    """One task per ScaledApp uid: scaler ticks, retries with backoff, periodic resync."""

    def __init__(self, tick: Tick, resync: Resync, *, resync_seconds: float = 300.0,
                 initial_delay: tuple[float, float] = (1.0, 5.0)) -> None:
        self._tick = tick
        self._resync = resync
        self.resync_seconds = resync_seconds
        self.initial_delay = initial_delay
        self._bodies: dict[str, Manifest] = {}
        self._loggers: dict[str, Logger] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._dirty: set[str] = set()
        self._wake: dict[str, asyncio.Event] = {}

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
            self._wake[uid] = asyncio.Event()
            self._tasks[uid] = asyncio.create_task(self._loop(uid), name=f"scaledapp-{meta.get('namespace')}-"
                                                                      f"{meta.get('name')}")

    def gone(self, uid: str) -> None:
        self._bodies.pop(uid, None)
        self._loggers.pop(uid, None)
        self._dirty.discard(uid)
        self._wake.pop(uid, None)
        task = self._tasks.pop(uid, None)
        if task is not None:
            task.cancel()

    def mark_dirty(self, uid: str) -> None:
        """A repair gave up: reconcile this ScaledApp fully at its loop's next turn (soon)."""
        self._dirty.add(uid)
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
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=seconds)
        wake.clear()

    async def _loop(self, uid: str) -> None:
        await asyncio.sleep(random.uniform(*self.initial_delay))  # spread many ScaledApps' ticks apart
        failures = 0
        next_resync = time.monotonic() + self.resync_seconds * random.uniform(0.5, 1.0)
        while uid in self._bodies:
            body, logger = self._bodies[uid], self._loggers[uid]
            try:
                dirty = uid in self._dirty
                if dirty or time.monotonic() >= next_resync:
                    self._dirty.discard(uid)
                    await self._resync(body, logger, dirty)
                    next_resync = time.monotonic() + self.resync_seconds
                interval = await self._tick(self._bodies.get(uid, body), logger)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                status = getattr(exc, "status", None)
                if not retryable(status):
                    self._dirty.add(uid)  # e.g. 403 until RBAC is fixed: try the full path again, slowly
                interval = backoff(failures, cap=60.0)
                failures += 1
                logger.warning("tick failed (%s); retrying in %.1f s (attempt %d)", exc, interval, failures)
            await self._sleep(uid, interval)
