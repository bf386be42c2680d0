"""Pure value types shared by the tiers and the decision: sizes, snapshots, steps, bounds and time.

Nothing here does I/O. The shell reads workloads into `Sizes`, Prometheus into a `Snapshot`, calls
`decide.decide()` and applies the `Step` it returns; everything the scaler remembers lives in
`api.ScalerState` and `status.lastAction`, so a restarted operator carries on where it stopped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from scaledapp import api
from scaledapp.quantity import format_bytes, format_cpu, parse_bytes, parse_cpu_millicores

TierName = api.Tier


# ---------------------------------------------------------------------------------------------- time


def parse_time(text: str | None) -> datetime | None:
    """An RFC 3339 timestamp from status, or None when absent or unreadable (a hand-edited status must
    not crash the scaler; forgetting a window only makes it wait longer)."""
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_time(moment: datetime) -> str:
    """RFC 3339 in UTC with second precision, the form Kubernetes uses for condition times."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def seconds_since(earlier: str | None, now: datetime) -> float | None:
    start = parse_time(earlier)
    return None if start is None else (now - start).total_seconds()


# ---------------------------------------------------------------------------------------------- signals


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


# ---------------------------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class Sizes:
    """The current size of every tier, as the scaler-owned fields of the workloads say.

    Horizontal tiers are replica counts; the cache is Redis maxmemory in bytes; the primary is its
    container CPU (millicores) and memory (bytes) limits (its CPU request is a fixed fraction of the limit).
    """

    app_replicas: int
    db_read_replicas: int
    workers_replicas: int
    cache_memory_bytes: int
    db_write_cpu_millicores: int
    db_write_memory_bytes: int

    @classmethod
    def from_quantities(
        cls,
        *,
        app_replicas: int,
        db_read_replicas: int,
        workers_replicas: int,
        cache_memory: str,
        db_write_cpu: str,
        db_write_memory: str,
    ) -> Sizes:
        """Sizes as the workloads spell them (Kubernetes quantities)."""
        return cls(
            app_replicas=app_replicas,
            db_read_replicas=db_read_replicas,
            workers_replicas=workers_replicas,
            cache_memory_bytes=parse_bytes(cache_memory),
            db_write_cpu_millicores=parse_cpu_millicores(db_write_cpu),
            db_write_memory_bytes=parse_bytes(db_write_memory),
        )

    @property
    def cache_memory(self) -> str:
        return format_bytes(self.cache_memory_bytes)

    @property
    def db_write_cpu(self) -> str:
        return format_cpu(self.db_write_cpu_millicores)

    @property
    def db_write_memory(self) -> str:
        return format_bytes(self.db_write_memory_bytes)


@dataclass(frozen=True)
class Bounds:
    """The spec's min/max for every tier, parsed once."""

    app: tuple[int, int]
    db_read: tuple[int, int]
    workers: tuple[int, int]
    cache_memory_bytes: tuple[int, int]
    db_write_cpu_millicores: tuple[int, int]
    db_write_memory_bytes: tuple[int, int]

    @classmethod
    def of(cls, spec: api.ScaledAppSpec) -> Bounds:
        resources = spec.database.resources
        return cls(
            app=(spec.app.replicas.min, spec.app.replicas.max),
            db_read=(spec.database.read_replicas.min, spec.database.read_replicas.max),
            workers=(spec.workers.replicas.min, spec.workers.replicas.max),
            cache_memory_bytes=(parse_bytes(spec.cache.memory.initial), parse_bytes(spec.cache.memory.max)),
            db_write_cpu_millicores=(
                parse_cpu_millicores(resources.initial.cpu),
                parse_cpu_millicores(resources.max.cpu),
            ),
            db_write_memory_bytes=(parse_bytes(resources.initial.memory), parse_bytes(resources.max.memory)),
        )


def clamp(value: int, bounds: tuple[int, int]) -> int:
    low, high = bounds
    return max(low, min(high, value))


def initial_sizes(spec: api.ScaledAppSpec) -> Sizes:
    """Sizes at creation: every horizontal tier at its min, the cache and primary at their initial size."""
    bounds = Bounds.of(spec)
    return Sizes(
        app_replicas=bounds.app[0],
        db_read_replicas=bounds.db_read[0],
        workers_replicas=bounds.workers[0],
        cache_memory_bytes=bounds.cache_memory_bytes[0],
        db_write_cpu_millicores=bounds.db_write_cpu_millicores[0],
        db_write_memory_bytes=bounds.db_write_memory_bytes[0],
    )


def enforce_bounds(spec: api.ScaledAppSpec, sizes: Sizes) -> Sizes:
    """Sizes pulled inside the spec's bounds (min/max edits take effect at the next tick this way)."""
    bounds = Bounds.of(spec)
    return Sizes(
        app_replicas=clamp(sizes.app_replicas, bounds.app),
        db_read_replicas=clamp(sizes.db_read_replicas, bounds.db_read),
        workers_replicas=clamp(sizes.workers_replicas, bounds.workers),
        cache_memory_bytes=clamp(sizes.cache_memory_bytes, bounds.cache_memory_bytes),
        db_write_cpu_millicores=clamp(sizes.db_write_cpu_millicores, bounds.db_write_cpu_millicores),
        db_write_memory_bytes=clamp(sizes.db_write_memory_bytes, bounds.db_write_memory_bytes),
    )


def changed_tiers(before: Sizes, after: Sizes) -> list[TierName]:
    """Which tiers two size sets differ in (what the shell has to patch), in ladder order."""
    differs: dict[TierName, bool] = {
        "cache": before.cache_memory_bytes != after.cache_memory_bytes,
        "app": before.app_replicas != after.app_replicas,
        "db-read": before.db_read_replicas != after.db_read_replicas,
        "workers": before.workers_replicas != after.workers_replicas,
        "db-write": (before.db_write_cpu_millicores, before.db_write_memory_bytes)
        != (after.db_write_cpu_millicores, after.db_write_memory_bytes),
    }
    return [tier for tier in api.LADDER if differs[tier]]


# ---------------------------------------------------------------------------------------------- steps


@dataclass(frozen=True)
class Step:
    """One size change of one tier: what the shell patches (only the fields of `tier` differ)."""

    tier: TierName
    kind: str  # "widen" or "narrow"
    before: Sizes
    after: Sizes
    from_text: str
    to_text: str


@dataclass(frozen=True)
class Blocked:
    """Why a hot tier cannot be widened now; the scaler holds and says so (it never widens another
    tier instead: widening the wrong lane makes things worse)."""

    tier: TierName
    reason: str  # CamelCase, becomes a condition reason
    message: str
    at_ceiling: bool  # True: a bound or a hard limit (AtCeiling condition); False: a guard (e.g. lag)
    recommendation: str = ""


