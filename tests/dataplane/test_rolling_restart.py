"""A rolling restart of the app behind a health-checking load balancer loses no request."""

from __future__ import annotations

import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.dataplane.haproxy import HAProxy
from tests.support.dataplane import AppProcess, PostgresCluster, RedisServer, app_settings
from tests.support.wait import wait_for

pytestmark = pytest.mark.dataplane


@pytest.fixture
def fronted_apps(
    dataplane_dir: Path, healthy_dataplane: PostgresCluster, redis_server: RedisServer
) -> Iterator[tuple[HAProxy, list[AppProcess]]]:
    logs = dataplane_dir / "logs"
    settings = app_settings(healthy_dataplane, redis_server, drain_seconds="1.0")
    apps = [AppProcess(f"app-{i}", logs, settings) for i in (1, 2)]
    proxy = HAProxy(logs, dataplane_dir, apps)
    try:
        for app in apps:
            app.start()
        proxy.start()
        yield proxy, apps
    finally:
        for process in (proxy, *apps):  # all at once: each app drains for a second
            process.send(signal.SIGTERM)
        for process in (proxy, *apps):
            process.wait_stopped()


class Load:
    """A few client threads reading and writing through the proxy until told to stop (bounded anyway)."""

    def __init__(self, url: str, threads: int = 4, max_seconds: float = 90.0, max_requests: int = 50_000) -> None:
        self.url, self.max_seconds, self.max_requests = url, max_seconds, max_requests
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._run, args=(seed,), daemon=True) for seed in range(threads)]

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        deadline = time.monotonic() + self.max_seconds
        with httpx.Client(base_url=self.url, timeout=10) as client:
            for n in range(self.max_requests):
                if self.stop.is_set() or time.monotonic() > deadline:
                    return
                key = rng.randint(1, 200)
                try:
                    if n % 5 == 0:
                        r = client.put(f"/items/{key}", json={"name": "roll", "value": f"{seed}-{n}"})
                    else:
                        r = client.get(f"/items/{key}")
                    failure = None if r.status_code == 200 else f"{r.request.method} {r.status_code} {r.text[:100]}"
                except httpx.HTTPError as exc:
                    failure = f"{type(exc).__name__}: {exc}"
                with self.lock:
                    if failure:
                        self.failures.append(failure)
                    else:
                        self.ok += 1

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)


def test_rolling_restart_under_load_fails_no_request(fronted_apps: tuple[HAProxy, list[AppProcess]]) -> None:
    proxy, apps = fronted_apps
    with Load(proxy.url) as load:
        wait_for(lambda: load.ok >= 200, 30, "load flowing through the proxy")
        for app in apps:
            served_before = load.ok
            assert app.stop() == 0, f"{app.name} did not exit cleanly:\n{app.log_tail()}"
            app.start()
            wait_for(lambda name=app.name: proxy.server_states()[name] == "UP", 20, f"haproxy sees {app.name} UP")
            wait_for(lambda before=served_before: load.ok >= before + 200, 30, "load flowing after the restart")
    assert load.failures == [], f"{len(load.failures)} failed of {load.ok + len(load.failures)}: {load.failures[:5]}"
    assert load.ok >= 600
