"""The ScaledApp bodies the scaler loops and failover guards keep leave out what none of them reads: the field
managers and the copies of the spec kept in annotations (kopf's own, by the name kopf gives it, and kubectl's)."""

from __future__ import annotations

import json
from typing import Any

import kopf

from scaledapp import api, handlers


def test_a_kept_body_leaves_out_field_managers_and_spec_copies_and_keeps_the_rest() -> None:
    raw: dict[str, Any] = {
        "apiVersion": api.API_VERSION, "kind": api.KIND,
        "metadata": {"name": "shop", "namespace": "ns", "uid": "u1", "generation": 3, "resourceVersion": "7",
                     "labels": {"team": "a"},
                     "annotations": {api.PAUSE_ANNOTATION: "true",
                                     "kubectl.kubernetes.io/last-applied-configuration": json.dumps({"spec": {}})},
                     "managedFields": [{"manager": "scaledapp-scaler", "fieldsV1": {"f:status": {"f:app": {}}}}]},
        "spec": {"app": {"image": "demo:1"}}, "status": {"app": "1/1", "conditions": [{"type": "Ready"}]}}
    # kopf's last-handled configuration, written where kopf writes it
    patch = kopf.Patch()
    handlers.ScaledAppDiffBase(prefix=api.GROUP, key="last-handled-configuration").store(
        body=kopf.Body(raw), patch=patch, essence=kopf.BodyEssence(spec=raw["spec"]))
    raw["metadata"]["annotations"].update(patch["metadata"]["annotations"])
    assert f"{api.GROUP}/last-handled-configuration" in raw["metadata"]["annotations"]
    small = {k: v for k, v in raw["metadata"]["annotations"].items() if len(v) < 10}  # the pause, kopf's marker

    kept = handlers.kept(kopf.Body(raw))
    assert "managedFields" not in kept["metadata"]
    assert kept["metadata"]["annotations"] == small and api.PAUSE_ANNOTATION in small  # the scaler reads the pause
    assert {k: v for k, v in kept["metadata"].items() if k != "annotations"} == {
        k: v for k, v in raw["metadata"].items() if k not in ("annotations", "managedFields")}
    assert kept["spec"] == raw["spec"] and kept["status"] == raw["status"]
    # the event's body is untouched
    assert "managedFields" in raw["metadata"] and len(raw["metadata"]["annotations"]) == len(small) + 2
