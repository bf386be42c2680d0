"""Local control-plane fixtures: `cluster` (session) and `namespace` (per test).

The control plane is hack/localcluster/cluster.sh: etcd, kube-apiserver, kube-controller-manager, kube-scheduler
and kwok with 3 fake nodes (kwok-node-0..2), all plain processes with state in .localcluster/.

    @pytest.mark.cluster
    def test_something(cluster: Cluster, namespace: str) -> None:
        cluster.apply({...manifest...}, namespace=namespace)
        pods = cluster.get_json("pods", "-n", namespace)["items"]
        core = kubernetes.client.CoreV1Api(cluster.api_client())

Session policy: the fixture runs `cluster.sh up`, which reuses a running healthy control plane in well under a
second, heals one with a dead component, or starts one (~5 s warm). At the end of the session the control plane
is LEFT RUNNING, so the next run starts instantly and parallel sessions in the same tree never pull it from under
each other; `make cluster-down` stops it. Under CI (CI=true), or with SCALEDAPP_CLUSTER_TEARDOWN=1, a session
stops a control plane it started itself, leaving nothing behind (one it found running is always left alone).

Tests that break the control plane on purpose use `with private_cluster(tmp_path / "state") as scratch:`, a
throw-away second control plane on free ports, so the shared one is never disturbed.

A missing prerequisite (binaries not built, no Go to build them, a port taken) FAILS the fixture with cluster.sh's
message, which names the problem and the fix; it never skips.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from tests.support.wait import wait_for

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_SH = ROOT / "hack" / "localcluster" / "cluster.sh"
UP_TIMEOUT = 300.0


class KubectlError(RuntimeError):
    """kubectl exited non-zero; the message carries the command, exit code and stderr."""

    def __init__(self, args: Sequence[str], returncode: int, stdout: str, stderr: str) -> None:
        self.args_ = list(args)
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        super().__init__(f"kubectl {' '.join(args)} exited {returncode}: {stderr.strip() or stdout.strip()}")


ManifestSource = str | Mapping[str, Any] | Sequence[Mapping[str, Any]]  # YAML text, one object or several


@dataclass
class Cluster:
    """A running local control plane, and the ways to talk to it."""

    kubeconfig: Path
    kubectl_path: Path
    state_dir: Path
    script: Path = CLUSTER_SH
    env: dict[str, str] = field(default_factory=dict)
    overrides: dict[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------------ kubectl

    @property
    def log_dir(self) -> Path:
        """.localcluster/logs: where the components log (a good place for other processes' test logs too)."""
        return self.state_dir / "logs"

    def kubectl_run(
        self, *args: str, input: str | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster and return the completed process, whatever its exit code."""
        return subprocess.run(
            [str(self.kubectl_path), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            check=False,
        )

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 60.0) -> str:
        """Run kubectl against this cluster; return its stdout, raise KubectlError if it fails."""
        proc = self.kubectl_run(*args, input=input, timeout=timeout)
        if proc.returncode != 0:
            raise KubectlError(args, proc.returncode, proc.stdout, proc.stderr)
        return proc.stdout

    def get_json(self, *args: str) -> dict[str, Any]:
        """`kubectl get ARGS -o json`, parsed (e.g. get_json("pods", "-n", ns, "-l", "app=web"))."""
        data: dict[str, Any] = json.loads(self.kubectl("get", *args, "-o", "json"))
        return data

    def apply(self, manifest: ManifestSource, namespace: str | None = None) -> str:
        """Server-side apply a manifest (YAML text, one object, or a list of objects); return kubectl's output."""
        if isinstance(manifest, str):
            text = manifest
        elif isinstance(manifest, Mapping):
            text = yaml.safe_dump(dict(manifest))
        else:
            text = yaml.safe_dump_all([dict(m) for m in manifest])
        ns = ["-n", namespace] if namespace else []
        return self.kubectl("apply", "--server-side", "--field-manager=tests", *ns, "-f", "-", input=text)

    # ------------------------------------------------------------------ python client

    def api_client(self) -> ApiClient:
        """A new official `kubernetes.client.ApiClient` authenticated as the cluster admin (close it, or use `with`)."""
        from kubernetes import config

        client: ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig)
        )
        return client

    # ------------------------------------------------------------------ the control plane itself

    def run_script(self, *args: str, timeout: float = UP_TIMEOUT) -> subprocess.CompletedProcess[str]:
        """Run hack/localcluster/cluster.sh ARGS (up, status, down, env) for THIS cluster; never raises on exit code."""
        return run_cluster_sh(*args, timeout=timeout, overrides=self.overrides)

    def ensure_up(self) -> None:
        """`cluster.sh up`: restart whatever component is down (e.g. after a test killed one); fail if it cannot."""
        proc = self.run_script("up")
        if proc.returncode != 0:
            pytest.fail(f"cluster.sh up failed:\n{tail(proc.stderr)}", pytrace=False)

    def pid(self, component: str) -> int:
        """The pid of a control-plane component (etcd, kube-apiserver, ..., kwok, pv-provisioner)."""
        return int((self.state_dir / "pids" / f"{component}.pid").read_text().strip())


