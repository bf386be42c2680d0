"""The CRD is generated from api.py and committed; examples and invalid fixtures agree with it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import jsonschema
import pydantic
import pytest
import yaml

from scaledapp import api, crdgen
from tests.fixtures.invalid_scaledapps import INVALID, INVALID_UPDATES, InvalidCase

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def root_schema() -> dict[str, Any]:
    schema: dict[str, Any] = crdgen.build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def test_committed_crds_are_up_to_date() -> None:
    assert crdgen.main(["--check"]) == 0, "run `make crds`"


def test_every_spec_field_has_a_description() -> None:
    def walk(model: type[pydantic.BaseModel], path: str, seen: set[type]) -> list[str]:
        if model in seen:
            return []
        seen.add(model)
        missing = []
        for name, field in model.model_fields.items():
            if not (field.description or "").strip():
                missing.append(f"{path}.{name}")
            for sub in _models_in(field.annotation):
                missing += walk(sub, f"{path}.{name}", seen)
        return missing

    assert walk(api.ScaledAppSpec, "spec", set()) == []


def _models_in(annotation: Any) -> list[type[pydantic.BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return [annotation]
    return [m for arg in getattr(annotation, "__args__", ()) for m in _models_in(arg)]


def test_examples_exist() -> None:
    assert {p.name for p in EXAMPLES} >= {"minimal.yaml", "full.yaml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_parse_and_match_the_crd_schema(path: Path) -> None:
    body = yaml.safe_load(path.read_text())
    api.ScaledApp.model_validate(body)
    jsonschema.Draft4Validator(root_schema()).validate(body)
    assert len(body["metadata"]["name"]) <= api.MAX_NAME_LENGTH


def test_the_full_example_sets_every_field() -> None:
    spec = yaml.safe_load((ROOT / "examples" / "full.yaml").read_text())["spec"]

    def missing(schema: dict[str, Any], value: Any, path: str) -> list[str]:
        out = []
        for name, prop in schema.get("properties", {}).items():
            if not isinstance(value, dict) or name not in value:
                out.append(f"{path}.{name}")
            elif prop.get("type") == "object":
                out += missing(prop, value[name], f"{path}.{name}")
        return out

    assert missing(root_schema()["properties"]["spec"], spec, "spec") == []


def test_enough_invalid_cases() -> None:
    assert len(INVALID) >= 12
    assert len({c.id for c in INVALID}) == len(INVALID)
    assert len({c.id for c in INVALID_UPDATES}) == len(INVALID_UPDATES)


def _schema_at(path: str) -> dict[str, Any]:
    node = root_schema()
    for part in re.sub(r"\[\d+\]", ".[]", path).split("."):
        if part == "[]":
            node = node["items"]
        elif part == "metadata":
            return {"type": "object"}
        else:
            node = node["properties"][part]
    return node


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.id)
def test_invalid_case_names_a_real_field(case: InvalidCase) -> None:
    assert _schema_at(case.field)


@pytest.mark.parametrize("case", [c for c in INVALID if c.pydantic], ids=lambda c: c.id)
def test_invalid_case_is_rejected_by_the_models_with_the_rule_message(case: InvalidCase) -> None:
    with pytest.raises(pydantic.ValidationError) as rejected:
        api.ScaledApp.model_validate(case.body)
    assert case.message in str(rejected.value)


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.id)
def test_invalid_case_is_rejected_by_the_structural_schema_exactly_when_it_should(case: InvalidCase) -> None:
    """The structural schema alone (no CEL) rejects the `schema` cases, the API server checks this part first;
    it accepts the others, so each of those tests its CEL rule (or the env map keys) and nothing else."""
    validator = jsonschema.Draft4Validator(root_schema())
    if case.schema:
        with pytest.raises(jsonschema.ValidationError):
            validator.validate(case.body)
    else:
        validator.validate(case.body)


def _models(model: type[pydantic.BaseModel], seen: set[type[pydantic.BaseModel]]) -> set[type[pydantic.BaseModel]]:
    if model not in seen:
        seen.add(model)
        for field in model.model_fields.values():
            for sub in _models_in(field.annotation):
                _models(sub, seen)
    return seen


def test_every_rule_has_an_invalid_case() -> None:
    messages = [c.message for c in INVALID if c.message] + [c.message for c in INVALID_UPDATES]
    rules = [rule for model in _models(api.ScaledAppSpec, set()) for rule in getattr(model, "RULES", ())]
    assert len(rules) >= 20
    untested = [r.message for r in rules if not any(m in r.message for m in messages)]
    assert untested == []


def test_every_cel_rule_names_its_field() -> None:
    """A rule on an object says which field is wrong (fieldPath), so the API server's message names it; only a
    rule on the field itself (`self == oldSelf`) needs none."""
    def walk(node: dict[str, Any], path: str) -> list[str]:
        missing = [f"{path}: {r['rule']}" for r in node.get("x-kubernetes-validations", [])
                   if "fieldPath" not in r and r["rule"] != "self == oldSelf"]
        for name, prop in node.get("properties", {}).items():
            missing += walk(prop, f"{path}.{name}")
        if isinstance(node.get("items"), dict):
            missing += walk(node["items"], f"{path}[]")
        return missing

    assert walk(root_schema()["properties"]["spec"], "spec") == []


def test_env_names_are_a_map_key_so_the_api_server_refuses_duplicates() -> None:
    env = _schema_at("spec.app.env")
    assert env["x-kubernetes-list-type"] == "map" and env["x-kubernetes-list-map-keys"] == ["name"]
    assert "name" in env["items"]["required"]


def test_model_identity_matches_the_api_constants() -> None:
    app = api.ScaledApp()
    assert (app.api_version, app.kind) == (api.API_VERSION, api.KIND)
