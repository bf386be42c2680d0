"""Fixtures for a real Prometheus and the pinned exporters (devharness), all on loopback.

    def test_x(harness: Harness, redis_server: RedisServer) -> None:
        exporter = harness.redis_exporter(redis_server.address, password=redis_server.password)
        prom = harness.prometheus([Target(exporter.address, namespace="ns", pod="c-0", instance="demo",
                                          tier="cache")])
        prom.wait_for_targets()

`harness` is session-scoped so module- and session-scoped fixtures can use it; everything it started is
stopped at the end of the session (or earlier by the test: stop() is idempotent). Work dirs and logs are
under pytest's basetemp (kept for the last few runs). `prometheus` is a fresh, started Prometheus per
test with no targets yet.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from devharness.exporters import Exporter, PostgresExporter, RedisExporter
from devharness.prometheus import LocalPrometheus, Target


class Harness:
    """Starts devharness servers in numbered work dirs and stops all of them on close()."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self._seq = itertools.count(1)
        self._prometheus: list[LocalPrometheus] = []
        self._exporters: list[Exporter] = []

    def _dir(self, name: str) -> Path:
        return self.base / f"{next(self._seq):02d}-{name}"

    def prometheus(self, targets: Iterable[Target] = (), name: str = "prometheus",
                   extra_scrape_configs: Iterable[Mapping[str, Any]] = ()) -> LocalPrometheus:
        """A started Prometheus (ready) scraping `targets` every second (and any further jobs given)."""
        prom = LocalPrometheus(self._dir(name), extra_scrape_configs=extra_scrape_configs)
        self._prometheus.append(prom)
        prom.start(targets)
        return prom

    def redis_exporter(self, redis_address: str, name: str = "redis-exporter",
                       password: str | None = None) -> RedisExporter:
        exporter = RedisExporter(redis_address, self._dir(name), name=name, password=password)
        self._exporters.append(exporter)
        exporter.start()
        return exporter

    def postgres_exporter(self, pg_address: str, user: str, password: str,
                          name: str = "postgres-exporter") -> PostgresExporter:
        exporter = PostgresExporter(pg_address, user, password, self._dir(name), name=name)
        self._exporters.append(exporter)
        exporter.start()
        return exporter

    def close(self) -> None:
        for server in [*self._prometheus, *self._exporters]:
            server.stop()


@pytest.fixture(scope="session")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    h = Harness(tmp_path_factory.mktemp("harness"))
    try:
        yield h
    finally:
        h.close()


@pytest.fixture
def prometheus(harness: Harness) -> Iterator[LocalPrometheus]:
    prom = harness.prometheus()
    yield prom
    prom.stop()
