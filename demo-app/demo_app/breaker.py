"""A consecutive-failure circuit breaker, so a dead dependency is not hammered (pure: clock injected)."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable


class State(enum.IntEnum):
    # The values are what the scaledapp_circuit_state gauge reports.
    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


class CircuitBreaker:
    """CLOSED lets calls through and counts consecutive failures; `failure_threshold` of them OPEN it.

    OPEN rejects calls for `reset_seconds`, then lets exactly one trial call through (HALF_OPEN): its
    success closes the breaker, its failure opens it again for another `reset_seconds`.
    """

    def __init__(
        self,
        failure_threshold: int,
        reset_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1 or reset_seconds <= 0:
            raise ValueError("failure_threshold must be >= 1 and reset_seconds > 0")
        self.failure_threshold = failure_threshold
        self.reset_seconds = reset_seconds
        self._clock = clock
        self._state = State.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._trial_in_flight = False

    @property
    def state(self) -> State:
        if self._state is State.OPEN and self._clock() - self._opened_at >= self.reset_seconds:
            return State.HALF_OPEN
        return self._state

    def retry_after(self) -> float:
        """Seconds until a trial call is allowed again (0 when calls are allowed now)."""
        if self._state is not State.OPEN:
            return 0.0
        return max(0.0, self.reset_seconds - (self._clock() - self._opened_at))

    def allow(self) -> bool:
        """Ask before each call; True means go ahead (and report the outcome)."""
        state = self.state
        if state is State.CLOSED:
            return True
        if state is State.HALF_OPEN and not self._trial_in_flight:
            # Only one probe at a time: concurrent callers keep failing fast until it reports.
            self._state = State.HALF_OPEN
            self._trial_in_flight = True
            return True
        return False

    def record_success(self) -> None:
        self._state = State.CLOSED
        self._failures = 0
        self._trial_in_flight = False

    def record_failure(self) -> None:
        self._trial_in_flight = False
        if self._state is State.HALF_OPEN:
            self._trip()
            return
        self._failures += 1
        if self._failures >= self.failure_threshold:
            self._trip()

    def _trip(self) -> None:
        self._state = State.OPEN
        self._opened_at = self._clock()
        self._failures = 0

    def abandon(self) -> None:
        """The call was cancelled before it said anything about the dependency: free the trial slot."""
        self._trial_in_flight = False
