"""How the twin computes the operator's tier signals from its series, the way the tier queries compute them
from Prometheus (operator/scaledapp/tiers/*.py): rates and histogram quantiles over the last rate
window, ratios of sums, max/sum of gauges over the pods that report them. Unknown stays None. Each tier's
own signals are its twin tier's (devharness/twin/tiers/<tier>.py, `TwinTier.signals`); this module holds
what they share: the window, the quantile, which dependency calls are load, and `complete`.

The constants come from the tier definitions themselves, never copies: the rate window
(tiers.base.RATE_WINDOW, see `window_seconds`), the latency quantile (LATENCY_QUANTILE) and which
dependency calls are request load (NOT_LOAD, the label regexes the queries exclude). If a tier's
queries change those, the twin follows; tests/dataplane/test_twin_promql.py checks that real PromQL over
the twin's pages agrees with `TwinModel.snapshot()`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from devharness.twin import families as f
from devharness.twin.physics import histogram_quantile
from scaledapp.sizes import TierName
from scaledapp.tiers import tier
from scaledapp.tiers.base import LATENCY_QUANTILE, NOT_LOAD, RATE_WINDOW, Scope

Signals = dict[str, float | None]
QUANTILE = LATENCY_QUANTILE
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}


def window_seconds(duration: str = RATE_WINDOW) -> float:
    """A PromQL range duration ("1m", "10s", "1m30s") in seconds."""
    parts = _DURATION.findall(duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)


def counts_as_load(hist: f.Hist) -> bool:
    """A dependency series the tier queries count as request load: no NOT_LOAD matcher matches it
    (PromQL's `label!~"re"` keeps a series unless the whole value matches)."""
    labels = dict(hist.labels)
    return not any(re.fullmatch(rx, labels.get(name, "")) for name, rx in NOT_LOAD.items())


def load_ops(dependency: str) -> tuple[str, ...]:
    """The operations of a dependency whose calls the tier queries count as request load."""
    return tuple(op for (dep, op), h in f.DEPENDENCY_HIST.items() if dep == dependency and counts_as_load(h))


@dataclass(frozen=True)
class Window:
    """Counter increments summed over the rate window, per pod role, and the window's length."""

    seconds: float
    app: Mapping[str, float]
    cache: Mapping[str, float]
    worker: Mapping[str, float]
    app_core_seconds: float  # ready app pods x CPU limit x time: the denominator of CPU utilization
    in_flight_per_pod_seconds: float  # in-flight per ready pod, integrated over time


def _merged(hists: Sequence[f.Hist], totals: Mapping[str, float]) -> tuple[list[float], float]:
    cumulative = [0.0] * len(hists[0].bounds)
    count = 0.0
    for hist in hists:
        buckets, n = hist.cumulative(totals)
        cumulative = [a + b for a, b in zip(cumulative, buckets, strict=True)]
        count += n
    return cumulative, count


def quantile(hists: Sequence[f.Hist], totals: Mapping[str, float]) -> float | None:
    """The tier queries' latency quantile over the merged histograms (None: no observations)."""
    cumulative, count = _merged(hists, totals)
    value = histogram_quantile(QUANTILE, hists[0].bounds, cumulative, count)
    return None if value != value else value  # NaN: no observations


def complete(signals: dict[TierName, Signals]) -> dict[TierName, Signals]:
    """Fill in the signals a tier borrows from another tier's series (e.g. a database tier that reads
    the app's CPU utilization as `app_cpu_utilization`): every name a tier queries gets a value, and a
    name the twin cannot compute stays None (unknown), so a new query shows up as missing, not as zero."""
    out: dict[TierName, Signals] = {}
    for name, values in signals.items():
        wanted = tier(name).queries(Scope("twin", "twin"))
        filled = dict(values)
        for signal in wanted:
            if signal in filled:
                continue
            owner, _, borrowed = signal.partition("_")
            source = signals.get(owner, {})
            filled[signal] = source.get(borrowed) if borrowed in source else None
        out[name] = filled
    return out
