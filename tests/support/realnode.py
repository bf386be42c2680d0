"""Helpers for tests on the machine's real node (tests/realnode): restricted pod specs, one-off pods, port-forward,
a throw-away network namespace outside the cluster, and readers of the host state the node changes.

    restrict(real_cluster, ns)                     # Pod Security `restricted`, enforced, as users run it
    cluster.apply(pod("web", [container("web", PYTHON, ["python", "-m", "http.server"])]), namespace=ns)
    run = run_pod(real_cluster, ns, "probe", TOOLBOX, "getent hosts kubernetes.default")
    assert run.exit_code == 0, run.logs

Facts about the node (names, ranges, folders) are those of hack/localcluster/node.sh.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.cluster import ROOT, Cluster, free_ports, pod_ready
from tests.support.wait import wait_for

NODE_NAME = "scaledapp-node"
BRIDGE = "cni-scaledapp0"
POD_CIDR = "10.244.0.0/24"
GUARD_FWD = "SCALEDAPP-NODE-FWD"
CACHE = Path(os.environ.get("SCALEDAPP_CACHE") or Path.home() / ".cache" / "scaledapp")
NODE_CACHE = CACHE / "node"
HOST_RECORD = NODE_CACHE / "host-before.env"
CONTAINERD_ROOT = NODE_CACHE / "containerd"
NODE_RUN = Path("/run/scaledapp-node")

TOOLBOX = "localhost/scaledapp/toolbox:1"  # Debian essential: sh, bash, coreutils, getent; user root
PYTHON = "ghcr.io/scaledapp/demo-app:0.1.0"  # python in /opt/venv (on PATH), sh, getent; user 10001
PYTHON_UID = 10001
NOBODY = 65534


def pinned(name: str) -> str:
    """A pin from hack/localcluster/versions.env (e.g. pinned("K8S_VERSION") -> "1.34.4")."""
    text = (ROOT / "hack" / "localcluster" / "versions.env").read_text()
    match = re.search(rf"^{re.escape(name)}=(\S+)$", text, flags=re.MULTILINE)
    if match is None:
        raise KeyError(f"{name} is not in versions.env")
    return match.group(1)


# ------------------------------------------------------------------ restricted pods


def restrict(cluster: Cluster, namespace: str) -> None:
    """Enforce Pod Security `restricted` in the namespace: every pod the test makes must pass it to be admitted."""
    cluster.kubectl("label", "namespace", namespace, "--overwrite",
                    "pod-security.kubernetes.io/enforce=restricted",
                    "pod-security.kubernetes.io/enforce-version=latest")


def container(name: str, image: str, command: Sequence[str], **extra: Any) -> dict[str, Any]:
    """A container that passes `restricted`: no privilege escalation, every capability dropped; never pulled."""
    return {
        "name": name,
        "image": image,
        "imagePullPolicy": "Never",
        "command": list(command),
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "128Mi"}},
        **extra,
    }


def pod_spec(containers: Sequence[Mapping[str, Any]], *, uid: int, fs_group: int | None = None,
             **extra: Any) -> dict[str, Any]:
    """A pod spec running as uid:uid (non-root, seccomp RuntimeDefault), optionally with an fsGroup."""
    security: dict[str, Any] = {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid,
                                "seccompProfile": {"type": "RuntimeDefault"}}
    if fs_group is not None:
        security["fsGroup"] = fs_group
    return {"securityContext": security, "terminationGracePeriodSeconds": 2, "automountServiceAccountToken": False,
            "containers": [dict(c) for c in containers], **extra}


def pod(name: str, containers: Sequence[Mapping[str, Any]], *, uid: int, labels: Mapping[str, str] | None = None,
        **extra: Any) -> dict[str, Any]:
    """A restricted Pod manifest (see pod_spec)."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": dict(labels or {"app": name})},
            "spec": pod_spec(containers, uid=uid, **extra)}


def wait_pod_ready(cluster: Cluster, namespace: str, name: str, timeout: float = 60.0,
                   not_uid: str | None = None) -> dict[str, Any]:
    """Wait until pod NAME is Ready (and, with not_uid, is a different pod than that one); return it."""

    def ready() -> dict[str, Any] | None:
        found = cluster.kubectl_run("get", "pod", name, "-n", namespace, "-o", "json")
        if found.returncode != 0:
            return None
        item: dict[str, Any] = json.loads(found.stdout)
        if not_uid is not None and item["metadata"]["uid"] == not_uid:
            return None
        return item if pod_ready(item) and not item["metadata"].get("deletionTimestamp") else None

    return wait_for(ready, timeout, f"pod {namespace}/{name} to be Ready")


@dataclass(frozen=True)
class PodRun:
    phase: str
    exit_code: int
    logs: str


