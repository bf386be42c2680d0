"""A throwaway tier, written here and registered for one test, runs through the whole loop unchanged.

It is a new tier, `batch` (batch runners in a StatefulSet), beside the five: its own name and ladder rung,
its own spec block (`spec.batch`) and status entry (`status.tiers.batch`), its own workload, signal,
throughput and pressure, and its size in `Sizes` under its name. What adding it took is what
docs/architecture.md says adding a tier takes: the tier module, the builder module, and a line in each
registry (the fixture: `tiers.TIERS` and `resources.BUILDERS`), all written in this file. The API models,
the CRD, the reconciler's children and its pruning, the starting sizes, the shell's reading of sizes and
readiness, the decision, verify-after-act's throughput and the bodies the scaler applies all follow it,
with no change to api.py, sizes.py, reconciler.py, scaler.py, observe.py, act.py, explain.py, decide.py,
conditions.py or any other builder.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest
from kubernetes.client import ApiException
from pydantic import Field

from scaledapp import api, conditions, crdgen, reconciler, resources, scaler, tiers
from scaledapp.apibase import Model
from scaledapp.decide import Tick, decide
from scaledapp.kube import Kube
from scaledapp.observation import Snapshot
from scaledapp.resources import network
from scaledapp.resources.base import Build, Builder, ChildKind, Children
from scaledapp.resources.common import Manifest, disruption_budget, object_meta, pod_template, selector
from scaledapp.resources.names import ChildNames
from scaledapp.sizes import Sizes, TierName
from scaledapp.tiers.base import HorizontalTier, Scope, TierPressure, Workload, higher_is_worse, need

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
BACKLOG, DONE = "backlog", "done_per_second"

# ---------------------------------------------------------------------------------------------- the tier module


class BatchSpec(Model):
    """Batch runners draining a backlog; widened horizontally."""

    enabled: bool = Field(True, description="Run the batch tier.")
    replicas: api.ReplicaRange = Field(default_factory=lambda: api.ReplicaRange(min=1, max=8),
                                       description="Batch runner replica bounds.")
    backlog_per_runner: float = Field(10, gt=0, description="Queued batches per runner at target.")


class BatchTier(HorizontalTier):
    """Batch runners in a StatefulSet, hot when their backlog per runner passes its target."""

    name = "batch"
    status_field = "batch"
    status_description = "Batch runners."
    spec_block = "batch"
    spec_model = BatchSpec
    spec_description = "The batch-runner tier."
    metrics: ClassVar[frozenset[str]] = frozenset({"throwaway_backlog", "throwaway_done_total"})
    throughput_signal = DONE
    optional = True
    max_field = "spec.batch.replicas.max"

    @staticmethod
    def settings(spec: api.ScaledAppSpec) -> BatchSpec:
        block = getattr(spec, "batch")  # noqa: B009 - the block the registry added to the spec
        assert isinstance(block, BatchSpec)
        return block

    def enabled(self, spec: api.ScaledAppSpec) -> bool:
        return self.settings(spec).enabled

    def replica_range(self, spec: api.ScaledAppSpec) -> api.ReplicaRange:
        return self.settings(spec).replicas

    def workload(self, child: ChildNames) -> Workload:
        return Workload("apps/v1", "StatefulSet", f"{child.owner}-batch")

    def queries(self, scope: Scope, window: str = "1m") -> dict[str, str]:
        selector = scope.selector("batch")
        return {BACKLOG: f"sum(throwaway_backlog{selector})",
                DONE: f"sum(rate(throwaway_done_total{selector}[{window}]))"}

    def pressure(self, signals: Mapping[str, float | None], spec: api.ScaledAppSpec, sizes: Sizes) -> TierPressure:
        missing: list[str] = []
        (backlog,) = need(signals, [BACKLOG], missing)
        if missing:
            return TierPressure(self.name, missing=tuple(missing))
        per_runner = backlog / max(1, self.replicas(sizes))
        target = self.settings(spec).backlog_per_runner
        return TierPressure(self.name, components=(higher_is_worse("backlog_per_runner", per_runner, target),))


# ---------------------------------------------------------------------------------------------- the builder module


def batch_statefulset(child: ChildNames, namespace: str) -> Manifest:
    """The runners (no `replicas`: the scaler owns that field)."""
    pod = pod_template(child.owner, "batch", {"containers": [{"name": "runner", "image": "example/batch:1"}]})
    return {"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": object_meta(child.owner, namespace, f"{child.owner}-batch", "batch"),
            "spec": {"serviceName": f"{child.owner}-batch", "selector": selector(child.owner, "batch"),
                     "template": pod}}


def _batch_children(build: Build) -> Children:
    if not BatchTier.settings(build.spec).enabled:
        return Children()
    child, namespace = build.child, build.namespace
    return Children(policies=network.policies(child, namespace, "batch", ingress=[], egress=[]),
                    workloads=[batch_statefulset(child, namespace),
                               disruption_budget(child.owner, namespace, f"{child.owner}-batch", "batch")])


def _batch_kinds(child: ChildNames) -> list[ChildKind]:
    return [*network.policy_kinds(child, "batch"), ("apps/v1", "StatefulSet", f"{child.owner}-batch"),
            ("policy/v1", "PodDisruptionBudget", f"{child.owner}-batch")]


BATCH_BUILDER = Builder("batch", _batch_children, _batch_kinds)


# ---------------------------------------------------------------------------------------------- the registry lines


@pytest.fixture
def batch(monkeypatch: pytest.MonkeyPatch) -> Iterator[BatchTier]:
    """`TIERS = (cache.TIER, app.TIER, db_read.TIER, workers.TIER, batch.TIER, db_write.TIER)` and
    `BUILDERS = (..., batch.BUILDER)`, for this test only (and the tier's declaration in the API models, which
    importing the registry does, taken back after)."""
    tier = BatchTier()
    monkeypatch.setattr(tiers, "TIERS", (*tiers.TIERS[:-1], tier, tiers.TIERS[-1]))
    monkeypatch.setattr(resources, "BUILDERS", (*resources.BUILDERS, BATCH_BUILDER))
    undo = tiers.declare_api(tier)
    yield tier
    undo()


# ---------------------------------------------------------------------------------------------- the test


CALM: dict[TierName, dict[str, float | None]] = {
    "app": {"cpu_utilization": 0.35, "in_flight_per_pod": 4.0, "requests_per_second": 50.0,
            "request_seconds": 0.06, "dependency_seconds": 0.03},
    "cache": {"cpu_cores": 0.2, "memory_utilization": 0.5, "evictions_per_second": 0.0,
              "lookups_per_second": 100.0, "hit_ratio": 0.95},
    "db-read": {"reads_per_second": 40.0, "read_seconds": 0.01, "pool_wait_seconds": 0.001,
                "replica_saturation": 0.1, "lag_seconds": 0.2},
    "db-write": {"writes_per_second": 5.0, "write_seconds": 0.02, "lock_waits": 0.0,
                 "connection_utilization": 0.2},
    "workers": {"queue_depth": 1.0, "oldest_age_seconds": 1.0, "jobs_per_second": 1.0},
}  # fmt: skip


def _snapshot(backlog: float, done: float) -> Snapshot:
    return Snapshot(time=NOW, signals={**CALM, "batch": {BACKLOG: backlog, DONE: done}})


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


def test_the_api_and_the_crd_declare_the_tiers_block_and_status_entry(batch: BatchTier) -> None:
    spec = api.parse_spec({"batch": {"replicas": {"min": 2, "max": 6}}})
    assert batch.replica_range(spec) == api.ReplicaRange(min=2, max=6)
    with pytest.raises(ValueError, match="min must be less than or equal to max"):
        api.parse_spec({"batch": {"replicas": {"min": 7, "max": 6}}})  # its block's rules hold
    schema = crdgen.build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    assert schema["spec"]["properties"]["batch"]["description"] == "The batch-runner tier."
    assert "batch" in schema["status"]["properties"]["tiers"]["properties"]


def test_a_throwaway_tier_runs_through_the_loop(batch: BatchTier) -> None:
    spec = api.ScaledAppSpec()
    assert tiers.ladder() == ("cache", "app", "db-read", "workers", "batch", "db-write")
    assert tiers.queries(spec, Scope("ns", "shop"))["batch"][BACKLOG].startswith("sum(throwaway_backlog{")
    # Observe: the shell reads the tier's size and readiness from the tier's own workload.
    runners = {"spec": {"replicas": 2}, "status": {"readyReplicas": 1}}
    kube = _Kube({("StatefulSet", "shop-batch"): runners})
    workloads = asyncio.run(scaler.read_workloads(kube, "shop", "ns"))  # type: ignore[arg-type]
    sizes = scaler.sizes_of(workloads, spec)
    assert sizes["batch"] == batch.size(sizes) == 2
    status = scaler.tiers_status(workloads, sizes)
    assert (status.batch.desired, status.batch.ready) == (2, 1)  # type: ignore[attr-defined]
    assert status.model_dump(by_alias=True)["batch"] == {"desired": 2, "ready": 1, "size": None}
    assert scaler.settling_tiers(status) >= {"batch"}
    assert "batch 1/2 ready" in conditions.readiness(status, spec)[1]
    # Judge and plan: its pressure makes it the bottleneck; it is widened by its own step.
    state = api.ScalerState(hot_since={"batch": "2026-11-28T11:00:00Z"})
    decision = decide(Tick(spec, _snapshot(backlog=60.0, done=4.0), sizes, state, None, NOW))
    assert decision.bottleneck == "batch" and decision.reason == "Widened"
    assert decision.step is not None and batch.size(decision.step.after) == 4  # pressure 3: doubled
    assert decision.action is not None and decision.action.throughput == 4.0  # its throughput signal
    # Act: the scaler applies the tier's own body to the tier's own workload, and nothing else.
    asyncio.run(scaler.apply_sizes(kube, "shop", "ns", sizes, decision.desired))  # type: ignore[arg-type]
    assert kube.applied == [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                             "metadata": {"name": "shop-batch", "namespace": "ns"}, "spec": {"replicas": 4}}]


class _Recording(Kube):
    """A Kubernetes API with nothing in it that records every call (an apply answers its body)."""

    def __init__(self) -> None:
        super().__init__(client=object())  # type: ignore[arg-type]
        self.calls: list[tuple[str, str, list[tuple[str, str]], Any]] = []

    async def _call(self, method: str, path: str, *, query: list[tuple[str, str]] | None = None,
                    body: Any = None, **_: Any) -> Any:
        self.calls.append((method, path, query or [], body))
        if method == "GET":
            raise ApiException(status=404)
        return body if isinstance(body, dict) and "metadata" in body else {}

    def applied(self, resource: str, name: str) -> list[tuple[str, Any]]:
        """(field manager, body) of every apply of `name`, a `resource` ("statefulsets")."""
        return [(dict(query)["fieldManager"], body) for method, path, query, body in self.calls
                if method == "PATCH" and path.endswith(f"/{resource}/{name}")]


def test_the_reconciler_builds_sizes_and_prunes_the_tier(batch: BatchTier) -> None:
    """Built by the reconciler from its builder, given its starting size by the scaler, pruned when off."""
    built = {(m["kind"], m["metadata"]["name"]) for m in resources.build_children("shop", "ns", api.ScaledAppSpec())}
    assert {("StatefulSet", "shop-batch"), ("PodDisruptionBudget", "shop-batch"),
            ("NetworkPolicy", "shop-batch-ingress"), ("NetworkPolicy", "shop-batch-egress")} <= built
    off = api.parse_spec({"batch": {"enabled": False}})
    assert not any("batch" in name for _kind, name in
                   {(m["kind"], m["metadata"]["name"]) for m in resources.build_children("shop", "ns", off)})
    assert ("apps/v1", "StatefulSet", "shop-batch") in resources.all_child_kinds("shop")  # so it is pruned
    # A whole first reconcile: the reconciler applies the runners without a size, the scaler their starting one.
    kube = _Recording()
    owner = {"apiVersion": api.API_VERSION, "kind": api.KIND, "spec": {"batch": {"replicas": {"min": 3, "max": 6}}},
             "metadata": {"name": "shop", "namespace": "ns", "uid": "u-shop", "generation": 1}}
    asyncio.run(reconciler.reconcile(kube, owner, logging.getLogger("test")))
    (by_reconciler, runners), (by_scaler, size) = kube.applied("statefulsets", "shop-batch")
    assert (by_reconciler, by_scaler) == ("scaledapp-reconciler", "scaledapp-scaler")
    assert "replicas" not in runners["spec"] and size["spec"] == {"replicas": 3}


def test_taking_the_tier_back_leaves_the_api_as_it_was() -> None:
    assert "batch" not in api.ScaledAppSpec.model_fields
    assert "batch" not in api.TiersStatus.model_fields
    assert crdgen.render() == crdgen.COMMITTED_COPIES[0].read_text()
    assert not any("batch" in name for _version, _kind, name in resources.all_child_kinds("shop"))
