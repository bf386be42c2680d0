"""A minimal asyncio HTTP/1.1 keep-alive client for the load generator.

httpx spends about a millisecond of CPU per request, so on a small box the generator, not the app,
would be the bottleneck. This client only does what the demo's API needs: one host, keep-alive
connections from a pool, request bodies, responses framed by Content-Length (what uvicorn and HAProxy
send here). Anything else is an error, never a hang: every request has a deadline.
"""

from __future__ import annotations

import asyncio
import json
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
    def __init__(self, base_url: str, max_connections: int = 512, timeout: float = 5.0) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"only http://host[:port] URLs are supported, not {base_url!r}")
        self.host, self.port = parts.hostname, parts.port or 80
        self.timeout = timeout
        self._idle: list[Conn] = []
        self._slots = asyncio.Semaphore(max_connections)

    async def request(self, method: str, path: str, body: object | None = None) -> Response:
        payload = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Length: {len(payload)}\r\n"
        if body is not None:
            head += "Content-Type: application/json\r\n"
        message = head.encode() + b"\r\n" + payload
        async with self._slots:
            try:
                async with asyncio.timeout(self.timeout):
                    return await self._exchange(message)
            except TimeoutError as exc:
                raise HttpError("timeout") from exc

    async def _exchange(self, message: bytes) -> Response:
        reused = bool(self._idle)
        conn = self._idle.pop() if reused else await self._connect()
        try:
            response, keep = await self._send(conn, message)
        except (ConnectionError, asyncio.IncompleteReadError, HttpError) as exc:
            conn[1].close()
            if not reused:
                raise HttpError("transport", str(exc)) from exc
            # The server may close an idle keep-alive connection at any time: one retry on a new one.
            conn = await self._connect()
            try:
                response, keep = await self._send(conn, message)
            except (ConnectionError, asyncio.IncompleteReadError, HttpError) as exc2:
                conn[1].close()
                raise HttpError("transport", str(exc2)) from exc2
        except BaseException:
            conn[1].close()  # cancelled mid-exchange: the connection's state is unknown
            raise
        if keep:
            self._idle.append(conn)
        else:
            conn[1].close()
        return response

    async def _connect(self) -> Conn:
        try:
            return await asyncio.open_connection(self.host, self.port)
        except OSError as exc:
            raise HttpError("connect", str(exc)) from exc

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
