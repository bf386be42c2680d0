"""One observation of every tier's signals, as the decision sees it (pure; the shell fills it from
Prometheus, the twin from its model)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from scaledapp.sizes import TierName


def known(value: float | None) -> float | None:
    """The value if it is a real number; None for missing, NaN or infinite (never zero)."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


@dataclass(frozen=True)
class Snapshot:
    """One observation: per tier, signal name -> value (None = unknown: empty, NaN or failed query).

    `signals` are over the rate window (tiers.RATE_WINDOW, 1m); `onset` the same signals over the short
    onset window (tiers.ONSET_WINDOW), where a tier has them: they show a sharp rise, and a backlog
    draining, a scrape or two before the 1m window does. A tier without onset signals is judged on the
    1m window alone (the onset window is extra evidence, never a reason to hold)."""

    time: datetime
    signals: Mapping[TierName, Mapping[str, float | None]] = field(default_factory=dict)
    onset: Mapping[TierName, Mapping[str, float | None]] = field(default_factory=dict)

    def tier(self, tier: TierName) -> dict[str, float | None]:
        return {name: known(value) for name, value in self.signals.get(tier, {}).items()}

    def onset_tier(self, tier: TierName) -> dict[str, float | None] | None:
        """The tier's signals over the onset window (the 1m value for a signal it lacks); None without any."""
        fast = self.onset.get(tier)
        if not fast:
            return None
        return {**self.tier(tier), **{name: known(value) for name, value in fast.items()}}
