"""Which child events bring a ScaledApp's resync forward (handlers.short_of_ready): a workload with fewer ready
pods than it wants, whose new pods may wait on a Secret someone deleted (no watch shows Secrets)."""

from __future__ import annotations

from typing import Any

from scaledapp import handlers


def workload(kind: str, replicas: int | None, ready: int | None) -> dict[str, Any]:
    spec = {} if replicas is None else {"replicas": replicas}
    status = {} if ready is None else {"readyReplicas": ready}
    return {"kind": kind, "metadata": {"name": "shop-app"}, "spec": spec, "status": status}


def test_a_workload_short_of_ready_pods_is_short() -> None:
    assert handlers.short_of_ready(workload("Deployment", 2, 1))
    assert handlers.short_of_ready(workload("StatefulSet", 1, None))  # its pod not ready (or not there) yet
    assert handlers.short_of_ready(workload("Deployment", None, 0))  # no replicas field: Kubernetes means 1


def test_a_workload_with_all_its_pods_ready_or_none_wanted_is_not() -> None:
    assert not handlers.short_of_ready(workload("Deployment", 2, 2))
    assert not handlers.short_of_ready(workload("Deployment", 2, 3))  # the old pod of a rollout still ready
    assert not handlers.short_of_ready(workload("StatefulSet", 0, None))  # a primary held at 0 until sized


def test_other_kinds_are_never_short() -> None:
    assert not handlers.short_of_ready({"kind": "Service", "metadata": {"name": "shop-app"}, "spec": {}})
    assert not handlers.short_of_ready({"kind": "ConfigMap", "metadata": {"name": "shop-db-scripts"}, "data": {}})
