"""Load profiles, arrival schedules, Zipf keys and the request mix: pure, so checked exactly."""

from __future__ import annotations

import itertools
import random

import pytest

from demo_app.profiles import Profile, ZipfKeys, arrival_times, choose, parse_mix, parse_profile


@pytest.mark.parametrize(
    ("spec", "checks"),
    [
        ("constant:rate=10", {0.0: 10, 9.9: 10, 10.0: 0, -1.0: 0}),
        ("step:rate=5,peak=20,at=4", {3.99: 5, 4.0: 20, 9.0: 20}),
        ("ramp:rate=0,peak=100", {0.0: 0, 5.0: 50, 9.0: 90}),
        ("spike:rate=10,peak=200,at=2,length=3", {1.9: 10, 2.0: 200, 4.9: 200, 5.0: 10}),
    ],
)
def test_rate_at(spec: str, checks: dict[float, float]) -> None:
    profile = parse_profile(spec, duration=10)
    for t, rate in checks.items():
        assert profile.rate_at(t) == pytest.approx(rate), t


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("constant:rate=10", 100),
        ("step:rate=5,peak=20,at=4", 5 * 4 + 20 * 6),
        ("ramp:rate=0,peak=100", 500),
        ("spike:rate=10,peak=200,at=2,length=3", 10 * 7 + 200 * 3),
    ],
)
def test_even_schedule_holds_the_integral_and_is_ascending(spec: str, expected: float) -> None:
    profile = parse_profile(spec, duration=10)
    times = list(arrival_times(profile))
    assert profile.expected_requests() == pytest.approx(expected)
    assert abs(len(times) - expected) <= 1
    assert times == sorted(times)
    assert all(0 <= t < 10 for t in times)


def test_even_constant_schedule_is_evenly_spaced() -> None:
    times = list(arrival_times(parse_profile("constant:rate=4", duration=2)))
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(times) == 8
    assert all(g == pytest.approx(0.25, abs=0.002) for g in gaps)


def test_step_schedule_follows_the_step() -> None:
    times = list(arrival_times(parse_profile("step:rate=10,peak=100,at=5", duration=10)))
    assert sum(t < 5 for t in times) == pytest.approx(50, abs=1)
    assert sum(t >= 5 for t in times) == pytest.approx(500, abs=1)


def test_poisson_schedule_is_reproducible_and_near_the_rate() -> None:
    profile = parse_profile("spike:rate=50,peak=500,at=4,length=2", duration=10)
    first = list(arrival_times(profile, random.Random(7)))
    assert first == list(arrival_times(profile, random.Random(7)))
    assert len(first) == pytest.approx(profile.expected_requests(), rel=0.1)
    in_spike = sum(4 <= t < 6 for t in first)
    assert in_spike == pytest.approx(1000, rel=0.15)


@pytest.mark.parametrize(
    "spec",
    [
        "burst:rate=1",
        "constant",
        "constant:rate=1,bogus=2",
        "step:rate=1",
        "spike:rate=1,peak=5,at=1",
        "constant:rate=-1",
    ],
)
def test_bad_profiles_are_rejected(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_profile(spec, duration=10)


def test_profile_rejects_nonpositive_duration() -> None:
    with pytest.raises(ValueError):
        Profile(kind="constant", rate=1, duration=0)


def test_zipf_probabilities_follow_the_power_law() -> None:
    keys = ZipfKeys(100, 1.1)
    assert sum(keys.probability(k) for k in range(1, 101)) == pytest.approx(1.0)
    assert keys.probability(1) / keys.probability(2) == pytest.approx(2**1.1)
    assert keys.key(0.0) == 1
    assert keys.key(0.999999999) == 100


def test_zipf_draws_are_skewed_and_uniform_when_s_is_zero() -> None:
    rng = random.Random(1)
    skewed = ZipfKeys(1000, 1.1)
    draws = [skewed.draw(rng) for _ in range(20_000)]
    assert all(1 <= k <= 1000 for k in draws)
    top10 = sum(k <= 10 for k in draws) / len(draws)
    assert top10 == pytest.approx(sum(skewed.probability(k) for k in range(1, 11)), abs=0.02)
    uniform = ZipfKeys(4, 0.0)
    assert [uniform.probability(k) for k in range(1, 5)] == pytest.approx([0.25] * 4)


def test_mix_is_normalised_and_chosen_by_weight() -> None:
    mix = parse_mix("read=9,write=1")
    assert mix == {"read": 0.9, "write": 0.1, "order": 0.0}
    assert choose(mix, 0.0) == "read"
    assert choose(mix, 0.89) == "read"
    assert choose(mix, 0.95) == "write"
    assert choose(mix, 0.999999) == "write"


@pytest.mark.parametrize("spec", ["", "read=0", "browse=1", "read=-1", "read"])
def test_bad_mixes_are_rejected(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_mix(spec)
