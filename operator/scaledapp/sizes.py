"""What the scaler changes: every tier's size, and one step of one tier (or why there is none).

Pure value types, generic over the tiers: `Sizes` maps each tier's name to its size. What a size is, its
bounds and how it is read from and written to the workload is each tier's business (scaledapp.tiers);
this module only holds the values.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from scaledapp.quantity import format_bytes, format_cpu, parse_bytes, parse_cpu_millicores
from scaledapp.reasons import Reason

# A tier's name, as its module in scaledapp.tiers gives it; the registry (scaledapp.tiers.TIERS) lists them.
TierName = str


@dataclass(frozen=True)
class Resources:
    """A vertical size: container CPU (millicores) and memory (bytes) limits."""

    cpu_millicores: int
    memory_bytes: int

    @classmethod
    def of(cls, cpu: str, memory: str) -> Resources:
        """As a workload spells them (Kubernetes quantities)."""
        return cls(parse_cpu_millicores(cpu), parse_bytes(memory))

    @property
    def cpu(self) -> str:
        return format_cpu(self.cpu_millicores)

    @property
    def memory(self) -> str:
        return format_bytes(self.memory_bytes)


class Sizes(Mapping[TierName, object]):
    """The current size of every tier, keyed by tier name, as the scaler-owned fields of the workloads say.

    What a size is belongs to its tier: a replica count, the cache's maxmemory in bytes, the primary's
    `Resources`. Read one typed through its tier (`TierModel.size(sizes)`), change one with `with_size`.
    Immutable; in the registry's (ladder) order when built by it.
    """

    __slots__ = ("_by_tier",)

    def __init__(self, by_tier: Mapping[TierName, object] | None = None) -> None:
        self._by_tier: dict[TierName, object] = dict(by_tier or {})

    def __getitem__(self, tier: TierName) -> object:
        return self._by_tier[tier]

    def __iter__(self) -> Iterator[TierName]:
        return iter(self._by_tier)

    def __len__(self) -> int:
        return len(self._by_tier)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sizes) and self._by_tier == other._by_tier

    def __hash__(self) -> int:
        return hash(tuple(self._by_tier.items()))

    def __repr__(self) -> str:
        return f"Sizes({self._by_tier!r})"

    def with_size(self, tier: TierName, size: object) -> Sizes:
        """The same sizes with `tier` at `size`."""
        return Sizes({**self._by_tier, tier: size})


def clamp(value: int, bounds: tuple[int, int]) -> int:
    low, high = bounds
    return max(low, min(high, value))


@dataclass(frozen=True)
class Step:
    """One size change of one tier: what the shell patches (only the size of `tier` differs)."""

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
