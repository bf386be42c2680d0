"""A throwaway tier, written here and registered for one test, runs through the whole loop unchanged.

It stands in for the workers (a name must be an api.Tier; docs/architecture.md walks through adding a
new one): its own workload (a StatefulSet, not the workers' Deployment), its own signal and throughput,
its own pressure. The shell's reading of sizes and readiness, the decision, verify-after-act's throughput
and the bodies the scaler applies all follow it, with no change to scaler.py, decide.py or conditions.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest

from scaledapp import api, conditions, scaler, tiers
from scaledapp.decide import Tick, decide
from scaledapp.observation import Snapshot
from scaledapp.resources.names import ChildNames
from scaledapp.sizes import Sizes
from scaledapp.tiers.base import HorizontalTier, Scope, TierPressure, Workload, higher_is_worse, need

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
BACKLOG, DONE = "backlog", "done_per_second"


class ThrowawayTier(HorizontalTier):
    """Batch runners in a StatefulSet, hot when their backlog per runner passes 10."""

    name = "workers"
    status_field = "workers"
    metrics: ClassVar[frozenset[str]] = frozenset({"throwaway_backlog", "throwaway_done_total"})
    throughput_signal = DONE
    optional = True
    replicas_field = "workers_replicas"
    max_field = "spec.workers.replicas.max"

    def enabled(self, spec: api.ScaledAppSpec) -> bool:
        return spec.workers.enabled

    def replica_range(self, spec: api.ScaledAppSpec) -> api.ReplicaRange:
        return spec.workers.replicas

    def workload(self, child: ChildNames) -> Workload:
        return Workload("apps/v1", "StatefulSet", f"{child.owner}-batch")

    def queries(self, scope: Scope, window: str = "1m") -> dict[str, str]:
        selector = scope.selector("workers")
        return {BACKLOG: f"sum(throwaway_backlog{selector})",
                DONE: f"sum(rate(throwaway_done_total{selector}[{window}]))"}

    def pressure(self, signals: Mapping[str, float | None], spec: api.ScaledAppSpec, sizes: Sizes) -> TierPressure:
        missing: list[str] = []
        (backlog,) = need(signals, [BACKLOG], missing)
        if missing:
            return TierPressure(self.name, missing=tuple(missing))
        per_runner = backlog / max(1, self.replicas(sizes))
        return TierPressure(self.name, components=(higher_is_worse("backlog_per_runner", per_runner, 10.0),))


@pytest.fixture
def throwaway(monkeypatch: pytest.MonkeyPatch) -> Iterator[ThrowawayTier]:
    """The registry line, for this test only."""
    tier = ThrowawayTier()
    by_name = {**tiers._BY_NAME, "workers": tier}
    monkeypatch.setattr(tiers, "_BY_NAME", by_name)
    monkeypatch.setattr(tiers, "TIERS", tuple(by_name[name] for name in api.LADDER))
    yield tier


CALM: dict[api.Tier, dict[str, float | None]] = {
    "app": {"cpu_utilization": 0.35, "in_flight_per_pod": 4.0, "requests_per_second": 50.0,
            "request_seconds": 0.06, "dependency_seconds": 0.03},
    "cache": {"cpu_cores": 0.2, "memory_utilization": 0.5, "evictions_per_second": 0.0,
              "lookups_per_second": 100.0, "hit_ratio": 0.95},
    "db-read": {"reads_per_second": 40.0, "read_seconds": 0.01, "pool_wait_seconds": 0.001,
                "replica_saturation": 0.1, "lag_seconds": 0.2},
    "db-write": {"writes_per_second": 5.0, "write_seconds": 0.02, "lock_waits": 0.0,
                 "connection_utilization": 0.2},
}  # fmt: skip


def _snapshot(backlog: float, done: float) -> Snapshot:
    return Snapshot(time=NOW, signals={**CALM, "workers": {BACKLOG: backlog, DONE: done}})


class _Kube:
    def __init__(self, live: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.live = live
        self.applied: list[dict[str, Any]] = []

    async def get_cached(self, api_version: str, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        return self.live.get((kind, name))

    async def apply(self, body: dict[str, Any], manager: str) -> dict[str, Any]:
        self.applied.append(body)
        return body

    async def resize_pod(self, name: str, namespace: str, patch: dict[str, Any]) -> bool:
        return True


def test_a_throwaway_tier_runs_through_the_loop(throwaway: ThrowawayTier) -> None:
    spec = api.ScaledAppSpec()
    child = ChildNames("shop")
    assert tiers.queries(spec, Scope("ns", "shop"))["workers"][BACKLOG].startswith("sum(throwaway_backlog{")
    # Observe: the shell reads the tier's size and readiness from the tier's own workload.
    batch = {"spec": {"replicas": 2}, "status": {"readyReplicas": 1}}
    kube = _Kube({("StatefulSet", "shop-batch"): batch, ("Deployment", child.workers): {"spec": {"replicas": 9}}})
    workloads = asyncio.run(scaler.read_workloads(kube, "shop", "ns"))  # type: ignore[arg-type]
    sizes = scaler.sizes_of(workloads, spec)
    assert sizes.workers_replicas == 2
    status = scaler.tiers_status(workloads, sizes)
    assert (status.workers.desired, status.workers.ready) == (2, 1)
    assert scaler.settling_tiers(status) >= {"workers"}
    assert "workers 1/2 ready" in conditions.readiness(status, spec)[1]
    # Judge and plan: its pressure makes it the bottleneck; it is widened by its own step.
    state = api.ScalerState(hot_since={"workers": "2026-11-28T11:00:00Z"})
    decision = decide(Tick(spec, _snapshot(backlog=60.0, done=4.0), sizes, state, None, NOW))
    assert decision.bottleneck == "workers" and decision.reason == "Widened"
    assert decision.step is not None and decision.step.after.workers_replicas == 4  # pressure 3: doubled
    assert decision.action is not None and decision.action.throughput == 4.0  # its throughput signal
    # Act: the scaler applies the tier's own body to the tier's own workload.
    asyncio.run(scaler.apply_sizes(kube, "shop", "ns", sizes, decision.desired))  # type: ignore[arg-type]
    assert kube.applied == [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                             "metadata": {"name": "shop-batch", "namespace": "ns"}, "spec": {"replicas": 4}}]
