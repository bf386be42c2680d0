"""Pure parts of the scaler shell: reading sizes from workloads, status change detection."""

from __future__ import annotations

import pytest

from scaledapp import api
from scaledapp.scaler import Workloads, changed, settling_tiers, sizes_of, tiers_status


def _deployment(replicas: int, ready: int) -> dict[str, object]:
    return {"spec": {"replicas": replicas}, "status": {"readyReplicas": ready}}


def test_sizes_come_from_the_scaler_owned_fields() -> None:
    spec = api.ScaledAppSpec()
    primary = {"spec": {"replicas": 1, "template": {"spec": {"containers": [
        {"name": "postgres", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}}}, "status": {}}
    workloads = Workloads({"app": _deployment(3, 3), "workers": _deployment(2, 1), "db-read": _deployment(1, 1),
                           "db-write": primary, "cache": {"data": {"maxmemory": str(128 * 2**20)}}})
    sizes = sizes_of(workloads, spec)
    assert (sizes["app"], sizes["workers"], sizes["db-read"]) == (3, 2, 1)
    assert sizes["cache"] == 128 * 2**20
    assert (sizes["db-write"].cpu_millicores, sizes["db-write"].memory_bytes) == (1000, 2**30)
    assert settling_tiers(tiers_status(workloads, sizes)) == {"workers", "db-write"}


def test_missing_fields_fall_back_to_the_spec_starting_points() -> None:
    spec = api.ScaledAppSpec()
    sizes = sizes_of(Workloads({}), spec)
    assert sizes["app"] == spec.app.replicas.min
    assert sizes["db-write"].cpu == "500m"


def test_changed_compares_nested_values() -> None:
    current = {"app": "2/2", "tiers": {"app": {"desired": 2, "ready": 2}}, "bottleneck": ""}
    assert not changed(current, {"app": "2/2", "tiers": {"app": {"desired": 2, "ready": 2}}})
    assert changed(current, {"tiers": {"app": {"desired": 3, "ready": 2}}})
    assert changed(current, {"bottleneck": "app"})
    assert changed({}, {"conditions": []})


def test_apply_bodies_carry_no_nulls() -> None:
    from scaledapp.kube import without_nulls

    body = {"a": None, "b": {"c": None, "d": 1}, "e": [{"f": None}], "g": {}, "h": {"i": None}}
    assert without_nulls(body) == {"b": {"d": 1}, "e": [{}]}


def test_watch_cache_keeps_the_newest_version_of_each_child() -> None:
    from scaledapp.kubestate import WatchCache

    def deploy(rv: str, uid: str = "u1") -> dict[str, object]:
        return {"kind": "Deployment", "metadata": {"name": "a", "namespace": "n", "uid": uid, "resourceVersion": rv}}

    def kept() -> tuple[object, object]:
        meta = (cache.get("Deployment", "a", "n") or {})["metadata"]
        return meta["uid"], meta["resourceVersion"]

    cache = WatchCache()
    cache.remember(deploy("7"))
    cache.remember(deploy("5"))  # an older watch event arriving after our apply's answer
    assert kept() == ("u1", "7")
    cache.remember(deploy("3", uid="u2"))  # deleted and recreated: a new object, whatever its version
    assert kept() == ("u2", "3")
    cache.forget(deploy("3", uid="u2"))
    assert cache.get("Deployment", "a", "n") is None


def test_watch_cache_holds_only_what_a_tick_reads() -> None:
    from scaledapp.kubestate import WatchCache

    cache = WatchCache()
    cache.remember({"kind": "Secret", "metadata": {"name": "s", "namespace": "n", "resourceVersion": "1"}})
    assert cache.get("Secret", "s", "n") is None  # never keep credentials in memory
    cache.remember({"kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n", "resourceVersion": "1",
                                                      "managedFields": [{"manager": "x"}]}})
    kept = cache.get("ConfigMap", "c", "n")
    assert kept is not None and kept["metadata"]["managedFields"] == [{"manager": "x"}]  # who, not which fields


def test_a_scaledapp_never_reconciled_ticks_without_api_reads() -> None:
    """Its workloads cannot be there yet: the tick reads the watch cache only (at 500 new ScaledApps a GET per
    tier per tick, while their reconciles queued, was most of the operator's API calls). Once reconciled, a
    workload the cache has not seen is read from the API server (after a restart the watches refill it)."""
    import asyncio
    import logging
    from typing import Any

    from scaledapp import scaler, tiers
    from scaledapp.kube import Kube

    class Recording(Kube):
        def __init__(self) -> None:
            super().__init__(client=object())  # type: ignore[arg-type]
            self.calls: list[tuple[str, str]] = []

        async def _call(self, method: str, path: str, **_: Any) -> Any:
            self.calls.append((method, path))
            return {}

    body: dict[str, Any] = {"apiVersion": api.API_VERSION, "kind": api.KIND,
                            "metadata": {"name": "shop", "namespace": "ns", "uid": "u1", "generation": 1},
                            "spec": {"scaling": {"prometheusUrl": "http://127.0.0.1:9"}}}
    new = Recording()
    asyncio.run(scaler.tick(new, body, logging.getLogger("test")))
    assert [m for m, _ in new.calls] == ["PATCH"]  # its status (Ready=False, waiting), nothing read
    reconciled = Recording()
    asyncio.run(scaler.tick(reconciled, {**body, "status": {"observedGeneration": 1}}, logging.getLogger("test")))
    assert len({path for method, path in reconciled.calls if method == "GET"}) == len(tiers.TIERS)


def test_status_writes_while_pods_arrive() -> None:
    """Our own write not yet back through the watch is not written again; while not Ready, ready counts alone
    are written at most every PROGRESS_SECONDS; Ready turning True is written at once."""
    from scaledapp.explain import progress_only

    def status(ready: str, app: str, message: str) -> dict[str, object]:
        return {"app": app, "tiers": {"app": {"ready": int(app[0])}}, "conditions": [
            {"type": "MetricsAvailable", "status": "False", "reason": "MetricsUnavailable", "message": "m"},
            {"type": "Ready", "status": ready, "reason": "TiersNotReady" if ready == "False" else "AllTiersReady",
             "message": message, "lastTransitionTime": "t0"}]}

    waiting = status("False", "0/2", "waiting: app 0/2 ready")
    assert progress_only(waiting, status("False", "1/2", "waiting: app 1/2 ready"))
    assert not progress_only(waiting, status("True", "2/2", "every tier has its desired replicas ready"))
    other = status("False", "1/2", "waiting: app 1/2 ready")
    other["conditions"][0]["reason"] = "PrometheusUrlNotAllowed"  # type: ignore[index]
    assert not progress_only(waiting, other)
    assert not progress_only(status("True", "2/2", "ok"), status("True", "2/2", "ok2"))


def test_a_status_not_yet_back_through_the_watch_is_not_written_again(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio
    import datetime as _dt
    import logging
    from typing import Any

    from scaledapp import observe, scaler
    from scaledapp.kube import Kube

    class Recording(Kube):
        def __init__(self) -> None:
            super().__init__(client=object())  # type: ignore[arg-type]
            self.calls: list[tuple[str, str]] = []

        async def _call(self, method: str, path: str, **_: Any) -> Any:
            self.calls.append((method, path))
            return {}

    body: dict[str, Any] = {"apiVersion": api.API_VERSION, "kind": api.KIND,
                            "metadata": {"name": "shop", "namespace": "ns", "uid": "u-echo", "generation": 1},
                            "spec": {"scaling": {"prometheusUrl": "http://127.0.0.1:9"}}}
    kube = Recording()
    asyncio.run(scaler.tick(kube, body, logging.getLogger("test")))
    later = _dt.datetime.now(_dt.UTC) + _dt.timedelta(seconds=30)  # a new transition time from the old body

    class Clock:
        UTC = _dt.UTC

        class datetime:  # noqa: N801 (stands in for the module's datetime class)
            @staticmethod
            def now(tz: _dt.tzinfo | None = None) -> _dt.datetime:
                return later

    monkeypatch.setattr(observe, "dt", Clock)
    asyncio.run(scaler.tick(kube, body, logging.getLogger("test")))  # the watch has not brought it back yet
    assert [m for m, _ in kube.calls] == ["PATCH"]
    scaler.forget("u-echo")
    asyncio.run(scaler.tick(kube, body, logging.getLogger("test")))  # a new process (or a new object) writes
    assert [m for m, _ in kube.calls] == ["PATCH", "PATCH"]


def test_a_starting_size_the_object_already_has_is_not_applied_again() -> None:
    """A workload created without replicas has the API's default of 1: a tier whose minimum is 1 starts there
    without a sizing apply (one call per such tier and new ScaledApp); anything else still gets its apply."""
    from scaledapp import api, tiers
    from scaledapp.act import has_sizes

    spec = api.parse_spec({})
    bodies = {(b["kind"], b["metadata"]["name"]): b for b in tiers.initial_scaler_bodies("shop", "ns", spec)}
    workers = bodies[("Deployment", "shop-workers")]
    app = bodies[("Deployment", "shop-app")]
    assert workers["spec"]["replicas"] == 1 and app["spec"]["replicas"] == 2
    defaulted = {"kind": "Deployment", "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "x"}]}}}}
    assert has_sizes(defaulted, workers)
    assert not has_sizes(defaulted, app)
    primary = next(b for (kind, _), b in bodies.items() if kind == "StatefulSet" and "resources" in str(b))
    held = {"kind": "StatefulSet", "spec": {"replicas": 0, "template": {"spec": {"containers": [
        {"name": c["name"]} for c in primary["spec"]["template"]["spec"]["containers"]]}}}}
    assert not has_sizes(held, primary)  # no resources yet: the scaler must give them
    cache = next(b for (kind, _), b in bodies.items() if kind == "ConfigMap")
    assert not has_sizes({"kind": "ConfigMap", "data": {}}, cache) and has_sizes(cache, cache)


def test_a_tick_without_a_decision_keeps_the_scalers_memory_in_status() -> None:
    """While no decision is due (a workload deleted and not back yet, the write role moving), the scaler's status
    apply must still carry its fields: a server-side apply without a field its manager owned removes it, and the
    cooldown, the windows and the history went with it."""
    import asyncio
    import json
    import logging
    from typing import Any

    from scaledapp import scaler
    from scaledapp.kube import Kube

    class Recording(Kube):
        def __init__(self) -> None:
            super().__init__(client=object())  # type: ignore[arg-type]
            self.statuses: list[dict[str, Any]] = []

        async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
            if path.endswith("/status"):
                self.statuses.append(kwargs["body"]["status"])
            return {}

    stepped = {"time": "2026-12-01T10:00:00Z", "tier": "app", "kind": "widen", "from": "2", "to": "3",
               "reason": "hot", "applied": True, "pressure": 1.4, "verdict": "effective"}
    memory = {"lastAction": stepped, "history": [stepped], "bottleneck": "app",
              "scaler": {"lastActionTime": "2026-12-01T10:00:00Z", "hotSince": {"db-read": "2026-12-01T10:01:00Z"}}}
    body: dict[str, Any] = {"apiVersion": api.API_VERSION, "kind": api.KIND,
                            "metadata": {"name": "shop", "namespace": "ns", "uid": "u-memory", "generation": 1},
                            "spec": {"scaling": {"prometheusUrl": "http://127.0.0.1:9"}},
                            "status": {"observedGeneration": 1, "database": {"phase": "SwitchingOver"}, **memory}}
    kube = Recording()  # while the write role moves, no decision is due
    scaler.forget("u-memory")
    asyncio.run(scaler.tick(kube, body, logging.getLogger("test")))
    assert kube.statuses, "the tick wrote its status"
    written = kube.statuses[-1]
    for key, value in memory.items():
        assert json.dumps(written.get(key), sort_keys=True) == json.dumps(value, sort_keys=True), key
