"""The tiers, one module each behind `base.TierModel`; TIERS lists them in ladder order.

Adding a tier means adding one module and one line here (and its name to api.LADDER).
"""

from __future__ import annotations

from scaledapp import api
from scaledapp.policy import TierName
from scaledapp.tiers import app, cache, db_read, db_write, workers
from scaledapp.tiers.base import RATE_WINDOW, Scope, TierModel, TierPressure

_BY_NAME: dict[TierName, TierModel] = {
    tier.name: tier for tier in (app.TIER, cache.TIER, db_read.TIER, db_write.TIER, workers.TIER)
}
# Ladder order: cheaper rungs first (ties in pressure go to the earlier tier; scale-down runs reversed).
TIERS: tuple[TierModel, ...] = tuple(_BY_NAME[name] for name in api.LADDER)


def tier(name: TierName) -> TierModel:
    return _BY_NAME[name]


def enabled_tiers(spec: api.ScaledAppSpec) -> tuple[TierModel, ...]:
    return tuple(t for t in TIERS if t.enabled(spec))


def queries(spec: api.ScaledAppSpec, scope: Scope, window: str = RATE_WINDOW) -> dict[TierName, dict[str, str]]:
    """Every enabled tier's signals as instant PromQL: what the shell asks Prometheus each tick."""
    return {t.name: t.queries(scope, window) for t in enabled_tiers(spec)}


def metric_names() -> frozenset[str]:
    """Every metric name any tier's queries use (for the contract test against docs/metrics.md)."""
    return frozenset().union(*(t.metrics for t in TIERS))


__all__ = [
    "RATE_WINDOW",
    "TIERS",
    "Scope",
    "TierModel",
    "TierPressure",
    "enabled_tiers",
    "metric_names",
    "queries",
    "tier",
]
