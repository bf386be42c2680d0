"""ASGI middleware for the HTTP metrics: rate, errors, latency per route template, in-flight."""

from __future__ import annotations

import time
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from demo_app import metrics

# Probes and scrapes are not user traffic: counting them would skew rate and latency.
EXCLUDED_PATHS: Final = frozenset({"/livez", "/readyz", "/metrics"})


class HttpMetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in EXCLUDED_PATHS:
            await self.app(scope, receive, send)
            return
        status = 500  # what the client gets if the app dies before answering

        async def send_and_capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        start = time.perf_counter()
        metrics.HTTP_IN_FLIGHT.inc()
        try:
            await self.app(scope, receive, send_and_capture)
        finally:
            metrics.HTTP_IN_FLIGHT.dec()
            # The route template (e.g. /items/{item_id}), never the raw path: bounded label values.
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"]
            metrics.HTTP_DURATION.labels(route, method).observe(time.perf_counter() - start)
            metrics.HTTP_REQUESTS.labels(route, method, str(status)).inc()
