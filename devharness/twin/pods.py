"""Per-pod series of the twin: each ready pod's share of its role's counters (cumulative from the pod's
start, as a real process's are) and its gauges now, rendered as Prometheus text exposition."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from devharness.twin import families as f
from devharness.twin.params import TwinParams
from devharness.twin.plant import TickResult
from scaledapp import api
from scaledapp.resources.common import POSTGRES_PORT
from scaledapp.sizes import Sizes


class PlantView(Protocol):
    """What a pod's gauges read from the twin besides the last tick (the model provides it; this module
    does not import the model, so the twin's modules form no cycle)."""

    @property
    def params(self) -> TwinParams: ...

    @property
    def spec(self) -> api.ScaledAppSpec: ...

    @property
    def sizes(self) -> Sizes: ...


SERVER = f"localhost:{POSTGRES_PORT}"  # postgres_exporter's DSN host:port in the sidecar


def zero_pg() -> dict[str, float]:
    return {f.key("pg_stat_database_xact_commit", f.DATABASE): 0.0}


class TierSeries(Protocol):
    """What PodSeries needs of a tier (devharness.twin.tiers.TwinTier provides it)."""

    def zero(self) -> dict[str, float]: ...

    def increments(self, result: TickResult) -> Mapping[str, float]: ...


class PodSeries:
    """Cumulative counters per pod; a tick's increments are shared evenly by the tier's ready pods."""

    def __init__(self) -> None:
        self._counters: dict[str, dict[str, float]] = {}

    def add(self, result: TickResult, ready: Mapping[TierSeries, Sequence[str]]) -> None:
        for tier, names in ready.items():
            if not names:
                continue
            increments = tier.increments(result)
            share = 1.0 / len(names)
            for name in names:
                counters = self._counters.get(name)
                if counters is None:
                    counters = self._counters[name] = tier.zero()
                for sample, value in increments.items():
                    counters[sample] = counters.get(sample, 0.0) + value * share
        alive = {name for names in ready.values() for name in names}
        for gone in [n for n in self._counters if n not in alive]:
            del self._counters[gone]  # a deleted pod's counters go with it; a new pod starts at zero

    def render(self, tier: TierSeries, name: str, gauges: Mapping[str, float]) -> str:
        counters = self._counters.get(name) or tier.zero()
        return f.render([*gauges.items(), *counters.items()])


@dataclass(frozen=True)
class PodState:
    """One pod as its gauges see it: its name, whether it is ready, the last tick, and how many pods of its
    tier (`ready_here`) and of the app (`app_ready`) are ready."""

    name: str
    ready: bool
    last: TickResult | None
    ready_here: int
    app_ready: int

    @property
    def share(self) -> float:
        """Its share of its tier's traffic: none while not ready."""
        return 1.0 / max(1, self.ready_here) if self.ready else 0.0


def pg_gauges(model: PlantView, active: float, connections: float, lag: float, extra: Mapping[str, float], *,
              replica: bool) -> dict[str, float]:
    """postgres_exporter's gauges of a Postgres pod (the primary's or a replica's)."""
    server = (("server", SERVER),)
    return {
        "pg_up": 1.0,
        f.activity_key("active", SERVER): active,
        f.activity_key("idle", SERVER): max(0.0, connections - active),
        f.key("pg_settings_max_connections", server): float(model.params.max_connections),
        "pg_replication_is_replica": 1.0 if replica else 0.0,
        "pg_replication_lag_seconds": lag,
        **extra,
    }
