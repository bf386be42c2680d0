"""Pure summaries of a load run: percentiles, throughput, errors by kind, as text and as JSON."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field


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
            f"latency     p50 {self.p50_ms:.1f} ms  p95 {self.p95_ms:.1f} ms  p99 {self.p99_ms:.1f} ms\n"
            f"errors      {errors}"
        )


def summarize(outcomes: Sequence[Outcome], elapsed: float, dropped: int = 0) -> Report:
    """Latency percentiles are over successful requests; `dropped` are arrivals never sent because
    the client already had its maximum in flight (counted as errors of kind "dropped")."""
    ok = sorted(o.latency for o in outcomes if o.error is None)
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
    )
