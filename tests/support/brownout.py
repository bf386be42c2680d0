"""A reverse proxy in front of a test API server that can brown out: while on, every request that is not a
watch is answered 503 or 429 (alternately, with Retry-After: 1) without reaching the server, as an overloaded
API server or its Priority-and-Fairness queues answer. Watches pass through, so the operator still sees events.

Plain HTTP on loopback, forwarding to the server's HTTPS with the caller's bearer token (so the operator must run
with a token kubeconfig, e.g. a ServiceAccount's: client certificates cannot be forwarded). It counts every
request it sees and every one it refused, by method: the operator's API calls, measured from outside.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import threading
import time
from pathlib import Path

import aiohttp
import yaml
from aiohttp import web

from tests.support.operator import write_token_kubeconfig

HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "host", "content-length"}


class BrownoutProxy:
    def __init__(self, upstream: str, ca_file: str, port: int) -> None:
        self.upstream = upstream.rstrip("/")
        self.ca_file = ca_file
        self.port = port
        self.browning = False
        self.seen: collections.Counter[str] = collections.Counter()
        self.refused: collections.Counter[str] = collections.Counter()
        self.log: list[tuple[float, str, str]] = []  # (monotonic time, method, path) of every non-watch request
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="brownout-proxy", daemon=True)
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._toggle = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> BrownoutProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    def __exit__(self, *_: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _start(self) -> None:
        context = ssl.create_default_context(cafile=self.ca_file)
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context),
                                              timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _stop(self) -> None:
        if self._session is not None:
            await self._session.close()  # ends the watches streaming through us first
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        watch = request.query.get("watch") in ("true", "1")
        key = f"{request.method}{' watch' if watch else ''}"
        self.seen[key] += 1
        if not watch:
            self.log.append((time.monotonic(), request.method, request.rel_url.path))
        if self.browning and not watch:
            self.refused[key] += 1
            self._toggle += 1
            status = 503 if self._toggle % 2 else 429
            body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": status,
                    "reason": "ServiceUnavailable" if status == 503 else "TooManyRequests",
                    "message": "brownout (test proxy)"}
            return web.json_response(body, status=status, headers={"Retry-After": "1"})
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP}
        data = await request.read()
        async with self._session.request(request.method, self.upstream + request.rel_url.path_qs,
                                         headers=headers, data=data or None) as upstream:
            response = web.StreamResponse(status=upstream.status, headers={
                k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP})
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
                await response.write_eof()
            except (aiohttp.ClientError, ConnectionError):
                pass  # either side went away (a watch ended, the proxy stopping)
            return response


def proxied_kubeconfig(admin_kubeconfig: Path, token: str, proxy_url: str, path: Path) -> Path:
    """A kubeconfig that reaches the API server through the proxy with a bearer token."""
    return write_token_kubeconfig({"server": proxy_url}, token, path)


def upstream_of(admin_kubeconfig: Path) -> tuple[str, str]:
    """(server URL, absolute CA file) of a kubeconfig's first cluster."""
    cluster = yaml.safe_load(admin_kubeconfig.read_text())["clusters"][0]["cluster"]
    ca = Path(cluster["certificate-authority"])
    if not ca.is_absolute():
        ca = (admin_kubeconfig.parent / ca).resolve()
    return str(cluster["server"]), str(ca)
