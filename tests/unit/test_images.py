"""The images, checked without a Docker engine: Dockerfiles, build contexts and the requirements they install.

What this cannot check (a real build and run) is listed in the README under "The kind path".
"""

from __future__ import annotations

import ast
import json
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from scaledapp.resources.common import APP_UID

ROOT = Path(__file__).resolve().parents[2]
# (Dockerfile, build context, requirements file, source packages)
IMAGES = {
    "operator": (ROOT / "operator" / "Dockerfile", ROOT, ROOT / "requirements" / "runtime.txt",
                 [ROOT / "operator" / "scaledapp"]),
    "demo-app": (ROOT / "demo-app" / "Dockerfile", ROOT, ROOT / "demo-app" / "requirements.txt",
                 [ROOT / "demo-app" / "demo_app"]),
}
PINNED_PYTHON = re.compile(r"^python:3\.11\.\d+-slim-bookworm$")


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuations joined and comments dropped."""
    text = re.sub(r"\\\n(\s*#.*\n)*", " ", dockerfile.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages(dockerfile: Path) -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for word, rest in instructions(dockerfile):
        if word == "FROM":
            out.append([])
        if out:
            out[-1].append((word, rest))
    return out


def build_arg(dockerfile: Path, name: str) -> str:
    for word, rest in instructions(dockerfile):
        if word == "ARG" and rest.startswith(f"{name}="):
            return rest.split("=", 1)[1]
    raise AssertionError(f"no ARG {name} in {dockerfile}")


def dockerignore_includes(context: Path, path: str) -> bool:
    """Docker's .dockerignore rules: the last matching pattern wins; a pattern also matches a path's parents."""
    ignore = context / ".dockerignore"
    patterns = [ln.strip() for ln in ignore.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    included = True
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        rx = re.escape(body.strip("/")).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(rx, c) for c in candidates):
            included = negate
    return included


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_multi_stage_on_the_pinned_base_and_non_root(image: str) -> None:
    dockerfile, _, _, _ = IMAGES[image]
    assert PINNED_PYTHON.match(build_arg(dockerfile, "PYTHON_IMAGE"))
    all_stages = stages(dockerfile)
    assert len(all_stages) >= 2, "multi-stage"
    assert all(s[0][1].split()[0] == "${PYTHON_IMAGE}" for s in all_stages)
    final = all_stages[-1]
    users = [rest for word, rest in final if word == "USER"]
    assert users == [f"{APP_UID}:{APP_UID}"], "a numeric non-root user, the UID the pods run as"
    final_runs = " ".join(rest for word, rest in final if word == "RUN")
    for tool in ("apt-get", "gcc", "build-essential", "pip install", "make "):
        assert tool not in final_runs, f"{tool} in the final stage"
    assert any(word == "COPY" and "--from=build" in rest for word, rest in final)


def test_both_images_share_one_base() -> None:
    bases = {build_arg(d, "PYTHON_IMAGE") for d, _, _, _ in IMAGES.values()}
    assert len(bases) == 1, bases


def test_the_chart_runs_the_operator_as_the_image_user() -> None:
    values = yaml.safe_load((ROOT / "charts" / "scaledapp-operator" / "values.yaml").read_text())
    assert values["runAsUser"] == APP_UID


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_what_the_dockerfile_copies_is_in_its_context(image: str) -> None:
    dockerfile, context, _, _ = IMAGES[image]
    for word, rest in instructions(dockerfile):
        if word == "COPY" and "--from=" not in rest:
            *sources, _dest = rest.split()
            for source in sources:
                assert (context / source).exists(), source
                assert dockerignore_includes(context, source), f"{source} is excluded by .dockerignore"


def test_the_root_context_carries_only_the_distribution() -> None:
    for path in ("pyproject.toml", "README.md", "operator/scaledapp/kube.py", "demo-app/demo_app/app.py",
                 "operator/scaledapp/resources/files/primary-init.sh", "requirements/build.txt"):
        assert dockerignore_includes(ROOT, path), path
    for path in (".git/config", ".venv/bin/python", ".localcluster/kubeconfig", "tests/conftest.py",
                 "operator/scaledapp/__pycache__/kube.cpython-311.pyc", "devharness/twin.py", "bench/run.py",
                 "requirements/dev.txt", "scaledapp.egg-info/PKG-INFO", "charts/scaledapp-operator/values.yaml"):
        assert not dockerignore_includes(ROOT, path), path


def scripts() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    out: dict[str, str] = project["scripts"]
    return out


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_the_image_pip_installs_the_wheel_of_the_project_and_runs_its_console_script(image: str) -> None:
    """The image installs the package the way `pip install .` does: a wheel built from pyproject.toml with the
    pinned setuptools, installed into the venv the final stage copies; no PYTHONPATH, no source tree at run time,
    and the image starts a console script of pyproject.toml's [project.scripts]."""
    dockerfile, context, requirements, _ = IMAGES[image]
    build, final = stages(dockerfile)[0], stages(dockerfile)[-1]
    runs = [rest for word, rest in build if word == "RUN"]
    copies = [rest.split() for word, rest in build if word == "COPY"]
    # the whole distribution is in the build stage, as pip sees it in a checkout
    copied = {src for *sources, _ in copies for src in sources}
    assert {"pyproject.toml", "README.md", "operator/scaledapp", "demo-app/demo_app"} <= copied, copied
    assert str(requirements.relative_to(context)) in copied and "requirements/build.txt" in copied
    wheel = next((r for r in runs if "pip wheel" in r), "")
    assert "--no-build-isolation" in wheel and "/opt/build/bin/pip" in wheel, "the pinned setuptools builds it"
    assert any("/opt/build/bin/pip install" in r and "-r /tmp/req/build.txt" in r for r in runs)
    assert re.search(r"/opt/venv/bin/pip install --no-deps --no-index /tmp/dist/scaledapp-\*\.whl", wheel), wheel
    # the pins first, then the wheel on top of them: the image runs the pinned versions
    pins = next(i for i, r in enumerate(runs) if f"-r /tmp/req/{requirements.name}" in r)
    assert pins < runs.index(wheel)
    assert [rest for word, rest in final if word == "COPY"] == ["--from=build /opt/venv /opt/venv"]
    env = " ".join(rest for word, rest in final if word == "ENV")
    assert "PATH=/opt/venv/bin:$PATH" in env
    entry = [json.loads(rest) for word, rest in final if word in ("ENTRYPOINT", "CMD")]
    assert entry and entry[0][0] in scripts(), f"{image} starts {entry[0]}, not a console script"
    target = scripts()[entry[0][0]].split(":")[0]
    assert target.split(".")[0] == {"operator": "scaledapp", "demo-app": "demo_app"}[image]


