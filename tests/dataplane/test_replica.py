"""The streaming replica, seeded by the project's replica-bootstrap.sh, serves the app's reads."""

from __future__ import annotations

import httpx
import psycopg
import pytest

from scaledapp.resources.database import readiness_query
from tests.dataplane.promtext import delta, scrape
from tests.support.dataplane import AppProcess, PostgresCluster
from tests.support.wait import wait_for

pytestmark = pytest.mark.dataplane


def test_replica_serves_reads_and_sees_a_write_after_replay(
    demo_app: AppProcess, healthy_dataplane: PostgresCluster
) -> None:
    pg = healthy_dataplane
    assert pg.replica.query("SELECT pg_is_in_recovery()") == [(True,)]
    before = scrape(demo_app.url + "/metrics")
    assert httpx.get(f"{demo_app.url}/items/201", timeout=5).status_code == 200
    after = scrape(demo_app.url + "/metrics")
    reads = "scaledapp_dependency_duration_seconds_count"
    assert delta(before, after, reads, dependency="db-read", operation="get_item") == 1
    # The read pool's connections are on the replica, the write pool's on the primary.
    who = "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
    assert pg.replica.query(who, ("scaledapp-db-read",))[0][0] > 0
    assert pg.primary.query(who, ("scaledapp-db-read",)) == [(0,)]
    assert pg.primary.query(who, ("scaledapp-db-write",))[0][0] > 0

    written = httpx.put(f"{demo_app.url}/items/202", json={"name": "r", "value": "replayed"}, timeout=5)
    assert written.status_code == 200
    version = written.json()["version"]
    row = wait_for(
        lambda: pg.replica.query("SELECT value, version FROM items WHERE id = 202 AND version = %s", (version,)),
        10, "the write replayed on the replica", interval=0.05)
    assert row == [("replayed", version)]


def test_replica_bootstrap_is_idempotent_on_restart(healthy_dataplane: PostgresCluster) -> None:
    result = healthy_dataplane.bootstrap_replica()
    assert "already seeded" in result.stderr
    assert healthy_dataplane.streaming()


def test_the_readiness_query_takes_a_lagging_replica_out_and_brings_it_back(
    healthy_dataplane: PostgresCluster,
) -> None:
    """The Postgres pods' readiness (resources/database.py), run on real servers: a primary is ready; a replica is
    ready while caught up, not ready once WAL it received waits unreplayed past the lag limit, ready again after."""
    pg = healthy_dataplane
    ready = readiness_query(1)
    assert pg.primary.query(ready) == [(True,)]
    assert pg.replica.query(ready) == [(True,)]
    with psycopg.connect(pg.primary.dsn(), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS lag_probe (n int)")
    wait_for(lambda: pg.replica.query("SELECT to_regclass('lag_probe') IS NOT NULL") == [(True,)], 10,
             "the table on the replica", interval=0.05)
    pg.replica.query("SELECT pg_wal_replay_pause()")
    try:
        def lagging() -> bool:
            pg.primary.query("INSERT INTO lag_probe VALUES (1) RETURNING n")  # WAL received, not replayed
            return pg.replica.query(ready) == [(False,)]

        wait_for(lagging, 15, "the replica reported lagging", interval=0.3)
    finally:
        pg.replica.query("SELECT pg_wal_replay_resume()")
    wait_for(lambda: pg.replica.query(ready) == [(True,)], 15, "the replica ready again", interval=0.2)
