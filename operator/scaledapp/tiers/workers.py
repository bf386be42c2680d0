"""The workers tier: queue workers draining slow work from a Redis list, widened by adding replicas.

Pressure: queued jobs per worker and the age of the oldest job (a backlog that is small but old
means the workers are not keeping up either). Jobs finished per second is not a pressure: it is the
tier's throughput, the evidence that a step helped while the backlog is still growing (decide.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from scaledapp import api
from scaledapp.resources.names import ChildNames
from scaledapp.sizes import Sizes
from scaledapp.tiers.base import (
    RATE_WINDOW,
    HorizontalTier,
    Scope,
    TierPressure,
    Workload,
    higher_is_worse,
    need,
    sum_rate,
    zero_if_reporting,
)

# Metric names (the app and the workers both report the queue; the highest reading counts).
QUEUE_DEPTH = "scaledapp_queue_depth"
QUEUE_OLDEST_AGE = "scaledapp_queue_oldest_age_seconds"
JOBS = "scaledapp_worker_jobs_total"

# Signals.
QUEUE_DEPTH_SIGNAL = "queue_depth"
OLDEST_AGE_SECONDS = "oldest_age_seconds"
JOBS_PER_SECOND = "jobs_per_second"  # finished (done or failed): the tier's throughput
# Derived evidence name.
DEPTH_PER_WORKER = "queue_depth_per_worker"


class WorkersTier(HorizontalTier):
    name = "workers"
    metrics: ClassVar[frozenset[str]] = frozenset({QUEUE_DEPTH, QUEUE_OLDEST_AGE, JOBS})
    status_field = "workers"
    spec_block = "workers"
    throughput_signal = JOBS_PER_SECOND
    optional = True
    max_field = "spec.workers.replicas.max"

    def enabled(self, spec: api.ScaledAppSpec) -> bool:
        return spec.workers.enabled

    def replica_range(self, spec: api.ScaledAppSpec) -> api.ReplicaRange:
        return spec.workers.replicas

    def workload(self, child: ChildNames) -> Workload:
        return Workload("apps/v1", "Deployment", child.workers)

    def queries(self, scope: Scope, window: str = RATE_WINDOW) -> dict[str, str]:
        instance = scope.selector()
        return {
            QUEUE_DEPTH_SIGNAL: f"max({QUEUE_DEPTH}{instance})",
            OLDEST_AGE_SECONDS: f"max({QUEUE_OLDEST_AGE}{instance})",
            JOBS_PER_SECOND: zero_if_reporting(sum_rate(JOBS, scope.selector("workers"), window), scope, "workers"),
        }

    def pressure(self, signals: Mapping[str, float | None], spec: api.ScaledAppSpec, sizes: Sizes) -> TierPressure:
        targets = spec.scaling.targets
        missing: list[str] = []
        depth, age = need(signals, [QUEUE_DEPTH_SIGNAL, OLDEST_AGE_SECONDS], missing)
        if missing:
            return TierPressure(self.name, missing=tuple(missing))
        # Zero workers drain nothing: count the whole queue against one worker's share.
        per_worker = depth / max(1, self.replicas(sizes))
        return TierPressure(
            self.name,
            components=(
                higher_is_worse(DEPTH_PER_WORKER, per_worker, targets.queue_depth_per_worker),
                higher_is_worse(OLDEST_AGE_SECONDS, age, targets.queue_oldest_age_seconds),
            ),
        )


TIER = WorkersTier()
