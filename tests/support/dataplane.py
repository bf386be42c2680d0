"""Data-plane fixtures: real Redis, a Postgres primary + streaming replica, the demo app and its worker,
each a real process on a free loopback port, started once per session and stopped at the end.

Every server is an object with host/port (and url/dsn), start() and stop(), so tests can stop one and
start it again on the same port and data, and other fixtures (Prometheus, exporters) can build on them.
State and logs live in .dataplane/<pid>/ (logs/ is kept after the session for post-mortems).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import psycopg
import pytest
import redis

from tests.support.wait import wait_for

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "operator" / "scaledapp" / "resources" / "files"
PG_SUPERUSER, PG_PASSWORD, PG_DB = "postgres", "postgres-test-pw", "app"
REPL_USER, REPL_PASSWORD = "replicator", "replicator-test-pw"
MONITOR_USER, MONITOR_PASSWORD = "monitor", "monitor-test-pw"
REDIS_PASSWORD = "redis-test-pw"
_TEST_USER = "scaledapp-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pg_bin(tool: str) -> str:
    """A Postgres server tool: $PG_BIN, else Debian's newest /usr/lib/postgresql/<v>/bin, else PATH."""
    candidates = [os.environ.get("PG_BIN", "")]
    debian = Path("/usr/lib/postgresql")
    versions = sorted((p for p in debian.glob("*/bin") if p.parent.name.isdigit()), key=lambda p: int(p.parent.name))
    candidates += [str(p) for p in reversed(versions)]
    for d in candidates:
        if d and (Path(d) / tool).exists():
            return str(Path(d) / tool)
    found = shutil.which(tool)
    if not found:
        raise RuntimeError(f"{tool} not found: run hack/deps.sh (or set PG_BIN)")
    return found


def unprivileged_user() -> pwd.struct_passwd | None:
    """Postgres refuses to run as root: as root, a dedicated system user (nobody if it can't be made)."""
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(_TEST_USER)
    made = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", _TEST_USER],
        capture_output=True, check=False,
    )
    return pwd.getpwnam(_TEST_USER if made.returncode == 0 else "nobody")


def as_user(cmd: list[str], user: pwd.struct_passwd | None) -> list[str]:
    # setpriv execs in place (no intermediate process), so signals reach the server itself.
    if user is None:
        return cmd
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups", "--", *cmd]


class Process:
    """A child process with its output in a log file."""

    def __init__(self, name: str, log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self, cmd: list[str], env: Mapping[str, str] | None = None, cwd: Path | None = None) -> None:
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        log = self.log_path.open("ab")
        log.write(f"\n=== start: {' '.join(cmd)}\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(env) if env is not None else None, cwd=cwd
        )
        log.close()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        """Send `sig`, wait for the exit (SIGKILL after `timeout`); the exit code, None if not running."""
        self.send(sig)
        return self.wait_stopped(timeout)

    def wait_stopped(self, timeout: float = 30.0) -> int | None:
        """Wait for the exit (SIGKILL after `timeout`); the exit code, None if it was not running."""
        if self.proc is None:
            return None
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        code, self.proc = self.proc.returncode, None
        return code

    def send(self, sig: int) -> None:
        """Signal without waiting (to stop several processes at once, then signal_stop each)."""
        if self.running and self.proc is not None:
            self.proc.send_signal(sig)

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class RedisServer(Process):
    """A Redis that, like the pods' (resources/cache.py), requires a password: requirepass from a 0600 file the
    server includes, not on its command line. `url()` and `client()` carry the password."""

    def __init__(self, log_dir: Path, port: int | None = None, name: str = "redis",
                 password: str = REDIS_PASSWORD) -> None:
        super().__init__(name, log_dir)
        self.host, self.port = "127.0.0.1", port or free_port()
        self.password = password
        self.auth_file = log_dir.parent / f"{name}-auth.conf"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def url(self, db: int = 0) -> str:
        return f"redis://:{self.password}@{self.host}:{self.port}/{db}"

    def client(self, db: int = 0, socket_timeout: float | None = 5) -> redis.Redis:
        return redis.Redis(host=self.host, port=self.port, db=db, password=self.password,
                           socket_timeout=socket_timeout)

    def ping(self) -> bool:
        return bool(self.client(socket_timeout=1).ping())

    def start(self, timeout: float = 20.0) -> None:
        self.auth_file.touch(mode=0o600)
        self.auth_file.write_text(f"requirepass {self.password}\n")
        # A cache: no persistence, so a restart comes back empty, as a Redis pod would.
        self.spawn(["redis-server", "--port", str(self.port), "--bind", self.host, "--save", "",
                    "--appendonly", "no", "--maxmemory", "256mb", "--maxmemory-policy", "allkeys-lru",
                    "--include", str(self.auth_file)])
        wait_for(self.ping, timeout, f"{self.name} on :{self.port}", interval=0.05, ignore=(redis.RedisError,))

    def stop(self) -> None:
        self.signal_stop(signal.SIGTERM)


