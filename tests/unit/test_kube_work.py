"""The operator's request counter says which work each request served (kube.work): what still makes calls
once every ScaledApp is Ready. Real requests, through Kube, to a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import Iterator

import kubernetes
import pytest

from scaledapp import metrics
from scaledapp.kube import Kube, work


class _Answering(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # http.server's name for it
        body = b'{"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "x"}}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def kube() -> Iterator[Kube]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answering)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    configuration = kubernetes.client.Configuration(host=f"http://127.0.0.1:{server.server_address[1]}")
    yield Kube(kubernetes.client.ApiClient(configuration))
    server.shutdown()


def _count(work_label: str) -> float:
    return metrics.REGISTRY.get_sample_value("scaledapp_operator_kube_requests_total",
                                             {"method": "GET", "code": "2xx", "work": work_label}) or 0.0


def test_each_request_is_counted_under_the_work_it_served(kube: Kube) -> None:
    before = {w: _count(w) for w in ("tick", "resync", "other")}

    async def calls() -> None:
        with work("tick"):
            assert await kube.get("v1", "ConfigMap", "x", "ns") is not None
            # a task started inside inherits the work (the failover guard's and the loops' tasks)
            await asyncio.create_task(kube.get("v1", "ConfigMap", "x", "ns"))
            with work("resync"):
                await kube.get("v1", "ConfigMap", "x", "ns")
        await kube.get("v1", "ConfigMap", "x", "ns")

    asyncio.run(calls())
    assert {w: _count(w) - before[w] for w in before} == {"tick": 2, "resync": 1, "other": 1}
