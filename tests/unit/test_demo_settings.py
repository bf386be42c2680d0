"""Settings from the environment: APP_* names, the operator's generic names, validation."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from demo_app.settings import Settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    generic = ("PORT", "METRICS_PORT", "CPU_LIMIT_MILLICORES", "DB_WRITE_DSN", "DB_READ_DSN", "CACHE_ENABLED",
               "REDIS_URL", "CACHE_TTL_SECONDS", "QUEUE_URL")
    for name in list(os.environ):
        if name.startswith("APP_") or name in generic:
            monkeypatch.delenv(name)


def test_defaults() -> None:
    s = Settings()
    assert s.port == 8080
    assert s.cache_enabled
    assert not s.has_replicas
    assert s.cpu_limit_cores == float(os.cpu_count() or 1)


def test_knobs_from_app_prefixed_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_CPU_WORK_MS", "12.5")
    monkeypatch.setenv("APP_READ_QUERY_COST_ROWS", "200000")
    monkeypatch.setenv("APP_CACHE_ENABLED", "false")
    monkeypatch.setenv("APP_CACHE_TTL_SECONDS", "3")
    monkeypatch.setenv("APP_JOB_DURATION_SECONDS", "2")
    s = Settings()
    assert (s.cpu_work_ms, s.read_query_cost_rows, s.cache_enabled, s.cache_ttl_seconds, s.job_duration_seconds) == (
        12.5, 200000, False, 3.0, 2.0)


def test_the_operators_generic_names(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"PORT": "9000", "METRICS_PORT": "9101", "CPU_LIMIT_MILLICORES": "250", "DB_WRITE_DSN": "host=w",
           "DB_READ_DSN": "host=r", "CACHE_ENABLED": "false", "REDIS_URL": "redis://c:6379/0",
           "CACHE_TTL_SECONDS": "7", "QUEUE_URL": "redis://q:6379/0"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    s = Settings()
    assert (s.port, s.worker_metrics_port, s.cpu_limit_cores) == (9000, 9101, 0.25)
    assert (s.db_write_dsn, s.db_read_dsn, s.has_replicas) == ("host=w", "host=r", True)
    assert (s.cache_enabled, s.cache_url, s.cache_ttl_seconds, s.queue_url) == (False, "redis://c:6379/0", 7.0,
                                                                              "redis://q:6379/0")


def test_app_prefixed_name_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "9000")
    monkeypatch.setenv("APP_PORT", "9001")
    assert Settings().port == 9001


@pytest.mark.parametrize(("name", "value"), [("APP_PORT", "0"), ("APP_CPU_WORK_MS", "-1"),
                                             ("APP_CACHE_TTL_SECONDS", "0"), ("CPU_LIMIT_MILLICORES", "0")])
def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_read_connections_are_recycled_so_added_replicas_get_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """The read Service balances connections, not queries: a pool that keeps its connections for the default
    hour never sends a read to a replica added after it connected."""
    from demo_app.breaker import CircuitBreaker
    from demo_app.db import Database
    from demo_app.deps import Dependency

    def dep(name: str) -> Dependency:
        return Dependency(name, CircuitBreaker(5, 2.0), 1.0)

    assert Settings().db_read_max_lifetime_seconds == 30.0
    monkeypatch.setenv("DB_READ_DSN", "host=replicas")
    monkeypatch.setenv("APP_DB_READ_MAX_LIFETIME_SECONDS", "12")
    db = Database(Settings(), dep("db-read"), dep("db-write"))  # pools are created closed: no connection
    assert db.read_pool is not db.write_pool
    assert db.read_pool.max_lifetime == 12.0
    assert db.write_pool.max_lifetime == 3600.0  # one primary: nothing to spread over