class PostgresServer(Process):
    """One Postgres server (primary or replica) run as an unprivileged user from its own data dir."""

    def __init__(self, name: str, base: Path, log_dir: Path, user: pwd.struct_passwd | None) -> None:
        super().__init__(name, log_dir)
        self.host, self.port, self.user = "127.0.0.1", free_port(), user
        self.pgdata = base / name / "data"
        self.socket_dir = base / name / "run"

    def dsn(self, user: str = PG_SUPERUSER, password: str = PG_PASSWORD, dbname: str = PG_DB) -> str:
        return f"postgresql://{user}:{password}@{self.host}:{self.port}/{dbname}"

    def run(self, cmd: list[str], env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run a tool as the server's user, with its output in the log; raises with that output on failure."""
        result = subprocess.run(as_user(cmd, self.user), env=dict(env) if env else None,
                                capture_output=True, text=True, check=False, timeout=120)
        with self.log_path.open("a") as log:
            log.write(f"\n=== {' '.join(cmd)} -> {result.returncode}\n{result.stdout}{result.stderr}")
        if result.returncode != 0:
            raise RuntimeError(f"{cmd[0]} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        return result

    def prepare_dirs(self) -> None:
        for d in (self.pgdata.parent, self.socket_dir):
            d.mkdir(parents=True, exist_ok=True)
            if self.user is not None:
                os.chown(d, self.user.pw_uid, self.user.pw_gid)

    def start(self, timeout: float = 60.0) -> None:
        cmd = [pg_bin("postgres"), "-D", str(self.pgdata), "-p", str(self.port), "-k", str(self.socket_dir),
               "-c", f"listen_addresses={self.host}", "-c", "fsync=off"]
        self.spawn(as_user(cmd, self.user))
        wait_for(self.accepting, timeout, f"{self.name} accepting connections on :{self.port}",
                 interval=0.1, ignore=(psycopg.OperationalError,))

    def accepting(self) -> bool:
        if not self.running:
            raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
        with psycopg.connect(self.dsn(dbname="postgres"), connect_timeout=2) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)

    def stop(self) -> None:
        self.signal_stop(signal.SIGINT)  # "fast" shutdown: disconnect clients, checkpoint, exit

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with psycopg.connect(self.dsn(), connect_timeout=3, autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()


class PostgresCluster:
    """A primary initialised the way the official image does it plus the project's primary-init.sh, and
    a streaming replica seeded by the project's replica-bootstrap.sh (the scripts the pods run)."""

    def __init__(self, base: Path, log_dir: Path) -> None:
        self.user = unprivileged_user()
        self.primary = PostgresServer("pg-primary", base, log_dir, self.user)
        self.replica = PostgresServer("pg-replica", base, log_dir, self.user)
        self.replica_name = "pg-replica-0"

    def script_env(self, server: PostgresServer, **extra: str) -> dict[str, str]:
        return {"PATH": f"{Path(pg_bin('psql')).parent}:{os.environ['PATH']}", "PGDATA": str(server.pgdata),
                "LANG": "C.UTF-8", **extra}

    def init_primary(self) -> None:
        p = self.primary
        p.prepare_dirs()
        pwfile = p.pgdata.parent / "pwfile"
        pwfile.write_text(PG_PASSWORD + "\n")
        if self.user is not None:
            os.chown(pwfile, self.user.pw_uid, self.user.pw_gid)
        p.run([pg_bin("initdb"), "-D", str(p.pgdata), "-U", PG_SUPERUSER, f"--pwfile={pwfile}",
               "--encoding=UTF8", "--locale=C", "--no-sync"])
        pwfile.unlink()
        # What a client in another pod meets in the official image: local trust, everything over the
        # network by password, and nothing that covers replication until primary-init.sh adds it.
        (p.pgdata / "pg_hba.conf").write_text("local all all trust\nhost all all all scram-sha-256\n")
        p.start()
        p.run([pg_bin("createdb"), "-h", str(p.socket_dir), "-p", str(p.port), "-U", PG_SUPERUSER, PG_DB])
        p.run(["bash", str(SCRIPTS / "primary-init.sh")], env=self.script_env(
            p, PGHOST=str(p.socket_dir), PGPORT=str(p.port), POSTGRES_USER=PG_SUPERUSER, POSTGRES_DB=PG_DB,
            REPLICATION_USER=REPL_USER, REPLICATION_PASSWORD=REPL_PASSWORD,
            MONITOR_USER=MONITOR_USER, MONITOR_PASSWORD=MONITOR_PASSWORD, MAX_SLOT_WAL_KEEP_SIZE="256MB"))

    def bootstrap_replica(self, wait_timeout: int = 60) -> subprocess.CompletedProcess[str]:
        r = self.replica
        r.prepare_dirs()
        return r.run(["bash", str(SCRIPTS / "replica-bootstrap.sh")], env=self.script_env(
            r, PRIMARY_HOST=self.primary.host, PRIMARY_PORT=str(self.primary.port),
            REPLICATION_USER=REPL_USER, REPLICATION_PASSWORD=REPL_PASSWORD,
            REPLICA_NAME=self.replica_name, WAIT_TIMEOUT_SECONDS=str(wait_timeout)))

    def start(self) -> None:
        self.init_primary()
        self.bootstrap_replica()
        self.replica.start()
        wait_for(self.streaming, 30, "the replica streaming from the primary", interval=0.1)

    def streaming(self) -> bool:
        rows = self.primary.query("SELECT state FROM pg_stat_replication WHERE application_name = %s",
                                  (self.replica_name,))
        return rows == [("streaming",)]

    def stop(self) -> None:
        self.replica.stop()
        self.primary.stop()


def app_env(extra: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    env.update(extra)
    return env


class AppProcess(Process):
    """`python -m demo_app` (one uvicorn worker) on a free port; `settings` are APP_* variables."""

    def __init__(self, name: str, log_dir: Path, settings: Mapping[str, str], port: int | None = None) -> None:
        super().__init__(name, log_dir)
        self.host, self.port = "127.0.0.1", port or free_port()
        self.settings = dict(settings)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0, ready: bool = True) -> None:
        env = app_env({**self.settings, "APP_HOST": self.host, "APP_PORT": str(self.port)})
        self.spawn([sys.executable, "-m", "demo_app"], env=env, cwd=REPO)
        probe = "/readyz" if ready else "/livez"
        wait_for(lambda: self._ok(probe), timeout, f"{self.name} {probe} on :{self.port}",
                 interval=0.05, ignore=(httpx.TransportError,))

    def _ok(self, path: str) -> bool:
        if not self.running:
            raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
        return httpx.get(self.url + path, timeout=2).status_code == 200

    def stop(self, timeout: float = 30.0) -> int | None:
        return self.signal_stop(signal.SIGTERM, timeout)


class WorkerProcess(Process):
    """`python -m demo_app.worker`, metrics on a free port."""

    def __init__(self, name: str, log_dir: Path, settings: Mapping[str, str]) -> None:
        super().__init__(name, log_dir)
        self.host, self.metrics_port = "127.0.0.1", free_port()
        self.settings = dict(settings)

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    def start(self, timeout: float = 30.0) -> None:
        env = app_env({**self.settings, "APP_WORKER_METRICS_PORT": str(self.metrics_port)})
        self.spawn([sys.executable, "-m", "demo_app.worker"], env=env, cwd=REPO)
        wait_for(self._metrics_ok, timeout, f"{self.name} metrics on :{self.metrics_port}",
                 interval=0.05, ignore=(httpx.TransportError,))

    def _metrics_ok(self) -> bool:
        if not self.running:
            raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
        return httpx.get(self.metrics_url, timeout=2).status_code == 200

    def stop(self, timeout: float = 30.0) -> int | None:
        return self.signal_stop(signal.SIGTERM, timeout)


def app_settings(cluster: PostgresCluster, cache: RedisServer, **overrides: str) -> dict[str, str]:
    """APP_* settings wiring the app to these servers, with short timeouts so failures show fast."""
    base = {
        "APP_DB_WRITE_DSN": cluster.primary.dsn(),
        "APP_DB_READ_DSN": cluster.replica.dsn(),
        "APP_CACHE_URL": cache.url(0),
        "APP_QUEUE_URL": cache.url(1),
        "APP_SEED_ITEMS": "500",
        "APP_DB_POOL_TIMEOUT": "0.5",
        "APP_DB_CONNECT_TIMEOUT": "2",
        "APP_BREAKER_RESET_SECONDS": "1",
        "APP_DRAIN_SECONDS": "0.5",
        "APP_JOB_DURATION_SECONDS": "0.05",
        "APP_WORKER_CONCURRENCY": "2",
        "APP_CPU_LIMIT_MILLICORES": "500",
        "APP_LOG_LEVEL": "warning",
    }
    base.update({f"APP_{k.upper()}": v for k, v in overrides.items()})
    return base


@pytest.fixture(scope="session")
def dataplane_dir() -> Iterator[Path]:
    root = REPO / ".dataplane"
    root.mkdir(exist_ok=True)
    for old in root.iterdir():  # earlier sessions (named by pid) whose process is gone
        if old.name.isdigit() and not Path(f"/proc/{old.name}").exists():
            shutil.rmtree(old, ignore_errors=True)
    base = root / str(os.getpid())
    (base / "logs").mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)
    yield base
    for child in base.iterdir():
        if child.name != "logs":
            shutil.rmtree(child, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server(dataplane_dir: Path) -> Iterator[RedisServer]:
    server = RedisServer(dataplane_dir / "logs")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_cluster(dataplane_dir: Path) -> Iterator[PostgresCluster]:
    cluster = PostgresCluster(dataplane_dir, dataplane_dir / "logs")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def demo_app(dataplane_dir: Path, pg_cluster: PostgresCluster, redis_server: RedisServer) -> Iterator[AppProcess]:
    app = AppProcess("app", dataplane_dir / "logs", app_settings(pg_cluster, redis_server))
    app.start()
    yield app
    app.stop()


@pytest.fixture(scope="session")
def demo_worker(dataplane_dir: Path, pg_cluster: PostgresCluster, redis_server: RedisServer) -> Iterator[WorkerProcess]:
    worker = WorkerProcess("worker", dataplane_dir / "logs", app_settings(pg_cluster, redis_server))
    worker.start()
    yield worker
    worker.stop()


@pytest.fixture
def healthy_dataplane(pg_cluster: PostgresCluster, redis_server: RedisServer) -> PostgresCluster:
    """Start whatever an earlier (failed) test left stopped, so each test begins with everything up."""
    if not redis_server.running:
        redis_server.start()
    for server in (pg_cluster.primary, pg_cluster.replica):
        if not server.running:
            server.start()
    return pg_cluster
