"""Pure parts of the scaler shell: reading sizes from workloads, status change detection."""

from __future__ import annotations

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
    from scaledapp.kube import WatchCache

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
    from scaledapp.kube import WatchCache

    cache = WatchCache()
    cache.remember({"kind": "Secret", "metadata": {"name": "s", "namespace": "n", "resourceVersion": "1"}})
    assert cache.get("Secret", "s", "n") is None  # never keep credentials in memory
    cache.remember({"kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n", "resourceVersion": "1",
                                                      "managedFields": [{"manager": "x"}]}})
    kept = cache.get("ConfigMap", "c", "n")
    assert kept is not None and "managedFields" not in kept["metadata"]