def run_pod(cluster: Cluster, namespace: str, name: str, image: str, script: str, *, uid: int = NOBODY,
            timeout: float = 60.0) -> PodRun:
    """Run `sh -c SCRIPT` once in a restricted pod; wait for it to finish and return its phase, exit code, output."""
    cluster.apply(pod(name, [container("main", image, ["sh", "-c", script])], uid=uid, restartPolicy="Never"),
                  namespace=namespace)

    def finished() -> dict[str, Any] | None:
        item = cluster.get_json("pod", name, "-n", namespace)
        return item if item.get("status", {}).get("phase") in ("Succeeded", "Failed") else None

    item = wait_for(finished, timeout, f"one-off pod {namespace}/{name} to finish")
    terminated = item["status"]["containerStatuses"][0]["state"].get("terminated", {})
    logs = cluster.kubectl("logs", name, "-n", namespace)
    return PodRun(phase=item["status"]["phase"], exit_code=int(terminated.get("exitCode", -1)), logs=logs)


def http_get(url: str, timeout: float = 3.0) -> str:
    """GET url (loopback, the pod or Service ranges, or a test's own netns only) and return the body as text."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        body: bytes = response.read()
        return body.decode()


@contextlib.contextmanager
def port_forward(cluster: Cluster, namespace: str, target: str, remote_port: int) -> Iterator[int]:
    """`kubectl port-forward TARGET LOCAL:REMOTE` on 127.0.0.1 and a free local port, which it yields once the
    port accepts connections; stopped at exit."""
    (local,) = free_ports(1)
    log = cluster.log_dir / f"port-forward-{namespace}-{local}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(cluster.kubectl_path), f"--kubeconfig={cluster.kubeconfig}", "port-forward", "-n", namespace,
             "--address=127.0.0.1", target, f"{local}:{remote_port}"],
            stdout=out, stderr=subprocess.STDOUT, env=cluster.env,
        )
    try:
        wait_for(lambda: proc.poll() is None and "Forwarding from" in log.read_text(), 20,
                 f"kubectl port-forward {target} to listen on 127.0.0.1:{local} (log {log})")
        yield local
    finally:
        _stop(proc)


# ------------------------------------------------------------------ a network outside the cluster


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a host command, capturing its output; raise with its stderr if check and it fails."""
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=30, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")
    return proc


@dataclass(frozen=True)
class Outside:
    """A TCP listener in a network namespace of its own, reachable from the host by a host route."""

    name: str  # sa-egress-<random>: the argv[0] of the process that holds the namespace
    host_if: str
    address: str
    port: int
    token: str
    log: Path


def _free_octet() -> int:
    for _ in range(50):
        x = 1 + secrets.randbelow(254)
        net = f"10.250.{x}.0/24"
        if not sh("ip", "-4", "route", "show", "to", "root", net).stdout.strip() and not sh(
            "ip", "-4", "addr", "show", "to", net
        ).stdout.strip():
            return x
    raise RuntimeError("no free 10.250.<x>.0/24 found for the test network namespace")


