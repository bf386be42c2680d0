"""`python -m demo_app.worker`: take orders off the Redis queue and do the slow work.

Runs `worker_concurrency` jobs at a time, exports metrics on `worker_metrics_port` (queue depth and the
oldest job's age are sampled here, once a second), and on SIGTERM stops taking jobs, finishes the ones
it holds, and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time

from prometheus_client import start_http_server

from demo_app import metrics
from demo_app.breaker import CircuitBreaker
from demo_app.deps import Dependency, DependencyUnavailableError
from demo_app.queue import DEAD, Job, JobQueue, sample_queue
from demo_app.settings import Settings, get_settings

log = logging.getLogger("demo_app.worker")

_BLOCK_SECONDS = 1  # how long one dequeue waits for a job: also the worst-case reaction to SIGTERM
_SAMPLE_SECONDS = 1.0


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class JobFailedError(Exception):
    pass


async def do_job(settings: Settings, job: Job) -> None:
    # The slow work an order stands for (a payment call, an email...): time spent waiting elsewhere.
    await asyncio.sleep(settings.job_duration_seconds)
    # A chaos knob: orders for these items fail every time (a provider that refuses them), i.e. poison.
    if job.payload.get("item_id") in settings.job_fail_item_ids:
        raise JobFailedError(f"item {job.payload.get('item_id')} is refused (APP_JOB_FAIL_ITEM_IDS)")


async def process(queue: JobQueue, settings: Settings, stop: asyncio.Event) -> None:
    backoff = 0.1
    while not stop.is_set():
        try:
            job = await queue.dequeue()
        except DependencyUnavailableError as exc:
            log.warning("queue unavailable: %s", exc)
            await _pause(stop, backoff)
            backoff = min(backoff * 2, 5.0)
            continue
        backoff = 0.1
        if job is None:
            continue
        # A job once taken is finished even if SIGTERM arrives meanwhile.
        metrics.JOBS_IN_PROGRESS.inc()
        start = time.perf_counter()
        failure = ""
        try:
            await do_job(settings, job)
        except Exception as exc:
            log.warning("job %s failed: %s", job.id, exc)
            failure = str(exc) or type(exc).__name__
        finally:
            metrics.JOB_DURATION.observe(time.perf_counter() - start)
            metrics.JOBS_IN_PROGRESS.dec()
        await _record(queue, job.id, failure)


async def _record(queue: JobQueue, job_id: str, failure: str) -> None:
    """done, or (failed) queued again / dead after its last attempt. If the queue cannot be told, the job
    stays on the processing list and the stale sweep moves it on: nothing is lost, it may run again."""
    try:
        if not failure:
            await queue.finish(job_id, "done")
            status = "done"
        else:
            status = "dead" if await queue.fail(job_id, failure) else "failed"
            if status == "dead":
                log.error("job %s is dead after its last attempt (kept on %s): %s", job_id, DEAD, failure)
    except DependencyUnavailableError as exc:
        log.error("job %s ended (%s) but the queue could not be told: %s", job_id, failure or "done", exc)
        return
    metrics.JOBS.labels(status).inc()


async def reap(queue: JobQueue, settings: Settings, stop: asyncio.Event) -> None:
    """Every worker sweeps now and then for jobs a dead worker held (servers keep no state of their own:
    a killed worker loses nothing but time)."""
    interval = min(10.0, settings.job_visibility_seconds / 2)
    while not stop.is_set():
        try:
            requeued, dead = await queue.requeue_stale(settings.job_visibility_seconds)
            if requeued:
                log.warning("queued %d job(s) again: their worker vanished while holding them", requeued)
            if dead:
                log.error("%d job(s) dead: their worker vanished holding them on their last attempt", dead)
                metrics.JOBS.labels("dead").inc(dead)
        except DependencyUnavailableError as exc:
            log.warning("queue unavailable for the stale-job sweep: %s", exc)
        await _pause(stop, interval)


async def run(settings: Settings) -> None:
    metrics.init_worker_series(settings.cpu_limit_cores, settings.worker_concurrency)
    server, _ = start_http_server(settings.worker_metrics_port)
    dep = Dependency(
        "queue", CircuitBreaker(settings.breaker_failures, settings.breaker_reset_seconds), settings.queue_timeout
    )
    queue = JobQueue(
        dep,
        settings.queue_url,
        settings.worker_concurrency + 2,  # one blocking dequeue per job slot, plus the sampler
        settings.queue_timeout,
        settings.job_ttl_seconds,
        block_seconds=_BLOCK_SECONDS,
        max_attempts=settings.job_max_attempts,
        password_file=settings.queue_password_file,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info(
        "worker: concurrency %d, job %.3fs, metrics on :%d",
        settings.worker_concurrency,
        settings.job_duration_seconds,
        settings.worker_metrics_port,
    )
    try:
        slots = (process(queue, settings, stop) for _ in range(settings.worker_concurrency))
        await asyncio.gather(sample_queue(queue, stop, _SAMPLE_SECONDS), reap(queue, settings, stop), *slots)
    finally:
        await queue.close()
        server.shutdown()
        log.info("worker stopped")


def main() -> None:
    settings = get_settings()
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(run(settings))


if __name__ == "__main__":
    main()
