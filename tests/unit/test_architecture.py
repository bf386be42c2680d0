"""The structure docs/architecture.md describes, checked: tiers own their facts, the core stays small,
the doc names every module. (The import layers are checked by `make lint`: .importlinter.)"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from scaledapp import api, resources, tiers

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "operator" / "scaledapp"
# The modules of the loop: they ask the tiers and never switch on a tier's name.
LOOP = ["scaler.py", "observe.py", "act.py", "explain.py", "decide.py", "verification.py", "windows.py",
        "conditions.py", "plan.py"]
TIER_WORDS = {t.name for t in tiers.TIERS} | {t.status_field for t in tiers.TIERS}
# status.app is the `kubectl get` column "ready/desired app pods", an API field rather than a tier switch.
ALLOWED = {("explain.py", "app")}
MAX_LINES, MAX_PARAMS = 60, 6


def _strings(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


@pytest.mark.parametrize("module", LOOP)
def test_the_loop_asks_the_tiers_instead_of_switching_on_their_names(module: str) -> None:
    named = {word for word in _strings(CORE / module) & TIER_WORDS if (module, word) not in ALLOWED}
    assert not named, f"{module} names tiers {sorted(named)}: ask the tier (tiers.base.TierModel) instead"


def test_every_size_belongs_to_exactly_one_tier() -> None:
    sizes = tiers.initial_sizes(api.ScaledAppSpec())
    assert list(sizes) == [t.name for t in tiers.TIERS]  # one size per tier, keyed by its name


def test_every_tier_has_its_status_entry_and_ladder_rung() -> None:
    assert {t.status_field for t in tiers.TIERS} == set(api.TiersStatus.model_fields)
    assert tiers.ladder() == tuple(t.name for t in tiers.TIERS)
    assert all(t.spec_block in api.ScaledAppSpec.model_fields for t in tiers.TIERS)


def test_every_builder_module_is_in_the_builders_registry() -> None:
    """A builder module declares its BUILDER, and build_children / all_child_kinds only know the registry."""
    declared = {path.stem for path in (CORE / "resources").glob("*.py") if "\nBUILDER = " in path.read_text()}
    assert declared == {b.children.__module__.rsplit(".", 1)[1] for b in resources.BUILDERS}
    assert len({b.name for b in resources.BUILDERS}) == len(resources.BUILDERS)


TWIN = ROOT / "devharness" / "twin"
# Where dynamics.py names "cache", it is the demo app's dependency label (scaledapp_dependency_*{dependency=...}).
TWIN_ALLOWED = {"cache"}


def test_the_twin_mirrors_the_tiers() -> None:
    """One twin tier per operator tier, each in the module named like the operator's, and the physics that
    couples them asks them instead of naming them."""
    from devharness.twin.tiers import TWIN_TIERS

    assert [t.name for t in TWIN_TIERS] and {t.name for t in TWIN_TIERS} == set(tiers.ladder())
    for twin in TWIN_TIERS:
        module = type(twin).__module__.rsplit(".", 1)[1]
        assert module == type(twin.tier).__module__.rsplit(".", 1)[1], (twin.name, module)
    named = _strings(TWIN / "dynamics.py") & TIER_WORDS - TWIN_ALLOWED
    assert not named, f"dynamics.py names tiers {sorted(named)}: ask the twin's tier modules instead"


def test_the_twins_functions_are_short() -> None:
    too_long = [(where, lines) for path in sorted(TWIN.rglob("*.py")) for where, lines, _ in _functions(path)
                if lines > MAX_LINES]
    assert not too_long, too_long


def _functions(path: Path) -> list[tuple[str, int, int]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args
            params = [a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs] if a.arg not in ("self", "cls")]
            params += [a.arg for a in (args.vararg, args.kwarg) if a is not None]
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            out.append((f"{path.relative_to(ROOT)}:{node.lineno} {node.name}", lines, len(params)))
    return out


def test_the_operators_functions_are_short_and_take_few_parameters() -> None:
    functions = [f for path in sorted(CORE.rglob("*.py")) for f in _functions(path)]
    assert functions
    too_long = [(where, lines) for where, lines, _ in functions if lines > MAX_LINES]
    too_wide = [(where, params) for where, _, params in functions if params > MAX_PARAMS]
    assert not too_long, too_long
    assert not too_wide, too_wide


def test_architecture_doc_names_every_module_and_only_existing_ones() -> None:
    doc = (ROOT / "docs" / "architecture.md").read_text()
    listing = doc.split("```", 2)[1]
    modules = {p.name for p in CORE.glob("*.py")} - {"__init__.py", "__main__.py"}
    named = set(re.findall(r"(?<![/\w])([a-z_]+\.py)\b", listing))  # bare names: modules of scaledapp
    missing = {m for m in modules if m not in named}
    assert not missing, f"docs/architecture.md does not name {sorted(missing)}"
    for package in ("tiers/", "resources/", "devharness/twin/"):
        assert package in listing
    stale = {m for m in named if not (CORE / m).exists() and not (CORE / "resources" / m).exists()}
    assert not stale, f"docs/architecture.md names modules that do not exist: {sorted(stale)}"
