"""Postgres TLS on real servers: the pods' configuration (postgres-start.sh with the TLS settings and the pg_hba
the operator renders, the init scripts, replica-bootstrap.sh with the replication certificate) on loopback,
with certificates made by the operator's own code (resources/tls.py, dbtls.mint_login).

What a stranger meets: no plain-text connection, for clients or replication. What the project's clients
meet: verified TLS (the app's verify-full, the replica's verify-full with its certificate), the operator's
certificate login that needs no password, passwords changed under running sessions, and a renewed server
certificate picked up on a reload without a restart.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import pwd
import signal
import socket
import ssl
import struct
from collections.abc import Iterator
from pathlib import Path
from secrets import token_hex
from typing import Any, cast

import httpx
import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from psycopg import sql

from devharness.exporters import PostgresExporter
from scaledapp import dbtls, pgclient
from scaledapp.kube import Kube
from scaledapp.resources import database, names, pg_layout, pg_sidecars, secrets, tls
from tests.dataplane.test_postgres_start import (
    APP_PASSWORD,
    APP_USER,
    REPL_USER,
    SU_PASSWORD,
    SUPERUSER,
    StartScript,
    run_as,
    tool_path,
)
from tests.support.dataplane import SCRIPTS, AppProcess, Process, RedisServer, as_user, unprivileged_user
from tests.support.wait import wait_for

pytestmark = pytest.mark.dataplane

CHILD = names.ChildNames("tlsdemo")
REPLICA_NAME = "tlsdemo-db-read-0"


def peer_user(user: pwd.struct_passwd | None) -> str:
    """The system user the servers run as, which pg_hba's `peer` line lets in on the socket as the database
    role of the same name (`postgres` in a pod; this machine's test user here, a superuser role made for it)."""
    return user.pw_name if user is not None else pwd.getpwuid(os.geteuid()).pw_name


class TlsFiles:
    """What a Postgres pod mounts from the db-tls Secret (owned by the server's user, keys 0600), and the
    pg_hba from the db-scripts ConfigMap."""

    def __init__(self, base: Path, user: pwd.struct_passwd | None) -> None:
        self.dir, self.user = base / "tls", user
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca = tls.new_ca("tlsdemo test CA", dt.datetime.now(dt.UTC))
        self.hba = base / "pg_hba.conf"
        # The pods' pg_hba; `peer` on the socket for the user the servers run as here (`postgres` in a pod).
        self.hba.write_text(database.pg_hba(superuser=peer_user(user)))
        self.material = self.issue()
        self.write(self.material)
        self._own(self.dir)
        self._own(self.hba)

    def issue(self) -> tls.ServerTls:
        # 127.0.0.1: the loopback servers' address, so clients can check verify-full as the pods' clients do.
        return tls.issue_server_tls(self.ca, CHILD, "ns", REPL_USER, dt.datetime.now(dt.UTC),
                                    extra_names=["127.0.0.1"])

    def _own(self, path: Path) -> None:
        if self.user is not None:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def write(self, material: tls.ServerTls) -> None:
        """Replace the files the way the kubelet does: each written aside, then renamed into place."""
        for key, text in tls.decode(material.as_data()).items():
            aside = self.dir / f".{key}.new"
            fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(text)
            self._own(aside)
            aside.replace(self.dir / key)

    @property
    def ca_file(self) -> str:
        return str(self.dir / tls.CA_CERT_KEY)


class TlsServer(StartScript):
    """postgres-start.sh with the pods' TLS settings (paths of this test's files)."""

    def __init__(self, name: str, base: Path, files: TlsFiles, role: str = "primary") -> None:
        super().__init__(name, base, base / "logs", files.user, role=role)
        self.files = files

    def env(self) -> dict[str, str]:
        return {**super().env(), "OPERATOR_USER": tls.OPERATOR_USER}

    def start(self, wait: bool = True, timeout: float = 90.0) -> None:
        settings = {**database.tls_settings(str(self.files.dir), str(self.files.hba)), "fsync": "off"}
        args = [arg for key, value in settings.items() for arg in ("-c", f"{key}={value}")]
        self.spawn(as_user(["bash", str(SCRIPTS / "postgres-start.sh"), *args], self.user), env=self.env())
        if wait:
            wait_for(self.accepting, timeout, f"{self.name} accepting on :{self.port}", interval=0.1,
                     ignore=(psycopg.OperationalError,))

    def verified(self, user: str = APP_USER, password: str = APP_PASSWORD, **extra: str) -> psycopg.Connection:
        """A client as the app connects: verify-full against the CA."""
        return psycopg.connect(host=self.host, port=self.port, user=user, password=password, dbname="app",
                               sslmode="verify-full", sslrootcert=self.files.ca_file, connect_timeout=3,
                               autocommit=True, **extra)


@pytest.fixture(scope="module")
def files(dataplane_dir: Path) -> TlsFiles:
    base = dataplane_dir / "pgtls"
    base.mkdir(exist_ok=True)
    user = unprivileged_user()
    if user is not None:
        os.chown(base, user.pw_uid, user.pw_gid)
    return TlsFiles(base, user)


@pytest.fixture(scope="module")
def primary(files: TlsFiles) -> Iterator[TlsServer]:
    server = TlsServer("tls-primary", files.dir.parent, files)
    (files.dir.parent / "logs").mkdir(exist_ok=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def replica(primary: TlsServer, files: TlsFiles) -> Iterator[TlsServer]:
    server = TlsServer("tls-replica", files.dir.parent, files, role="replica")
    # The bootstrap as the pod's initContainer runs it: no password, the replication certificate.
    run_as(files.user, ["bash", str(SCRIPTS / "replica-bootstrap.sh")], {
        "PATH": tool_path(), "LANG": "C.UTF-8", "PGDATA": str(server.pgdata),
        "PRIMARY_HOST": primary.host, "PRIMARY_PORT": str(primary.port), "REPLICATION_USER": REPL_USER,
        "PRIMARY_CONNINFO": database.replication_conninfo(str(files.dir)), "REPLICA_NAME": REPLICA_NAME,
        "WAIT_TIMEOUT_SECONDS": "60"})
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def operator_login(files: TlsFiles, tmp_path_factory: pytest.TempPathFactory) -> pgclient.CertLogin:
    login, _ = dbtls.mint_login(files.ca, tmp_path_factory.mktemp("operator-tls"), "tlsdemo", dt.datetime.now(dt.UTC))
    return login


def refused(**kwargs: object) -> str:
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect(connect_timeout=3, **kwargs).close()  # type: ignore[arg-type]
    return str(caught.value)


def test_a_plain_text_connection_is_refused_even_with_the_right_password(primary: TlsServer) -> None:
    message = refused(host=primary.host, port=primary.port, user=APP_USER, password=APP_PASSWORD, dbname="app",
                      sslmode="disable")
    assert "no encryption" in message or "no pg_hba.conf entry" in message, message
    # The superuser too, and a replication connection without TLS.
    refused(host=primary.host, port=primary.port, user=SUPERUSER, password=SU_PASSWORD, dbname="postgres",
            sslmode="disable")
    message = refused(host=primary.host, port=primary.port, user=REPL_USER, password="start-rep-pw",
                      dbname="replication", replication="true", sslmode="disable")
    assert "no encryption" in message or "no pg_hba.conf entry" in message, message


def test_a_verified_tls_connection_works_and_a_wrong_ca_or_name_does_not(
    primary: TlsServer, files: TlsFiles, tmp_path: Path
) -> None:
    with primary.verified() as conn:
        assert conn.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone() \
            in {(True, "TLSv1.3"), (True, "TLSv1.2")}
        assert conn.execute("SELECT current_user").fetchone() == (APP_USER,)
    # Another CA: the client does not trust the server.
    stranger = tmp_path / "other-ca.crt"
    stranger.write_text(tls.new_ca("someone else", dt.datetime.now(dt.UTC)).cert_pem)
    message = refused(host=primary.host, port=primary.port, user=APP_USER, password=APP_PASSWORD, dbname="app",
                      sslmode="verify-ca", sslrootcert=str(stranger))
    assert "certificate verify failed" in message, message
    # A name the certificate does not carry (verify-full checks it).
    message = refused(host="localhost", port=primary.port, user=APP_USER, password=APP_PASSWORD, dbname="app",
                      sslmode="verify-full", sslrootcert=files.ca_file)
    assert "does not match host name" in message, message


def test_replication_streams_over_tls_with_the_replication_certificate(
    primary: TlsServer, replica: TlsServer
) -> None:
    def streaming_over_tls() -> list[tuple[object, ...]]:
        return primary.query(
            "SELECT r.state, s.ssl, r.usename FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) "
            f"WHERE r.application_name = '{REPLICA_NAME}'", dbname="postgres")

    rows = wait_for(streaming_over_tls, 30, "the replica streaming over TLS", interval=0.1)
    assert rows == [("streaming", True, REPL_USER)]
    # The replica verified the primary's name and logs in by certificate: its primary_conninfo says so and holds
    # no password.
    conninfo = str(replica.query("SHOW primary_conninfo", dbname="postgres")[0][0]).replace("'", "")
    assert "sslmode=verify-full" in conninfo and "sslcert=" in conninfo and "password" not in conninfo
    primary.execute("CREATE TABLE IF NOT EXISTS over_tls (v int)")
    primary.execute("INSERT INTO over_tls VALUES (5)")
    wait_for(lambda: replica.query("SELECT to_regclass('over_tls') IS NOT NULL AND "
                                   "EXISTS (SELECT FROM over_tls WHERE v = 5)") == [(True,)],
             15, "the row replayed on the replica", interval=0.05,
             ignore=(psycopg.errors.UndefinedTable,))
    # The replication role by password (even over TLS) is not let in: certificate only.
    message = refused(host=primary.host, port=primary.port, user=REPL_USER, password="start-rep-pw",
                      dbname="replication", replication="true", sslmode="require")
    assert "certificate" in message, message


def test_the_operator_logs_in_by_certificate_whatever_the_passwords(
    primary: TlsServer, operator_login: pgclient.CertLogin
) -> None:
    # The superuser's password as the credentials Secret might hold it after an edit: wrong.
    wrong = pgclient.Server(primary.host, "not-the-password", port=primary.port)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        wrong.position()
    server = pgclient.Server(primary.host, operator_login, port=primary.port)
    position = server.position()
    assert not position.in_recovery and position.received > 0
    with psycopg.connect(host=primary.host, port=primary.port, dbname="postgres", user=operator_login.user,
                         sslmode="verify-ca", sslrootcert=operator_login.sslrootcert, sslcert=operator_login.sslcert,
                         sslkey=operator_login.sslkey, connect_timeout=3) as conn:
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (True,)
    # The role has no password: without the certificate it cannot log in at all.
    refused(host=primary.host, port=primary.port, user=tls.OPERATOR_USER, password="", dbname="postgres",
            sslmode="require")


def test_a_changed_password_lets_new_connections_in_while_old_sessions_keep_working(
    primary: TlsServer, operator_login: pgclient.CertLogin
) -> None:
    server = pgclient.Server(primary.host, operator_login, port=primary.port)
    old_session = primary.verified()
    new_password = "edited-app-pw"
    try:
        assert server.password_works(APP_USER, APP_PASSWORD)
        assert server.set_passwords({APP_USER: new_password, "no_such_role": "x"}) == [APP_USER]
        with primary.verified(password=new_password) as conn:
            assert conn.execute("SELECT current_user").fetchone() == (APP_USER,)
        assert "password authentication failed" in refused(
            host=primary.host, port=primary.port, user=APP_USER, password=APP_PASSWORD, dbname="app",
            sslmode="verify-full", sslrootcert=primary.files.ca_file)
        assert not server.password_works(APP_USER, APP_PASSWORD) and server.password_works(APP_USER, new_password)
        # A session that logged in with the old password goes on.
        assert old_session.execute("SELECT 1").fetchone() == (1,)
    finally:
        old_session.close()
        server.set_passwords({APP_USER: APP_PASSWORD})


class PasswordFiles:
    """What the password-sync container mounts of the credentials Secret (every Postgres role's key), readable
    by the servers' user; `write` replaces a file the way the kubelet does (written aside, renamed into place)."""

    def __init__(self, base: Path, user: pwd.struct_passwd | None, passwords: dict[str, str]) -> None:
        self.dir, self.user = base, user
        self.dir.mkdir(parents=True, exist_ok=True)
        self._own(self.dir)
        for key, value in passwords.items():
            self.write(key, value)

    def _own(self, path: Path) -> None:
        if self.user is not None:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def write(self, key: str, value: str) -> None:
        aside = self.dir / f".{key}.new"
        aside.write_text(value)
        self._own(aside)
        aside.replace(self.dir / key)


class PasswordSync(Process):
    """The password-sync container of `server`'s pod: the script as the pod runs it, as the server's user (its
    socket, pg_hba `peer`), the SQL from resources/files; a short period for the test."""

    def __init__(self, server: TlsServer, mounted: PasswordFiles, name: str) -> None:
        super().__init__(name, server.files.dir.parent / "logs")
        script = pg_sidecars.password_sync_script(str(mounted.dir), str(SCRIPTS / pg_layout.PASSWORD_SYNC),
                                               str(server.socket_dir), server.port, peer_user(server.files.user),
                                               period=0.2)
        self.spawn(as_user(["sh", "-c", script], server.files.user), env={"PATH": tool_path(), "LANG": "C.UTF-8"})
        self.since = self.log_path.stat().st_size  # its output starts after the command line Process logs

    def output(self) -> str:
        return self.log_path.read_bytes()[self.since:].decode(errors="replace")


def logs_in(server: TlsServer, password: str) -> bool:
    with server.verified(password=password) as conn:
        return conn.execute("select current_user").fetchone() == (APP_USER,)


def auth_failures(server: TlsServer, role: str) -> int:
    return server.log_text().count(f'password authentication failed for user "{role}"')


def test_an_edited_password_is_set_by_the_primarys_sidecar_and_never_by_a_replicas(
    primary: TlsServer, replica: TlsServer, files: TlsFiles
) -> None:
    """The credentials Secret is the source of truth, and the pods make the database agree: after the app's
    password is edited in the mounted files, a replica's sidecar tries the new one, sees it is a replica and
    sets nothing (the primary still takes only the old one); the primary's sets it at its start, over the
    socket (peer), so the new one logs in and the old one is refused, on the primary and, by replication, on
    the replica. A session opened before goes on. The next edit is followed too. No value is in the sidecars'
    output, nor in the servers' logs, even with every statement logged."""
    with primary.connect(dbname="postgres") as conn:
        for role, superuser in ((peer_user(files.user), True), (secrets.EXPORTER_USER, False)):
            if not conn.execute("select 1 from pg_roles where rolname = %s", (role,)).fetchone():
                conn.execute(sql.SQL("create role {} login" + (" superuser" if superuser else "")).format(
                    sql.Identifier(role)))
        conn.execute(sql.SQL("alter role {} password {}").format(sql.Identifier(secrets.EXPORTER_USER),
                                                                  sql.Literal("exp-pw")))
        conn.execute("alter system set log_statement = 'all'")
        conn.execute("select pg_reload_conf()")
    logs_from = {server.name: len(server.log_text()) for server in (primary, replica)}
    rotated, again = token_hex(24), token_hex(24)
    mounted = PasswordFiles(files.dir.parent / "passwords", files.user, {
        secrets.SUPERUSER_KEY: SU_PASSWORD, secrets.APP_KEY: APP_PASSWORD, secrets.REPLICATION_KEY: "start-rep-pw",
        secrets.EXPORTER_KEY: "exp-pw"})
    old_session = primary.verified()
    syncs: list[PasswordSync] = []
    try:
        failures = auth_failures(replica, APP_USER)
        on_replica = PasswordSync(replica, mounted, "password-sync-replica")
        syncs.append(on_replica)
        mounted.write(secrets.APP_KEY, rotated)
        # The replica's sidecar tried the new password (refused there: the primary has not set it), found it is
        # a replica, and tried again later: twice, and it set nothing.
        wait_for(lambda: auth_failures(replica, APP_USER) >= failures + 2, 30, "the replica's sidecar trying twice",
                 interval=0.1)
        assert logs_in(primary, APP_PASSWORD)
        assert "password authentication failed" in refused(
            host=primary.host, port=primary.port, user=APP_USER, password=rotated, dbname="app", sslmode="require")
        assert on_replica.output() == ""

        on_primary = PasswordSync(primary, mounted, "password-sync-primary")
        syncs.append(on_primary)
        for server in (primary, replica):  # set on the primary, replicated to the replica
            wait_for(lambda s=server: logs_in(s, rotated), 30,  # type: ignore[misc]
                     f"the new password logging in on {server.name}", interval=0.2,
                     ignore=(psycopg.OperationalError,))
            assert "password authentication failed" in refused(
                host=server.host, port=server.port, user=APP_USER, password=APP_PASSWORD, dbname="app",
                sslmode="require")
        assert old_session.execute("select 1").fetchone() == (1,)
        # Another edit, while it runs: followed as well.
        mounted.write(secrets.APP_KEY, again)
        wait_for(lambda: logs_in(primary, again), 30, "the next edit followed", interval=0.2,
                 ignore=(psycopg.OperationalError,))
        # The other roles agreed already: untouched.
        with psycopg.connect(host=primary.host, port=primary.port, user=secrets.EXPORTER_USER, password="exp-pw",
                             dbname="postgres", sslmode="require", connect_timeout=3) as conn:
            assert conn.execute("select 1").fetchone() == (1,)
        said = on_primary.output()
        assert said.splitlines() == [f"role {APP_USER}: the mounted password did not log in: set it on this "
                                     "primary (ALTER ROLE)"] * 2
        assert on_replica.output() == ""  # it agreed with the replicated password, silently
        server_logs = [server.log_text()[logs_from[server.name]:] for server in (primary, replica)]
        assert "statement: SET log_statement = none" in server_logs[0]  # every statement was logged, but:
        for text in (said, *server_logs):
            leaked = rotated in text or again in text
            assert not leaked
        assert "ALTER ROLE" not in server_logs[0]  # not even the statement
    finally:
        for sync_process in syncs:
            sync_process.signal_stop(signal.SIGTERM, timeout=5)
        old_session.close()
        with primary.connect(dbname="postgres") as conn:
            conn.execute("alter system reset log_statement")
            conn.execute("select pg_reload_conf()")
        pgclient.Server(primary.host, SU_PASSWORD, SUPERUSER, port=primary.port).set_passwords(
            {APP_USER: APP_PASSWORD})


class SecretApi:
    """The one call dbtls.ensure_operator_role may make: the credentials Secret by name."""

    def __init__(self, passwords: secrets.DbPasswords) -> None:
        self.data = passwords.as_secret_data()
        self.gets = 0

    async def get(self, api_version: str, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        self.gets += 1
        return {"data": dict(self.data)} if name == CHILD.db_credentials else None


def test_a_primary_without_the_operators_role_gets_it_once(
    primary: TlsServer, operator_login: pgclient.CertLogin
) -> None:
    """A primary initialised before the certificate role existed: the guard creates it with the superuser's
    password from the Secret, and from then on the certificate logs in; a primary that has it costs no read."""
    superuser = pgclient.Server(primary.host, SU_PASSWORD, SUPERUSER, port=primary.port)
    server = pgclient.Server(primary.host, operator_login, port=primary.port)
    fake = SecretApi(secrets.DbPasswords(superuser=SU_PASSWORD, app=APP_PASSWORD, replication="start-rep-pw",
                                         exporter="exp-pw", cache="cache-pw", queue="queue-pw"))
    has_it = {"metadata": {"name": CHILD.owner, "namespace": "dp-role-there"}}
    assert asyncio.run(dbtls.ensure_operator_role(cast(Kube, fake), has_it, server)) is False
    assert fake.gets == 0
    with psycopg.connect(host=primary.host, port=primary.port, user=SUPERUSER, password=SU_PASSWORD,
                         dbname="postgres", sslmode="require", autocommit=True) as conn:
        conn.execute(f"DROP ROLE {tls.OPERATOR_USER}")
    with pytest.raises(psycopg.OperationalError, match="does not exist"):
        server.ping()
    owner = {"metadata": {"name": CHILD.owner, "namespace": "dp-role"}}
    try:
        assert asyncio.run(dbtls.ensure_operator_role(cast(Kube, fake), owner, server)) is True
        server.ping()
        assert fake.gets == 1
        # Asked once per primary: nothing more, not even a login.
        assert asyncio.run(dbtls.ensure_operator_role(cast(Kube, fake), owner, server)) is False
        assert fake.gets == 1
    finally:
        for meta in (owner, has_it):
            dbtls.forget(CHILD, meta["metadata"]["namespace"])
        superuser.create_superuser_role(tls.OPERATOR_USER)


def served_certificate(host: str, port: int, ca_file: str) -> x509.Certificate:
    """The certificate the server presents to a new connection (Postgres' SSLRequest, then a TLS handshake)."""
    context = ssl.create_default_context(cafile=ca_file)
    context.check_hostname = False
    with socket.create_connection((host, port), timeout=3) as raw:
        raw.sendall(struct.pack("!ii", 8, 80877103))
        assert raw.recv(1) == b"S"
        with context.wrap_socket(raw) as wrapped:
            der = wrapped.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der)


def test_a_renewed_certificate_is_served_after_a_reload_without_a_restart(
    primary: TlsServer, replica: TlsServer, files: TlsFiles, operator_login: pgclient.CertLogin
) -> None:
    before = served_certificate(primary.host, primary.port, files.ca_file)
    assert before.public_bytes(serialization.Encoding.PEM).decode() == files.material.server.cert_pem
    pid = primary.proc.pid if primary.proc else None
    renewed = files.issue()
    server = pgclient.Server(primary.host, operator_login, port=primary.port)
    # Not reloaded while the files still hold the old certificate (the kubelet has not caught up).
    assert server.reload_if_cert(renewed.server.cert_pem) is False
    files.write(renewed)
    assert server.reload_if_cert(renewed.server.cert_pem) is True
    wait_for(lambda: served_certificate(primary.host, primary.port, files.ca_file).serial_number
             == renewed.server.cert.serial_number, 10, "the renewed certificate served", interval=0.1)
    assert primary.proc is not None and primary.proc.pid == pid and primary.running  # no restart
    with primary.verified() as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    files.material = renewed


def test_the_app_reads_its_password_from_the_mounted_file_at_each_new_connection(
    primary: TlsServer, operator_login: pgclient.CertLogin, redis_server: RedisServer, tmp_path: Path
) -> None:
    """The app as the pods run it: verify-full against the CA, the password from DB_PASSWORD_FILE (the Secret's
    key, mounted). After the password changes in the file and in the database, its new connections get in
    without a restart."""
    password_file = tmp_path / "app-password"
    password_file.write_text(APP_PASSWORD + "\n")
    dsn = (f"host={primary.host} port={primary.port} dbname=app user={APP_USER} sslmode=verify-full "
           f"sslrootcert={primary.files.ca_file}")
    settings = {"APP_DB_WRITE_DSN": dsn, "APP_DB_READ_DSN": "", "APP_DB_PASSWORD_FILE": str(password_file),
                "APP_CACHE_URL": redis_server.url(2), "APP_QUEUE_URL": redis_server.url(3), "APP_SEED_ITEMS": "20",
                "APP_DB_CONNECT_TIMEOUT": "2", "APP_BREAKER_RESET_SECONDS": "1", "APP_LOG_LEVEL": "warning"}
    app = AppProcess("app-tls", primary.files.dir.parent / "logs", settings)
    server = pgclient.Server(primary.host, operator_login, port=primary.port)
    app.start()
    try:
        assert httpx.get(f"{app.url}/items/1", timeout=5).status_code == 200
        # The Secret is edited; the kubelet updates the file; the operator sets the role's password.
        password_file.write_text("file-rotated-pw\n")
        assert server.set_passwords({APP_USER: "file-rotated-pw"}) == [APP_USER]
        # Every connection the app had is gone (as after a failover): the pool makes new ones, reading the file.
        primary.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'app' "
                        "AND pid <> pg_backend_pid()", dbname="postgres")
        wait_for(lambda: httpx.get(f"{app.url}/items/2", timeout=5).status_code == 200, 30,
                 "the app serving from the database again with the new password", interval=0.2,
                 ignore=(httpx.TransportError,))
        sessions = primary.query("SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) "
                                 "WHERE a.usename = 'app' AND s.ssl", dbname="postgres")
        assert sessions[0][0] > 0  # over TLS
    finally:
        app.stop()
        server.set_passwords({APP_USER: APP_PASSWORD})



def test_the_exporter_follows_an_edited_password_through_its_pgpass_file(
    primary: TlsServer, files: TlsFiles, tmp_path: Path
) -> None:
    """postgres_exporter as the pods run it: a DSN without a password and PGPASSFILE, which lib/pq reads at
    every new connection, kept in step with the mounted Secret key by the pgpass-writer's script. After the
    role's password is edited (ALTER ROLE, as the guard does) and the file follows, its next connection logs
    in: no restart."""
    user, old, new = secrets.EXPORTER_USER, token_hex(24), token_hex(24)
    with primary.connect(dbname="postgres") as conn:
        if not conn.execute("select 1 from pg_roles where rolname = %s", (user,)).fetchone():
            conn.execute(sql.SQL("create role {} login in role pg_monitor").format(sql.Identifier(user)))
        conn.execute(sql.SQL("alter role {} password {}").format(sql.Identifier(user), sql.Literal(old)))
    mounted, pgpass_dir = tmp_path / "exporter-password", tmp_path / "pgpass"
    pgpass_dir.mkdir()
    mounted.write_text(old)
    writer = Process("pgpass-writer", tmp_path)
    writer.spawn(["sh", "-c", pg_sidecars.pgpass_script(str(mounted), str(pgpass_dir), period=0.2)])
    pgpass = pgpass_dir / pg_sidecars.PGPASS_FILE
    exporter = PostgresExporter(f"{primary.host}:{primary.port}", user, "", tmp_path,
                                dsn=pg_sidecars.exporter_dsn(str(files.dir), primary.host, primary.port), pgpass=pgpass)
    try:
        wait_for(pgpass.exists, 10, "the pgpass file", interval=0.1)
        assert pgpass.stat().st_mode & 0o777 == 0o600  # lib/pq ignores a pgpass readable by others
        exporter.start()  # waits for pg_up 1: it logged in with the file's password, over TLS
        with primary.connect(dbname="postgres") as conn:
            conn.execute(sql.SQL("alter role {} password {}").format(sql.Identifier(user), sql.Literal(new)))
        aside = mounted.with_name(".new")
        aside.write_text(new)
        aside.replace(mounted)  # the kubelet's update of the mounted key
        wait_for(lambda: new in pgpass.read_text(), 10, "the pgpass file following the Secret", interval=0.1)
        with primary.connect(dbname="postgres") as conn:  # its session ends: the next scrape reconnects
            conn.execute("select pg_terminate_backend(pid) from pg_stat_activity where usename = %s", (user,))

        def up_on_a_new_session() -> bool:
            text = exporter.metrics_text()
            with primary.connect(dbname="postgres") as conn:
                sessions = conn.execute("select count(*) from pg_stat_activity where usename = %s", (user,)).fetchone()
            return "\npg_up 1" in f"\n{text}" and bool(sessions and sessions[0])

        wait_for(up_on_a_new_session, 30, "pg_up 1 on a session logged in with the new password", interval=0.5)
        assert exporter.running
        log = writer.log_path.read_text(errors="replace") + exporter.log_tail(200)
        in_log = old in log or new in log
        assert not in_log
    finally:
        exporter.stop()
        writer.signal_stop(signal.SIGTERM, timeout=5)
