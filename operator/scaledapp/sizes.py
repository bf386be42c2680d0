"""What the scaler changes: every tier's size, and one step of one tier (or why there is none).

Pure value types. Which fields of `Sizes` belong to which tier, their bounds and how they are read from
and written to the workloads is each tier's business (scaledapp.tiers); this module only holds the values.
"""

from __future__ import annotations

from dataclasses import dataclass

from scaledapp import api
from scaledapp.quantity import format_bytes, format_cpu, parse_bytes, parse_cpu_millicores
from scaledapp.reasons import Reason

TierName = api.Tier


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


def clamp(value: int, bounds: tuple[int, int]) -> int:
    low, high = bounds
    return max(low, min(high, value))


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
    reason: Reason  # becomes the AtCeiling / Scaling condition's reason
    message: str
    at_ceiling: bool  # True: a bound or a hard limit (AtCeiling condition); False: a guard (e.g. lag)
    recommendation: str = ""
