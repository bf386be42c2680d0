"""The pinned redis_exporter and postgres_exporter as local processes, configured as the pods' sidecars are.

    cache_exporter = RedisExporter("127.0.0.1:6379", log_dir, password=pw)
    cache_exporter.start()                       # waits until /metrics answers with redis_up 1
    Target(cache_exporter.address, namespace="demo", pod="demo-cache-0", instance="demo", tier="cache")

postgres_exporter gets the same --extend.query-path file the chart's pods mount
(operator/scaledapp/resources/files/postgres-exporter-queries.yaml) and a DSN to the `postgres`
database, as in resources/database.py, so the lock-wait series exist exactly as in the cluster.
"""

from __future__ import annotations

import urllib.request
from pathlib import Path

from devharness.procs import REPO, Child, free_port, pinned_binary, poll

POSTGRES_EXPORTER_QUERIES = REPO / "operator" / "scaledapp" / "resources" / "files" / "postgres-exporter-queries.yaml"


class Exporter:
    """One exporter process on a free 127.0.0.1 port; `address` is what a Target scrapes."""

    def __init__(self, name: str, log_dir: Path, port: int | None = None) -> None:
        self.name = name
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self._child = Child(name, Path(log_dir) / f"{name}.log")

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.address}/metrics"

    @property
    def running(self) -> bool:
        return self._child.running

    def metrics_text(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            return str(response.read().decode())

    def _serving(self, up_metric: str) -> bool:
        """True once /metrics answers and the exporter reaches its server (`<up_metric> 1`)."""
        self._child.check_alive()
        lines = self.metrics_text().splitlines()
        return any(line.startswith(up_metric) and line.rstrip().endswith(" 1") for line in lines)

    def stop(self) -> None:
        self._child.stop()

    def log_tail(self, lines: int = 30) -> str:
        return self._child.log_tail(lines)


class RedisExporter(Exporter):
    """redis_exporter against `redis_address` ("host:port"), like the cache pod's sidecar: the password (if
    the Redis has one) in REDIS_PASSWORD, as the pod's Secret reference gives it, never on the command line."""

    def __init__(
        self, redis_address: str, log_dir: Path, port: int | None = None, name: str = "redis-exporter",
        password: str | None = None, password_file: Path | None = None,
    ) -> None:
        super().__init__(name, log_dir, port)
        self.redis_address = redis_address
        self.password = password
        self.password_file = password_file  # the pod's map (REDIS_PASSWORD_FILE), read again at /-/reload

    def start(self, timeout: float = 30.0) -> None:
        env = {"REDIS_PASSWORD": self.password} if self.password else {}
        if self.password_file is not None:
            env["REDIS_PASSWORD_FILE"] = str(self.password_file)
        self._child.spawn([
            str(pinned_binary("redis-exporter")),
            f"-redis.addr=redis://{self.redis_address}",
            f"-web.listen-address={self.address}",
        ], env=env or None)
        poll(lambda: self._serving("redis_up"), timeout, f"{self.name} on {self.address} reporting redis_up 1")


class PostgresExporter(Exporter):
    """postgres_exporter against one Postgres server (its `postgres` database), like the pods' sidecar."""

    def __init__(
        self,
        pg_address: str,
        user: str,
        password: str,
        log_dir: Path,
        port: int | None = None,
        name: str = "postgres-exporter",
        queries: Path = POSTGRES_EXPORTER_QUERIES,
        dsn: str | None = None,
        pgpass: Path | None = None,
    ) -> None:
        super().__init__(name, log_dir, port)
        self.pg_address = pg_address
        self.user = user
        self.password = password
        self.queries = queries
        # The pods' form since the password follows the Secret: a DSN without one, and a pgpass file.
        self.dsn, self.pgpass = dsn, pgpass

    def start(self, timeout: float = 30.0) -> None:
        self._child.spawn(
            [
                str(pinned_binary("postgres-exporter")),
                f"--extend.query-path={self.queries}",
                f"--web.listen-address={self.address}",
                "--log.level=warn",
            ],
            env={
                # URI + user + password, no TLS on loopback (what the pods had before the pgpass file).
                "DATA_SOURCE_URI": f"{self.pg_address}/postgres?sslmode=disable",
                "DATA_SOURCE_USER": self.user,
                "DATA_SOURCE_PASS": self.password,
            } if self.dsn is None else {"DATA_SOURCE_NAME": self.dsn, "PGPASSFILE": str(self.pgpass or "")},
        )
        poll(lambda: self._serving("pg_up"), timeout, f"{self.name} on {self.address} reporting pg_up 1")


__all__ = ["POSTGRES_EXPORTER_QUERIES", "Exporter", "PostgresExporter", "RedisExporter"]
