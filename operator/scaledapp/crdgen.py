"""Generate the ScaledApp CustomResourceDefinition from the pydantic models in api.py.

`python -m scaledapp.crdgen` prints it; `--write` refreshes the committed copies (crds/ and the chart's
crds/); `--check` exits 1 when they differ from the generated output.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml

from scaledapp import api, apibase, tiers

# The registry declares every tier's spec block and status.tiers entry in the API models (tiers.declare_api):
# a tier the API does not declare itself reaches the CRD through it.
REGISTERED_TIERS = tiers.ladder()
ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = f"{api.PLURAL}.{api.GROUP}.yaml"
COMMITTED_COPIES = [ROOT / "crds" / CRD_FILE, ROOT / "charts" / "scaledapp-operator" / "crds" / CRD_FILE]

PRINTER_COLUMNS = [
    {"name": "App", "type": "string", "jsonPath": ".status.app", "description": "App pods ready/desired."},
    {"name": "Read-Replicas", "type": "integer", "jsonPath": ".status.tiers.dbRead.ready",
     "description": "Ready Postgres read replicas."},
    {"name": "Bottleneck", "type": "string", "jsonPath": ".status.bottleneck",
     "description": "The tier that is the bottleneck now."},
    {"name": "Primary", "type": "string", "jsonPath": ".status.database.primary",
     "description": "The Postgres pod holding the write role (it moves on failover)."},
    {"name": "Mode", "type": "string", "jsonPath": ".spec.scaling.mode"},
    {"name": "Ready", "type": "string", "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]

NAME_RULES = apibase.cel(
    (f"self.metadata.name.size() <= {api.MAX_NAME_LENGTH}",
     f"metadata.name must be at most {api.MAX_NAME_LENGTH} characters (child names derive from it)", None),
    ("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
     "metadata.name must be a DNS-1035 label (lowercase letters, digits, '-', starting with a letter)", None),
)

_DROP = {"title", "additionalProperties_false"}


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    """Inline $refs and turn pydantic's JSON schema into a Kubernetes structural schema."""
    if isinstance(node, list):
        return [_structural(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = copy.deepcopy(defs[node["$ref"].split("/")[-1]])
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return _structural({**target, **extra}, defs)
    if "anyOf" in node:  # Optional[X]: the API server's "nullable"
        branches = [b for b in node["anyOf"] if b.get("type") != "null"]
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        if len(branches) == 1:
            merged = {**_structural(branches[0], defs), **_structural(rest, defs), "nullable": True}
            if merged.get("default", "") is None:
                del merged["default"]
            return merged
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            # JSON Schema 2020 puts the bound here; OpenAPI v3 wants the bound plus a boolean.
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "properties":
            out[key] = {name: _structural(prop, defs) for name, prop in value.items()}
        elif key == "additionalProperties" and value is False:
            continue  # the API server prunes unknown fields: nothing to say
        else:
            out[key] = _structural(value, defs)
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    return out


def _apply_defaults(schema: dict[str, Any], defaults: Any) -> None:
    """Give every property the default its model produces, so the API server fills in a minimal spec."""
    props = schema.get("properties")
    if not props or not isinstance(defaults, dict):
        return
    for name, prop in props.items():
        if name in defaults and defaults[name] is not None:
            prop["default"] = defaults[name]
            _apply_defaults(prop, defaults[name])
        elif prop.get("type") == "array" and isinstance(prop.get("items"), dict):
            prop.pop("default", None)


def _schema_of(model: type[apibase.Model], defaults: bool) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    schema: dict[str, Any] = _structural({k: v for k, v in raw.items() if k != "$defs"}, raw.get("$defs", {}))
    schema.pop("description", None)
    if defaults:
        _apply_defaults(schema, model().model_dump(by_alias=True, mode="json", exclude_none=True))
    else:
        _strip_defaults(schema)
    return schema


def _strip_defaults(node: Any) -> None:
    if isinstance(node, dict):
        node.pop("default", None)
        for value in node.values():
            _strip_defaults(value)
    elif isinstance(node, list):
        for value in node:
            _strip_defaults(value)


def _status_schema() -> dict[str, Any]:
    schema = _schema_of(api.ScaledAppStatus, defaults=False)
    conditions = schema["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    return schema


def build_crd() -> dict[str, Any]:
    spec_schema = _schema_of(api.ScaledAppSpec, defaults=True)
    spec_schema["description"] = "What to run and how to scale it. Every field has a default."
    spec_schema["default"] = {}
    status_schema = _status_schema()
    status_schema["description"] = "What the operator observed and decided. Written by the operator only."
    root: dict[str, Any] = {
        "type": "object",
        "description": "A ScaledApp runs a service the way a scaling playbook says and widens only its bottleneck.",
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
        **NAME_RULES,
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{api.PLURAL}.{api.GROUP}",
                     "labels": {"app.kubernetes.io/part-of": "scaledapp"}},
        "spec": {
            "group": api.GROUP,
            "scope": "Namespaced",
            "names": {"kind": api.KIND, "plural": api.PLURAL, "singular": api.SINGULAR,
                      "shortNames": api.SHORT_NAMES, "categories": ["all", "scaledapp"]},
            "versions": [{
                "name": api.VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": PRINTER_COLUMNS,
                "schema": {"openAPIV3Schema": root},
            }],
        },
    }


def render() -> str:
    header = "# Generated by `python -m scaledapp.crdgen --write` from operator/scaledapp/api.py. Do not edit.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=120)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="refresh the committed copies")
    parser.add_argument("--check", action="store_true", help="fail when a committed copy is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.write:
        for path in COMMITTED_COPIES:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
        return 0
    if args.check:
        stale = [p for p in COMMITTED_COPIES if not p.exists() or p.read_text() != text]
        for path in stale:
            print(f"stale: {path.relative_to(ROOT)} (run `make crds`)", file=sys.stderr)
        return 1 if stale else 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
