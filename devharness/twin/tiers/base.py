"""The twin's model of one tier, `TwinTier`, and what its signals are computed from.

Each twin tier stands for one of the operator's tiers (`tier`, from scaledapp.tiers): its name, whether it
is enabled and its typed size come from there. It says how many pods the tier's size means, how long a new
pod takes to be ready and what it is called, how long a new size takes to apply, its pods' counters and
gauges, its signals as the operator's queries compute them, and where the API server says its size is.
Its module (tiers/<tier>.py) also holds its stage of the tick's physics; tiers/__init__.py is the registry.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from devharness.twin import pods as pod_series
from devharness.twin import signals as sig
from devharness.twin.params import TwinParams
from devharness.twin.plant import TickResult
from scaledapp import api
from scaledapp.resources.names import ChildNames
from scaledapp.sizes import Sizes, TierName
from scaledapp.tiers import app
from scaledapp.tiers.base import TierModel


@dataclass(frozen=True)
class SignalInputs:
    """What the tiers' signals are computed from, one window at a time (gauges are this tick's)."""

    window: sig.Window
    last: TickResult
    ready: Mapping[TierName, list[str]]  # ready pod names per tier
    sizes: Sizes
    params: TwinParams

    @property
    def app_ready(self) -> int:
        return len(self.ready.get(app.TIER.name, []))


@dataclass(frozen=True)
class LiveObjects:
    """What the API server says of the data plane: serving pods per tier and the scaler-owned objects."""

    serving: Mapping[TierName, int]
    cache_config: Mapping[str, Any] | None
    primary: Mapping[str, Any] | None


class TwinTier(ABC):
    """The twin's model of one operator tier."""

    tier: ClassVar[TierModel[Any]]
    # A StatefulSet's pods are <set>-<ordinal> and the highest ordinal goes first; a ReplicaSet's are named
    # by the model and a scale-down removes the pods not ready yet, then the newest.
    ordinal: ClassVar[bool] = False

    @property
    def name(self) -> TierName:
        return self.tier.name

    def enabled(self, spec: api.ScaledAppSpec) -> bool:
        return self.tier.enabled(spec)

    def pods_wanted(self, spec: api.ScaledAppSpec, sizes: Sizes) -> int:
        """How many pods its size means (a horizontal tier: its replicas; a vertical one: one pod)."""
        return 1 if self.enabled(spec) else 0

    def ready_seconds(self, params: TwinParams) -> float:
        """How long a new pod takes to become ready."""
        return 0.0

    @abstractmethod
    def pod_base(self, child: ChildNames) -> str:
        """The workload's name, its pods' prefix."""

    def resize_seconds(self, params: TwinParams, before: Sizes, after: Sizes) -> float | None:
        """How long a new size takes to reach the running pods; None: at once."""
        return None

    def zero(self) -> dict[str, float]:
        """The series a pod has before its first event."""
        return pod_series.zero_pg()

    @abstractmethod
    def increments(self, result: TickResult) -> Mapping[str, float]:
        """Its pods' counter increments in one tick (shared evenly by its ready pods)."""

    @abstractmethod
    def gauges(self, pod: pod_series.PodState, model: pod_series.PlantView) -> dict[str, float]:
        """A pod's gauges now."""

    @abstractmethod
    def signals(self, inputs: SignalInputs) -> sig.Signals:
        """Its signals over one window, as its queries compute them."""

    def read_size(self, live: LiveObjects, previous: Sizes) -> object | None:
        """Its size as the API server says (None: it cannot say; the previous size stands)."""
        return live.serving.get(self.name, 0)

    missing: ClassVar[str] = ""  # what could not be read, for the view's `missing`
