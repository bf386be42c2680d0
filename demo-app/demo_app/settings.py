"""Configuration from the environment; every knob the operator or a test turns lives here.

Each setting is read from APP_<NAME> (e.g. APP_CPU_WORK_MS). The ones the operator wires into its pods
also answer to the generic names it uses (PORT, METRICS_PORT, CPU_LIMIT_MILLICORES, DB_WRITE_DSN,
DB_READ_DSN, DB_PASSWORD_FILE, CACHE_ENABLED, REDIS_URL, REDIS_PASSWORD_FILE, CACHE_TTL_SECONDS, QUEUE_URL,
QUEUE_PASSWORD_FILE); APP_<NAME> wins if both are set.
"""

from __future__ import annotations

import os
from functools import lru_cache

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _alias(field: str, generic: str | None = None) -> AliasChoices:
    """APP_<FIELD> first, then the operator's generic name (the field's name upper-cased by default)."""
    return AliasChoices(f"APP_{field.upper()}", generic or field.upper())


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="APP_", extra="ignore")

    # --- serving
    host: str = "0.0.0.0"  # a pod listens on its own IP
    port: int = Field(8080, ge=1, le=65535, validation_alias=_alias("port"))
    # Seconds /readyz reports "draining" before the server stops accepting: long enough for load
    # balancers (kube-proxy endpoints, HAProxy checks) to stop sending new requests.
    drain_seconds: float = Field(5.0, ge=0)
    graceful_timeout_seconds: float = Field(20.0, gt=0)
    log_level: str = "info"

    # --- dependencies
    db_write_dsn: str = Field(
        "postgresql://postgres:postgres@localhost:5432/app", validation_alias=_alias("db_write_dsn")
    )
    # Empty: reads use the primary (a single-node database).
    db_read_dsn: str = Field("", validation_alias=_alias("db_read_dsn"))
    # A file holding the database password (the credentials Secret, mounted): read again at every new
    # connection, so a password changed in the Secret (and in the database) reaches a running pod once the
    # kubelet has updated the file, without a restart. It wins over a password in the DSNs. Empty: the DSNs'.
    db_password_file: str = Field("", validation_alias=_alias("db_password_file"))
    cache_url: str = Field("redis://localhost:6379/0", validation_alias=_alias("cache_url", "REDIS_URL"))
    # The queue may live in the cache Redis, but then cache eviction could drop jobs: give it its own.
    queue_url: str = Field("redis://localhost:6379/1", validation_alias=_alias("queue_url"))
    # Files holding the cache's and the queue's passwords (the Secret's keys, mounted), read at every new
    # connection like db_password_file; they win over a password in the URLs. Empty: the URLs'.
    cache_password_file: str = Field("", validation_alias=_alias("cache_password_file", "REDIS_PASSWORD_FILE"))
    queue_password_file: str = Field("", validation_alias=_alias("queue_password_file"))
    db_read_pool_size: int = Field(10, ge=1)
    db_write_pool_size: int = Field(5, ge=1)
    cache_pool_size: int = Field(50, ge=1)
    queue_pool_size: int = Field(20, ge=1)
    # Read connections are replaced after this long (psycopg_pool max_lifetime, with its own +-5% jitter).
    # The read Service spreads CONNECTIONS over the replicas, not queries: without recycling, a replica the
    # scaler adds would get no reads from any app pod that was already running.
    db_read_max_lifetime_seconds: float = Field(30.0, gt=0)

    # --- timeouts (seconds): every dependency call is bounded
    db_connect_timeout: float = Field(2.0, gt=0)
    db_pool_timeout: float = Field(1.0, gt=0)
    db_statement_timeout: float = Field(2.0, gt=0)
    cache_timeout: float = Field(0.25, gt=0)
    queue_timeout: float = Field(0.5, gt=0)
    readiness_timeout: float = Field(0.5, gt=0)

    # --- circuit breaker (per dependency)
    breaker_failures: int = Field(5, ge=1)
    breaker_reset_seconds: float = Field(2.0, gt=0)

    # --- cache behaviour
    cache_enabled: bool = Field(True, validation_alias=_alias("cache_enabled"))
    cache_ttl_seconds: float = Field(60.0, gt=0, validation_alias=_alias("cache_ttl_seconds"))
    # After a write, reads of that key go to the primary for this long (longer than replica lag).
    recent_write_window_seconds: float = Field(5.0, gt=0)

    # --- knobs to induce a bottleneck on purpose
    cpu_work_ms: float = Field(0.0, ge=0)  # busy CPU per /items request, in the app process
    read_query_cost_rows: int = Field(0, ge=0)  # rows a read query burns through on the database
    job_duration_seconds: float = Field(0.5, ge=0)  # time a worker spends per order

    # --- worker
    worker_concurrency: int = Field(1, ge=1)
    worker_metrics_port: int = Field(
        9100, ge=1, le=65535, validation_alias=_alias("worker_metrics_port", "METRICS_PORT")
    )
    job_ttl_seconds: int = Field(86400, ge=1)
    # A job taken longer ago than this is presumed lost with its worker (killed, evicted) and queued again:
    # orders are processed at least once. Keep it well above the longest job.
    job_visibility_seconds: float = Field(120.0, gt=0)
    # Attempts per job (failed work and vanished workers alike); then it is dead, kept for inspection.
    job_max_attempts: int = Field(3, ge=1)
    # Chaos knob: orders for these item ids always fail (poison orders), e.g. APP_JOB_FAIL_ITEM_IDS=[13].
    job_fail_item_ids: frozenset[int] = frozenset()

    # --- schema / seed
    seed_items: int = Field(1000, ge=0)

    # CPU limit in millicores from the downward API (resourceFieldRef limits.cpu, divisor 1m).
    cpu_limit_millicores: int | None = Field(None, ge=1, validation_alias=_alias("cpu_limit_millicores"))

    @property
    def cpu_limit_cores(self) -> float:
        """The CPU this process may use: the pod's limit, else (no limit) every core the host has."""
        if self.cpu_limit_millicores is not None:
            return self.cpu_limit_millicores / 1000.0
        return float(os.cpu_count() or 1)

    @property
    def has_replicas(self) -> bool:
        return bool(self.db_read_dsn.strip())


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
