"""The circuit breaker, driven by a fake clock."""

from __future__ import annotations

import pytest

from demo_app.breaker import CircuitBreaker, State


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def tripped(clock: Clock) -> CircuitBreaker:
    breaker = CircuitBreaker(failure_threshold=3, reset_seconds=2.0, clock=clock)
    for _ in range(3):
        assert breaker.allow()
        breaker.record_failure()
    return breaker


def test_opens_after_consecutive_failures_only() -> None:
    breaker = CircuitBreaker(failure_threshold=3, reset_seconds=2.0, clock=Clock())
    for _ in range(2):
        breaker.record_failure()
    breaker.record_success()  # resets the count
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state is State.CLOSED
    breaker.record_failure()
    assert breaker.state is State.OPEN
    assert not breaker.allow()


def test_open_rejects_until_reset_then_lets_one_trial_through() -> None:
    clock = Clock()
    breaker = tripped(clock)
    assert breaker.retry_after() == pytest.approx(2.0)
    clock.now += 1.9
    assert not breaker.allow()
    clock.now += 0.1
    assert breaker.state is State.HALF_OPEN
    assert breaker.allow()
    assert not breaker.allow()  # a second caller while the trial is out fails fast


def test_trial_success_closes() -> None:
    clock = Clock()
    breaker = tripped(clock)
    clock.now += 2
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is State.CLOSED
    assert breaker.allow()
    assert breaker.retry_after() == 0


def test_trial_failure_reopens_for_another_period() -> None:
    clock = Clock()
    breaker = tripped(clock)
    clock.now += 2
    assert breaker.allow()
    breaker.record_failure()  # one failure is enough in half-open
    assert breaker.state is State.OPEN
    assert not breaker.allow()
    clock.now += 2
    assert breaker.allow()


def test_abandoned_trial_frees_the_slot() -> None:
    clock = Clock()
    breaker = tripped(clock)
    clock.now += 2
    assert breaker.allow()
    breaker.abandon()
    assert breaker.allow()


@pytest.mark.parametrize(("threshold", "reset"), [(0, 1.0), (1, 0.0)])
def test_rejects_bad_parameters(threshold: int, reset: float) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(threshold, reset)