# An assignment (shell, Dockerfile ENV, YAML env value) or a Python dict key; build.sh's grep for one is not.
SETS_PYTHONPATH = re.compile(r"""(?<![\^'])\bPYTHONPATH\s*=(?!=)|["']PYTHONPATH["']\s*:|name:\s*PYTHONPATH""")


def test_no_pythonpath_in_dockerfiles_makefile_chart_or_tests() -> None:
    """Issue #14: the package is installed (`make venv`: editable; the images: the wheel), never put on a path."""
    files = [ROOT / "Makefile", ROOT / "operator" / "Dockerfile", ROOT / "demo-app" / "Dockerfile",
             ROOT / "hack" / "kind" / "kind.sh", ROOT / "hack" / "images" / "build.sh"]
    files += [p for p in (ROOT / "charts").rglob("*") if p.is_file()]
    files += [p for p in (ROOT / "tests").rglob("*.py") if p != Path(__file__) and "__pycache__" not in p.parts]
    offenders = []
    for path in files:
        for n, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            code = line.split("#", 1)[0] if path.suffix in ("", ".sh", ".py") or path.name == "Makefile" else line
            if SETS_PYTHONPATH.search(code):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []


def third_party_imports(packages: list[Path]) -> set[str]:
    names: set[str] = set()
    local = {p.name for p in packages}
    for package in packages:
        for source in package.rglob("*.py"):
            for node in ast.walk(ast.parse(source.read_text())):
                if isinstance(node, ast.Import):
                    names.update(a.name.split(".")[0] for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names.add(node.module.split(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in local and n != "__future__"}


def closure(requirements: Path) -> set[str]:
    """Every distribution the requirements file installs, with their dependencies (as installed here).

    A line whose marker does not hold here (`async-timeout==...; python_full_version < "3.11.3"`) installs nothing.
    """
    lines = [ln.split("#")[0].strip() for ln in requirements.read_text().splitlines()]
    top = [Requirement(ln) for ln in lines if ln and not ln.startswith("-")]
    todo = [req.name for req in top if req.marker is None or req.marker.evaluate()]
    seen: set[str] = set()
    while todo:
        name = todo.pop().lower().replace("_", "-")
        if name in seen:
            continue
        seen.add(name)
        for raw in metadata.requires(name) or []:
            req = Requirement(raw)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_the_requirements_provide_every_import(image: str) -> None:
    _, _, requirements, packages = IMAGES[image]
    provided = closure(requirements)
    dists = metadata.packages_distributions()
    missing = {}
    for module in third_party_imports(packages):
        owners = {d.lower().replace("_", "-") for d in dists.get(module, [])}
        if not owners & provided:
            missing[module] = sorted(owners)
    assert missing == {}, f"imported but not installed by {requirements.name}: {missing}"
