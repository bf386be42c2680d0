"""Pure summaries of a load run: percentiles, throughput, errors by kind, as text and as JSON.

Latencies count from each request's scheduled start (see demo_app.load); `late` says how many requests
left more than `late_threshold_ms` after their schedule, and by how much (p99 and max of the lateness of
every request). `service_p99_ms` is the send-to-answer p99, what a client blind to its own backlog would
report: the gap between it and p99_ms is queueing on the client's side of the wire.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

LATE_SECONDS = 0.01  # sent more than 10 ms after its schedule: late (asyncio's own jitter is ~1 ms)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of an ascending sequence; NaN if empty."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


@dataclass
class Outcome:
    operation: str
    latency: float  # seconds
    error: str | None = None  # None = success; else a kind, e.g. "http_503", "timeout", "connect"
    lateness: float = 0.0  # seconds from the scheduled start to the send (latency includes it)

    @property
    def service(self) -> float:
        """Send to answer: the latency without the wait before the send."""
        return max(0.0, self.latency - self.lateness)


@dataclass
class Report:
    elapsed_seconds: float
    sent: int
    ok: int
    errors: dict[str, int]
    throughput_rps: float  # successful responses per second
    p50_ms: float
    p95_ms: float
    p99_ms: float
    by_operation: dict[str, int] = field(default_factory=dict)
    late: int = 0  # requests sent more than late_threshold_ms after their schedule
    late_threshold_ms: float = LATE_SECONDS * 1000
    late_p99_ms: float = 0.0  # lateness of all requests (0 = on time)
    late_max_ms: float = 0.0
    service_p99_ms: float = math.nan  # successful requests, send to answer

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, allow_nan=True)

    def to_text(self) -> str:
        errors = ", ".join(f"{k}={v}" for k, v in sorted(self.errors.items())) or "none"
        ops = ", ".join(f"{k}={v}" for k, v in sorted(self.by_operation.items()))
        return (
            f"elapsed     {self.elapsed_seconds:.1f} s\n"
            f"sent        {self.sent} ({ops})\n"
            f"ok          {self.ok}\n"
            f"throughput  {self.throughput_rps:.1f} req/s\n"
            f"latency     p50 {self.p50_ms:.1f} ms  p95 {self.p95_ms:.1f} ms  p99 {self.p99_ms:.1f} ms "
            f"(from the schedule; send to answer p99 {self.service_p99_ms:.1f} ms)\n"
            f"late        {self.late} sent > {self.late_threshold_ms:g} ms after their schedule "
            f"(lateness p99 {self.late_p99_ms:.1f} ms, max {self.late_max_ms:.1f} ms)\n"
            f"errors      {errors}"
        )


def summarize(outcomes: Sequence[Outcome], elapsed: float, dropped: int = 0,
              late_seconds: float = LATE_SECONDS) -> Report:
    """Latency percentiles are over successful requests, from their scheduled start; `dropped` are
    arrivals never sent because the client already had its maximum in flight (counted as errors of kind
    "dropped"). Lateness is over every request, failed or not."""
    ok = sorted(o.latency for o in outcomes if o.error is None)
    lateness = sorted(o.lateness for o in outcomes)
    errors = Counter(o.error for o in outcomes if o.error is not None)
    if dropped:
        errors["dropped"] += dropped
    return Report(
        elapsed_seconds=elapsed,
        sent=len(outcomes),
        ok=len(ok),
        errors=dict(errors),
        throughput_rps=len(ok) / elapsed if elapsed > 0 else 0.0,
        p50_ms=percentile(ok, 50) * 1000,
        p95_ms=percentile(ok, 95) * 1000,
        p99_ms=percentile(ok, 99) * 1000,
        by_operation=dict(Counter(o.operation for o in outcomes)),
        late=sum(1 for o in outcomes if o.lateness > late_seconds),
        late_threshold_ms=late_seconds * 1000,
        late_p99_ms=percentile(lateness, 99) * 1000 if lateness else 0.0,
        late_max_ms=lateness[-1] * 1000 if lateness else 0.0,
        service_p99_ms=percentile(sorted(o.service for o in outcomes if o.error is None), 99) * 1000,
    )