def run_cluster_sh(
    *args: str, timeout: float = UP_TIMEOUT, overrides: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run cluster.sh; `overrides` (SCALEDAPP_STATE, LC_*_PORT) select a cluster other than the shared one."""
    return subprocess.run(
        [str(CLUSTER_SH), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=ROOT,
        env={**os.environ, **(overrides or {})},
    )


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def pod_ready(pod: Mapping[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def ready_pods(cluster: Cluster, namespace: str, selector: str) -> list[dict[str, Any]]:
    """The Running, Ready, not-terminating pods matching a label selector."""
    items: list[dict[str, Any]] = cluster.get_json("pods", "-n", namespace, "-l", selector)["items"]
    return [
        p
        for p in items
        if p.get("status", {}).get("phase") == "Running" and pod_ready(p) and not p["metadata"].get("deletionTimestamp")
    ]


def start_cluster(overrides: Mapping[str, str] | None = None) -> Cluster:
    """`cluster.sh up` (reusing what runs) and connect to it; FAIL the test with cluster.sh's message if it cannot."""
    overrides = dict(overrides or {})
    state = overrides.get("SCALEDAPP_STATE") or os.environ.get("SCALEDAPP_STATE") or str(
        ROOT / (".localcluster-kwok" if overrides.get("LC_NODES") == "kwok" else ".localcluster")
    )
    up = run_cluster_sh("up", overrides=overrides)
    if up.returncode != 0:
        pytest.fail(
            f"could not start the local control plane (`hack/localcluster/cluster.sh up` failed; "
            f"logs in {state}/logs/):\n{tail(up.stderr)}",
            pytrace=False,
        )
    output = run_cluster_sh("env", timeout=30, overrides=overrides).stdout
    exported = dict(re.findall(r"^export (\w+)=(.*)$", output, flags=re.MULTILINE))
    if "KUBECONFIG" not in exported or "PATH" not in exported:
        pytest.fail(f"unexpected `cluster.sh env` output: {output!r}", pytrace=False)
    kubectl = shutil.which("kubectl", path=exported["PATH"])
    if kubectl is None:
        pytest.fail("kubectl not found among the pinned binaries: run `make tools`", pytrace=False)
    env = {**os.environ, **overrides, "KUBECONFIG": exported["KUBECONFIG"], "PATH": exported["PATH"]}
    kubeconfig = Path(exported["KUBECONFIG"])
    return Cluster(
        kubeconfig=kubeconfig, kubectl_path=Path(kubectl), state_dir=kubeconfig.parent, env=env, overrides=overrides
    )


def free_ports(count: int) -> list[int]:
    """`count` distinct TCP ports free on 127.0.0.1 right now."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]


@contextlib.contextmanager
def private_cluster(state_dir: Path) -> Iterator[Cluster]:
    """A second, throw-away control plane (own state folder, own free ports) for tests that break things on purpose
    (kill the apiserver, stop etcd): the shared `cluster` that other tests and sessions use is never disturbed.
    About 10 s to start and ~650 MiB while it runs; `cluster.sh down` at exit."""
    ports = free_ports(6)
    names = ("ETCD_PORT", "ETCD_PEER_PORT", "APISERVER_PORT", "KCM_PORT", "SCHEDULER_PORT", "KWOK_PORT")
    overrides = {"SCALEDAPP_STATE": str(state_dir), "LC_NODES": "kwok",
                 **{f"LC_{n}": str(p) for n, p in zip(names, ports, strict=True)}}
    try:
        yield start_cluster(overrides)
    finally:
        run_cluster_sh("down", timeout=120, overrides=overrides)


# The shared kwok cluster runs beside the real one: its own folder (.localcluster-kwok) and ports (cluster.sh).
KWOK = {"LC_NODES": "kwok"}
REAL = {"LC_NODES": "real"}


def _session_cluster(overrides: Mapping[str, str]) -> Iterator[Cluster]:
    was_running = run_cluster_sh("status", timeout=60, overrides=overrides).returncode == 0
    yield start_cluster(overrides)
    teardown = os.environ.get("SCALEDAPP_CLUSTER_TEARDOWN") == "1" or os.environ.get("CI") == "true"
    if not was_running and teardown:
        run_cluster_sh("down", timeout=180, overrides=overrides)


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """The shared kwok control plane, up with 3 Ready fake nodes (started once, reused if already running)."""
    yield from _session_cluster(KWOK)


@pytest.fixture(scope="session")
def real_cluster() -> Iterator[Cluster]:
    """The machine's one real node (containerd, kubelet, kube-proxy, CoreDNS, local-path) and its control plane:
    started once per session, reused if already running; only one can run per machine, so every test shares it."""
    yield from _session_cluster(REAL)


def _namespace_name(node: pytest.Item) -> str:
    base = re.sub(r"[^a-z0-9-]+", "-", node.name.lower()).strip("-")[:40].strip("-")
    return f"t-{base}-{secrets.token_hex(3)}"


def _fresh_namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    name = _namespace_name(request.node)
    cluster.kubectl("create", "namespace", name)
    # Pods are admitted only once the ServiceAccount controller has made the `default` ServiceAccount.
    wait_for(
        lambda: cluster.kubectl_run("get", "serviceaccount", "default", "-n", name).returncode == 0,
        timeout=30,
        what=f"the default ServiceAccount in namespace {name}",
    )
    yield name
    cluster.kubectl_run("delete", "namespace", name, "--wait=false", "--ignore-not-found")


@pytest.fixture
def namespace(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test (named after it), with its `default` ServiceAccount in place; deleted after.

    Deletion does not wait for the namespace to be gone (that takes the namespace controller ~5-15 s);
    names are unique, so nothing collides with a namespace still terminating.
    """
    yield from _fresh_namespace(cluster, request)


@pytest.fixture
def real_namespace(real_cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace on the real node's cluster, as `namespace` is on the kwok one."""
    yield from _fresh_namespace(real_cluster, request)
