"""One HTTP /metrics endpoint per simulated pod, on loopback.

Each pod gets its own port, so Prometheus' `instance` label differs per pod exactly as a real pod's
`<pod IP>:<port>` would: the operator's queries group by instance (in-flight per pod, sessions per
replica), and one shared port would fold every pod into one. A pod that stops serving loses its
endpoint, so its series go stale in Prometheus like a deleted pod's.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Handler(BaseHTTPRequestHandler):
    server: _PodServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/metrics":
            self.send_error(404)
            return
        body = self.server.page().encode()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return  # one line per scrape would drown the twin's own log


class _PodServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str) -> None:
        super().__init__((host, 0), _Handler)
        self._lock = threading.Lock()
        self._page = ""

    def page(self) -> str:
        with self._lock:
            return self._page

    def set_page(self, text: str) -> None:
        with self._lock:
            self._page = text


class Endpoints:
    """The set of live pod endpoints: `sync` opens and closes them as pods come and go."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._servers: dict[str, _PodServer] = {}
        self._threads: dict[str, threading.Thread] = {}

    def sync(self, pods: Iterable[str]) -> bool:
        """Serve exactly these pods; returns True when the set changed (targets must be rewritten)."""
        wanted = set(pods)
        changed = False
        for gone in set(self._servers) - wanted:
            self._close(gone)
            changed = True
        for pod in sorted(wanted - set(self._servers)):
            server = _PodServer(self.host)
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2},
                                      name=f"metrics-{pod}", daemon=True)
            thread.start()
            self._servers[pod], self._threads[pod] = server, thread
            changed = True
        return changed

    def set_page(self, pod: str, text: str) -> None:
        self._servers[pod].set_page(text)

    def address(self, pod: str) -> str:
        host, port = self._servers[pod].server_address[:2]
        return f"{host!s}:{port}"

    @property
    def pods(self) -> list[str]:
        return sorted(self._servers)

    def _close(self, pod: str) -> None:
        server = self._servers.pop(pod)
        server.shutdown()
        server.server_close()
        self._threads.pop(pod).join(timeout=5)

    def close(self) -> None:
        for pod in list(self._servers):
            self._close(pod)
