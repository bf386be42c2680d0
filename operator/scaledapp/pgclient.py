"""The only module that talks to Postgres: what failover needs to ask and tell the database pods.

Like kube.py and prometheus.py it is a door to the outside: every call is blocking psycopg run off the
event loop in a thread, each with a connect timeout and a statement timeout, and a server that does not
answer is None (unknown), never a guess. Every connection is TLS (pg_hba has no plain-text line). The
operator logs in over the pod IP with its own client certificate (`CertLogin`, CN `scaledapp_operator`, a
superuser role accepted by `cert` only: dbtls.py mints it), checking the server against the ScaledApp's CA;
a password (str) is the fallback, over TLS without verification.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from scaledapp.failover import Position
from scaledapp.resources.common import POSTGRES_PORT

POOL_THREADS = 8
_POOL = ThreadPoolExecutor(max_workers=POOL_THREADS, thread_name_prefix="postgres")
CONNECT_TIMEOUT_SECONDS = 2
STATEMENT_TIMEOUT_MS = 3000
T = TypeVar("T")


class PostgresError(Exception):
    """A statement failed or the server could not be reached; the message says which and where."""


def lsn_number(text: str | None) -> int:
    """'16/B374D848' -> the byte position it names; None or empty -> 0."""
    if not text:
        return 0
    high, low = text.split("/")
    return (int(high, 16) << 32) + int(low, 16)


@dataclass(frozen=True)
class CertLogin:
    """A client-certificate login: the role (the certificate's CN) and libpq's files."""

    user: str
    sslcert: str
    sslkey: str
    sslrootcert: str


@dataclass(frozen=True)
class Server:
    """One Postgres server and how to log in: a `CertLogin` (then `user` is the certificate's), or a password."""

    host: str
    password: str | CertLogin
    user: str = "postgres"
    port: int = POSTGRES_PORT

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        login: dict[str, Any]
        if isinstance(self.password, CertLogin):
            cert = self.password
            # verify-ca: the operator reaches pods by IP, which no certificate names; the CA is this ScaledApp's.
            login = {"user": cert.user, "sslmode": "verify-ca", "sslrootcert": cert.sslrootcert,
                     "sslcert": cert.sslcert, "sslkey": cert.sslkey}
        else:
            login = {"user": self.user, "password": self.password, "sslmode": "require"}
        return psycopg.connect(
            host=self.host, port=self.port, dbname="postgres", connect_timeout=CONNECT_TIMEOUT_SECONDS,
            autocommit=True, options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
            application_name="scaledapp-operator", **login,
        )

    def position(self) -> Position:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT pg_is_in_recovery(), "
                "  CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END, "
                "  CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END, "
                "  (SELECT timeline_id FROM pg_control_checkpoint())").fetchone()
        assert row is not None
        in_recovery, received, replayed, timeline = row
        received_n, replayed_n = lsn_number(str(received or "")), lsn_number(str(replayed or ""))
        # A standby that has not received anything over streaming yet (restored from its basebackup only)
        # stands where it replayed to.
        return Position(bool(in_recovery), max(received_n, replayed_n), replayed_n, int(str(timeline)))

    def promote(self) -> None:
        with self._connect() as conn:
            row = conn.execute("SELECT pg_promote(wait => true, wait_seconds => 20)").fetchone()
        if not row or not row[0]:
            raise PostgresError(f"{self.host}: pg_promote did not complete")

    def ensure_slots(self, slots: Iterable[str]) -> list[str]:
        """Physical replication slots for the given replicas; returns the ones created now. A promoted
        standby has none of its old primary's slots, and every replica streams through its own."""
        created = []
        with self._connect() as conn:
            for slot in slots:
                exists = conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone()
                if not exists:
                    conn.execute("SELECT pg_create_physical_replication_slot(%s)", (slot,))
                    created.append(slot)
        return created

    def drop_slots_except(self, keep: Iterable[str]) -> list[str]:
        """Drop every inactive physical slot not in `keep` (replicas that are gone); returns the dropped ones."""
        kept = set(keep)
        dropped = []
        with self._connect() as conn:
            rows = conn.execute("SELECT slot_name FROM pg_replication_slots "
                                "WHERE slot_type = 'physical' AND NOT active").fetchall()
            for (slot,) in rows:
                if str(slot) not in kept:
                    conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
                    dropped.append(str(slot))
        return dropped

    def fence(self) -> int:
        """Stop a primary taking writes before a switchover: new transactions are read-only, and every
        client session is ended (their open transactions roll back, unacknowledged). Returns the current
        WAL position, which the new primary must have replayed before it is promoted."""
        with self._connect() as conn:
            conn.execute("ALTER SYSTEM SET default_transaction_read_only = on")
            conn.execute("SELECT pg_reload_conf()")
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")
            # A checkpoint-free WAL switch is not needed: what matters is the insert position after the
            # last write, which no new write can move past now.
            row = conn.execute("SELECT pg_current_wal_lsn()").fetchone()
        assert row is not None
        return lsn_number(str(row[0]))

    def unfence(self) -> None:
        with self._connect() as conn:
            conn.execute("ALTER SYSTEM RESET default_transaction_read_only")
            conn.execute("SELECT pg_reload_conf()")

    def prepare_promotion(self, relax_sync: bool) -> None:
        """Before pg_promote (ALTER SYSTEM works on a standby): clear what postgresql.auto.conf may carry from
        this server's or its source's time as a primary (a switchover's read-only fence, an earlier relaxed
        commit setting), and with `relax_sync` make commits local (wait for no standby) until the guard
        re-tightens them. synchronous_standby_names is a command-line setting, which ALTER SYSTEM cannot
        override; synchronous_commit is not, and 'local' skips the wait for a standby."""
        with self._connect() as conn:
            conn.execute("ALTER SYSTEM RESET default_transaction_read_only")
            if relax_sync:
                conn.execute("ALTER SYSTEM SET synchronous_commit = 'local'")
            else:
                conn.execute("ALTER SYSTEM RESET synchronous_commit")
            conn.execute("SELECT pg_reload_conf()")

    def receiving(self) -> bool:
        """Does this standby's WAL receiver stream from a primary now? (False once the primary's WAL sender
        is gone: at a fast shutdown it exits only after the standby confirmed everything it sent.)"""
        with self._connect() as conn:
            row = conn.execute("SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'").fetchone()
        return bool(row and int(str(row[0])) > 0)

    def standby_flushes(self) -> list[int]:
        """Where each streaming standby has flushed the WAL to (a primary's view)."""
        with self._connect() as conn:
            rows = conn.execute("SELECT flush_lsn FROM pg_stat_replication WHERE state = 'streaming'").fetchall()
        return [lsn_number(str(row[0] or "")) for row in rows]

    def retighten(self) -> str:
        """Synchronous commits again (the relaxed setting reset, reloaded); returns the server's clock just
        after, for sync_mark."""
        with self._connect() as conn:
            conn.execute("ALTER SYSTEM RESET synchronous_commit")
            conn.execute("SELECT pg_reload_conf()")
            row = conn.execute("SELECT now()::text").fetchone()
        assert row is not None
        return str(row[0])

    def sync_mark(self, since: str) -> int | None:
        """The WAL position every write acknowledged under the relaxed setting lies below, or None while a
        statement that started before `since` (the re-tightening) still runs: a backend takes a reloaded
        setting before its next command, so only a statement running at the reload could still commit
        without waiting for a standby."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT NOT EXISTS (SELECT 1 FROM pg_stat_activity WHERE backend_type = 'client backend' "
                "  AND state = 'active' AND query_start < %s::timestamptz AND pid <> pg_backend_pid()), "
                "pg_current_wal_lsn()", (since,)).fetchone()
        assert row is not None
        return lsn_number(str(row[1])) if row[0] else None

    def set_synchronous(self, standby_names: str) -> None:
        """synchronous_standby_names on the primary ('' = asynchronous), applied at once by a reload."""
        with self._connect() as conn:
            conn.execute(sql.SQL("ALTER SYSTEM SET synchronous_standby_names = {}").format(sql.Literal(standby_names)))
            conn.execute("SELECT pg_reload_conf()")


    def reload_if_cert(self, expected_pem: str) -> bool:
        """Reload the configuration (pg_reload_conf) once the server's certificate file holds `expected_pem`
        (a renewed Secret reaches the pod's files within about a minute). False while it does not yet."""
        with self._connect() as conn:
            row = conn.execute("SELECT pg_read_file(current_setting('ssl_cert_file'))").fetchone()
            if row is None or str(row[0]).strip() != expected_pem.strip():
                return False
            conn.execute("SELECT pg_reload_conf()")
        return True

    def ping(self) -> None:
        """Log in and run nothing of consequence: raises when this login does not work."""
        with self._connect() as conn:
            conn.execute("SELECT 1")

    def create_superuser_role(self, role: str) -> bool:
        """CREATE ROLE ... LOGIN SUPERUSER (no password) unless it exists; True when created now. For the
        operator's certificate role on a primary initialised before it existed."""
        with self._connect() as conn:
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is not None:
                return False
            conn.execute(sql.SQL("CREATE ROLE {} WITH LOGIN SUPERUSER").format(sql.Identifier(role)))
        return True

    def set_passwords(self, passwords: Mapping[str, str]) -> list[str]:
        """ALTER ROLE ... PASSWORD for each role that exists (role -> password); returns the roles changed.
        The values travel as literals in one statement each and are never logged."""
        changed = []
        with self._connect() as conn:
            for role, password in passwords.items():
                if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
                    continue
                conn.execute(sql.SQL("ALTER ROLE {} WITH PASSWORD {}").format(sql.Identifier(role),
                                                                             sql.Literal(password)))
                changed.append(role)
        return changed

    def password_works(self, role: str, password: str) -> bool:
        """Does `password` log `role` in (over TLS, to this server)? A wrong one is False, not an error."""
        try:
            with psycopg.connect(host=self.host, port=self.port, dbname="postgres", user=role, password=password,
                                 sslmode="require", connect_timeout=CONNECT_TIMEOUT_SECONDS) as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError as exc:
            if "password authentication failed" in str(exc):
                return False
            raise
        return True


async def run(call: Callable[..., T], *args: object, seconds: float = 30.0) -> T:
    """Run one blocking Server method in the pool, bounded by `seconds` (raises PostgresError)."""
    loop = asyncio.get_running_loop()
    try:
        return await asyncio.wait_for(loop.run_in_executor(_POOL, call, *args), seconds)
    except TimeoutError as exc:
        raise PostgresError(f"no answer within {seconds:g}s") from exc
    except psycopg.Error as exc:
        raise PostgresError(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__) from exc


async def positions(servers: Mapping[str, Server], seconds: float = 5.0) -> dict[str, Position | None]:
    """Every server's position at once; None where it did not answer (unknown)."""
    async def one(server: Server) -> Position | None:
        try:
            return await run(server.position, seconds=seconds)
        except PostgresError:
            return None

    names = list(servers)
    answers = await asyncio.gather(*(one(servers[name]) for name in names))
    return dict(zip(names, answers, strict=True))
