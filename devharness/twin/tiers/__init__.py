"""The twin's tiers, one module each, mirroring scaledapp.tiers: each holds its stage of the tick's
physics and its `TwinTier` (tiers/base.py), the twin's model of the operator tier it stands for. TWIN_TIERS,
the registry, lists them; the model, the pods' series and the cluster reader ask it instead of switching on
tier names. dynamics.py runs the stages along a request's way (app, cache, replicas, primary, queue) and
keeps what couples them (the app's view of its dependencies, the end user's latency).

Adding a tier adds its module here (its stage, its pods' gauges, its signals and its TwinTier), one entry
in TWIN_TIERS, and in dynamics.py its stage's call where the requests reach it and its utilization; its
pods' counters are a field of plant.TickResult (docs/architecture.md walks through it).
"""

from __future__ import annotations

from devharness.twin.tiers import app, cache, db_read, db_write, workers
from devharness.twin.tiers.base import LiveObjects, SignalInputs, TwinTier
from scaledapp.sizes import TierName

__all__ = ["TWIN_TIERS", "LiveObjects", "SignalInputs", "TwinTier", "names", "twin_tier"]

# The registry. Its order is the order pods are named in (a ReplicaSet's pods take the model's serial numbers).
TWIN_TIERS: tuple[TwinTier, ...] = (app.TWIN, cache.TWIN, db_read.TWIN, workers.TWIN, db_write.TWIN)


def twin_tier(name: TierName) -> TwinTier:
    return next(t for t in TWIN_TIERS if t.name == name)


def names() -> tuple[TierName, ...]:
    return tuple(t.name for t in TWIN_TIERS)
