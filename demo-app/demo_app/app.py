"""The FastAPI application: routes, probes, metrics, and the lifespan that opens and closes the pools."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from demo_app import metrics
from demo_app.breaker import CircuitBreaker
from demo_app.cache import Cache
from demo_app.db import Database
from demo_app.deps import Dependency, DependencyUnavailableError
from demo_app.httpmetrics import HttpMetricsMiddleware
from demo_app.models import Item, ItemIn, OrderAccepted, OrderIn
from demo_app.queue import JobQueue, sample_queue
from demo_app.service import Service
from demo_app.settings import Settings

log = logging.getLogger("demo_app")

# A database call that succeeded this recently proves reachability without a probe query, so a busy
# pod (pool exhausted) never reports itself unready and sheds load onto its busy neighbours.
_RECENT_SUCCESS_SECONDS = 2.0


@dataclass
class Lifecycle:
    draining: bool = False
    schema_ready: bool = False
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


def build_service(settings: Settings) -> Service:
    def dep(name: str, timeout: float) -> Dependency:
        return Dependency(name, CircuitBreaker(settings.breaker_failures, settings.breaker_reset_seconds), timeout)

    db_timeout = settings.db_pool_timeout + settings.db_statement_timeout
    db = Database(settings, dep("db-read", db_timeout), dep("db-write", db_timeout))
    cache = Cache(settings, dep("cache", settings.cache_timeout))
    queue = JobQueue(
        dep("queue", settings.queue_timeout),
        settings.queue_url,
        settings.queue_pool_size,
        settings.queue_timeout,
        settings.job_ttl_seconds,
        password_file=settings.queue_password_file,
    )
    return Service(settings, db, cache, queue)


async def _schema_until_done(service: Service, lifecycle: Lifecycle) -> None:
    """Create the schema on the primary; if it is down at start, keep trying in the background."""
    delay = 0.5
    while True:
        try:
            await service.db.ensure_schema()
        except DependencyUnavailableError as exc:
            log.warning("schema not applied yet: %s", exc)
        else:
            lifecycle.schema_ready = True
            return
        await asyncio.sleep(delay)
        delay = min(delay * 2, 10.0)


async def _db_reachable(service: Service, deadline: float) -> bool:
    db = service.db
    now = time.monotonic()
    if now - max(db.read.last_success, db.write.last_success) < _RECENT_SUCCESS_SECONDS:
        return True

    async def probe(primary: bool) -> bool:
        try:
            return await db.ping(primary=primary, deadline=deadline)
        except DependencyUnavailableError as exc:
            return exc.kind == "pool_exhausted"  # busy, but the server is there

    results = await asyncio.gather(probe(False), probe(True))
    return any(results)


def create_app(settings: Settings) -> FastAPI:
    service = build_service(settings)
    lifecycle = Lifecycle()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        metrics.init_app_series(settings.cpu_limit_cores)
        await service.db.open()
        stop_sampling = asyncio.Event()
        for coro in (_schema_until_done(service, lifecycle), sample_queue(service.queue, stop_sampling, 1.0)):
            task = asyncio.create_task(coro)
            lifecycle.tasks.add(task)
            task.add_done_callback(lifecycle.tasks.discard)
        try:
            yield
        finally:
            # Reached after uvicorn has drained in-flight requests.
            lifecycle.draining = True
            stop_sampling.set()
            for t in list(lifecycle.tasks):
                t.cancel()
            await asyncio.gather(*lifecycle.tasks, return_exceptions=True)
            await service.db.close()
            await service.cache.close()
            await service.queue.close()
            log.info("pools closed")

    app = FastAPI(title="ScaledApp demo", lifespan=lifespan)
    app.state.lifecycle = lifecycle
    app.state.service = service
    app.add_middleware(HttpMetricsMiddleware)

    @app.exception_handler(DependencyUnavailableError)
    async def unavailable(_: Request, exc: DependencyUnavailableError) -> JSONResponse:
        return JSONResponse(
            {"detail": str(exc), "dependency": exc.dependency, "kind": exc.kind},
            status_code=503,
            headers={"Retry-After": exc.retry_after_header},
        )

    @app.get("/items/{item_id}")
    async def get_item(item_id: int) -> Item:
        item = await service.get_item(item_id)
        if item is None:
            raise HTTPException(404, "no such item")
        return item

    @app.post("/items", status_code=201)
    async def create_item(body: ItemIn) -> Item:
        return await service.create_item(body)

    @app.put("/items/{item_id}")
    async def put_item(item_id: int, body: ItemIn) -> Item:
        return await service.put_item(item_id, body)

    @app.post("/orders", status_code=202)
    async def create_order(body: OrderIn, response: Response) -> OrderAccepted:
        job_id = await service.queue.enqueue(body.model_dump())
        response.headers["Location"] = f"/orders/{job_id}"
        return OrderAccepted(job_id=job_id, status_url=f"/orders/{job_id}")

    @app.get("/orders/{job_id}")
    async def get_order(job_id: str) -> dict[str, str]:
        job = await service.queue.get(job_id)
        if job is None:
            raise HTTPException(404, "no such order")
        return {"job_id": job_id, **job}

    @app.get("/livez")
    async def livez() -> dict[str, str]:
        # The process and its event loop answer; dependencies are deliberately not checked, so a
        # database outage never turns into a restart storm.
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        if lifecycle.draining:
            return JSONResponse({"ready": False, "reason": "draining"}, status_code=503)
        if not await _db_reachable(service, settings.readiness_timeout):
            return JSONResponse({"ready": False, "reason": "no database reachable"}, status_code=503)
        return JSONResponse({"ready": True})

    @app.get("/metrics")
    def prometheus_metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
