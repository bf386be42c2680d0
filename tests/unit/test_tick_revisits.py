"""Following one scaler tick from the handler reads like the loop: it returns to an operator module it has
already left at most MAX_REVISITS times (issue #15).

The measure, reproducible with `.venv/bin/python -m tests.unit.test_tick_revisits` (prints the walk): one
tick as the handler runs it (`metrics.tick_timer` around `scaler.tick`, as `handlers.configure` wires it)
that widens a tier, so observe, judge, decide, act and explain all run, against a stub Kubernetes and a
stub Prometheus. `sys.setprofile` sees every call of a `scaledapp.*` function (pydantic, the standard
library and the stubs are not followed). A reader follows the tick, its phases and what each phase calls
(two calls deep below the tick: the phases' own helpers are read with their phase), each function once,
in the order they first run; a package of one kind of thing (`tiers/`, `resources/`) is one place. The walk
is the modules read, consecutive functions of one module folded into one step; a revisit is a step into
a module that appears earlier in the walk (coming back from a call is not a step).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType
from typing import Any

import pytest

from scaledapp import api, metrics, prometheus, scaler
from scaledapp.resources.names import ChildNames

MAX_REVISITS = 8
DEPTH = 2  # the tick (0), its phases (1), what they call (2)
PACKAGES = ("scaledapp.tiers", "scaledapp.resources")  # each one place
NAMESPACE, NAME = "ns", "shop"

# Every tier calm except the app, hot on CPU (and hot for long enough): the tick widens the app.
SIGNALS: dict[str, dict[str, float]] = {
    "app": {"cpu_utilization": 1.4, "in_flight_per_pod": 4.0, "requests_per_second": 50.0,
            "request_seconds": 0.06, "dependency_seconds": 0.03},
    "cache": {"cpu_cores": 0.2, "memory_utilization": 0.5, "evictions_per_second": 0.0,
              "lookups_per_second": 100.0, "hit_ratio": 0.95},
    "db-read": {"reads_per_second": 40.0, "read_seconds": 0.01, "pool_wait_seconds": 0.001,
                "replica_saturation": 0.1, "lag_seconds": 0.2, "app_cpu_utilization": 0.3},
    "db-write": {"writes_per_second": 5.0, "write_seconds": 0.02, "lock_waits": 0.0,
                 "connection_utilization": 0.2, "app_cpu_utilization": 0.3},
    "workers": {"queue_depth": 1.0, "oldest_age_seconds": 1.0, "jobs_per_second": 1.0},
}  # fmt: skip


class _Kube:
    """The calls the scaler makes, answered from memory."""

    def __init__(self) -> None:
        child = ChildNames(NAME)
        ready = {"spec": {"replicas": 2}, "status": {"readyReplicas": 2}}
        self.live: dict[str, Any] = {child.app: ready, child.workers: ready, child.db_replicas: ready,
                                     child.db_primary: {"spec": {"replicas": 1}, "status": {"readyReplicas": 1}},
                                     child.cache_config: {"data": {}}}
        self.applied: list[dict[str, Any]] = []
        self.events: list[str] = []
        self.order: list[str] = []  # "status" and the kinds applied, in the order they were written
        self.statuses: list[dict[str, Any]] = []

    async def get_cached(self, api_version: str, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        return self.live.get(name)

    async def apply(self, body: dict[str, Any], manager: str) -> dict[str, Any]:
        self.order.append(body["kind"])
        self.applied.append(body)
        return body

    async def resize_pod(self, name: str, namespace: str, patch: dict[str, Any]) -> bool:
        return True

    async def post_event(self, body: Any, type_: str, reason: str, message: str) -> None:
        self.events.append(reason)

    async def apply_status(self, name: str, namespace: str, patch: dict[str, Any], manager: str) -> None:
        self.order.append("status")
        self.statuses.append(patch)


class _Prometheus:
    def down(self) -> str | None:
        return None

    async def snapshot(self, queries: dict[str, str]) -> prometheus.Answers:
        values: dict[str, float | None] = {}
        for key in queries:
            tier, signal, _ = key.split("|", 2)
            values[key] = SIGNALS.get(tier, {}).get(signal)
        return prometheus.Answers(values)


def _body() -> dict[str, Any]:
    status = api.ScaledAppStatus(observed_generation=1,
                                 scaler=api.ScalerState(hot_since={"app": "2026-01-01T00:00:00Z"}))
    return {"apiVersion": api.API_VERSION, "kind": api.KIND,
            "metadata": {"name": NAME, "namespace": NAMESPACE, "uid": "u1", "generation": 1},
            "spec": {}, "status": status.model_dump(by_alias=True, mode="json", exclude_none=True)}


@dataclass(frozen=True)
class Walk:
    modules: list[str]  # the walk: one entry per run of functions in one module, in reading order

    @property
    def revisits(self) -> list[tuple[int, str]]:
        seen: set[str] = set()
        out = []
        for i, module in enumerate(self.modules):
            if module in seen:
                out.append((i, module))
            seen.add(module)
        return out


def walk_one_tick(monkeypatch: pytest.MonkeyPatch) -> tuple[Walk, _Kube]:
    """One tick as the handler runs it, with the modules it reads (see the module doc)."""
    kube = _Kube()
    scaler.forget("u1")  # what an earlier tick of this process wrote
    monkeypatch.setattr(prometheus, "client_for", lambda url, timeout: _Prometheus())
    body, logger = _body(), logging.getLogger("revisits")
    read: set[Any] = set()
    stack: list[FrameType] = []
    walk: list[str] = []

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        module = str(frame.f_globals.get("__name__", ""))
        if not module.startswith("scaledapp."):
            return
        if event == "return" and stack and stack[-1] is frame:
            stack.pop()
        if event != "call":
            return
        stack.append(frame)
        if len(stack) > DEPTH + 1 or frame.f_code in read:
            return
        read.add(frame.f_code)
        place = next((package for package in PACKAGES if module.startswith(package + ".")), module)
        if "-v" in sys.argv:
            print(len(stack) - 1, place, frame.f_code.co_name)
        if not walk or walk[-1] != place:
            walk.append(place)

    async def handler_tick() -> float:  # handlers.configure's tick, as it runs it
        with metrics.tick_timer(body):
            return await scaler.tick(kube, body, logger)  # type: ignore[arg-type]

    sys.setprofile(profile)
    try:
        asyncio.run(handler_tick())
    finally:
        sys.setprofile(None)
    return Walk(walk), kube


@pytest.fixture
def walked(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Walk, _Kube]]:
    yield walk_one_tick(monkeypatch)


def test_the_measured_tick_acts_and_explains(walked: tuple[Walk, _Kube]) -> None:
    _, kube = walked
    assert [b["kind"] for b in kube.applied] == ["Deployment"]  # act: the app widened
    assert kube.events == ["Widened"]  # explain


def test_a_step_is_on_record_in_status_before_it_is_applied(walked: tuple[Walk, _Kube]) -> None:
    """A leader killed between the two leaves its successor the step's cooldown (one status write in all)."""
    _, kube = walked
    assert kube.order == ["status", "Deployment"]
    recorded = kube.statuses[0]["lastAction"]
    assert recorded["tier"] == "app" and recorded["kind"] == "widen"


def test_a_tick_returns_to_a_module_it_left_at_most_max_revisits_times(walked: tuple[Walk, _Kube]) -> None:
    walk, _ = walked
    assert len(walk.revisits) <= MAX_REVISITS, " -> ".join(walk.modules)


if __name__ == "__main__":
    with pytest.MonkeyPatch.context() as patch:
        measured, _ = walk_one_tick(patch)
    for step, name in enumerate(measured.modules):
        print(f"{step:3} {'revisit ' if (step, name) in measured.revisits else '        '}{name}")
    print(f"revisits: {len(measured.revisits)} (at most {MAX_REVISITS})")
