"""The failover judgement (pure): when the write role moves, to whom, and when it must not."""

from __future__ import annotations

import dataclasses

from scaledapp.dbguard import db_pod, node_draining, pod_summary, slot_name
from scaledapp.failover import (
    CAUGHT_UP_BYTES,
    Action,
    DbPod,
    Position,
    Reason,
    Topology,
    drain_switchover,
    judge,
    needs_positions,
    planned_switchover,
    relabels,
    resource_key,
    restart_needed,
    sync_hold_released,
)
from scaledapp.pgclient import lsn_number
from scaledapp.resources.database import readiness_query

HOME = "shop-db-0"
R0, R1 = "shop-db-read-0", "shop-db-read-1"
MB = 1024 * 1024


def pod(name: str, *, ready: bool = True, running: bool = True, role: str | None = "home-topology",
        terminating: bool = False) -> DbPod:
    if role == "home-topology":
        role = "primary" if name == HOME else "replica"
    return DbPod(name, role, ready, running, terminating, ip="10.0.0.1")


def standby(received: int, replayed: int | None = None) -> Position:
    return Position(True, received, received if replayed is None else replayed, 1)


def primary_at(lsn: int) -> Position:
    return Position(False, lsn, lsn, 1)


HOME_TOPOLOGY = Topology(HOME)


def test_a_ready_primary_keeps_the_role_and_no_server_is_asked() -> None:
    pods = [pod(HOME), pod(R0), pod(R1)]
    assert not needs_positions(pods, HOME_TOPOLOGY, HOME, down_for=0, delay=10)
    plan = judge(pods, HOME_TOPOLOGY, HOME, {}, down_for=0, delay=10)
    assert plan.action == Action.NONE and plan.reason == Reason.PRIMARY_READY and not plan.relabel


def test_a_primary_back_within_the_delay_keeps_the_role() -> None:
    pods = [pod(HOME, ready=False), pod(R0)]
    assert not needs_positions(pods, HOME_TOPOLOGY, HOME, down_for=4, delay=10)
    plan = judge(pods, HOME_TOPOLOGY, HOME, {}, down_for=4, delay=10)
    assert plan.action == Action.NONE and plan.reason == Reason.PRIMARY_NOT_READY


def test_a_lost_primary_fails_over_to_the_most_advanced_replica() -> None:
    pods = [pod(R0), pod(R1)]  # the primary's pod is gone
    assert needs_positions(pods, HOME_TOPOLOGY, HOME, down_for=12, delay=10)
    positions = {R0: standby(5 * MB), R1: standby(7 * MB, replayed=6 * MB)}
    plan = judge(pods, HOME_TOPOLOGY, HOME, positions, down_for=12, delay=10)
    assert plan.action == Action.FAILOVER and plan.target == R1 and plan.reason == Reason.PRIMARY_LOST


def test_equal_replicas_fail_over_to_the_first_by_name() -> None:
    positions = {R1: standby(MB), R0: standby(MB)}
    plan = judge([pod(R1), pod(R0)], HOME_TOPOLOGY, HOME, positions, down_for=30, delay=10)
    assert plan.target == R0


def test_no_failover_while_a_running_replica_is_silent() -> None:
    """It might be the one further ahead: promoting another could lose acknowledged writes."""
    positions = {R0: standby(5 * MB), R1: None}
    plan = judge([pod(HOME, ready=False, running=False), pod(R0), pod(R1)], HOME_TOPOLOGY, HOME, positions,
                 down_for=60, delay=10)
    assert plan.action == Action.NONE and plan.reason == Reason.POSITIONS_UNKNOWN and R1 in plan.message


def test_no_failover_while_the_primary_may_hold_writes_acknowledged_without_a_standby() -> None:
    """After a switchover relaxed synchronous commits, the most advanced replica may still lack writes the
    primary acknowledged: the guard waits for the primary rather than lose them (Patroni promotes only a
    standby known to be synchronous)."""
    pods = [pod(HOME, ready=False, running=False), pod(R0), pod(R1)]
    positions = {R0: standby(5 * MB), R1: standby(4 * MB)}
    held = Topology(HOME, sync_hold=True)
    plan = judge(pods, held, HOME, positions, down_for=30, delay=10)
    assert plan.action == Action.NONE and plan.reason == Reason.SYNC_HOLD and plan.target is None
    within = judge(pods, held, HOME, positions, down_for=4, delay=10)
    assert within.reason == Reason.PRIMARY_NOT_READY  # the usual wait comes first
    released = judge(pods, HOME_TOPOLOGY, HOME, positions, down_for=30, delay=10)
    assert released.action == Action.FAILOVER and released.target == R0


