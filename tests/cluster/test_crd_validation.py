"""The generated CRD in a real API server: bad input is rejected with a message naming the field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fixtures.invalid_scaledapps import INVALID, InvalidCase
from tests.support.cluster import KubectlError

pytestmark = pytest.mark.cluster


@pytest.mark.parametrize("case", INVALID, ids=[c.id for c in INVALID])
def test_invalid_scaledapp_is_rejected_naming_the_field(
    cluster: Any, crd: Any, namespace: str, case: InvalidCase
) -> None:
    with pytest.raises(KubectlError) as rejected:
        cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(case.body))
    message = rejected.value.stderr
    assert "is invalid" in message or "Invalid value" in message, message
    assert case.field in message, f"{case.field!r} not named in: {message}"
    assert not json.loads(cluster.kubectl("get", "scaledapps", "-n", namespace, "-o", "json"))["items"]


def test_minimal_scaledapp_is_defaulted_by_the_api_server(cluster: Any, crd: Any, namespace: str) -> None:
    body = {"apiVersion": "scaledapp.dev/v1alpha1", "kind": "ScaledApp", "metadata": {"name": "tiny"}}
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(body))
    spec = json.loads(cluster.kubectl("get", "-n", namespace, "scaledapp/tiny", "-o", "json"))["spec"]
    assert spec["app"]["replicas"] == {"min": 2, "max": 10}
    assert spec["database"]["readReplicas"] == {"min": 1, "max": 5}
    assert spec["scaling"]["mode"] == "Auto"
    assert spec["cache"]["memory"] == {"initial": "64Mi", "max": "512Mi"}


def test_storage_is_immutable(cluster: Any, crd: Any, namespace: str) -> None:
    body = {"apiVersion": "scaledapp.dev/v1alpha1", "kind": "ScaledApp", "metadata": {"name": "disk"}}
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(body))
    with pytest.raises(KubectlError) as rejected:
        cluster.kubectl("patch", "-n", namespace, "scaledapp/disk", "--type=merge",
                        "-p", json.dumps({"spec": {"database": {"storage": "5Gi"}}}))
    assert "spec.database" in rejected.value.stderr, rejected.value.stderr


def test_kubectl_explain_describes_the_fields(cluster: Any, crd: Any) -> None:
    out = cluster.kubectl("explain", "scaledapp.spec.database")
    assert "Postgres" in out
    assert "readReplicas" in out and "Streaming read replicas" in out


def test_printer_columns_show_at_a_glance(cluster: Any, crd: Any, namespace: str) -> None:
    body: dict[str, Any] = {"apiVersion": "scaledapp.dev/v1alpha1", "kind": "ScaledApp",
                            "metadata": {"name": "cols"}, "spec": {"scaling": {"mode": "Recommend"}}}
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(body))
    header = cluster.kubectl("get", "sapp", "-n", namespace).splitlines()[0].split()
    assert header == ["NAME", "APP", "READ-REPLICAS", "BOTTLENECK", "MODE", "READY", "AGE"]
