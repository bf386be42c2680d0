"""The models refuse what the API server refuses (apibase.Rule: one rule, as CEL and in Python), accept the edge
cases the rules allow, and never fail on input with anything but a ValidationError the reconciler reports."""

from __future__ import annotations

import re
from typing import Any

import pydantic
import pytest

from scaledapp import api, apibase
from scaledapp.reconciler import invalid_spec_message

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize("image", [
    "postgres", "postgres:17.5", "redis:7.4.2-alpine", "ghcr.io/scaledapp/demo-app:0.1.0",
    "localhost:5000/team/app", "registry.example.com:5000/a/b/c:v1.2.3", f"postgres@{DIGEST}",
    f"postgres:17.5@{DIGEST}", "Registry.Example.com/app:Latest_1", "a__b/c-d.e:1", "[::1]:5000/app:1",
    "quay.io/prometheuscommunity/postgres-exporter:v0.19.1",
])
def test_valid_image_references(image: str) -> None:
    assert re.match(apibase.IMAGE_PATTERN, image)
    api.AppSpec(image=image)


@pytest.mark.parametrize("image", [
    "", " postgres", "postgres :17", "post gres", "ghcr.io/ScaledApp/app:1", "App", "postgres:17:5",
    "postgres:", "postgres@sha256:abc", "registry:port/app", "/app", "app/", "app//x", "-app", "app:-tag",
    "postgres:17\n",
])
def test_invalid_image_references(image: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="image"):
        api.AppSpec(image=image)


@pytest.mark.parametrize("url", [
    "http://prometheus.scaledapp-system.svc:9090", "https://prom.example.com/prometheus", "http://127.0.0.1:9",
    "http://[::1]:9090/", "http://prometheus", "http://prometheus:65535/a/b",
])
def test_valid_prometheus_urls(url: str) -> None:
    api.ScalingSpec(prometheus_url=url)


@pytest.mark.parametrize("url", [
    "ftp://prometheus:9090", "http://", "http://:9090", "http://prometheus:0", "http://prometheus:65536",
    "http://user:pw@prometheus:9090", "http://prometheus:9090/?q=1", "http://prometheus:9090/#x",
    "http://prom etheus:9090", "http://prometheus:9090/a b", "prometheus:9090",
])
def test_invalid_prometheus_urls(url: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="prometheus_url"):
        api.ScalingSpec(prometheus_url=url)


# Each at the edge of a rule, on the allowed side.
ALLOWED: dict[str, dict[str, Any]] = {
    "cpu-request-equals-cpu": {"app": {"resources": {"cpu": "500m", "cpuRequest": "0.5"}}},
    "smallest-sizes": {"app": {"resources": {"cpu": "1m", "memory": "16Mi", "cpuRequest": "1m"}},
                       "cache": {"memory": {"initial": "1Mi", "max": "16Mi"}},
                       "database": {"storage": "256Mi",
                                    "resources": {"initial": {"cpu": "1m", "memory": "256Mi"},
                                                  "max": {"cpu": "1m", "memory": "256Mi"}}}},
    "timeout-equals-interval": {"scaling": {"intervalSeconds": 5, "queryTimeoutSeconds": 5}},
    "windows-equal": {"scaling": {"stabilization": {"scaleUpSeconds": 120, "scaleDownSeconds": 120}}},
    "targets-just-reachable": {"scaling": {"hysteresis": 0, "targets": {
        "appCpuUtilization": 0.99, "cacheMemoryUtilization": 0.99, "cacheCpuCores": 0.99,
        "dbConnectionUtilization": 0.99, "cacheHitRatio": 0.99}}},
    "workers-off-with-none": {"workers": {"enabled": False, "replicas": {"min": 0, "max": 0}}},
    "workers-scale-to-zero": {"workers": {"replicas": {"min": 0, "max": 3}}},
    "no-read-replicas": {"database": {"readReplicas": {"min": 0, "max": 0}}},
    "app-one-pod": {"app": {"replicas": {"min": 1, "max": 1}}},
    "spaces-in-later-arguments": {"workers": {"command": ["sh", "-c", "exec python -m demo_app.worker"]}},
    "env-overrides-an-operator-variable": {"app": {"env": [{"name": "DB_NAME", "value": "other"},
                                                          {"name": "LOG_LEVEL", "value": "debug"}]}},
    "storage-class-dns-subdomain": {"database": {"storageClassName": "fast.ssd-1"}},
}


@pytest.mark.parametrize("spec", ALLOWED.values(), ids=list(ALLOWED))
def test_edges_the_rules_allow(spec: dict[str, Any]) -> None:
    api.parse_spec(spec)


def test_duplicate_env_names_are_refused_by_name() -> None:
    env = [{"name": "A", "value": "1"}, {"name": "B"}, {"name": "A", "value": "2"}]
    with pytest.raises(pydantic.ValidationError, match="env names must be unique: A is set twice"):
        api.parse_spec({"app": {"env": env}})