def test_the_synchronous_hold_ends_once_a_standby_flushed_past_the_mark() -> None:
    assert not sync_hold_released([10 * MB], None)  # no mark yet: a relaxed statement may still commit
    assert not sync_hold_released([], 5 * MB)  # nobody streams
    assert not sync_hold_released([4 * MB, 5 * MB - 1], 5 * MB)
    assert sync_hold_released([4 * MB, 5 * MB], 5 * MB)


def test_a_primary_that_answers_is_busy_not_dead() -> None:
    positions = {HOME: primary_at(9 * MB), R0: standby(9 * MB)}
    plan = judge([pod(HOME, ready=False), pod(R0)], HOME_TOPOLOGY, HOME, positions, down_for=60, delay=10)
    assert plan.action == Action.NONE and plan.reason == Reason.PRIMARY_ANSWERS


def test_nothing_to_promote_is_said() -> None:
    plan = judge([pod(R0, running=False, ready=False)], HOME_TOPOLOGY, HOME, {}, down_for=60, delay=10)
    assert plan.action == Action.NONE and plan.reason == Reason.NO_REPLICA
    # A terminating replica is no candidate either.
    plan = judge([pod(R0, terminating=True)], HOME_TOPOLOGY, HOME, {R0: standby(MB)}, down_for=60, delay=10)
    assert plan.reason == Reason.NO_REPLICA


def test_labels_follow_the_topology() -> None:
    moved = Topology(R0, epoch=1)
    pods = [pod(HOME, role="primary"), pod(R0, role="replica"), pod(R1, role=None),
            pod("gone", role="primary", terminating=True)]
    assert relabels(pods, moved) == {HOME: "replica", R0: "primary", R1: "replica"}


