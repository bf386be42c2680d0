"""The twin's model of each tier, one class each behind `TwinTier`, in a registry the model asks instead of
switching on tier names: how many pods the tier's size means, how long a new pod takes to be ready and
what it is called, how long a new size takes to apply, its pods' counters and gauges, its signals as the
operator's queries compute them, and where the API server says its size is.

Each twin tier stands for one of the operator's tiers (`tier`, from scaledapp.tiers): its name, whether it
is enabled and its typed size come from there. The physics that couples the tiers (one request's way
through app, cache, replicas and primary) stays in dynamics.py; adding a tier adds its class here, its
part of the physics there, and one entry in TWIN_TIERS.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from devharness.twin import pods as pod_series
from devharness.twin import signals as sig
from devharness.twin.dynamics import TickResult
from devharness.twin.params import TwinParams
from scaledapp import api
from scaledapp.quantity import parse_bytes
from scaledapp.resources.cache import MAXMEMORY_KEY
from scaledapp.resources.database import CONTAINER as PRIMARY_CONTAINER
from scaledapp.resources.names import ChildNames
from scaledapp.sizes import Resources, Sizes, TierName
from scaledapp.tiers import app, cache, db_read, db_write, workers
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


class AppTwin(TwinTier):
    tier = app.TIER

    def pods_wanted(self, spec: api.ScaledAppSpec, sizes: Sizes) -> int:
        return app.TIER.size(sizes)

    def ready_seconds(self, params: TwinParams) -> float:
        return params.app_ready_seconds

    def pod_base(self, child: ChildNames) -> str:
        return child.app

    def zero(self) -> dict[str, float]:
        return pod_series.zero_app()

    def increments(self, result: TickResult) -> Mapping[str, float]:
        return result.app

    def gauges(self, pod: pod_series.PodState, model: pod_series.PlantView) -> dict[str, float]:
        return pod_series.app_gauges(pod, model)

    def signals(self, inputs: SignalInputs) -> sig.Signals:
        return sig.app_signals(inputs.window, inputs.app_ready)


class CacheTwin(TwinTier):
    tier = cache.TIER
    missing = "cache maxmemory"

    def pod_base(self, child: ChildNames) -> str:
        return child.cache

    def zero(self) -> dict[str, float]:
        return pod_series.zero_cache()

    def increments(self, result: TickResult) -> Mapping[str, float]:
        return result.cache

    def gauges(self, pod: pod_series.PodState, model: pod_series.PlantView) -> dict[str, float]:
        return pod_series.cache_gauges(pod, model, float(cache.TIER.size(model.sizes)))

    def signals(self, inputs: SignalInputs) -> sig.Signals:
        memory = float(cache.TIER.size(inputs.sizes))
        return sig.cache_signals(inputs.window, inputs.app_ready, inputs.last.cache_memory_used, memory)

    def read_size(self, live: LiveObjects, previous: Sizes) -> object | None:
        value = ((live.cache_config or {}).get("data") or {}).get(MAXMEMORY_KEY)
        return parse_bytes(str(value)) if value else None


class DbReadTwin(TwinTier):
    tier = db_read.TIER
    ordinal = True

    def pods_wanted(self, spec: api.ScaledAppSpec, sizes: Sizes) -> int:
        return db_read.TIER.size(sizes)

    def ready_seconds(self, params: TwinParams) -> float:
        return params.replica_bootstrap_seconds

    def pod_base(self, child: ChildNames) -> str:
        return child.db_replicas

    def increments(self, result: TickResult) -> Mapping[str, float]:
        return result.replica

    def gauges(self, pod: pod_series.PodState, model: pod_series.PlantView) -> dict[str, float]:
        return pod_series.replica_gauges(pod, model)

    def signals(self, inputs: SignalInputs) -> sig.Signals:
        replicas = inputs.ready.get(self.name, [])
        last, max_conn = inputs.last, float(inputs.params.max_connections)
        per_replica = last.replica_active / len(replicas) if replicas else 0.0
        return sig.db_read_signals(inputs.window, inputs.app_ready,
                                   {p: (per_replica, max_conn, last.replica_lag.get(p, 0.0)) for p in replicas})


class WorkersTwin(TwinTier):
    tier = workers.TIER

    def pods_wanted(self, spec: api.ScaledAppSpec, sizes: Sizes) -> int:
        return workers.TIER.size(sizes) if self.enabled(spec) else 0

    def ready_seconds(self, params: TwinParams) -> float:
        return params.worker_ready_seconds

    def pod_base(self, child: ChildNames) -> str:
        return child.workers

    def zero(self) -> dict[str, float]:
        return pod_series.zero_workers()

    def increments(self, result: TickResult) -> Mapping[str, float]:
        return result.worker

    def gauges(self, pod: pod_series.PodState, model: pod_series.PlantView) -> dict[str, float]:
        return pod_series.worker_gauges(pod, model)

    def signals(self, inputs: SignalInputs) -> sig.Signals:
        workers_ready = len(inputs.ready.get(self.name, []))
        reporting = inputs.app_ready + workers_ready  # the app and the workers both report the queue
        last = inputs.last
        return sig.workers_signals(inputs.window, last.queue_depth if reporting else None,
                                   last.oldest_age if reporting else None, workers_ready)


class DbWriteTwin(TwinTier):
    tier = db_write.TIER
    ordinal = True
    missing = "primary resources"

    def pod_base(self, child: ChildNames) -> str:
        return child.db_primary

    def resize_seconds(self, params: TwinParams, before: Sizes, after: Sizes) -> float | None:
        """An in-place resize of the primary's CPU takes `resize_seconds`."""
        if db_write.TIER.size(before).cpu_millicores == db_write.TIER.size(after).cpu_millicores:
            return None
        return params.resize_seconds

    def increments(self, result: TickResult) -> Mapping[str, float]:
        return result.primary

    def gauges(self, pod: pod_series.PodState, model: pod_series.PlantView) -> dict[str, float]:
        return pod_series.primary_gauges(pod, model)

    def signals(self, inputs: SignalInputs) -> sig.Signals:
        last = inputs.last
        return sig.db_write_signals(inputs.window, inputs.app_ready, last.lock_waits, last.primary_connections,
                                    float(inputs.params.max_connections))

    def read_size(self, live: LiveObjects, previous: Sizes) -> object | None:
        spec = (((live.primary or {}).get("spec") or {}).get("template") or {}).get("spec") or {}
        for container in spec.get("containers") or []:
            if container.get("name") == PRIMARY_CONTAINER:
                limits = (container.get("resources") or {}).get("limits") or {}
                if "cpu" in limits and "memory" in limits:
                    return Resources.of(str(limits["cpu"]), str(limits["memory"]))
        return None


# The registry. Its order is the order pods are named in (a ReplicaSet's pods take the model's serial numbers).
TWIN_TIERS: tuple[TwinTier, ...] = (AppTwin(), CacheTwin(), DbReadTwin(), WorkersTwin(), DbWriteTwin())


def twin_tier(name: TierName) -> TwinTier:
    return next(t for t in TWIN_TIERS if t.name == name)


def names() -> tuple[TierName, ...]:
    return tuple(t.name for t in TWIN_TIERS)