def _stop(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def outside_listener(workdir: Path) -> Iterator[Outside]:
    """A throw-away network namespace joined to the host by a veth pair whose host end is NOT in the node's bridge:
    host 10.250.x.1/32, namespace 10.250.x.2/30, a host route to 10.250.x.2, a route back from the namespace to the
    pod range (so only the node's guard can stop a pod), IPv6 off on both ends (no stray neighbour discovery), and
    an HTTP server on 10.250.x.2 serving a token. Everything is removed at exit.

    The namespace is held by a process (`unshare --net`, entered with nsenter), never named with `ip netns add`:
    that makes /run/netns a recursive self-bind mount when it is not one yet, which duplicates every pod's netns
    mount underneath, and containerd can then never unlink a pod's netns ("device or resource busy"): every pod
    that existed at that moment hangs in Terminating."""
    suffix = secrets.token_hex(3)
    name, host_if, peer_if = f"sa-egress-{suffix}", f"sae{suffix}h", f"sae{suffix}n"
    x = _free_octet()
    host_ip, peer_ip = f"10.250.{x}.1", f"10.250.{x}.2"
    (port,) = free_ports(1)
    token = secrets.token_hex(8)
    www = workdir / "www"
    www.mkdir(parents=True, exist_ok=True)
    (www / "index.html").write_text(token)
    log = workdir / "listener.log"
    holder: subprocess.Popen[bytes] | None = None
    server: subprocess.Popen[bytes] | None = None
    try:
        holder = subprocess.Popen(["unshare", "--net", "--", "bash", "-c", f"exec -a {name} sleep infinity"])
        own_netns = Path("/proc/self/ns/net").readlink()
        pid = str(holder.pid)
        wait_for(lambda: Path(f"/proc/{pid}/ns/net").readlink() != own_netns, 10,
                 f"{name} (pid {pid}) to be in a network namespace of its own", ignore=(OSError,))
        inside = ("nsenter", f"--target={pid}", "--net", "--")
        sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", peer_if, "netns", pid)
        for where, ifname in (((), host_if), (inside, peer_if)):
            ipv6 = f"net.ipv6.conf.{ifname}.disable_ipv6"
            sh(*where, "sysctl", "-qw", f"{ipv6}=1", check=False)  # absent when the kernel has no IPv6
        sh("ip", "addr", "add", f"{host_ip}/32", "dev", host_if)
        sh("ip", "link", "set", host_if, "up")
        sh("ip", "route", "add", f"{peer_ip}/32", "dev", host_if, "src", host_ip)
        sh(*inside, "ip", "addr", "add", f"{peer_ip}/30", "dev", peer_if)
        sh(*inside, "ip", "link", "set", peer_if, "up")
        sh(*inside, "ip", "route", "add", POD_CIDR, "via", host_ip, "dev", peer_if)
        with log.open("w") as out:
            server = subprocess.Popen(
                [*inside, sys.executable, "-m", "http.server", "--bind", peer_ip, "--directory", str(www), str(port)],
                stdout=out, stderr=subprocess.STDOUT,
            )
        yield Outside(name=name, host_if=host_if, address=peer_ip, port=port, token=token, log=log)
    finally:
        _stop(server)
        sh("ip", "route", "del", f"{peer_ip}/32", "dev", host_if, check=False)
        sh("ip", "link", "del", host_if, check=False)  # takes its peer along
        _stop(holder)  # the namespace goes with its last process


def guard_drops() -> int:
    """Packets the node's FORWARD guard has dropped for leaving the bridge (its first rule: -s POD_CIDR ! -o BRIDGE)."""
    for line in sh("iptables-save", "-c", "-t", "filter").stdout.splitlines():
        match = re.match(rf"^\[(\d+):\d+\] -A {GUARD_FWD} -s {re.escape(POD_CIDR)} ! -o {BRIDGE} .*-j DROP", line)
        if match:
            return int(match.group(1))
    raise AssertionError(f"no '-s {POD_CIDR} ! -o {BRIDGE} -j DROP' rule in {GUARD_FWD}")


# ------------------------------------------------------------------ host state


@dataclass(frozen=True)
class HostRecord:
    """~/.cache/scaledapp/node/host-before.env: the sysctls and fixed paths as they were before `up`."""

    sysctls: dict[str, str]
    existed: frozenset[str]

    @classmethod
    def read(cls, path: Path = HOST_RECORD) -> HostRecord:
        sysctls: dict[str, str] = {}
        existed: set[str] = set()
        for line in path.read_text().splitlines():
            kind, _, rest = line.partition(" ")
            if kind == "sysctl":
                key, _, value = rest.partition(" ")
                sysctls[key] = value
            elif kind == "existed":
                existed.add(rest)
        return cls(sysctls=sysctls, existed=frozenset(existed))


def sysctl(key: str) -> str | None:
    """The current value of a sysctl, as `sysctl -n` prints it (None when the kernel lacks it)."""
    path = Path("/proc/sys") / key.replace(".", "/")
    try:
        return " ".join(path.read_text().split())
    except FileNotFoundError:
        return None


def iptables_chains(prefixes: Sequence[str]) -> list[str]:
    """User chains starting with any of PREFIXES, as `<tool> <table> <chain>`, in every iptables flavour present
    (legacy and nft, IPv4 and IPv6) and the filter, nat and mangle tables."""
    found = []
    for tool in ("iptables-legacy", "iptables-nft", "ip6tables-legacy", "ip6tables-nft"):
        # Legacy tables only where they exist already: listing one would create it.
        names = Path("/proc/net/ip6_tables_names" if tool.startswith("ip6") else "/proc/net/ip_tables_names")
        legacy = names.read_text().split() if names.exists() else []
        for table in ("filter", "nat", "mangle"):
            if tool.endswith("-legacy") and table not in legacy:
                continue
            try:
                out = sh(tool, "-t", table, "-S", check=False).stdout
            except FileNotFoundError:
                break
            found += [f"{tool} {table} {line.split()[1]}" for line in out.splitlines()
                      if line.startswith("-N ") and line.split()[1].startswith(tuple(prefixes))]
    return found


def mounts_under(folders: Iterable[Path]) -> list[str]:
    """Mount points at or below any of FOLDERS (from /proc/self/mounts)."""
    roots = [str(f).rstrip("/") for f in folders]
    points = [line.split()[1].replace("\\040", " ") for line in Path("/proc/self/mounts").read_text().splitlines()]
    return [p for p in points if any(p == r or p.startswith(r + "/") for r in roots)]


def node_processes(programs: Sequence[str]) -> list[str]:
    """Live processes running one of PROGRAMS (by executable name; a prefix match, so `containerd-shim` finds
    containerd-shim-runc-v2), or sitting in a `kubepods` cgroup (a container the node left behind)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            exe = (proc / "exe").readlink().name
            cgroups = (proc / "cgroup").read_text()
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:150]
        except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
            continue
        if state == "Z":
            continue
        if exe.removesuffix(" (deleted)") in programs or exe.startswith("containerd-shim") or "/kubepods" in cgroups:
            found.append(f"{proc.name} {exe}: {cmd}")
    return found

