"""Small process helpers shared by the harness: pinned binaries, free ports, a child process with a log file,
and polling with a deadline (the harness must not depend on the tests package, so it has its own)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[1]
VERSIONS_ENV = REPO / "hack" / "localcluster" / "versions.env"

# tool -> (version variable in versions.env, cache folder prefix, binary name); mirrors bin_dir in
# hack/localcluster/common.sh, which builds them (`make tools`).
_PINNED = {
    "prometheus": ("PROMETHEUS_VERSION", "prometheus", "prometheus"),
    "redis-exporter": ("REDIS_EXPORTER_VERSION", "redis_exporter", "redis_exporter"),
    "postgres-exporter": ("POSTGRES_EXPORTER_VERSION", "postgres_exporter", "postgres_exporter"),
}


class HarnessError(RuntimeError):
    """A harness server could not be started or did not become ready in time."""


def pinned_versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in VERSIONS_ENV.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            out[key.strip()] = value.strip()
    return out


def pinned_binary(tool: str) -> Path:
    """The pinned build of `tool` ("prometheus", "redis-exporter", "postgres-exporter") in the cache that
    hack/localcluster/build.sh fills ($SCALEDAPP_CACHE, default ~/.cache/scaledapp)."""
    variable, folder, binary = _PINNED[tool]
    cache = Path(os.environ.get("SCALEDAPP_CACHE") or Path.home() / ".cache" / "scaledapp")
    path = cache / "bin" / f"{folder}-v{pinned_versions()[variable]}" / binary
    if not os.access(path, os.X_OK):
        raise HarnessError(f"{path} is missing: run `make tools` (hack/localcluster/build.sh) to build it")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def poll(predicate: Callable[[], T | None], timeout: float, what: str, interval: float = 0.1) -> T:
    """Call `predicate` until it returns something truthy (OSError counts as "not yet"); HarnessError at the
    deadline, naming `what` and the last thing seen."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = predicate()
        except OSError as exc:
            last = exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            raise HarnessError(f"timed out after {timeout:g}s waiting for {what} (last seen: {last!r})")
        time.sleep(interval)


class Child:
    """One child process whose output goes to `log_path`; stop() is idempotent (TERM, then KILL)."""

    def __init__(self, name: str, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self, cmd: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path | None = None) -> None:
        if self.running:
            raise HarnessError(f"{self.name} is already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"\n=== start: {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                list(cmd), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **env} if env is not None else None, cwd=cwd,
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def check_alive(self) -> None:
        """Raise with the log's tail if the process has exited (turns "never ready" into the real reason)."""
        if self.proc is not None and self.proc.poll() is not None:
            raise HarnessError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
