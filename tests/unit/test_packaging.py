"""`pip install .`: a wheel (and an sdist) built from a copy of the sources, installed into a fresh venv with no
PYTHONPATH, whose console scripts run. Offline: setuptools comes from the dev venv (--no-build-isolation) and the
fresh venv borrows the dev venv's installed dependencies through a .pth line (its own site-packages, holding the
wheel's scaledapp and demo_app, comes first). About 10 s."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ["scaledapp", "kubectl-scaledapp", "scaledapp-demo-app", "scaledapp-demo-worker", "scaledapp-demo-load"]


def _run(*cmd: str | Path, cwd: Path, timeout: float = 120) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          check=False)
    assert proc.returncode == 0, f"{cmd} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(wheel, sdist), built from a copy of what the distribution is made of (the tree stays clean)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(ROOT / "operator" / "scaledapp", src / "operator" / "scaledapp", ignore=ignore)
    shutil.copytree(ROOT / "demo-app" / "demo_app", src / "demo-app" / "demo_app", ignore=ignore)
    dist = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", dist, src, cwd=src)
    _run(sys.executable, "-c", f"from setuptools import build_meta; build_meta.build_sdist({str(dist)!r})", cwd=src)
    (wheel,) = dist.glob("scaledapp-*.whl")
    (sdist,) = dist.glob("scaledapp-*.tar.gz")
    return wheel, sdist


def test_the_wheel_holds_both_packages_the_scripts_and_the_data_files(built: tuple[Path, Path]) -> None:
    wheel, sdist = built
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = archive.read("scaledapp-0.1.0.dist-info/entry_points.txt").decode()
    assert {"scaledapp/__main__.py", "scaledapp/kubectl_plugin.py", "scaledapp/tiers/base.py",
            "scaledapp/resources/files/postgres-start.sh", "demo_app/serve.py"} <= names
    assert all(f"{script} =" in entry_points for script in SCRIPTS), entry_points
    with tarfile.open(sdist) as archive:
        sdist_names = archive.getnames()
    assert any(n.endswith("operator/scaledapp/resources/files/primary-init.sh") for n in sdist_names)
    assert any(n.endswith("demo-app/demo_app/worker.py") for n in sdist_names)


def test_a_fresh_venv_runs_the_console_scripts_without_pythonpath(built: tuple[Path, Path], tmp_path: Path) -> None:
    wheel, _ = built
    venv = tmp_path / "fresh"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    _run(sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q", "--no-deps",
         "--no-index", wheel, cwd=tmp_path)
    site = Path(_run(venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                     cwd=tmp_path).strip())
    (site / "zz_dev_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    where = _run(venv / "bin" / "python", "-c", "import scaledapp, demo_app; print(scaledapp.__file__, "
                 "demo_app.__file__)", cwd=tmp_path).split()
    assert all(path.startswith(str(site)) for path in where), where
    assert "The ScaledApp operator" in _run(venv / "bin" / "scaledapp", "--help", cwd=tmp_path)
    assert "why" in _run(venv / "bin" / "kubectl-scaledapp", "--help", cwd=tmp_path)
    assert "--profile" in _run(venv / "bin" / "scaledapp-demo-load", "--help", cwd=tmp_path)
    for script in SCRIPTS:
        assert (venv / "bin" / script).exists(), script
    # The app and the worker serve when run; importing what their scripts call is the offline check.
    _run(venv / "bin" / "python", "-c", "from demo_app.serve import main; from demo_app.worker import main as w",
         cwd=tmp_path)
    # The operator finds its data files (postgres scripts) inside the installed package.
    _run(venv / "bin" / "python", "-c", "from importlib import resources; "
         "assert resources.files('scaledapp.resources').joinpath('files', 'primary-init.sh').read_text()",
         cwd=tmp_path)
