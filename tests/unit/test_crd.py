"""The CRD is generated from api.py and committed; examples and invalid fixtures agree with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pydantic
import pytest
import yaml

from scaledapp import api, crdgen
from tests.fixtures.invalid_scaledapps import INVALID, InvalidCase

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


def _schema_at(path: str) -> dict[str, Any]:
    node = root_schema()
    for part in path.replace("[0]", ".[]").split("."):
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
def test_invalid_case_is_rejected_by_the_models_and_the_schema(case: InvalidCase) -> None:
    with pytest.raises(pydantic.ValidationError):
        api.ScaledApp.model_validate(case.body)
    # The structural schema alone (no CEL) must reject it too: the API server checks this part first.
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft4Validator(root_schema()).validate(case.body)


def test_model_identity_matches_the_api_constants() -> None:
    app = api.ScaledApp()
    assert (app.api_version, app.kind) == (api.API_VERSION, api.KIND)
