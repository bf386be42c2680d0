"""postgres-start.sh, the command of every Postgres container, run for real with this machine's Postgres tools.

Each server is the script itself (as the pod runs it: the script stays the main process, postgres is its
child), on a free loopback port with its own socket directory, as an unprivileged user. LISTEN_ADDRESSES is
127.0.0.1 here (the pods use every address); everything else is the pod's contract: the same variables, the
same init scripts from resources/files, the replica seeded by replica-bootstrap.sh.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path

import psycopg
import pytest
from psycopg.rows import TupleRow

from tests.support.dataplane import SCRIPTS, Process, as_user, free_port, pg_bin, unprivileged_user
from tests.support.wait import wait_for

pytestmark = pytest.mark.dataplane

SUPERUSER, SU_PASSWORD, DATABASE = "postgres", "start-su-pw", "app"
APP_USER, APP_PASSWORD = "app", "start-app-pw"
REPL_USER, REPL_PASSWORD = "replicator", "start-rep-pw"
MARKER = "scaledapp-primary-initialised"
# A fast shutdown disconnects clients and writes one checkpoint: a second or so here. A smart one (plain
# SIGTERM to postgres) would wait for the open connection for as long as it stays open.
FAST_SHUTDOWN_SECONDS = 10


def tool_path() -> str:
    return f"{Path(pg_bin('postgres')).parent}:{os.environ['PATH']}"


class StartScript(Process):
    """One Postgres pod's main container: `bash postgres-start.sh` with the pod's environment."""

    def __init__(self, name: str, base: Path, log_dir: Path, user: pwd.struct_passwd | None,
                 role: str = "primary") -> None:
        super().__init__(name, log_dir)
        self.user, self.role = user, role
        self.host, self.port = "127.0.0.1", free_port()
        self.volume = base / name / "volume"  # stands for the PVC: PGDATA is a subdirectory, as in the pod
        self.pgdata = self.volume / "pgdata"
        self.socket_dir = base / name / "run"
        self.init_scripts = [SCRIPTS / "primary-init.sh", SCRIPTS / "app-role.sh"]
        for d in (base / name, self.volume):
            d.mkdir(parents=True, exist_ok=True)
            if user is not None:
                os.chown(d, user.pw_uid, user.pw_gid)

    def env(self) -> dict[str, str]:
        return {
            "PATH": tool_path(), "LANG": "C.UTF-8",
            "PGDATA": str(self.pgdata), "POSTGRES_ROLE": self.role, "POSTGRES_USER": SUPERUSER,
            "POSTGRES_PASSWORD": SU_PASSWORD, "POSTGRES_DB": DATABASE, "SOCKET_DIR": str(self.socket_dir),
            "PGPORT": str(self.port), "LISTEN_ADDRESSES": self.host,
            "INIT_SCRIPTS": " ".join(str(s) for s in self.init_scripts),
            # primary-init.sh and app-role.sh, as the primary's manifest passes them
            "REPLICATION_USER": REPL_USER, "REPLICATION_PASSWORD": REPL_PASSWORD, "MAX_SLOT_WAL_KEEP_SIZE": "128MB",
            "APP_USER": APP_USER, "APP_PASSWORD": APP_PASSWORD,
        }

    def start(self, wait: bool = True, timeout: float = 90.0) -> None:
        self.spawn(as_user(["bash", str(SCRIPTS / "postgres-start.sh"), "-c", "fsync=off"], self.user), env=self.env())
        if wait:
            wait_for(self.accepting, timeout, f"{self.name} accepting on :{self.port}", interval=0.1,
                     ignore=(psycopg.OperationalError,))

    def connect(self, user: str = SUPERUSER, password: str = SU_PASSWORD, dbname: str = DATABASE,
                host: str | None = None) -> psycopg.Connection[TupleRow]:
        return psycopg.connect(host=host or self.host, port=self.port, user=user, password=password, dbname=dbname,
                               connect_timeout=3, autocommit=True)

    def accepting(self) -> bool:
        if not self.running:
            raise RuntimeError(f"{self.name} exited:\n{self.log_tail()}")
        with self.connect(dbname="postgres") as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)

    def query(self, sql: str, dbname: str = DATABASE) -> list[tuple[object, ...]]:
        with self.connect(dbname=dbname) as conn:
            return conn.execute(sql).fetchall()

    def execute(self, sql: str, dbname: str = DATABASE) -> None:
        with self.connect(dbname=dbname) as conn:
            conn.execute(sql)

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        self.signal_stop(signal.SIGTERM, timeout=60)


def run_as(user: pwd.struct_passwd | None, cmd: list[str], env: Mapping[str, str]) -> str:
    result = subprocess.run(as_user(cmd, user), env=dict(env), capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, f"{cmd[0]} failed:\n{result.stdout}{result.stderr}"
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def user() -> pwd.struct_passwd | None:
    return unprivileged_user()


@pytest.fixture(scope="module")
def primary(dataplane_dir: Path, user: pwd.struct_passwd | None) -> Iterator[StartScript]:
    server = StartScript("start-primary", dataplane_dir, dataplane_dir / "logs", user)
    server.start()
    yield server
    server.stop()


def running(server: StartScript) -> StartScript:
    if not server.running:  # an earlier test stopped it (or failed while it was stopped)
        server.start()
    return server


def test_first_boot_initialises_a_primary_its_clients_can_use(primary: StartScript) -> None:
    log = primary.log_text()
    assert "initialising a new primary" in log and "HALF-INITIALISED" not in log
    assert (primary.pgdata / MARKER).exists() and not Path(f"{primary.pgdata}.initdb").exists()
    # The app's login owns the app database; the replication role exists; both by password over TCP.
    with primary.connect(APP_USER, APP_PASSWORD) as conn:
        assert conn.execute("SELECT current_user, pg_catalog.pg_get_userbyid(datdba) FROM pg_database "
                            "WHERE datname = current_database()").fetchone() == (APP_USER, APP_USER)
    assert primary.query(f"SELECT rolreplication FROM pg_roles WHERE rolname = '{REPL_USER}'") == [(True,)]
    hba = (primary.pgdata / "pg_hba.conf").read_text()
    assert "host    all       all   all      scram-sha-256" in hba
    assert f"host replication {REPL_USER} all scram-sha-256" in hba
    assert "trust" not in hba
    # Nothing is trusted, the local socket included.
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host=str(primary.socket_dir), port=primary.port, user=SUPERUSER, dbname="postgres",
                        connect_timeout=3).close()
    with primary.connect(host=str(primary.socket_dir), dbname="postgres") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_sigterm_is_a_fast_shutdown_even_with_an_open_connection(primary: StartScript) -> None:
    server = running(primary)
    server.execute("CREATE TABLE kept (v int)")
    server.execute("INSERT INTO kept VALUES (7)")
    client = server.connect(APP_USER, APP_PASSWORD)  # an idle pooled connection never leaves on its own
    try:
        server.send(signal.SIGTERM)
        wait_for(lambda: server.exited() is not None, FAST_SHUTDOWN_SECONDS,
                 "postgres-start.sh to exit after SIGTERM with a client connected", interval=0.05)
    finally:
        client.close()
    assert server.wait_stopped() == 0
    log = server.log_text()
    assert "received fast shutdown request" in log and "database system is shut down" in log, log[-2000:]

    # The next start finds an initialised primary: no initdb, no crash recovery, the data kept.
    server.start()
    restarted = server.log_text()[len(log):]
    assert "is an initialised primary" in restarted and "initialising" not in restarted
    assert "not properly shut down" not in restarted
    assert server.query("SELECT v FROM kept") == [(7,)]


def test_a_half_initialised_primary_is_initialised_again(dataplane_dir: Path, user: pwd.struct_passwd | None) -> None:
    server = StartScript("start-half", dataplane_dir, dataplane_dir / "logs", user)
    # The container dies during its first boot, after initdb and primary-init.sh (an OOM kill): the
    # temporary server goes down without a checkpoint and the script is killed.
    crash = dataplane_dir / "start-half" / "die.sh"
    crash.write_text('pg_ctl -D "$PGDATA" -m immediate -w stop\nkill -KILL "$PPID"\n')
    crash.chmod(0o755)
    server.init_scripts = [SCRIPTS / "primary-init.sh", crash, SCRIPTS / "app-role.sh"]
    server.start(wait=False)
    wait_for(lambda: server.exited() is not None, 90, "the first boot to die", interval=0.1)
    assert server.wait_stopped() == -signal.SIGKILL
    staging = Path(f"{server.pgdata}.initdb")
    assert (staging / "PG_VERSION").exists() and not (staging / MARKER).exists()
    assert not server.pgdata.exists()  # clients never saw the half-made directory

    server.init_scripts = [SCRIPTS / "primary-init.sh", SCRIPTS / "app-role.sh"]
    try:
        server.start()
        assert "HALF-INITIALISED PRIMARY" in server.log_text()
        assert (server.pgdata / MARKER).exists() and not staging.exists()
        with server.connect(APP_USER, APP_PASSWORD) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (APP_USER,)
    finally:
        server.stop()


def test_a_data_directory_made_elsewhere_is_repaired_not_wiped(
    dataplane_dir: Path, user: pwd.struct_passwd | None
) -> None:
    """A PGDATA without our marker (the official image's entrypoint made it, and it died before its init
    scripts, or it served for years) may hold acknowledged writes: it is kept and the init steps are run."""
    server = StartScript("start-legacy", dataplane_dir, dataplane_dir / "logs", user)
    pwfile = server.volume / "pwfile"
    pwfile.write_text(SU_PASSWORD + "\n")
    env = {"PATH": tool_path(), "LANG": "C.UTF-8"}
    run_as(user, [pg_bin("initdb"), "-D", str(server.pgdata), "-U", SUPERUSER, f"--pwfile={pwfile}",
                  "--encoding=UTF8", "--locale=C", "--no-sync"], env)
    with (server.pgdata / "pg_hba.conf").open("a") as hba:  # what the official entrypoint adds
        hba.write("host all all all scram-sha-256\n")
    server.socket_dir.mkdir(exist_ok=True)
    if user is not None:
        os.chown(server.socket_dir, user.pw_uid, user.pw_gid)
    where = ["-h", str(server.socket_dir), "-p", str(server.port), "-U", SUPERUSER]
    # -l: the server must not hold our output pipe open.
    run_as(user, [pg_bin("pg_ctl"), "-D", str(server.pgdata), "-w", "-l", str(server.volume.parent / "pg_ctl.log"),
                  "-o", f"-c listen_addresses='' -k {server.socket_dir} -p {server.port}", "start"], env)
    try:
        run_as(user, [pg_bin("psql"), *where, "-d", "postgres", "-v", "ON_ERROR_STOP=1",
                      "-c", "CREATE TABLE acknowledged (v int)", "-c", "INSERT INTO acknowledged VALUES (42)"], env)
    finally:
        run_as(user, [pg_bin("pg_ctl"), "-D", str(server.pgdata), "-m", "fast", "-w", "stop"], env)

    try:
        server.start()
        log = server.log_text()
        assert "no completion marker" in log and "HALF-INITIALISED" not in log
        assert server.query("SELECT v FROM acknowledged", dbname="postgres") == [(42,)]
        with server.connect(APP_USER, APP_PASSWORD) as conn:  # the init steps ran: app role and database
            assert conn.execute("SELECT current_database()").fetchone() == (DATABASE,)
        assert (server.pgdata / MARKER).exists()
    finally:
        server.stop()


def test_a_seeded_replica_starts_as_a_streaming_standby(
    primary: StartScript, dataplane_dir: Path, user: pwd.struct_passwd | None
) -> None:
    source = running(primary)
    replica = StartScript("start-replica", dataplane_dir, dataplane_dir / "logs", user, role="replica")
    # Unseeded, the replica refuses to start rather than initialise an empty primary of its own.
    replica.start(wait=False)
    wait_for(lambda: replica.exited() is not None, 30, "the unseeded replica to give up", interval=0.05)
    assert replica.wait_stopped() == 1
    assert "never runs initdb" in replica.log_text() and not replica.pgdata.exists()

    run_as(user, ["bash", str(SCRIPTS / "replica-bootstrap.sh")], {
        "PATH": tool_path(), "LANG": "C.UTF-8", "PGDATA": str(replica.pgdata),
        "PRIMARY_HOST": source.host, "PRIMARY_PORT": str(source.port), "REPLICATION_USER": REPL_USER,
        "REPLICATION_PASSWORD": REPL_PASSWORD, "REPLICA_NAME": "start-replica-0", "WAIT_TIMEOUT_SECONDS": "60"})
    try:
        replica.start()
        assert "is a seeded replica" in replica.log_text()
        assert replica.query("SELECT pg_is_in_recovery()", dbname="postgres") == [(True,)]
        wait_for(lambda: source.query("SELECT state FROM pg_stat_replication WHERE application_name = "
                                      "'start-replica-0'", dbname="postgres") == [("streaming",)],
                 30, "the replica streaming from the primary", interval=0.1)
    finally:
        replica.stop()
    assert "received fast shutdown request" in replica.log_text()
