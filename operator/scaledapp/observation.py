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
    """One observation: per tier, signal name -> value (None = unknown: empty, NaN or failed query)."""

    time: datetime
    signals: Mapping[TierName, Mapping[str, float | None]] = field(default_factory=dict)

    def tier(self, tier: TierName) -> dict[str, float | None]:
        return {name: known(value) for name, value in self.signals.get(tier, {}).items()}
