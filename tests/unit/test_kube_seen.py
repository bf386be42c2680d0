"""Seen: the operator's own writes, echoed by the watch, are not drift; other edits and deletions are."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from scaledapp.kubestate import Seen


def deployment(generation: int, resource_version: str = "1") -> dict[str, Any]:
    return {"kind": "Deployment", "metadata": {"name": "demo-app", "namespace": "ns", "uid": "u1",
                                               "generation": generation, "resourceVersion": resource_version}}


def test_a_generation_past_what_we_wrote_is_drift() -> None:
    seen = Seen()
    seen.record(deployment(2))
    assert not seen.drifted("MODIFIED", deployment(2, "7"))  # a status update: same generation
    assert seen.drifted("MODIFIED", deployment(3))  # someone changed the spec


def test_the_echo_of_a_write_in_flight_is_not_drift() -> None:
    # Our apply bumps the generation; the watch may deliver that before the apply's answer is recorded.
    seen = Seen()
    seen.record(deployment(2))
    with seen.writing(deployment(2)):
        assert not seen.drifted("MODIFIED", deployment(3))
    assert seen.drifted("MODIFIED", deployment(3))  # once answered, a newer generation is someone else's


def test_an_edit_that_lands_during_our_write_is_judged_once_the_write_answers() -> None:
    """The flake this fixes: someone's edit (generation 3) arrives while our apply (answered with generation 2)
    is in flight. The drift handler waits for the write to settle and judges the event against its answer."""
    seen = Seen()
    edit = deployment(3)

    async def scenario() -> bool:
        async def our_write() -> None:
            with seen.writing(deployment(1)):
                await asyncio.sleep(0.2)
                seen.record(deployment(2))  # what the API server answered our apply with

        write = asyncio.create_task(our_write())
        await asyncio.sleep(0.05)  # the edit's event arrives while the write is in flight
        await seen.settled(edit)
        assert write.done()
        return seen.drifted("MODIFIED", edit)

    assert asyncio.run(scenario())
    assert not seen.drifted("MODIFIED", deployment(2))  # and our own write's echo is still not drift


def test_deletions_are_always_drift_even_during_a_write() -> None:
    seen = Seen()
    with seen.writing(deployment(1)):
        assert seen.drifted("DELETED", deployment(1))


def test_nested_writes_of_one_object_are_counted() -> None:
    seen = Seen()
    seen.record(deployment(1))
    with seen.writing(deployment(1)), seen.writing(deployment(1)):
        pass
    with seen.writing(deployment(1)):
        with seen.writing(deployment(1)):
            pass
        assert not seen.drifted("MODIFIED", deployment(5))
    assert seen.drifted("MODIFIED", deployment(5))


def test_the_watch_cache_keeps_only_what_a_tick_reads_and_reads_the_same() -> None:
    import json

    from scaledapp import api, resources
    from scaledapp.kubestate import WatchCache
    from scaledapp.resources import names
    from scaledapp.scaler import Workloads, sizes_of, tiers_status

    spec = api.parse_spec({"database": {"resources": {"initial": {"cpu": "750m", "memory": "768Mi"}}}})
    child = names.ChildNames("demo")
    built = {(m["kind"], m["metadata"]["name"]): m for m in resources.build_children("demo", "ns", spec)}
    live = {}
    for key in (("Deployment", child.app), ("Deployment", child.workers), ("StatefulSet", child.db_replicas),
                ("StatefulSet", child.db_primary), ("ConfigMap", child.cache_config)):
        body = json.loads(json.dumps(built[key]))
        body["metadata"].update(uid=f"uid-{key[1]}", resourceVersion="5", generation=2,
                                managedFields=[{"manager": "scaledapp-scaler", "fieldsV1": {"f:spec": {}}}])
        if key[0] != "ConfigMap":
            body["spec"]["replicas"] = 3
            body["status"] = {"replicas": 3, "readyReplicas": 2, "conditions": [{"type": "Available"}]}
        live[key] = body
    cache = WatchCache()
    for body in live.values():
        cache.remember(body)

    def workloads(get: Callable[[str, str], dict[str, Any] | None]) -> Workloads:
        return Workloads({"app": get("Deployment", child.app), "workers": get("Deployment", child.workers),
                          "db-read": get("StatefulSet", child.db_replicas),
                          "db-write": get("StatefulSet", child.db_primary),
                          "cache": get("ConfigMap", child.cache_config)})

    full = workloads(lambda kind, name: live[(kind, name)])
    cached = workloads(lambda kind, name: cache.get(kind, name, "ns"))
    assert sizes_of(cached, spec) == sizes_of(full, spec)
    assert sizes_of(cached, spec)["db-write"].cpu == "750m"
    assert tiers_status(cached, sizes_of(cached, spec)) == tiers_status(full, sizes_of(full, spec))
    primary = cache.get("StatefulSet", child.db_primary, "ns")
    # Of managedFields only who manages (has the scaler sized it?), never the fields themselves.
    assert primary is not None and primary["metadata"]["managedFields"] == [{"manager": "scaledapp-scaler"}]
    assert "volumeClaimTemplates" not in primary["spec"] and "conditions" not in primary["status"]
    assert len(json.dumps(primary)) < len(json.dumps(live[("StatefulSet", child.db_primary)])) / 4


def test_the_watch_cache_keeps_small_configmaps_and_not_the_postgres_scripts() -> None:
    from scaledapp import api, resources
    from scaledapp.kubestate import WatchCache
    from scaledapp.resources import names

    child = names.ChildNames("demo")
    built = {m["metadata"]["name"]: m for m in resources.build_children("demo", "ns", api.parse_spec({}))
             if m["kind"] == "ConfigMap"}
    cache = WatchCache()
    for n, body in built.items():
        cache.remember({**body, "metadata": {**body["metadata"], "uid": f"uid-{n}", "resourceVersion": "3"}})
    # What ticks and the failover guard read: the cache's size and the write role.
    for kept in (child.cache_config, child.db_topology):
        cached = cache.get("ConfigMap", kept, "ns")
        assert cached is not None and cached["data"] == (built[kept].get("data") or {})
    assert cache.get("ConfigMap", child.db_scripts, "ns") is None  # tens of KB of scripts: read from the API
    # A ConfigMap that grows past the limit is dropped, not kept stale.
    small = {**built[child.cache_config], "metadata": {"name": child.cache_config, "namespace": "ns",
                                                         "uid": "u", "resourceVersion": "9"}}
    cache.remember({**small, "data": {"maxmemory": "x" * 10_000}})
    assert cache.get("ConfigMap", child.cache_config, "ns") is None


def test_events_are_rate_limited_per_object_and_reason() -> None:
    from scaledapp.kubestate import EventLimiter

    now = [0.0]
    limiter = EventLimiter(burst=3, refill_seconds=30.0, clock=lambda: now[0])
    assert [limiter.allow("u1", "Widened") for _ in range(5)] == [True, True, True, False, False]
    assert limiter.allow("u1", "Narrowed") and limiter.allow("u2", "Widened")  # other reasons, other objects
    now[0] = 29.0
    assert not limiter.allow("u1", "Widened")  # not a whole token back yet
    now[0] = 61.0  # two tokens back over 61 s: one per 30 s
    assert [limiter.allow("u1", "Widened") for _ in range(3)] == [True, True, False]
    assert limiter.suppressed == 4


def test_a_late_event_of_an_older_version_does_not_replace_our_newer_write() -> None:
    """Under load the watch lags: the ADDED event (generation 1) of a Deployment arrives after the answer to the
    scaler's sizing apply (generation 2). Recorded over it, the echo of that apply looked like someone's edit."""
    seen = Seen()
    seen.record(deployment(2, "20"))  # the answer to our second write
    assert not seen.drifted("ADDED", deployment(1, "10"))
    seen.record(deployment(1, "10"))  # the late ADDED event, recorded by the drift handler
    assert not seen.drifted("MODIFIED", deployment(2, "20"))  # the echo of our write
    assert seen.drifted("MODIFIED", deployment(3, "30"))  # someone's edit still is drift