def test_after_a_failover_the_role_goes_home_once_the_home_pod_has_caught_up() -> None:
    moved = Topology(R0, epoch=1)
    pods = [pod(HOME, role="replica"), pod(R0, role="primary"), pod(R1)]
    assert needs_positions(pods, moved, HOME, down_for=0, delay=10)
    behind = {R0: primary_at(50 * MB), HOME: standby(40 * MB)}
    plan = judge(pods, moved, HOME, behind, down_for=0, delay=10)
    assert plan.action == Action.NONE and plan.reason == Reason.HOME_CATCHING_UP
    close = {R0: primary_at(50 * MB), HOME: standby(50 * MB - CAUGHT_UP_BYTES // 2)}
    plan = judge(pods, moved, HOME, close, down_for=0, delay=10)
    assert plan.action == Action.SWITCHOVER and plan.target == HOME
    # Not while the home pod is still seeding (not Ready) or answers as a primary (not re-seeded yet).
    plan = judge([pod(HOME, ready=False, role="replica"), pod(R0, role="primary")], moved, HOME, close,
                 down_for=0, delay=10)
    assert plan.action == Action.NONE
    plan = judge(pods, moved, HOME, {R0: primary_at(MB), HOME: primary_at(MB)}, down_for=0, delay=10)
    assert plan.action == Action.NONE


def test_lsn_numbers_and_slot_names() -> None:
    assert lsn_number("0/0") == 0 and lsn_number(None) == 0
    assert lsn_number("16/B374D848") == (0x16 << 32) + 0xB374D848
    assert slot_name("shop-db-read-0") == "shop_db_read_0"


def test_pod_summary_reads_readiness_and_the_postgres_container() -> None:
    body = {"metadata": {"name": R0, "uid": "u", "labels": {"scaledapp.dev/role": "replica"}},
            "spec": {"nodeName": "node-a",
                     "containers": [{"name": "postgres", "image": "pg:17", "args": ["-c", "a=1"]},
                                    {"name": "postgres-exporter", "image": "exporter"}]},
            "status": {"podIP": "10.244.0.9", "conditions": [{"type": "Ready", "status": "False"}],
                       "containerStatuses": [{"name": "postgres", "state": {"running": {}}},
                                             {"name": "postgres-exporter", "state": {"waiting": {}}}]}}
    summary = pod_summary(body)
    assert summary == {"name": R0, "uid": "u", "role": "replica", "ready": False, "running": True,
                       "terminating": False, "ip": "10.244.0.9", "image": "pg:17", "args": ["-c", "a=1"],
                       "node": "node-a", "resources": [-1, -1, -1, -1], "resize_infeasible": False}
    assert db_pod(summary, frozenset({"node-a"})).draining
    assert not db_pod(summary, frozenset({"node-b"})).draining and not db_pod(summary).draining


def test_the_readiness_query_fits_in_the_probes_single_quoted_shell_word() -> None:
    assert "'" not in readiness_query(5) and "make_interval(secs => 5)" in readiness_query(5)


def test_wal_senders_do_not_follow_the_replica_ceiling() -> None:
    """Lowering readReplicas.max must never give the replicas fewer WAL senders than the (OnDelete) primary has."""
    from scaledapp import api
    from scaledapp.resources.database import postgres_settings

    low = api.DatabaseSpec.model_validate({"readReplicas": {"min": 1, "max": 2}})
    high = api.DatabaseSpec.model_validate({"readReplicas": {"min": 1, "max": api.MAX_READ_REPLICAS}})
    assert postgres_settings(low) == postgres_settings(high)
    senders = int(next(a for a in postgres_settings(high) if a.startswith("max_wal_senders=")).split("=")[1])
    assert senders > api.MAX_READ_REPLICAS + 1  # every replica and the re-seeding home pod stream at once


def test_a_primary_on_an_older_template_is_restarted_through_a_switchover() -> None:
    running = DbPod(HOME, "primary", True, True, ip="10.0.0.1", image="postgres:17.5", args=("-c", "a=1"))
    assert restart_needed(running, "postgres:17.5", ["-c", "a=1"]) is None
    assert restart_needed(running, "postgres:17.6", ["-c", "a=1"]) == "image postgres:17.5 -> postgres:17.6"
    assert restart_needed(running, "postgres:17.5", ["-c", "a=2"]) == "server settings changed"
    assert restart_needed(running, "", []) is None  # a template seen without image or args: no judgement
    pods = [running, pod(R0), pod(R1)]
    far = {HOME: primary_at(100 * MB), R0: standby(10 * MB), R1: standby(20 * MB)}
    plan = planned_switchover(pods, HOME_TOPOLOGY, far, "image changed")
    assert plan.action == Action.NONE and plan.reason == Reason.NO_CAUGHT_UP_REPLICA  # never lose the lead
    close = {HOME: primary_at(100 * MB), R0: standby(100 * MB), R1: standby(100 * MB - 1)}
    plan = planned_switchover(pods, HOME_TOPOLOGY, close, "image changed")
    assert plan.action == Action.SWITCHOVER and plan.target == R0 and plan.reason == Reason.RESTART_NEEDED


def test_the_watch_cache_keeps_what_the_guard_compares() -> None:
    """The guard reads the primary's StatefulSet from the watch cache: a slimmed body without image and args
    made every primary look due for a restart (a switchover every sweep)."""
    from scaledapp.kubestate import slim

    sts = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "shop-db"},
           "spec": {"replicas": 1, "template": {"spec": {"containers": [
               {"name": "postgres", "image": "pg:17", "args": ["-c", "a=1"], "env": [{"name": "X"}]}]}}}}
    [container] = slim(sts)["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "pg:17" and container["args"] == ["-c", "a=1"] and "env" not in container


def on(node: str, draining: frozenset[str], p: DbPod) -> DbPod:
    return dataclasses.replace(p, node=node, draining=node in draining)


def test_a_node_is_draining_when_cordoned_or_tainted_unschedulable() -> None:
    assert node_draining({"spec": {"unschedulable": True}})
    assert node_draining({"spec": {"taints": [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]}})
    assert not node_draining({"spec": {"taints": [{"key": "dedicated", "effect": "NoSchedule"}]}})
    assert not node_draining({})


def test_a_drained_primary_hands_the_role_to_a_caught_up_replica_on_another_node() -> None:
    cordoned = frozenset({"a"})
    pods = [on("a", cordoned, pod(HOME)), on("a", cordoned, pod(R0)), on("b", cordoned, pod(R1))]
    positions = {HOME: primary_at(5 * MB), R0: standby(5 * MB), R1: standby(5 * MB - 10)}
    plan = drain_switchover(pods, HOME_TOPOLOGY, positions, moved_on_this_node=False)
    # R0 is further ahead, but on the node being drained: R1, on a node staying, takes the role.
    assert plan.action == Action.SWITCHOVER and plan.target == R1 and plan.reason == Reason.NODE_DRAINING
    assert "node a" in plan.message


def test_on_a_one_node_cluster_the_role_leaves_the_drained_pod_once_then_the_budget_holds() -> None:
    cordoned = frozenset({"a"})
    pods = [on("a", cordoned, pod(HOME)), on("a", cordoned, pod(R0))]
    positions = {HOME: primary_at(MB), R0: standby(MB)}
    first = drain_switchover(pods, HOME_TOPOLOGY, positions, moved_on_this_node=False)
    assert first.action == Action.SWITCHOVER and first.target == R0
    again = drain_switchover(pods, HOME_TOPOLOGY, positions, moved_on_this_node=True)
    assert again.action == Action.NONE and again.reason == Reason.DRAIN_BLOCKED


def test_a_drain_never_hands_the_role_to_a_lagging_or_unready_replica() -> None:
    cordoned = frozenset({"a"})
    pods = [on("a", cordoned, pod(HOME)), on("b", cordoned, pod(R0)), on("b", cordoned, pod(R1, ready=False))]
    positions = {HOME: primary_at(10 * MB), R0: standby(10 * MB, 10 * MB - CAUGHT_UP_BYTES - 1),
                 R1: standby(10 * MB)}
    plan = drain_switchover(pods, HOME_TOPOLOGY, positions, moved_on_this_node=False)
    assert plan.action == Action.NONE and plan.reason == Reason.DRAIN_BLOCKED


def test_the_role_does_not_go_home_to_a_pod_on_a_draining_node() -> None:
    cordoned = frozenset({"a"})
    moved = Topology(R0, 1)
    pods = [on("a", cordoned, pod(HOME, role="replica")), on("b", cordoned, pod(R0, role="primary"))]
    plan = judge(pods, moved, HOME, {HOME: standby(MB), R0: primary_at(MB)}, down_for=0, delay=10)
    assert plan.action == Action.NONE and plan.reason == Reason.HOME_DRAINING


def test_a_planned_restart_prefers_a_replica_whose_node_stays() -> None:
    cordoned = frozenset({"a"})
    pods = [on("b", cordoned, pod(HOME)), on("a", cordoned, pod(R0)), on("b", cordoned, pod(R1))]
    positions = {HOME: primary_at(MB), R0: standby(MB), R1: standby(MB - 1)}
    plan = planned_switchover(pods, HOME_TOPOLOGY, positions, "image a -> b")
    assert plan.action == Action.SWITCHOVER and plan.target == R1


def test_a_resize_the_kubelet_cannot_do_in_place_needs_a_restart() -> None:
    size = resource_key({"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}})
    assert size == resource_key({"requests": {"cpu": "0.5", "memory": str(512 * MB)},
                                 "limits": {"cpu": "1000m", "memory": "512Mi"}})
    running = dataclasses.replace(pod(HOME), image="pg", args=("-c", "a=1"), resources=size)
    assert restart_needed(running, "pg", ["-c", "a=1"], size) is None
    bigger = resource_key({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "1Gi"}})
    assert restart_needed(running, "pg", ["-c", "a=1"], bigger) == "a resize did not reach the running pod"
    refused = dataclasses.replace(running, resize_infeasible=True)
    assert restart_needed(refused, "pg", ["-c", "a=1"], size) == "the kubelet cannot resize it in place"
    assert restart_needed(dataclasses.replace(running, resources=()), "pg", ["-c", "a=1"], bigger) is None
