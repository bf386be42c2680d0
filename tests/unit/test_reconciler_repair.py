"""The "Repaired" Event claims a change was put back: only when the repair apply really changed the child.

Found end to end (make demo): every scaler step was followed by "Repaired: reverted a change to
Deployment demo-app", because the Deployment controller's status updates moved resourceVersion
between the repair's read and its (no-op) apply.
"""

from __future__ import annotations

from typing import Any

from kubernetes.client import ApiException

from scaledapp.reconciler import put_back


def obj(resource_version: str, generation: int | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceVersion": resource_version}
    if generation is not None:
        meta["generation"] = generation
    return {"metadata": meta}


def test_a_status_update_during_a_no_op_repair_is_not_a_repair() -> None:
    assert not put_back(obj("100", generation=4), obj("103", generation=4))


def test_a_reverted_spec_edit_is_a_repair() -> None:
    assert put_back(obj("100", generation=4), obj("101", generation=5))


def test_objects_without_a_generation_compare_resource_versions() -> None:
    assert not put_back(obj("7"), obj("7"))
    assert put_back(obj("7"), obj("8"))


def test_a_child_that_was_gone_is_put_back() -> None:
    assert put_back(None, obj("1", generation=1))


def test_a_reconcile_keeps_only_what_it_reads_of_an_apply_answer() -> None:
    from scaledapp import scaler
    from scaledapp.reconciler import brief

    answer = {"apiVersion": "apps/v1", "kind": "StatefulSet",
              "metadata": {"name": "shop-db", "namespace": "ns", "uid": "u", "generation": 2, "resourceVersion": "9",
                           "labels": {"a": "b"}, "managedFields": [
                               {"manager": "scaledapp-scaler", "operation": "Apply", "fieldsV1": {"f:spec": {}}}]},
              "spec": {"replicas": 1, "template": {}}, "status": {"replicas": 1}}
    kept = brief(answer)
    assert kept == {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {
        "name": "shop-db", "namespace": "ns", "uid": "u", "generation": 2, "resourceVersion": "9",
        "managedFields": [{"manager": "scaledapp-scaler"}]}}
    assert scaler.owned_by_scaler(kept) and put_back(obj("8", generation=1), kept)


def test_a_new_scaledapps_first_reconcile_reads_nothing_back() -> None:
    """Its children cannot be there yet: no GET of the primary, of the Secrets, or of what the prune looks for
    (at 500 new ScaledApps, calls that could only find nothing). A reconciled one reads and prunes."""
    import asyncio
    import logging

    from scaledapp import api, reconciler
    from scaledapp.kube import Kube
    from scaledapp.resources import names

    class Recording(Kube):
        def __init__(self) -> None:
            super().__init__(client=object())  # type: ignore[arg-type]
            self.calls: list[tuple[str, str]] = []

        async def _call(self, method: str, path: str, *, body: Any = None, **_: Any) -> Any:
            self.calls.append((method, path))
            if method == "GET":
                raise ApiException(status=404)
            return body if isinstance(body, dict) and "metadata" in body else {}  # an apply answers its body

    def gets(owner: dict[str, Any]) -> list[str]:
        kube = Recording()
        asyncio.run(reconciler.reconcile(kube, owner, logging.getLogger("test")))
        assert any(m == "PATCH" and "/statefulsets/" in p for m, p in kube.calls)  # it did apply the workloads
        return [p for m, p in kube.calls if m == "GET"]

    meta = {"name": "fresh", "namespace": "ns", "uid": "u-fresh", "generation": 1}
    owner: dict[str, Any] = {"apiVersion": api.API_VERSION, "kind": api.KIND, "metadata": meta, "spec": {}}
    assert gets(owner) == []
    reconciled = {**owner, "metadata": {**meta, "uid": "u-old"}, "status": {"observedGeneration": 1}}
    read = gets(reconciled)
    assert any(f"/statefulsets/{names.ChildNames('fresh').db_primary}" in p for p in read), read


def test_the_resync_leaves_a_scaledapp_its_first_reconcile_has_not_reached_alone() -> None:
    """At 500 new ScaledApps the periodic resync came before many first reconciles and re-applied their
    children one by one (a build of every child for each); the first reconcile makes them all anyway."""
    import asyncio
    import logging

    from scaledapp import api, reconciler
    from scaledapp.kube import Kube

    class Recording(Kube):
        def __init__(self) -> None:
            super().__init__(client=object())  # type: ignore[arg-type]
            self.calls: list[str] = []

        async def _call(self, method: str, path: str, **_: Any) -> Any:
            self.calls.append(method)
            return {}

    kube = Recording()
    owner: dict[str, Any] = {"apiVersion": api.API_VERSION, "kind": api.KIND, "spec": {},
                             "metadata": {"name": "waiting", "namespace": "ns", "uid": "u-w", "generation": 1}}
    for full in (False, True):
        done = asyncio.run(reconciler.resync(kube, owner, lambda *_: False, logging.getLogger("test"), full=full))
        assert done == [] and kube.calls == []


def _primary_applies(owner: dict[str, Any], cached: dict[str, Any] | None = None) -> list[tuple[str, Any]]:
    """(field manager, spec.replicas) of every apply of the primary StatefulSet in one reconcile."""
    import asyncio
    import logging

    from scaledapp import reconciler
    from scaledapp.kube import Kube
    from scaledapp.resources import names

    primary = names.ChildNames(owner["metadata"]["name"]).db_primary

    class Recording(Kube):
        def __init__(self) -> None:
            super().__init__(client=object())  # type: ignore[arg-type]
            self.applies: list[tuple[str, Any]] = []

        async def _call(self, method: str, path: str, *, body: Any = None, query: Any = None, **_: Any) -> Any:
            if method == "GET":
                raise ApiException(status=404)
            if method == "PATCH" and path.endswith(f"/statefulsets/{primary}"):
                self.applies.append((dict(query or [])["fieldManager"], body["spec"].get("replicas")))
            return body if isinstance(body, dict) and "metadata" in body else {}

    kube = Recording()
    if cached is not None:
        kube.cache.remember(cached)
    asyncio.run(reconciler.reconcile(kube, owner, logging.getLogger("test")))
    return kube.applies


def test_a_new_primary_gets_its_pod_from_the_apply_that_sizes_it() -> None:
    """Held at 0 replicas until the scaler has given it its resources (a pod made without them could never be
    resized in place); the scaler's sizing apply also gives it its one pod: two applies, not three."""
    from scaledapp import api

    owner: dict[str, Any] = {"apiVersion": api.API_VERSION, "kind": api.KIND, "spec": {},
                             "metadata": {"name": "fresh", "namespace": "ns", "uid": "u-p", "generation": 1}}
    assert _primary_applies(owner) == [("scaledapp-reconciler", 0), ("scaledapp-scaler", 1)]


def test_a_retried_first_reconcile_never_holds_a_sized_primary_at_zero() -> None:
    """A first reconcile that failed after the scaler sized the primary is retried while the ScaledApp still looks
    new: the watch cache has the primary, owned by the scaler, and it keeps its pod."""
    from scaledapp import api
    from scaledapp.resources import names

    owner: dict[str, Any] = {"apiVersion": api.API_VERSION, "kind": api.KIND, "spec": {},
                             "metadata": {"name": "retry", "namespace": "ns", "uid": "u-r", "generation": 1}}
    managers = [{"manager": "scaledapp-reconciler"}, {"manager": "scaledapp-scaler"}]
    sized = {"apiVersion": "apps/v1", "kind": "StatefulSet", "spec": {"replicas": 1}, "metadata": {
        "name": names.ChildNames("retry").db_primary, "namespace": "ns", "uid": "s", "managedFields": managers}}
    # (The fake's apply answers carry no managedFields, so the scaler sizes it again here; a real one would not.)
    reconciler_applies = [replicas for manager, replicas in _primary_applies(owner, sized)
                          if manager == "scaledapp-reconciler"]
    assert reconciler_applies == [1]
