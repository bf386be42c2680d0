"""The physical building blocks of the twin, pure and deterministic: queues, the key space, latency
distributions. Each formula is a textbook one, named where it is used, so the model can be checked
rather than believed.

- A tier is a *fluid queue* (`Station`): work arrives at a rate, is served up to a capacity, the rest
  waits in a backlog that is shed after a timeout. Below capacity the mean time in the station is the
  M/M/1 sojourn time `s / (1 - rho)`; at or above it the backlog grows and adds `backlog / capacity`.
- A client-side connection pool is an M/M/c queue; its mean wait uses Sakasegawa's approximation
  `Wq = S * rho^(sqrt(2(c+1)) - 1) / (c (1 - rho))`.
- The cache is an LRU cache with a TTL over Zipf-distributed keys: the renewal model of a TTL set at
  fill time (a key is cached a share lambda*p*T / (1 + lambda*p*T) of the time) with T = TTL when one
  TTL's keys fit, else the characteristic time T_c < TTL at which they do (Che's approximation).
- A call's latency is exponentially distributed around its mean (the M/M/1 sojourn time is exactly
  exponential), so histograms and quantiles follow from the means.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from functools import lru_cache

# Beyond this utilization the M/M/1 factor 1/(1 - rho) is capped (the backlog term takes over).
RHO_CAP = 0.95
# -ln(0.05): the 95th percentile of an exponential distribution is this many means.
P95_OF_EXPONENTIAL = -math.log(0.05)


@dataclass(frozen=True)
class Served:
    """One tick of a station: what got through, what was shed, and the resulting delays."""

    throughput: float  # per second
    dropped: float  # per second, shed after the timeout (errors)
    utilization: float  # arrivals / capacity (may exceed 1: the ground truth "how saturated")
    busy: float  # served / capacity, at most 1 (what a CPU counter would show)
    queue_delay: float  # seconds a new arrival waits behind the backlog


@dataclass
class Station:
    """A fluid FIFO queue in front of a server of `capacity` operations per second."""

    backlog: float = 0.0

    def serve(self, arrivals: float, capacity: float, dt: float, timeout: float) -> Served:
        offered = arrivals + self.backlog / dt
        if capacity <= 0:  # nothing serves: work waits if callers wait forever, else it fails
            # With nothing offered nobody waits: an infinite delay here would turn "0 reads x delay" into
            # NaN downstream (a replica-less tick once poisoned the app pods' series for good).
            delay = math.inf if offered > 0 else 0.0
            if math.isinf(timeout):
                self.backlog += arrivals * dt
                return Served(0.0, 0.0, delay, 0.0, delay)
            self.backlog = 0.0
            return Served(0.0, offered, delay, 0.0, delay)
        throughput = min(offered, capacity)
        backlog = self.backlog + (arrivals - throughput) * dt
        # Callers give up after `timeout`: at most capacity * timeout can be waiting.
        limit = capacity * timeout
        dropped = max(0.0, backlog - limit) / dt
        self.backlog = max(0.0, min(backlog, limit))
        return Served(
            throughput=throughput,
            dropped=dropped,
            utilization=arrivals / capacity,
            busy=throughput / capacity,
            queue_delay=self.backlog / capacity,
        )


def sojourn(service_seconds: float, utilization: float) -> float:
    """Mean time in an M/M/1 queue: service / (1 - rho), rho capped at RHO_CAP."""
    return service_seconds / (1.0 - min(max(utilization, 0.0), RHO_CAP))


def pool_wait(rate: float, hold_seconds: float, pool_size: int) -> tuple[float, float]:
    """(probability of waiting, mean wait) for a pool of `pool_size` connections each held
    `hold_seconds` per call at `rate` calls/s (M/M/c, Sakasegawa). Saturated pools cap at RHO_CAP;
    the caller adds the fluid backlog beyond that."""
    if rate <= 0 or pool_size <= 0:
        return 0.0, 0.0
    rho = min(rate * hold_seconds / pool_size, RHO_CAP)
    waiting = rho ** (math.sqrt(2.0 * (pool_size + 1)) - 1.0)
    mean_wait = hold_seconds * waiting / (pool_size * (1.0 - rho))
    return min(1.0, waiting), mean_wait


def exponential_cdf(x: float, mean: float) -> float:
    if mean <= 0:
        return 1.0
    return 1.0 - math.exp(-x / mean)


def shifted_cdf(x: float, shift: float, mean: float) -> float:
    """P(shift + Exp(mean) <= x): a deterministic wait (a FIFO backlog ahead) plus an M/M/1 sojourn."""
    return 0.0 if x < shift else exponential_cdf(x - shift, mean)


def mixture_quantile(classes: list[tuple[float, float, float]], quantile: float) -> float:
    """The quantile of a mixture of shifted exponentials given as (weight, shift, mean); mean inf =
    never answered."""
    total = sum(w for w, _, _ in classes)
    if total <= 0:
        return 0.0
    if sum(w for w, _, m in classes if math.isinf(m)) / total > 1 - quantile:
        return math.inf

    def cdf(x: float) -> float:
        return sum(w * shifted_cdf(x, s, m) for w, s, m in classes if not math.isinf(m)) / total

    low, high = 0.0, 1.0
    while cdf(high) < quantile and high < 1e6:
        high *= 2
    for _ in range(50):
        mid = (low + high) / 2
        if cdf(mid) < quantile:
            low = mid
        else:
            high = mid
    return high


# ---------------------------------------------------------------------------------------------- keys


class KeySpace:
    """Zipf(s) over `keys` keys, ranks grouped into bins so sums over the key space stay cheap:
    the first 2000 ranks one by one, then geometric bins 2 % wide (probability within a bin varies
    by less than 2 %)."""

    def __init__(self, keys: int, zipf_s: float) -> None:
        self.keys, self.zipf_s = keys, zipf_s
        edges = list(range(1, min(keys, 2000) + 1))
        while edges[-1] < keys:
            edges.append(min(keys, max(edges[-1] + 1, int(edges[-1] * 1.02))))
        weights: list[float] = []
        counts: list[int] = []
        previous = 0
        for edge in edges:
            count = edge - previous
            middle = (previous + 1 + edge) / 2
            counts.append(count)
            weights.append(count * middle ** (-zipf_s))
            previous = edge
        total = sum(weights)
        # Per bin: how many keys, and the probability of ONE key in it.
        self._counts = counts
        self._p = [w / total / c for w, c in zip(weights, counts, strict=True)]
        # Probability that two independent requests hit the same key (row-lock collisions).
        self.collision = sum(c * p * p for c, p in zip(counts, self._p, strict=True))

    def _sum(self, rate: float, horizon: float) -> tuple[float, float]:
        """(expected cached keys, hit probability) when an entry lives `horizon` seconds after its fill
        (the renewal model of a TTL cache: a key is cached a share x / (1 + x) of the time, x = rate *
        p * horizon)."""
        keys = hits = 0.0
        for count, p in zip(self._counts, self._p, strict=True):
            x = rate * p * horizon
            cached = x / (1.0 + x)
            keys += count * cached
            hits += count * p * cached
        return keys, hits

    @lru_cache(maxsize=4096)  # noqa: B019 - a few KeySpaces live for the whole process; the cache is the point
    def steady_state(self, rate: float, capacity_keys: int, ttl: float) -> tuple[float, float, bool]:
        """(hit ratio, cached keys, evicting) at `rate` lookups/s for a cache of `capacity_keys`.

        Without evictions an entry lives one TTL. When the keys of one TTL do not fit, LRU keeps an
        entry for a characteristic time T_c < TTL such that the expected number of cached keys equals
        the capacity (Che's approximation; with the TTL cache formula for the per-key share, so the hit
        ratio never rises as the cache shrinks)."""
        if rate <= 0:
            return 0.0, 0.0, False
        keys, hits = self._sum(rate, ttl)
        if keys <= capacity_keys:
            return hits, keys, False
        low, high = 0.0, ttl
        for _ in range(40):
            mid = (low + high) / 2
            if self._sum(rate, mid)[0] < capacity_keys:
                low = mid
            else:
                high = mid
        keys, hits = self._sum(rate, low)
        return hits, float(capacity_keys), True

    @lru_cache(maxsize=4096)  # noqa: B019 - see steady_state
    def working_set(self, rate: float, ttl: float) -> float:
        """Keys that would be cached within one TTL with unlimited memory."""
        return self._sum(rate, ttl)[0] if rate > 0 else 0.0

    @lru_cache(maxsize=4096)  # noqa: B019 - see steady_state
    def recently_written_share(self, write_rate: float, window: float) -> float:
        """Share of reads whose key was written within `window` seconds (those read the primary)."""
        if write_rate <= 0:
            return 0.0
        return self._sum(write_rate, window)[1]


def quantize(rate: float) -> float:
    """A rate rounded to about 2 % (log steps), so cached steady states are reused across ticks."""
    if rate <= 0:
        return 0.0
    return round(math.exp(round(math.log(rate) * 50) / 50), 6)


# ---------------------------------------------------------------------------------------------- histograms


def bucket_counts(
    count: float, mean: float, bounds: tuple[float, ...], waiting: float = 1.0, shift: float = 0.0
) -> list[float]:
    """Cumulative counts per finite bucket bound for `count` observations, a share `waiting` of them
    `shift` + exponential around `mean` and the rest zero (e.g. calls that got a pooled connection at once)."""
    if count <= 0:
        return [0.0] * len(bounds)
    return [count * ((1 - waiting) + waiting * shifted_cdf(le, shift, mean)) for le in bounds]


def histogram_quantile(quantile: float, bounds: tuple[float, ...], cumulative: list[float], total: float) -> float:
    """Prometheus' histogram_quantile: linear within the bucket; in +Inf, the highest finite bound; NaN
    without observations."""
    if total <= 0:
        return math.nan
    rank = quantile * total
    index = bisect.bisect_left(cumulative, rank)
    if index >= len(bounds):
        return bounds[-1]
    upper = bounds[index]
    lower = bounds[index - 1] if index > 0 else 0.0
    below = cumulative[index - 1] if index > 0 else 0.0
    inside = cumulative[index] - below
    if inside <= 0:
        return upper
    return lower + (upper - lower) * (rank - below) / inside
