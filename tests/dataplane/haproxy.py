"""HAProxy in front of app processes, health-checking /readyz, as a Service + kube-proxy stand-in."""

from __future__ import annotations

import csv
import io
import signal
import socket
from collections.abc import Sequence
from pathlib import Path

from tests.support.dataplane import AppProcess, Process, free_port
from tests.support.wait import wait_for


class HAProxy(Process):
    def __init__(self, log_dir: Path, state_dir: Path, backends: Sequence[AppProcess]) -> None:
        super().__init__("haproxy", log_dir)
        self.host, self.port = "127.0.0.1", free_port()
        self.backends = list(backends)
        self.config_path = state_dir / "haproxy.cfg"
        self.stats_socket = state_dir / "haproxy.sock"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def config(self) -> str:
        servers = "\n".join(
            f"    server {b.name} {b.host}:{b.port} check" for b in self.backends
        )
        # Retries cover the moment a backend closes an idle keep-alive connection or stops listening;
        # the readiness check takes a draining backend out before that moment in the normal case.
        return f"""
global
    stats socket {self.stats_socket} mode 600 level admin
    maxconn 2000
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response response-timeout
    option http-buffer-request
frontend web
    bind {self.host}:{self.port}
    default_backend apps
backend apps
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    # A check answered slowly under load is not a dead backend (the default check timeout equals
    # `inter`): allow 2 s, and take a backend out after two failed checks (200 ms, well inside the
    # app's drain window).
    timeout check 2s
    default-server inter 100ms fall 2 rise 2
{servers}
"""

    def start(self, timeout: float = 20.0) -> None:
        self.config_path.write_text(self.config())
        self.spawn(["haproxy", "-f", str(self.config_path), "-db"])
        wait_for(lambda: all(s == "UP" for s in self.server_states().values()), timeout,
                 "haproxy sees every backend UP", interval=0.05, ignore=(OSError,))

    def stop(self) -> None:
        self.signal_stop(signal.SIGUSR1)  # soft stop: finish what is in flight

    def server_states(self) -> dict[str, str]:
        """Backend server name -> HAProxy's health status (UP, DOWN, ...)."""
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(2)
            s.connect(str(self.stats_socket))
            s.sendall(b"show stat\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        rows = csv.DictReader(io.StringIO(data.decode().lstrip("# ")))
        return {r["svname"]: r["status"] for r in rows if r["pxname"] == "apps" and r["svname"] != "BACKEND"}
