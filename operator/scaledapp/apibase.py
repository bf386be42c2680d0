"""The ScaledApp API's vocabulary: the wire patterns and floors, rules written once as CEL (for the API server)
and Python (for pydantic), and the model base every API model derives from. api.py says what the API is in
these words; crdgen.py turns both into the CRD.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel, to_snake
from pydantic.config import JsonDict
from pydantic.fields import FieldInfo

from scaledapp.quantity import parse_quantity

QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$"
ENV_NAME_PATTERN = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"
PATH_PATTERN = r"^/[A-Za-z0-9/_.~-]*$"
# DNS subdomain (RFC 1123), what a StorageClass name is.
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

# Image references, `[registry[:port]/]path[:tag][@digest]`, as the container runtimes parse them
# (github.com/distribution/reference): path components are lowercase, the registry may not be; no spaces.
# Written for RE2 (the API server), Rust regex (pydantic) and Python re (the unit tests) alike.
_HOST_COMPONENT = r"[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?"
_HOST = rf"({_HOST_COMPONENT}(\.{_HOST_COMPONENT})*|\[[0-9a-fA-F:.]+\])"
_PATH_COMPONENT = r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*"
_TAG = r"[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
IMAGE_PATTERN = rf"^({_HOST}(:[0-9]+)?/)?{_PATH_COMPONENT}(/{_PATH_COMPONENT})*(:{_TAG})?(@{_DIGEST})?$"
IMAGE_MAX_LENGTH = 512
# http(s)://host[:port][/path]: a port in 1-65535, no user info, query or fragment (the client appends
# /api/v1/query to the path), no whitespace.
_PORT = r"([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
PROMETHEUS_URL_PATTERN = rf"^https?://{_HOST}(:{_PORT})?(/[^\s?#]*)?$"

# Floors below which a tier cannot run (each message says why).
MIN_CPU = "1m"  # Kubernetes' CPU precision: anything positive is at least this
MIN_MEMORY = "16Mi"  # a container limit below this is OOM-killed as it starts
MIN_CACHE_MEMORY = "1Mi"  # Redis maxmemory: 0 means "no limit", and Redis warns below 1MB
MIN_DATABASE_MEMORY = "256Mi"  # Postgres' default shared_buffers alone is 128MB
MIN_STORAGE = "256Mi"  # a fresh Postgres data directory with its WAL takes over 100Mi
# Variables the operator sets that the probes depend on: overriding them cannot run.
RESERVED_ENV = ("PORT", "METRICS_PORT")


def cel(*rules: tuple[str, str, str | None]) -> dict[str, Any]:
    """CEL validation rules for a schema node: (rule, message, fieldPath or None)."""
    out = []
    for rule, message, field_path in rules:
        item = {"rule": rule, "message": message}
        if field_path:
            item["fieldPath"] = field_path
        out.append(item)
    return {"x-kubernetes-validations": out}


@dataclass(frozen=True)
class Rule:
    """One rule on a model: `rule` is CEL run by the API server on the object (`self`, and `oldSelf` for a
    transition rule), `check` the same rule in Python run by pydantic (None: the API server only)."""

    rule: str
    message: str
    field_path: str | None
    check: Callable[[Any], bool] | None


def _cel_quantity_at_least(field: str, minimum: str) -> str:
    return f"!isQuantity(self.{field}) || quantity(self.{field}).compareTo(quantity('{minimum}')) >= 0"


def at_least(field: str, minimum: str, why: str = "", optional: bool = False) -> Rule:
    """A quantity field (wire name) of this object is at least `minimum`; optional: or unset."""
    attr = to_snake(field)
    rule = _cel_quantity_at_least(field, minimum)
    if optional:
        rule = f"!has(self.{field}) || {rule}"

    def check(model: Any) -> bool:
        value = getattr(model, attr)
        return value is None or parse_quantity(value) >= parse_quantity(minimum)

    return Rule(rule, f"{field} must be at least {minimum}{why}", f".{field}", check)


def not_above(low: str, high: str, why: str = "", optional: bool = False) -> Rule:
    """Quantity `low` <= quantity `high` (dotted wire paths from this object); optional: or `low` unset."""
    low_attr, high_attr = [[to_snake(part) for part in path.split(".")] for path in (low, high)]
    rule = (f"!isQuantity(self.{low}) || !isQuantity(self.{high}) || "
            f"quantity(self.{low}).compareTo(quantity(self.{high})) <= 0")
    if optional:
        rule = f"!has(self.{low}) || {rule}"

    def value(model: Any, path: list[str]) -> Any:
        for part in path:
            model = getattr(model, part)
        return model

    def check(model: Any) -> bool:
        lower = value(model, low_attr)
        return lower is None or parse_quantity(lower) <= parse_quantity(value(model, high_attr))

    return Rule(rule, f"{low} must be less than or equal to {high}{why}", f".{low}", check)


def _rules_schema(schema: JsonDict, model: type[Any]) -> None:
    """The CEL half of a model's RULES, on its schema node (pydantic calls this for every model)."""
    rules: tuple[Rule, ...] = getattr(model, "RULES", ())
    if rules:
        schema.update(cel(*((r.rule, r.message, r.field_path) for r in rules)))


class Model(BaseModel):
    """Base: camelCase on the wire, unknown fields rejected (the API server prunes them anyway), and the
    model's RULES checked (the API server checks the same rules as CEL)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", json_schema_extra=_rules_schema
    )
    RULES: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        broken = []
        for rule in self.RULES:
            try:
                ok = rule.check is None or rule.check(self)
            except Exception:  # the operator never crashes on input: a check that cannot run fails
                ok = False
            if not ok:
                broken.append(rule.message)
        if broken:
            raise ValueError("; ".join(broken))
        return self


def Quantity(default: str, description: str) -> Any:  # noqa: N802 - reads like a type in field definitions
    return Field(default, description=description, pattern=QUANTITY_PATTERN, max_length=20)


def Image(default: str | None, description: str) -> Any:  # noqa: N802 - reads like a type in field definitions
    return Field(default, description=description, pattern=IMAGE_PATTERN, max_length=IMAGE_MAX_LENGTH)


def add_field(model: type[Model], name: str, annotation: type[Model], description: str,
              containers: tuple[type[Model], ...] = ()) -> Callable[[], None]:
    """Give `model` a field `name` (default: `annotation()`), as a tier the API does not declare itself adds
    its spec block or its status entry; the models that hold `model` (`containers`) are rebuilt around it.
    Returns how to take it back. A field the model has already is left as it is (a no-op undo)."""
    if name in model.model_fields:
        return lambda: None

    def rebuild() -> None:
        for changed in (model, *containers):
            changed.model_rebuild(force=True)

    model.model_fields[name] = FieldInfo(annotation=annotation, default_factory=annotation, description=description)
    model.__annotations__[name] = annotation
    rebuild()

    def undo() -> None:
        model.model_fields.pop(name, None)
        model.__annotations__.pop(name, None)
        rebuild()

    return undo
