"""kubectl from the kind-path scripts (hack/chaos.py, hack/loadjob.py): standard library only, every command printed.

The scripts always pass an explicit --context (default kind-scaledapp), so they never act on whatever
cluster the user's current context happens to point at.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")
DEFAULT_CONTEXT = "kind-scaledapp"


class KubectlFailedError(RuntimeError):
    pass


@dataclass
class Kubectl:
    """`kubectl [--kubeconfig K] [--context C] ...`; `echo` prints mutating commands before running them."""

    context: str | None = DEFAULT_CONTEXT
    kubeconfig: str | None = None
    binary: str = "kubectl"
    echo: bool = True
    log: list[str] = field(default_factory=list)

    def base(self) -> list[str]:
        out = [self.binary]
        if self.kubeconfig:
            out.append(f"--kubeconfig={self.kubeconfig}")
        if self.context:
            out.append(f"--context={self.context}")
        return out

    def run(self, *args: str, input: str | None = None, timeout: float = 120.0, quiet: bool = False) -> str:
        cmd = [*self.base(), *args]
        if self.echo and not quiet:
            print("+ " + shlex.join(cmd), file=sys.stderr, flush=True)
        self.log.append(shlex.join(cmd))
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise KubectlFailedError(f"{shlex.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()}")
        return proc.stdout

    def get(self, *args: str) -> dict[str, Any]:
        """`kubectl get ARGS -o json` (read-only: not echoed)."""
        out: dict[str, Any] = json.loads(self.run("get", *args, "-o", "json", quiet=True))
        return out

    def find(self, *args: str) -> dict[str, Any] | None:
        try:
            return self.get(*args)
        except KubectlFailedError as exc:
            if "NotFound" in str(exc):
                return None
            raise


def poll(predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.5) -> T:
    """Call `predicate` until it returns something truthy; TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        value = predicate()
        if value:
            return value
        last = value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def is_ready(pod: dict[str, Any]) -> bool:
    if pod["metadata"].get("deletionTimestamp") or pod.get("status", {}).get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in pod["status"].get("conditions", []))


def pods(kubectl: Kubectl, namespace: str, selector: Sequence[str]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl.get("pods", "-n", namespace, "-l", ",".join(selector))["items"]
    return items
