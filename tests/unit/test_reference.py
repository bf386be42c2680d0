"""docs/reference.md is generated from the CRD (hack/gen_reference.py) and committed: it must be current."""

from __future__ import annotations

from typing import Any

from hack import gen_reference

from scaledapp import crdgen, reasons


def test_committed_reference_is_up_to_date() -> None:
    assert gen_reference.main(["--check"]) == 0, "run `make reference`"


def leaves(node: dict[str, Any], section: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(section, field name, schema) of every non-object field; arrays of objects get a `[]` section."""
    out = []
    for name, prop in node.get("properties", {}).items():
        if prop.get("type") == "array" and "properties" in prop.get("items", {}):
            out += leaves(prop["items"], f"{section}.{name}[]")
        elif "properties" in prop:
            out += leaves(prop, f"{section}.{name}")
        else:
            out.append((section, name, prop))
    return out


def rows_by_section(text: str) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("### `"):
            current = line.split("`")[1]
            out[current] = {}
        elif line.startswith("| `") or line.startswith("| [`"):
            out[current][line.split("`")[1]] = line
    return out


def test_every_spec_field_is_documented_with_its_description_and_default() -> None:
    sections = rows_by_section(gen_reference.render())
    root = crdgen.build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    fields = leaves(root["properties"]["spec"], "spec")
    assert len(fields) > 40
    for section, name, prop in fields:
        row = sections[section][name]
        assert prop["description"].replace("|", "\\|") in row, (section, name)
        if "default" in prop and not isinstance(prop["default"], dict | list):
            assert gen_reference.default_of(prop) in row, (section, name)


def test_immutable_fields_and_object_rules_are_called_out() -> None:
    text = gen_reference.render()
    storage = next(ln for ln in text.splitlines() if ln.startswith("| `storage` |"))
    assert "**immutable**" in storage
    assert "min must be less than or equal to max" in text
    assert "metadata.name must be at most 40 characters" in text


def test_every_reason_is_documented_once_in_the_reference() -> None:
    assert set(reasons.DOCS) == set(reasons.Reason)
    assert len({r.value for r in reasons.Reason}) == len(reasons.Reason)
    rows = [ln for ln in gen_reference.render().splitlines() if ln.startswith("| `")]
    for reason in reasons.Reason:
        assert sum(row.startswith(f"| `{reason.value}` |") for row in rows) == 1, reason
