"""Polling with a deadline: the one way tests wait for something to become true.

    pods = wait_for(lambda: ready_pods(...) if len(ready_pods(...)) == 3 else None,
                    timeout=30, what="3 Ready pods of web")

No fixed sleeps stand in for readiness anywhere in the tests: poll a predicate, fail with a message that
says what did not happen, how long we waited and what was last seen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeoutError(AssertionError):
    """A condition did not become true before its deadline (an AssertionError, so pytest reports it as a failure)."""


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float,
    what: str,
    *,
    interval: float = 0.2,
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call `predicate` until it returns a truthy value and return that value.

    Raises WaitTimeoutError naming `what`, the timeout and the last value (or the last ignored exception) when the
    deadline passes. Exceptions of the types in `ignore` count as "not yet"; any other exception propagates.
    The predicate is always called at least once, and once more at the deadline.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
        except ignore as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise WaitTimeoutError(f"timed out after {timeout:g}s waiting for {what} (last seen: {last!r})")
        time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


def eventually(check: Callable[[], None], timeout: float, what: str, *, interval: float = 0.2) -> None:
    """Retry `check` (a function that asserts) until it stops raising AssertionError, or fail with its last error."""

    def attempt() -> bool:
        check()
        return True

    wait_for(attempt, timeout, what, interval=interval, ignore=(AssertionError,))
