"""A minimal asyncio HTTP/1.1 keep-alive client for the load generator.

httpx spends about a millisecond of CPU per request, so on a small box the generator, not the app,
would be the bottleneck. This client only does what the demo's API needs: one host, keep-alive
connections from a pool, request bodies, responses framed by Content-Length (what uvicorn and HAProxy
send here). Anything else is an error, never a hang: every request has a deadline.

A connection is closed after `max_requests_per_connection` requests and a new one opened. Behind a
Kubernetes Service (or any layer-4 balancer) that choice is made per CONNECTION: a client that kept its
few keep-alive connections for the whole run would stay pinned to the pods that existed when it
connected, and the pods a scaler adds would get no load from it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit


class HttpError(Exception):
    """The exchange failed (connect, protocol, timeout); `kind` names how, for the load report."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


@dataclass
class Response:
    status: int
    body: bytes

    def json(self) -> object:
        return json.loads(self.body)


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class RawClient:
    def __init__(self, base_url: str, max_connections: int = 512, timeout: float = 5.0,
                 max_requests_per_connection: int = 100) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"only http://host[:port] URLs are supported, not {base_url!r}")
        if max_requests_per_connection < 0:
            raise ValueError("max_requests_per_connection must be >= 0 (0: no limit)")
        self.host, self.port = parts.hostname, parts.port or 80
        self.timeout = timeout
        self.max_requests_per_connection = max_requests_per_connection
        self._idle: list[Conn] = []
        self._served: dict[int, int] = {}  # id(writer) -> requests answered on that connection
        self._slots = asyncio.Semaphore(max_connections)
        self.connections_opened = 0

    async def request(self, method: str, path: str, body: object | None = None,
                      on_send: Callable[[float], None] | None = None) -> Response:
        """One exchange. `on_send` is called once with time.perf_counter() when the request has a
        connection and its bytes are written: the moment it really left, after any wait for a slot."""
        payload = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Length: {len(payload)}\r\n"
        if body is not None:
            head += "Content-Type: application/json\r\n"
        message = head.encode() + b"\r\n" + payload
        async with self._slots:
            try:
                async with asyncio.timeout(self.timeout):
                    return await self._exchange(message, on_send)
            except TimeoutError as exc:
                raise HttpError("timeout") from exc

    async def _exchange(self, message: bytes, on_send: Callable[[float], None] | None = None) -> Response:
        reused = bool(self._idle)
        conn = self._idle.pop() if reused else await self._connect()
        if on_send is not None:
            on_send(time.perf_counter())
        try:
            response, keep = await self._send(conn, message)
        except (ConnectionError, asyncio.IncompleteReadError, HttpError) as exc:
            self._discard(conn)
            if not reused:
                raise HttpError("transport", str(exc)) from exc
            # The server may close an idle keep-alive connection at any time: one retry on a new one.
            conn = await self._connect()
            try:
                response, keep = await self._send(conn, message)
            except (ConnectionError, asyncio.IncompleteReadError, HttpError) as exc2:
                self._discard(conn)
                raise HttpError("transport", str(exc2)) from exc2
        except BaseException:
            self._discard(conn)  # cancelled mid-exchange: the connection's state is unknown
            raise
        if keep and not self._used_up(conn):
            self._idle.append(conn)
        else:
            self._discard(conn)
        return response

    def _used_up(self, conn: Conn) -> bool:
        """Count one answered request on `conn`; True when it has served its share and should be closed."""
        served = self._served.get(id(conn[1]), 0) + 1
        self._served[id(conn[1])] = served
        return 0 < self.max_requests_per_connection <= served

    def _discard(self, conn: Conn) -> None:
        self._served.pop(id(conn[1]), None)
        conn[1].close()

    async def _connect(self) -> Conn:
        try:
            conn = await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            raise HttpError("connect", str(exc)) from exc
        self.connections_opened += 1
        self._served[id(conn[1])] = 0
        return conn

    @staticmethod
    async def _send(conn: Conn, message: bytes) -> tuple[Response, bool]:
        reader, writer = conn
        writer.write(message)
        await writer.drain()
        status_line = await reader.readline()
        if not status_line:
            raise ConnectionResetError("connection closed before the response")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise HttpError("protocol", status_line[:80].decode(errors="replace"))
        length, keep = 0, True
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"connection" and value.strip().lower() == b"close":
                keep = False
            elif name == b"transfer-encoding":
                raise HttpError("protocol", "chunked responses are not supported")
        body = await reader.readexactly(length) if length else b""
        return Response(int(parts[1]), body), keep

    async def aclose(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()
        self._served.clear()
