"""Pure load-model pieces: rate profiles, open-loop arrival schedules, Zipf keys, request mix.

No I/O and no clocks: the load generator and the simulated twin both drive these with their own time
and their own random.Random, so a schedule is reproducible from a seed.
"""

from __future__ import annotations

import bisect
import itertools
import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

Kind = Literal["constant", "step", "ramp", "spike"]
KINDS: tuple[Kind, ...] = ("constant", "step", "ramp", "spike")

PROFILE_HELP = """\
Profiles (PROFILE is KIND:key=value,...; rates in requests per second, times in seconds):
  constant:rate=R                     R the whole time
  step:rate=R,peak=P,at=T             R until T, then P
  ramp:rate=R,peak=P                  linear from R at 0 to P at the end of the run
  spike:rate=R,peak=P,at=T,length=L   R, but P from T to T+L
Arrivals are open-loop: requests are sent on schedule whether or not earlier ones have answered."""


@dataclass(frozen=True)
class Profile:
    kind: Kind
    rate: float
    duration: float
    peak: float = 0.0
    at: float = 0.0
    length: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown profile kind {self.kind!r}; one of {', '.join(KINDS)}")
        if self.duration <= 0 or min(self.rate, self.peak, self.at, self.length) < 0:
            raise ValueError("duration must be > 0; rates and times must be >= 0")
        if self.kind == "spike" and self.length <= 0:
            raise ValueError("spike needs length > 0")

    def rate_at(self, t: float) -> float:
        """Requests per second at time t (0 outside [0, duration))."""
        if t < 0 or t >= self.duration:
            return 0.0
        if self.kind == "step":
            return self.peak if t >= self.at else self.rate
        if self.kind == "ramp":
            return self.rate + (self.peak - self.rate) * t / self.duration
        if self.kind == "spike":
            return self.peak if self.at <= t < self.at + self.length else self.rate
        return self.rate

    def max_rate(self) -> float:
        return self.rate if self.kind == "constant" else max(self.rate, self.peak)

    def expected_requests(self) -> float:
        """The integral of the rate over the run: how many requests the schedule holds."""
        d = self.duration
        if self.kind == "step":
            cut = min(self.at, d)
            return self.rate * cut + self.peak * (d - cut)
        if self.kind == "ramp":
            return (self.rate + self.peak) / 2 * d
        if self.kind == "spike":
            inside = max(0.0, min(self.at + self.length, d) - min(self.at, d))
            return self.rate * (d - inside) + self.peak * inside
        return self.rate * d


def parse_profile(spec: str, duration: float) -> Profile:
    """`spike:rate=50,peak=400,at=10,length=5` -> Profile (see PROFILE_HELP)."""
    kind, _, args = spec.partition(":")
    values: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in args.split(","))):
        key, sep, raw = part.partition("=")
        if not sep or key not in {"rate", "peak", "at", "length"}:
            raise ValueError(f"bad profile parameter {part!r} in {spec!r}")
        values[key] = float(raw)
    if "rate" not in values:
        raise ValueError(f"profile {spec!r} needs rate=")
    if kind in ("step", "ramp", "spike") and "peak" not in values:
        raise ValueError(f"profile {spec!r} needs peak=")
    return Profile(kind=kind, duration=duration, **values)  # type: ignore[arg-type]  # checked in __post_init__


def arrival_times(profile: Profile, rng: random.Random | None = None) -> Iterator[float]:
    """Send times in [0, duration), ascending. Without rng: evenly spaced, one request per unit of the
    rate's integral. With rng: a Poisson process of the same rate (thinning)."""
    if rng is not None:
        yield from _poisson(profile, rng)
        return
    # Deterministic: the n-th arrival when the cumulative rate first reaches n (midpoint rule, 1 ms steps).
    dt, t, acc = 0.001, 0.0, 0.5  # start half a unit in: the first request at ~1/(2 rate), not at 0
    steps = math.ceil(profile.duration / dt)
    for i in range(steps):
        t = i * dt
        acc += profile.rate_at(t + dt / 2) * dt
        while acc >= 1.0:
            acc -= 1.0
            yield t
    return


def _poisson(profile: Profile, rng: random.Random) -> Iterator[float]:
    top = profile.max_rate()
    if top <= 0:
        return
    t = 0.0
    while True:
        t += rng.expovariate(top)
        if t >= profile.duration:
            return
        if rng.random() * top < profile.rate_at(t):
            yield t


class ZipfKeys:
    """Keys 1..n with P(k) proportional to 1 / k**s: a few hot keys, a long tail (s=0 is uniform)."""

    def __init__(self, n: int, s: float) -> None:
        if n < 1 or s < 0:
            raise ValueError("need n >= 1 and s >= 0")
        self.n, self.s = n, s
        weights: list[float] = [1.0 / float(k) ** s for k in range(1, n + 1)]
        total = sum(weights)
        self._cdf: list[float] = [c / total for c in itertools.accumulate(weights)]

    def key(self, u: float) -> int:
        """The key for a uniform draw u in [0, 1)."""
        return min(bisect.bisect_right(self._cdf, u), self.n - 1) + 1

    def draw(self, rng: random.Random) -> int:
        return self.key(rng.random())

    def probability(self, k: int) -> float:
        return self._cdf[k - 1] - (self._cdf[k - 2] if k > 1 else 0.0)


OPERATIONS = ("read", "write", "order")


def parse_mix(spec: str) -> dict[str, float]:
    """`read=0.9,write=0.08,order=0.02` -> normalised weights (missing operations weigh 0)."""
    mix = dict.fromkeys(OPERATIONS, 0.0)
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, sep, raw = part.partition("=")
        if not sep or key not in mix or float(raw) < 0:
            raise ValueError(f"bad mix entry {part!r}; use read=, write=, order= with weights >= 0")
        mix[key] = float(raw)
    total = sum(mix.values())
    if total <= 0:
        raise ValueError("the mix needs a positive weight")
    return {k: v / total for k, v in mix.items()}


def choose(mix: Mapping[str, float], u: float) -> str:
    """The operation for a uniform draw u in [0, 1)."""
    acc = 0.0
    last = ""
    for op, weight in mix.items():
        if weight <= 0:
            continue
        acc += weight
        last = op
        if u < acc:
            return op
    return last
