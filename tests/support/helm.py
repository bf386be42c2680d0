"""The pinned helm (hack/localcluster/versions.env HELM_VERSION, built by `make tools`) and the chart."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "scaledapp-operator"
VERSIONS = ROOT / "hack" / "localcluster" / "versions.env"
BIN_ROOT = Path(os.environ.get("SCALEDAPP_BIN", Path.home() / ".cache" / "scaledapp" / "bin"))


def pinned_versions() -> dict[str, str]:
    out = {}
    for line in VERSIONS.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip()
    return out


def helm_path() -> Path:
    """The pinned helm binary; FAILS (never skips) with the command that builds it when it is missing."""
    version = pinned_versions()["HELM_VERSION"]
    path = BIN_ROOT / f"helm-v{version}" / "helm"
    if not os.access(path, os.X_OK):
        pytest.fail(f"helm v{version} is not built at {path}: run `make tools`", pytrace=False)
    return path


class HelmError(RuntimeError):
    def __init__(self, args: Sequence[str], proc: subprocess.CompletedProcess[str]) -> None:
        self.proc = proc
        super().__init__(f"helm {' '.join(args)} exited {proc.returncode}:\n{proc.stderr.strip() or proc.stdout}")


def helm_run(*args: str, kubeconfig: Path | None = None, timeout: float = 180.0,
             env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the pinned helm; never raises on the exit code. Its caches live under the state dir, not ~."""
    cmd = [str(helm_path()), *args]
    if kubeconfig is not None:
        cmd.append(f"--kubeconfig={kubeconfig}")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False,
                          env={**os.environ, **(env or {})}, cwd=ROOT)


def helm(*args: str, kubeconfig: Path | None = None, timeout: float = 180.0) -> str:
    """Run the pinned helm; return stdout, raise HelmError (with stderr) when it fails."""
    proc = helm_run(*args, kubeconfig=kubeconfig, timeout=timeout)
    if proc.returncode != 0:
        raise HelmError(args, proc)
    return proc.stdout


def set_args(values: Mapping[str, Any]) -> list[str]:
    """{"a.b": 1, "list": ["x", "y"]} -> ["--set-json", 'a.b=1', "--set-json", 'list=["x","y"]']."""
    import json

    out: list[str] = []
    for key, value in values.items():
        out += ["--set-json", f"{key}={json.dumps(value)}"]
    return out


def render(values: Mapping[str, Any] | None = None, namespace: str = "scaledapp-system",
           release: str = "scaledapp") -> list[dict[str, Any]]:
    """`helm template` the chart (templates only; crds/ are checked on their own) into objects."""
    text = helm("template", release, str(CHART), "--namespace", namespace, *set_args(values or {}))
    return [doc for doc in yaml.safe_load_all(text) if doc]



def install(kubeconfig: Path, release: str, namespace: str, values: Mapping[str, Any] | None = None,
            *, skip_crds: bool = False, upgrade: bool = False, timeout: str = "120s") -> str:
    """`helm install` (or `upgrade --reuse-values`) the chart and wait for its Deployments; returns helm's output
    with the rendered NOTES. Pass skip_crds=True when the CRD is already in the cluster (other tests install it
    from crds/): helm would skip an existing CRD anyway, and it never upgrades or deletes one."""
    verb = ["upgrade", "--reuse-values"] if upgrade else ["install", "--create-namespace"]
    flags = ["--skip-crds"] if skip_crds and not upgrade else []
    return helm(*verb, release, str(CHART), "--namespace", namespace, "--wait", "--timeout", timeout, *flags,
                *set_args(values or {}), kubeconfig=kubeconfig, timeout=300)
