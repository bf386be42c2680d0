"""kopf's change detection runs only for ScaledApps (the only kind with on.create/update handlers): for the
children's and pods' events it deep-copied every body on every event."""

from __future__ import annotations

from typing import Any

import kopf

from scaledapp import api
from scaledapp.handlers import ScaledAppDiffBase


def _storage() -> tuple[ScaledAppDiffBase, kopf.AnnotationsDiffBaseStorage]:
    return (ScaledAppDiffBase(prefix=api.GROUP, key="last-handled-configuration"),
            kopf.AnnotationsDiffBaseStorage(prefix=api.GROUP, key="last-handled-configuration"))


def test_a_scaledapps_essence_is_kopfs() -> None:
    ours, kopfs = _storage()
    raw: dict[str, Any] = {
        "apiVersion": api.API_VERSION, "kind": api.KIND,
        "metadata": {"name": "shop", "namespace": "ns", "labels": {"a": "b"}, "annotations": {
            f"{api.GROUP}/last-handled-configuration": '{"spec": {"app": {"image": "x"}}}'}},
        "spec": {"app": {"image": "y"}}, "status": {"app": "1/1"}}
    body = kopf.Body(raw)
    assert ours.build(body=body) == kopfs.build(body=body)
    assert ours.fetch(body=body) == kopfs.fetch(body=body) == {"spec": {"app": {"image": "x"}}}


def test_a_childs_events_build_no_essence() -> None:
    ours, _ = _storage()
    body = kopf.Body({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "shop-db"},
                      "spec": {"replicas": 1, "template": {"spec": {"containers": [{"name": "postgres"}]}}}})
    assert ours.build(body=body) == {}
    assert ours.fetch(body=body) is None
