"""The operator as a real process (`python -m scaledapp`) against the local control plane."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.wait import wait_for

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "scaledapps.scaledapp.dev.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OperatorProcess:
    """Start, kill and restart the operator; its log is kept for failure messages.

    `kubeconfig` may be any kubeconfig, e.g. one holding a ServiceAccount's token (see
    `token_kubeconfig`) to run the operator with exactly the chart's RBAC. `scope` are the scope
    arguments (default `--all-namespaces`; `["-n", "ns"]` for one namespace); `name` names the log file.
    """

    def __init__(self, kubeconfig: str, log_dir: Path, extra_env: dict[str, str] | None = None, *,
                 scope: Sequence[str] = ("--all-namespaces",), name: str = "operator-under-test") -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_dir / f"{name}.log"
        self.extra_env = extra_env or {}
        self.scope = list(scope)
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.metrics_port = 0

    def start(self) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        env = {
            **os.environ,
            "KUBECONFIG": self.kubeconfig,
            "PYTHONUNBUFFERED": "1",
            **self.extra_env,
        }
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "scaledapp", *self.scope, "--log-format", "json",
             "--liveness", f"http://127.0.0.1:{self.port}/healthz", f"--metrics-port={self.metrics_port}"],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
        )
        wait_for(self.healthy, 60, f"the operator's liveness endpoint (log: {self.log_path})", interval=0.2)

    def healthy(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"operator exited with {self.proc and self.proc.returncode}: {self.tail()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL: no chance to finish anything (a crash, not a shutdown)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def log_records(self) -> list[dict[str, Any]]:
        records = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
        return records


def token_kubeconfig(admin_kubeconfig: Path, token: str, path: Path) -> Path:
    """A kubeconfig for the admin kubeconfig's server and CA that authenticates with a bearer token only
    (e.g. from `kubectl create token SA`): whatever runs with it has exactly that identity's RBAC."""
    admin = yaml.safe_load(admin_kubeconfig.read_text())
    cluster = dict(admin["clusters"][0]["cluster"])
    ca = cluster.get("certificate-authority")
    if ca and not Path(ca).is_absolute():
        cluster["certificate-authority"] = str((admin_kubeconfig.parent / ca).resolve())
    return write_token_kubeconfig(cluster, token, path)


def write_token_kubeconfig(cluster: dict[str, Any], token: str, path: Path) -> Path:
    """A kubeconfig (mode 0600) for `cluster` (server, CA) that authenticates with a bearer token only."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "target", "cluster": cluster}],
        "users": [{"name": "token", "user": {"token": token}}],
        "contexts": [{"name": "token", "context": {"cluster": "target", "user": "token"}}],
        "current-context": "token",
    }
    path.write_text(yaml.safe_dump(config))
    path.chmod(0o600)
    return path


@pytest.fixture(scope="session")
def crd(cluster: Any) -> Path:
    """The generated CRD installed and Established."""
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    wait_crd_established(cluster)
    return CRD


def crd_is_established(crd_json: str) -> bool:
    """True when a CRD (as `kubectl get -o json` prints it) has Established=True; a brand-new one has no
    conditions at all, which a jsonpath filter treats as an error, so read the JSON instead."""
    conditions = json.loads(crd_json).get("status", {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def wait_crd_established(cluster: Any) -> None:
    """Poll: `kubectl wait` errors out while a brand-new CRD has no conditions yet."""
    wait_for(lambda: crd_is_established(cluster.kubectl("get", "crd/scaledapps.scaledapp.dev", "-o", "json")),
             60, "the ScaledApp CRD to be Established")


@pytest.fixture(scope="session")
def operator(cluster: Any, crd: Path) -> Iterator[OperatorProcess]:
    """One operator process for the session, watching every namespace."""
    proc = OperatorProcess(str(cluster.kubeconfig), Path(cluster.log_dir))
    proc.start()
    yield proc
    proc.stop()
