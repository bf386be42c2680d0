"""The generated CRD in a real API server: bad input is rejected with a message naming the field.

Also the chart's ValidatingAdmissionPolicy (what CRD rules cannot see), installed for one test namespace only.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.invalid_scaledapps import (
    INVALID,
    INVALID_UPDATES,
    INVALID_WITH_POLICY,
    VALID_UPDATES,
    InvalidCase,
    InvalidUpdate,
    scaledapp,
)
from tests.support.cluster import KubectlError
from tests.support.helm import CHART, helm, set_args
from tests.support.wait import wait_for

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]


def assert_refused(error: KubectlError, field: str, rule_message: str = "") -> None:
    message = error.stderr
    assert "is invalid" in message or "Invalid value" in message, message
    assert field in message, f"{field!r} not named in: {message}"
    assert rule_message in message, f"{rule_message!r} not in: {message}"


def no_scaledapps(cluster: Any, namespace: str) -> bool:
    return not json.loads(cluster.kubectl("get", "scaledapps", "-n", namespace, "-o", "json"))["items"]


@pytest.mark.parametrize("case", INVALID, ids=[c.id for c in INVALID])
def test_invalid_scaledapp_is_rejected_naming_the_field(
    cluster: Any, crd: Any, namespace: str, case: InvalidCase
) -> None:
    with pytest.raises(KubectlError) as rejected:
        cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(case.body))
    assert_refused(rejected.value, case.field, case.message)
    assert no_scaledapps(cluster, namespace)


@pytest.mark.parametrize("case", INVALID_UPDATES, ids=[c.id for c in INVALID_UPDATES])
def test_immutable_field_change_is_rejected_naming_the_field(
    cluster: Any, crd: Any, namespace: str, case: InvalidUpdate
) -> None:
    name = case.body["metadata"]["name"]
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(case.body))
    before = cluster.get_json("-n", namespace, f"scaledapp/{name}")["spec"]
    with pytest.raises(KubectlError) as rejected:
        cluster.kubectl("patch", "-n", namespace, f"scaledapp/{name}", "--type=merge", "-p", json.dumps(case.patch))
    assert_refused(rejected.value, case.field, case.message)
    assert cluster.get_json("-n", namespace, f"scaledapp/{name}")["spec"] == before


@pytest.mark.parametrize(("created", "patch"), [(c, p) for _, c, p in VALID_UPDATES],
                         ids=[i for i, _, _ in VALID_UPDATES])
def test_allowed_update_is_accepted(
    cluster: Any, crd: Any, namespace: str, created: dict[str, Any], patch: dict[str, Any]
) -> None:
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(scaledapp(created, name="ok")))
    cluster.kubectl("patch", "-n", namespace, "scaledapp/ok", "--type=merge", "-p", json.dumps({"spec": patch}))


@pytest.fixture
def admission_policy(cluster: Any, crd: Any, namespace: str) -> Iterator[str]:
    """The chart's ValidatingAdmissionPolicy and binding (a release of its own, bound to this test's namespace
    only, so nothing else in the shared cluster sees it), in force; removed afterwards."""
    text = helm("template", f"vap-{secrets.token_hex(3)}", str(CHART), "--show-only",
                "templates/admission-policy.yaml", *set_args({"watchNamespaces": [namespace]}))
    objects = [doc for doc in yaml.safe_load_all(text) if doc]
    assert [o["kind"] for o in objects] == ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"]
    for obj in objects:
        cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))
    # A new policy takes a moment to be in force: until then a probe object is admitted (and deleted again).
    probe = scaledapp({}, name="probe", annotations={"scaledapp.dev/paused": "not-a-boolean"})

    def in_force() -> bool:
        created = cluster.kubectl_run("create", "-n", namespace, "-f", "-", input=json.dumps(probe))
        if created.returncode == 0:
            cluster.kubectl("delete", "-n", namespace, "scaledapp/probe", "--wait=true")
            return False
        return "ValidatingAdmissionPolicy" in created.stderr

    wait_for(in_force, 30, "the ValidatingAdmissionPolicy to be in force", interval=0.5)
    yield objects[0]["metadata"]["name"]
    for obj in reversed(objects):
        cluster.kubectl("delete", obj["kind"].lower(), obj["metadata"]["name"], "--ignore-not-found")


@pytest.mark.parametrize("case", INVALID_WITH_POLICY, ids=[c.id for c in INVALID_WITH_POLICY])
def test_admission_policy_rejects_naming_the_field(
    cluster: Any, namespace: str, admission_policy: str, case: InvalidCase
) -> None:
    with pytest.raises(KubectlError) as rejected:
        cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(case.body))
    assert_refused(rejected.value, case.field, case.message)
    assert admission_policy in rejected.value.stderr
    assert no_scaledapps(cluster, namespace)


def test_admission_policy_admits_a_boolean_pause_and_its_removal(
    cluster: Any, namespace: str, admission_policy: str
) -> None:
    cluster.kubectl("create", "-n", namespace, "-f", "-",
                    input=json.dumps(scaledapp({}, name="held", annotations={"scaledapp.dev/paused": "True"})))
    cluster.kubectl("annotate", "-n", namespace, "scaledapp/held", "--overwrite", "scaledapp.dev/paused=false")
    cluster.kubectl("annotate", "-n", namespace, "scaledapp/held", "scaledapp.dev/paused-")


def test_minimal_scaledapp_is_defaulted_by_the_api_server(cluster: Any, crd: Any, namespace: str) -> None:
    body = {"apiVersion": "scaledapp.dev/v1alpha1", "kind": "ScaledApp", "metadata": {"name": "tiny"}}
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(body))
    spec = json.loads(cluster.kubectl("get", "-n", namespace, "scaledapp/tiny", "-o", "json"))["spec"]
    assert spec["app"]["replicas"] == {"min": 2, "max": 10}
    assert spec["database"]["readReplicas"] == {"min": 1, "max": 5}
    assert spec["scaling"]["mode"] == "Auto"
    assert spec["cache"]["memory"] == {"initial": "64Mi", "max": "512Mi"}


@pytest.mark.parametrize("example", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_is_admitted(cluster: Any, crd: Any, namespace: str, example: Path) -> None:
    cluster.kubectl("create", "--dry-run=server", "-n", namespace, "-f", str(example))


def test_kubectl_explain_describes_the_fields(cluster: Any, crd: Any) -> None:
    out = cluster.kubectl("explain", "scaledapp.spec.database")
    assert "Postgres" in out
    assert "readReplicas" in out and "Streaming read replicas" in out


def test_printer_columns_show_at_a_glance(cluster: Any, crd: Any, namespace: str) -> None:
    body: dict[str, Any] = {"apiVersion": "scaledapp.dev/v1alpha1", "kind": "ScaledApp",
                            "metadata": {"name": "cols"}, "spec": {"scaling": {"mode": "Recommend"}}}
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(body))
    header = cluster.kubectl("get", "sapp", "-n", namespace).splitlines()[0].split()
    assert header == ["NAME", "APP", "READ-REPLICAS", "BOTTLENECK", "PRIMARY", "MODE", "READY", "AGE"]
