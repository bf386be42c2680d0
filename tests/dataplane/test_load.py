"""The load generator's CLI against the real app: the schedule is kept and the report is right."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.dataplane import REPO, AppProcess, WorkerProcess, app_env

pytestmark = pytest.mark.dataplane


def test_a_short_mixed_run_reports_every_request(demo_app: AppProcess, demo_worker: WorkerProcess) -> None:
    cmd = [sys.executable, "-m", "demo_app.load", "--url", demo_app.url, "--profile", "step:rate=50,peak=150,at=1",
           "--duration", "2", "--mix", "read=8,write=1,order=1", "--keys", "200", "--json", "-", "--quiet"]
    done = subprocess.run(cmd, env=app_env({}), cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
    text, _, payload = done.stdout.partition("{")
    report = json.loads("{" + payload)
    assert abs(report["sent"] - 200) <= 2  # 50/s for 1 s, then 150/s for 1 s
    assert report["errors"] == {}
    assert report["ok"] == report["sent"]
    assert set(report["by_operation"]) == {"read", "write", "order"}
    assert report["p50_ms"] <= report["p95_ms"] <= report["p99_ms"]
    assert "throughput" in text and "p99" in text


class _StallServer(ThreadingHTTPServer):
    """A real HTTP/1.1 keep-alive server on loopback that stops answering for `stall` seconds once
    `after` requests have been served (a GC pause, a stuck event loop): every handler waits it out."""

    daemon_threads = True

    def __init__(self, after: int, stall: float) -> None:
        super().__init__(("127.0.0.1", 0), _StallHandler)
        self.after, self.stall = after, stall
        self.served = 0
        self.lock = threading.Lock()


class _StallHandler(BaseHTTPRequestHandler):
    server: _StallServer
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK wait per answer

    def do_GET(self) -> None:
        with self.server.lock:  # held through the stall: no other request is answered meanwhile
            self.server.served += 1
            if self.server.served == self.server.after:
                time.sleep(self.server.stall)
        body = b'{"id": 1}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


def test_a_stalled_server_is_timed_from_the_schedule() -> None:
    """100 reads/s for 2 s over 2 connections; the server stops for 1 s after 50 answers. The ~100
    requests due during the stall cannot be sent (both connections wait): they leave up to 1 s late,
    and that wait is their latency. Timed from the send (coordinated omission) the run would look fine."""
    server = _StallServer(after=50, stall=1.0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        cmd = [sys.executable, "-m", "demo_app.load", "--url", url, "--profile", "constant:rate=100",
               "--duration", "2", "--mix", "read=1", "--connections", "2", "--conn-requests", "0",
               "--json", "-", "--quiet"]
        done = subprocess.run(cmd, env=app_env({}), cwd=REPO, capture_output=True, text=True, timeout=60,
                              check=True)
    finally:
        server.shutdown()
        server.server_close()
    text, _, payload = done.stdout.partition("{")
    report = json.loads("{" + payload)
    assert report["sent"] == report["ok"] == 200, text
    assert report["late"] >= 80, text  # ~100 were due while the server stood still
    assert report["late_max_ms"] >= 800, text
    assert report["p99_ms"] >= 800, text  # the wait counts: from the schedule
    assert report["p95_ms"] >= 500, text  # half the run was queued behind the stall
    assert report["service_p99_ms"] < 300, text  # send to answer: what omission would have reported
    assert "late" in text and "after their schedule" in text
