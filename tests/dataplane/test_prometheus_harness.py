"""devharness.prometheus and devharness.exporters: the pinned binaries, labelled as the cluster's pods are."""

from __future__ import annotations

import urllib.error

import pytest

from devharness.prometheus import POD_JOB, LocalPrometheus, Target
from tests.support.dataplane import MONITOR_PASSWORD, MONITOR_USER, PostgresCluster, RedisServer
from tests.support.prometheus import Harness
from tests.support.wait import wait_for

pytestmark = pytest.mark.dataplane


def test_targets_carry_pod_labels_and_exporters_serve_the_documented_series(
    harness: Harness, prometheus: LocalPrometheus, redis_server: RedisServer, healthy_dataplane: PostgresCluster
) -> None:
    primary = healthy_dataplane.primary
    redis_exp = harness.redis_exporter(redis_server.address, name="h-redis-exporter", password=redis_server.password)
    pg_exp = harness.postgres_exporter(f"{primary.host}:{primary.port}", MONITOR_USER, MONITOR_PASSWORD,
                                       name="h-postgres-exporter")
    prometheus.set_targets([
        Target(redis_exp.address, namespace="h-ns", pod="demo-cache-0", instance="demo", tier="cache"),
        Target(pg_exp.address, namespace="h-ns", pod="demo-db-0", instance="demo", tier="db-write"),
    ])
    prometheus.wait_for_targets(timeout=30)

    redis_up = prometheus.query('redis_up{namespace="h-ns"}')
    assert len(redis_up) == 1
    labels = redis_up[0]["metric"]
    assert labels["pod"] == "demo-cache-0"
    assert labels["app_kubernetes_io_instance"] == "demo"
    assert labels["scaledapp_dev_tier"] == "cache"
    assert labels["job"] == POD_JOB
    assert labels["instance"] == redis_exp.address
    assert redis_up[0]["value"][1] == "1"
    # The extra query file is loaded: lock waits exist as a real 0 (one row), labelled with `server`.
    waits = prometheus.query('pg_locks_waiting_count{scaledapp_dev_tier="db-write",namespace="h-ns"}')
    assert [w["value"][1] for w in waits] == ["0"]
    assert waits[0]["metric"]["server"] == f"{primary.host}:{primary.port}"


def test_replaced_targets_go_stale_and_a_stopped_prometheus_refuses(
    harness: Harness, redis_server: RedisServer
) -> None:
    exporter = harness.redis_exporter(redis_server.address, name="h2-redis-exporter", password=redis_server.password)
    old = Target(exporter.address, namespace="h2", pod="old-0", instance="demo", tier="cache")
    prom = harness.prometheus([old], name="h2-prometheus")
    prom.wait_for_targets(timeout=30)
    prom.set_targets([Target(exporter.address, namespace="h2", pod="new-0", instance="demo", tier="cache")])
    prom.wait_for_targets(timeout=30)
    # A target that is no longer listed gets staleness markers, like a deleted pod: its series vanish.
    wait_for(lambda: prom.query('redis_up{pod="old-0"}') == [], 15, "the old target's series to go stale")

    prom.stop()
    with pytest.raises(urllib.error.URLError):
        prom.query("up")
