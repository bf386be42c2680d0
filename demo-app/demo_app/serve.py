"""Run the app under uvicorn, one worker per process, with a drain period on SIGTERM.

SIGTERM: /readyz turns false at once, the server keeps serving for `drain_seconds` so load balancers
notice and stop routing here, then uvicorn stops accepting, finishes in-flight requests and runs the
lifespan shutdown (pools close). A second SIGTERM/SIGINT skips the rest of the drain period.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from collections.abc import Generator
from types import FrameType

import uvicorn

from demo_app.app import Lifecycle, create_app
from demo_app.settings import Settings, get_settings

log = logging.getLogger("demo_app")


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, lifecycle: Lifecycle, drain_seconds: float) -> None:
        super().__init__(config)
        self.lifecycle = lifecycle
        self.drain_seconds = drain_seconds
        self.drain_deadline: float | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.lifecycle.draining = True
        if self.drain_deadline is None and self.drain_seconds > 0:
            log.info("signal %s: draining for %.1fs before shutdown", sig, self.drain_seconds)
            self.drain_deadline = time.monotonic() + self.drain_seconds
        else:
            self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        if self.drain_deadline is not None and time.monotonic() >= self.drain_deadline:
            self.should_exit = True
        return await super().on_tick(counter)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # Unlike uvicorn's, this does not re-raise the signal after a graceful exit: exit status 0.
        originals = {s: signal.signal(s, self.handle_exit) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in originals.items():
                signal.signal(s, handler)


def run(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if logging.getLogger().level > logging.DEBUG:
        # Its INFO line for every read connection recycled (db_read_max_lifetime_seconds) is routine, not news.
        logging.getLogger("psycopg.pool").setLevel(logging.WARNING)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        workers=1,  # one process per pod: prometheus_client's multiprocess mode loses process metrics
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=int(settings.graceful_timeout_seconds),
        lifespan="on",
    )
    DrainingServer(config, app.state.lifecycle, settings.drain_seconds).run()


def main() -> None:
    run(get_settings())