def test_a_refused_spec_is_reported_with_the_field_and_the_rule() -> None:
    with pytest.raises(pydantic.ValidationError) as refused:
        api.parse_spec({"app": {"resources": {"cpu": "500m", "cpuRequest": "2"}},
                        "scaling": {"intervalSeconds": 10, "queryTimeoutSeconds": 30}})
    message = invalid_spec_message(refused.value)
    assert "spec.app.resources: " in message and "cpuRequest must be less than or equal to cpu" in message
    assert "spec.scaling: " in message
    assert "queryTimeoutSeconds must be less than or equal to intervalSeconds" in message


def test_every_broken_rule_of_an_object_is_reported() -> None:
    with pytest.raises(pydantic.ValidationError) as refused:
        api.parse_spec({"app": {"resources": {"cpu": "0", "memory": "1", "cpuRequest": "0"}}})
    text = str(refused.value)
    for message in ("cpu must be at least 1m", "memory must be at least 16Mi", "cpuRequest must be at least 1m"):
        assert message in text


class _Broken(apibase.Model):
    x: int = 1

    RULES = (apibase.Rule("true", "x could not be checked", ".x", lambda m: 1 / (m.x - 1) > 0),)


def test_a_rule_whose_check_fails_refuses_instead_of_raising() -> None:
    with pytest.raises(pydantic.ValidationError, match="x could not be checked"):
        _Broken()


@pytest.mark.parametrize("raw", [
    {"app": {"resources": {"cpu": 5}}}, {"app": {"resources": None}}, {"workers": {"command": None}},
    {"workers": {"command": [None]}}, {"scaling": {"targets": "high"}}, {"cache": {"memory": {"initial": "1e3"}}},
    {"database": {"resources": {"initial": {"cpu": "9" * 21}}}}, {"app": {"env": [{"value": "x"}]}},
    {"app": {"env": "A=1"}}, {"scaling": {"hysteresis": "0.1x"}}, {"database": {"image": ["postgres"]}},
    {"app": {"replicas": {"min": 2.5}}}, {"unknown": {}},
], ids=str)
def test_junk_is_a_validation_error_never_a_crash(raw: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError) as refused:
        api.parse_spec(raw)
    assert invalid_spec_message(refused.value)


def test_rules_are_in_the_crd_with_the_same_message() -> None:
    from scaledapp import crdgen

    def messages(node: Any) -> set[tuple[str, str]]:
        out: set[tuple[str, str]] = set()
        if isinstance(node, dict):
            out |= {(r["rule"], r["message"]) for r in node.get("x-kubernetes-validations", [])}
            node = list(node.values())
        if isinstance(node, list):
            for value in node:
                out |= messages(value)
        return out

    in_crd = messages(crdgen.build_crd())
    for model in (api.AppResources, api.MemoryRange, api.ResourceRange, api.ResourceAmounts, api.DatabaseSpec,
                  api.AppSpec, api.WorkersSpec, api.Stabilization, api.ScalingSpec, api.ReplicaRange):
        for rule in model.RULES:
            assert (rule.rule, rule.message) in in_crd, rule.message


def test_a_spec_is_parsed_once_and_an_invalid_one_every_time() -> None:
    """The scaler and the failover guard parse every ScaledApp's spec each tick: the same spec gives the
    same model (no second validation); another spec, or the same one edited, its own; an invalid spec is
    refused every time, never kept."""
    raw = {"app": {"replicas": {"min": 2, "max": 6}}}
    first = api.parse_spec(raw)
    assert api.parse_spec({"app": {"replicas": {"max": 6, "min": 2}}}) is first  # key order does not matter
    edited = api.parse_spec({"app": {"replicas": {"min": 3, "max": 6}}})
    assert edited is not first and edited.app.replicas.min == 3
    bad = {"app": {"replicas": {"min": 0}}}
    for _ in range(2):
        with pytest.raises(pydantic.ValidationError):
            api.parse_spec(bad)


def test_the_parsed_specs_kept_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "PARSED_SPECS_KEPT", 3)
    monkeypatch.setattr(api, "_PARSED", type(api._PARSED)())
    specs = [{"app": {"replicas": {"min": 1, "max": n}}} for n in range(2, 8)]
    for raw in specs:
        api.parse_spec(raw)
    assert len(api._PARSED) == 3
    assert api.parse_spec(specs[-1]) is api.parse_spec(specs[-1])


def test_a_scaledapps_spec_is_found_again_by_uid_and_generation() -> None:
    body = {"metadata": {"uid": "u-spec", "generation": 3}, "spec": {"app": {"replicas": {"min": 2, "max": 5}}}}
    first = api.spec_of(body)
    assert api.spec_of(body) is first and first.app.replicas.max == 5
    edited = {"metadata": {"uid": "u-spec", "generation": 4}, "spec": {"app": {"replicas": {"min": 2, "max": 7}}}}
    assert api.spec_of(edited).app.replicas.max == 7  # the API server moved the generation with the spec
    assert api.spec_of({"spec": body["spec"]}).app.replicas.max == 5  # no identity: by its JSON
