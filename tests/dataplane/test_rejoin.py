"""A former primary rejoins as a standby without a new base backup when a switchover handed it over cleanly,
and only then (replica-bootstrap.sh, on real Postgres servers on loopback).

A switchover shuts the old primary down cleanly once the target has its WAL, promotes the target, and
restarts the old primary, whose bootstrap finds its data ran as a primary. Copying the whole database again
would keep synchronous commits waiting for the only standby, so the bootstrap checks what Patroni checks
before it skips pg_rewind: a clean shutdown whose checkpoint (the last record it wrote) lies before the point
where the new primary's timeline left its own. Anything else (a crash, WAL the new primary never received)
is moved aside and seeded again, as before.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support.dataplane import REPL_PASSWORD, REPL_USER, SCRIPTS, PostgresCluster, PostgresServer
from tests.support.wait import wait_for

pytestmark = pytest.mark.dataplane

OLD, NEW = "pg-primary-0", "pg-replica-0"


@pytest.fixture
def pair(dataplane_dir: Path, request: pytest.FixtureRequest) -> Iterator[PostgresCluster]:
    """Its own primary and streaming replica (the drills below stop and promote them)."""
    cluster = PostgresCluster(dataplane_dir / f"rejoin-{abs(hash(request.node.name)) % 10**8}", dataplane_dir / "logs")
    try:
        cluster.start()
        execute(cluster.primary, "CREATE TABLE IF NOT EXISTS t (id int PRIMARY KEY)")
        # Replicas lag: a drill that stops the replica at once must not find the table missing on it.
        wait_for(lambda: cluster.replica.query("SELECT to_regclass('t') IS NOT NULL") == [(True,)], 30,
                 "the table on the replica", interval=0.05)
        yield cluster
    finally:
        for server in (cluster.primary, cluster.replica):
            if server.running:
                server.signal_stop(signal.SIGQUIT)


def execute(server: PostgresServer, statement: str) -> None:
    with psycopg.connect(server.dsn(), connect_timeout=3, autocommit=True) as conn:
        conn.execute(statement)


def promote(pg: PostgresCluster) -> None:
    assert pg.replica.query("SELECT pg_promote(wait => true, wait_seconds => 30)") == [(True,)]


def bootstrap_old_primary(pg: PostgresCluster) -> subprocess.CompletedProcess[str]:
    """replica-bootstrap.sh on the old primary's data, as its pod's initContainer runs it after the move."""
    topology = pg.primary.pgdata.parent / "topology"
    topology.write_text(NEW)
    return pg.primary.run(["bash", str(SCRIPTS / "replica-bootstrap.sh")], env=pg.script_env(
        pg.primary, PRIMARY_HOST=pg.replica.host, PRIMARY_PORT=str(pg.replica.port), REPLICATION_USER=REPL_USER,
        REPLICATION_PASSWORD=REPL_PASSWORD, REPLICA_NAME=OLD, POD_NAME=OLD, TOPOLOGY_FILE=str(topology),
        WAIT_TIMEOUT_SECONDS="60", REJOIN_WAIT_SECONDS="10"))


def test_a_cleanly_handed_over_primary_rejoins_as_a_standby_without_a_copy(pair: PostgresCluster) -> None:
    pg = pair
    execute(pg.primary, "INSERT INTO t SELECT generate_series(1, 100)")
    wait_for(lambda: pg.replica.query("SELECT count(*) FROM t") == [(100,)], 10, "the rows on the replica",
             interval=0.05)
    pg.primary.stop()  # fast shutdown: the walsender ships everything, the shutdown checkpoint included
    promote(pg)
    execute(pg.replica, "INSERT INTO t SELECT generate_series(101, 150)")  # on the new timeline
    seeded_marker = pg.primary.pgdata / "PG_VERSION"
    inode = seeded_marker.stat().st_ino
    result = bootstrap_old_primary(pg)
    assert "rejoins as a standby" in result.stderr, result.stderr
    assert not Path(f"{pg.primary.pgdata}.diverged").exists()
    assert seeded_marker.stat().st_ino == inode  # the same files: nothing was copied
    assert (pg.primary.pgdata / "standby.signal").exists()
    pg.primary.start()
    assert pg.primary.query("SELECT pg_is_in_recovery()") == [(True,)]
    wait_for(lambda: pg.primary.query("SELECT count(*) FROM t") == [(150,)], 30,
             "the rejoined standby replaying the new primary's timeline", interval=0.1)
    rows = pg.replica.query("SELECT application_name, state FROM pg_stat_replication")
    assert (OLD, "streaming") in rows


def test_a_primary_with_wal_the_new_one_never_received_is_moved_aside_and_seeded_again(
    pair: PostgresCluster,
) -> None:
    pg = pair
    pg.replica.stop()
    execute(pg.primary, "INSERT INTO t SELECT generate_series(1, 10)")  # the replica never gets these
    pg.primary.stop()
    pg.replica.start()
    promote(pg)
    result = bootstrap_old_primary(pg)
    assert "may hold writes the primary never had" in result.stderr, result.stderr
    assert Path(f"{pg.primary.pgdata}.diverged").exists()
    pg.primary.start()
    assert pg.primary.query("SELECT pg_is_in_recovery()") == [(True,)]
    assert pg.primary.query("SELECT count(*) FROM t") == [(0,)]  # the new primary's history, not the old one's


def test_a_primary_that_crashed_is_moved_aside_and_seeded_again(pair: PostgresCluster) -> None:
    pg = pair
    pg.primary.signal_stop(signal.SIGQUIT)  # immediate shutdown: no shutdown checkpoint
    promote(pg)
    result = bootstrap_old_primary(pg)
    assert "was not shut down cleanly" in result.stderr, result.stderr
    assert Path(f"{pg.primary.pgdata}.diverged").exists()
