"""The failover guard: per ScaledApp, who holds the Postgres write role, and moving it when it must move.

The shell around failover.py. Each second it looks at the Postgres pods in the operator's pod index (the
watch keeps it current: no API call), asks the servers for their WAL positions only when a judgement needs
them (pgclient.py), and carries out the plan: keep the role labels in line with the topology, fail over
when the primary is lost, switch the role back home once the home pod has caught up, and drop the
replication slots of replicas that are gone. Every move is in status.database, Events and the log;
docs/failure.md tells the story and the measured times.

Order of a failover, each step idempotent (a guard that dies half-way resumes from status.database):
record the new topology in status (the source of truth) and the db-topology ConfigMap (what pods read at
start) -> fence the old primary (role label off, pod deleted at once) -> create the replicas' slots on the
chosen one -> promote it -> label it primary (the db-write Service follows the label).

Order of a switchover: the old primary out of the write Service, read-only, its sessions ended -> the target
replays up to its last WAL position (else abort, nothing moved) -> record the new topology (and, with
synchronous commits, the hold) -> the old primary shut down cleanly (its pod deleted with its grace period)
until the target's stream ends -> promote the target (commits local during the hold) -> label it. The old
primary's pod comes back and rejoins as a standby as it is (replica-bootstrap.sh); the hold ends once a
standby has flushed past every write acknowledged meanwhile (check_sync_hold).
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pydantic

from scaledapp import api, dbtls, failover, pgclient
from scaledapp.failover import DbPod, Plan, Topology
from scaledapp.kube import Kube, KubeError
from scaledapp.resources import names
from scaledapp.resources.database import CONTAINER
from scaledapp.resources.pg_layout import TOPOLOGY_KEY
from scaledapp.resources.secrets import SUPERUSER, SUPERUSER_KEY

INTERVAL_SECONDS = 1.0
FAILOVER_MANAGER = "scaledapp-failover"
FENCE_WAIT_SECONDS = 15.0  # for the old primary's pod to be gone before a replica is promoted
CATCH_UP_SECONDS = 10.0  # a switchover waits this long for the home pod to replay the fenced primary's WAL
HANDOVER_SECONDS = 15.0  # ... and this long for the old primary's clean shutdown to end its WAL stream
SWEEP_SECONDS = 30.0  # slots and the topology ConfigMap are checked this often (when the primary is Ready)
DB_TIERS = ("db-write", "db-read")

Logger = logging.Logger | logging.LoggerAdapter[Any]
PodsNow = Callable[[], Sequence[Mapping[str, Any]]]
DrainingNodes = Callable[[], frozenset[str]]


def no_draining_nodes() -> frozenset[str]:
    return frozenset()


def node_draining(node: Mapping[str, Any]) -> bool:
    """Cordoned (kubectl cordon / drain set spec.unschedulable; some tools only taint)."""
    spec = node.get("spec") or {}
    return bool(spec.get("unschedulable")) or any(
        t.get("key") == "node.kubernetes.io/unschedulable" for t in spec.get("taints") or [])


def pod_summary(body: Mapping[str, Any]) -> dict[str, Any]:
    """What the index keeps of a Postgres pod (small: one per pod, in memory)."""
    meta, status = body.get("metadata") or {}, body.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    running = any(c.get("name") == CONTAINER and "running" in (c.get("state") or {})
                  for c in status.get("containerStatuses") or [])
    postgres: Mapping[str, Any] = next(
        (c for c in (body.get("spec") or {}).get("containers") or [] if c.get("name") == CONTAINER), {})
    return {
        "name": meta.get("name", ""),
        "uid": meta.get("uid", ""),
        "role": (meta.get("labels") or {}).get(names.ROLE_LABEL),
        "ready": ready,
        "running": running,
        "terminating": bool(meta.get("deletionTimestamp")),
        "ip": status.get("podIP"),
        "image": postgres.get("image", ""),
        "args": list(postgres.get("args") or []),
        "node": (body.get("spec") or {}).get("nodeName") or "",
        "resources": list(failover.resource_key(postgres.get("resources"))),
        "resize_infeasible": any(c.get("type") == "PodResizePending" and c.get("reason") == "Infeasible"
                                 for c in status.get("conditions") or []),
    }


def db_pod(summary: Mapping[str, Any], draining: frozenset[str] = frozenset()) -> DbPod:
    node = str(summary.get("node") or "")
    return DbPod(name=summary["name"], role=summary.get("role"), ready=bool(summary.get("ready")),
                 running=bool(summary.get("running")), terminating=bool(summary.get("terminating")),
                 ip=summary.get("ip"), image=str(summary.get("image") or ""), args=tuple(summary.get("args") or ()),
                 node=node, draining=bool(node) and node in draining, resources=tuple(summary.get("resources") or ()),
                 resize_infeasible=bool(summary.get("resize_infeasible")))


def slot_name(pod_name: str) -> str:
    """The replication slot replica-bootstrap.sh creates for a pod (same sanitising)."""
    return re.sub(r"[^a-z0-9_]", "_", pod_name.lower())[:63]


def rfc3339(moment: dt.datetime | None = None) -> str:
    return (moment or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclasses.dataclass
class Memory:
    """What one guard keeps between its ticks (in memory: status.database is what survives a restart)."""

    last_ready: float = dataclasses.field(default_factory=time.monotonic)
    topology: Topology | None = None
    phase: str = ""
    reason: str = ""
    password: str | None = None
    last_sweep: float = 0.0
    last_move: dict[str, Any] | None = None  # re-sent with every status write (apply drops what is left out)
    switch_reason: str = ""
    drained_from: set[str] = dataclasses.field(default_factory=set)  # nodes the role already left once
    restart_why: str = ""  # why the primary needed a restart at the last sweep
    sync_hold: bool | None = None  # status.database.syncHold as this guard last wrote it (None: not yet read)
    retightened_at: str | None = None  # the primary's clock when the hold's commits became synchronous again
    sync_mark: int | None = None  # the WAL position a standby must flush to for the hold to end


class Guard:
    """One ScaledApp's guard; `tick` runs once a second from its kopf daemon."""

    def __init__(self, kube: Kube, pods_now: PodsNow, logger: Logger,
                 draining_nodes: DrainingNodes = no_draining_nodes) -> None:
        self.kube = kube
        self.pods_now = pods_now
        self.draining_nodes = draining_nodes
        self.logger = logger
        self.memory = Memory()

    # ------------------------------------------------------------------------------------------ observe

    def topology(self, owner: Mapping[str, Any], home: str) -> tuple[Topology, str]:
        """The newest of what status says and what this guard wrote last (the watch may lag our writes)."""
        db = ((owner.get("status") or {}).get("database")) or {}
        from_status = Topology(db.get("primary") or home, int(db.get("epoch") or 0))
        phase = str(db.get("phase") or "Healthy")
        mine = self.memory.topology
        if mine is not None and mine.epoch >= from_status.epoch:
            return mine, self.memory.phase or phase
        return from_status, phase

    def pods(self) -> list[DbPod]:
        draining = self.draining_nodes()
        return [db_pod(s, draining) for s in self.pods_now()]

    async def password(self, child: names.ChildNames, namespace: str) -> str | pgclient.CertLogin | None:
        """How the guard logs in: the operator's client certificate (dbtls.py) once the CA is known, which
        works whatever the passwords are; before that, the superuser's password from the Secret."""
        login = dbtls.operator_login(child, namespace)
        if login is not None:
            return login
        if self.memory.password is None:
            secret = await self.kube.get("v1", "Secret", child.db_credentials, namespace)
            encoded = ((secret or {}).get("data") or {}).get(SUPERUSER_KEY)
            self.memory.password = base64.b64decode(encoded).decode() if encoded else None
        return self.memory.password

    async def positions(self, child: names.ChildNames, namespace: str,
                        pods: Sequence[DbPod]) -> dict[str, failover.Position | None]:
        password = await self.password(child, namespace)
        if password is None:
            return {}
        servers = {p.name: pgclient.Server(p.ip, password, SUPERUSER) for p in pods if p.ip and p.running}
        answers = await pgclient.positions(servers)
        if servers and not any(answers.values()):
            self.memory.password = None  # perhaps the Secret changed: read it again next time
        return answers

    # --------------------------------------------------------------------------------------------- tick

    async def tick(self, owner: Mapping[str, Any]) -> None:
        meta = owner["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        try:
            spec = api.spec_of(owner)
        except pydantic.ValidationError:
            return  # the reconciler reports it
        child = names.ChildNames(name)
        home = child.home_primary
        topology, phase = self.topology(owner, home)
        pods = self.pods()
        now = time.monotonic()
        primary = next((p for p in pods if p.name == topology.primary and not p.terminating), None)
        if primary is not None and primary.ready:
            self.memory.last_ready = now
        elif not ((owner.get("status") or {}).get("database") or {}).get("primary"):
            return  # a new ScaledApp whose primary has never been Ready: starting, not lost
        down_for = now - self.memory.last_ready
        delay = float(spec.database.failover.delay_seconds)
        if phase == "FailingOver":
            await self.fail_over(owner, topology, topology.primary, resume=True)
            return
        if phase == "SwitchingOver":
            await self.resume_switchover(owner, topology, home)
            return
        if dbtls.reload_pending(child, namespace):
            await self.reload_tls(owner, child, namespace, pods)
        if primary is not None and primary.ready:
            await self.ensure_operator_role(owner, child, namespace, primary)
        sync_hold = self.sync_hold(owner)
        if sync_hold and primary is not None and primary.ready and primary.ip:
            login = await self.password(child, namespace)
            if login is not None:
                await self.check_sync_hold(owner, topology, phase, primary, login)
        positions: dict[str, failover.Position | None] = {}
        if failover.needs_positions(pods, topology, home, down_for, delay):
            positions = await self.positions(child, namespace, pods)
        plan = failover.judge(pods, dataclasses.replace(topology, sync_hold=self.sync_hold(owner)), home, positions,
                              down_for=down_for, delay=delay)
        await self.relabel(namespace, plan.relabel)
        if plan.action == failover.Action.FAILOVER and not spec.database.failover.enabled:
            plan = Plan(failover.Action.NONE, plan.reason, plan.message + " (failover is disabled: holding)")
        if plan.action == failover.Action.FAILOVER and plan.target:
            self.logger.warning("failover: %s", plan.message)
            await self.fail_over(owner, Topology(plan.target, topology.epoch + 1), topology.primary,
                                 message=plan.message)
        elif plan.action == failover.Action.SWITCHOVER and plan.target:
            await self.switch_over(owner, topology, plan.target, plan.message)
        elif primary is not None and primary.ready and primary.draining:
            await self.move_off_draining_node(owner, child, topology, phase, pods)
        else:
            self.memory.drained_from.clear()
            await self.report(owner, topology, phase, plan)
            if primary is not None and primary.ready and now - self.memory.last_sweep >= SWEEP_SECONDS:
                self.memory.last_sweep = now
                await self.sweep(owner, child, topology, pods)

    async def relabel(self, namespace: str, relabel: Mapping[str, str]) -> None:
        for pod, role in relabel.items():
            if await self.kube.label_pod(pod, namespace, {names.ROLE_LABEL: role}):
                self.logger.info("pod %s labelled %s=%s", pod, names.ROLE_LABEL, role)

    async def report(self, owner: Mapping[str, Any], topology: Topology, phase: str, plan: Plan) -> None:
        """status.database when the judgement changed (not every second); a Warning while the primary is
        down and cannot be replaced."""
        status_db = ((owner.get("status") or {}).get("database")) or {}
        if (plan.reason == self.memory.reason and status_db.get("reason") == plan.reason
                and status_db.get("primary") == topology.primary):
            return
        self.memory.reason = plan.reason
        await self.write_status(owner, topology, phase, plan.reason, plan.message)
        if plan.reason in (failover.Reason.POSITIONS_UNKNOWN, failover.Reason.NO_REPLICA,
                           failover.Reason.DRAIN_BLOCKED, failover.Reason.SYNC_HOLD):
            await self.kube.post_event(dict(owner), "Warning", str(plan.reason), plan.message)
            self.logger.warning("write role: %s", plan.message)

    async def write_status(self, owner: Mapping[str, Any], topology: Topology, phase: str, reason: str,
                           message: str, last_move: dict[str, Any] | None = None) -> None:
        self.memory.topology, self.memory.phase = topology, phase
        database: dict[str, Any] = {"primary": topology.primary, "epoch": topology.epoch, "phase": phase,
                                    "reason": str(reason), "message": message}
        if last_move is not None:
            self.memory.last_move = last_move
        if self.memory.last_move is None:
            self.memory.last_move = ((owner.get("status") or {}).get("database") or {}).get("lastMove")
        if self.memory.last_move is not None:
            database["lastMove"] = self.memory.last_move
        database["syncHold"] = self.sync_hold(owner)
        meta = owner["metadata"]
        await self.kube.apply_status(meta["name"], meta["namespace"], {"database": database}, FAILOVER_MANAGER)

    def sync_hold(self, owner: Mapping[str, Any]) -> bool:
        if self.memory.sync_hold is None:
            self.memory.sync_hold = bool(((owner.get("status") or {}).get("database") or {}).get("syncHold"))
        return self.memory.sync_hold

    async def check_sync_hold(self, owner: Mapping[str, Any], topology: Topology, phase: str,
                              primary: DbPod, login: str | pgclient.CertLogin) -> None:
        """The switchover relaxed synchronous commits on the new primary (no standby may be streaming yet):
        once one streams, make commits synchronous again; once no statement from the relaxed time can still
        commit, take the primary's WAL position; once a standby has flushed up to it, every write acknowledged
        meanwhile is on a standby, and failover is allowed again. One step per tick."""
        server = pgclient.Server(str(primary.ip), login, SUPERUSER)
        flushes = await pgclient.run(server.standby_flushes, seconds=5)
        if self.memory.retightened_at is None:
            if flushes:
                self.memory.retightened_at = await pgclient.run(server.retighten, seconds=5)
                self.logger.info("synchronous commits again on %s: a standby streams", topology.primary)
            return
        if self.memory.sync_mark is None:
            self.memory.sync_mark = await pgclient.run(server.sync_mark, self.memory.retightened_at, seconds=5)
            return
        if failover.sync_hold_released(flushes, self.memory.sync_mark):
            self.memory.sync_hold, self.memory.retightened_at, self.memory.sync_mark = False, None, None
            message = (f"a standby has every write {topology.primary} acknowledged while commits were relaxed: "
                       "synchronous again, failover allowed")
            db = (owner.get("status") or {}).get("database") or {}
            await self.write_status(owner, topology, phase, str(db.get("reason") or ""), message)
            self.logger.info(message)
            await self.kube.post_event(dict(owner), "Normal", "SynchronousRestored", message)

    async def write_topology(self, owner: Mapping[str, Any], primary: str) -> None:
        meta = owner["metadata"]
        child = names.ChildNames(meta["name"])
        await self.kube.apply({"apiVersion": "v1", "kind": "ConfigMap",
                               "metadata": {"name": child.db_topology, "namespace": meta["namespace"]},
                               "data": {TOPOLOGY_KEY: primary}}, FAILOVER_MANAGER)

    # ------------------------------------------------------------------------------------------ failover

    async def fail_over(self, owner: Mapping[str, Any], topology: Topology, old: str, message: str = "",
                        resume: bool = False) -> None:
        meta = owner["metadata"]
        namespace = meta["namespace"]
        child = names.ChildNames(meta["name"])
        target = topology.primary
        started = time.monotonic()
        if not resume:
            await self.write_status(owner, topology, "FailingOver", failover.Reason.PRIMARY_LOST, message)
            await self.kube.post_event(dict(owner), "Warning", "FailingOver", message)
        await self.write_topology(owner, target)
        if old != target:
            await self.fence(namespace, old)
        pods = self.pods()
        chosen = next((p for p in pods if p.name == target and p.ip), None)
        password = await self.password(child, namespace)
        if chosen is None or password is None:
            self.logger.warning("failover to %s waits: its pod or the credentials are not there yet", target)
            return
        server = pgclient.Server(str(chosen.ip), password, SUPERUSER)
        others = {p.name for p in pods if p.name != target} | ({child.home_primary} - {target})
        created = await pgclient.run(server.ensure_slots, sorted(slot_name(p) for p in others), seconds=10)
        position = await pgclient.run(server.position, seconds=5)
        if position.in_recovery:
            await pgclient.run(server.prepare_promotion, False, seconds=10)
            await pgclient.run(server.promote, seconds=30)
        await self.relabel(namespace, failover.relabels(self.pods(), topology))
        seconds = round(time.monotonic() - started, 1)
        phase = "Healthy" if target == child.home_primary else "Promoted"
        done = (f"promoted {target} (epoch {topology.epoch}); writes go to it; {old} rejoins as a replica"
                + (f"; slots created: {', '.join(created)}" if created else ""))
        record = {"time": rfc3339(), "kind": "failover", "from": old, "to": target,
                  "reason": message or "resumed", "seconds": seconds}
        await self.write_status(owner, topology, phase, "FailedOver", done, last_move=record)
        self.memory.last_ready = time.monotonic()
        self.logger.warning("failover done in %.1fs: %s", seconds, done)
        await self.kube.post_event(dict(owner), "Normal", "FailedOver", done)

    async def fence(self, namespace: str, old: str) -> None:
        """The old primary takes no more writes: out of the write Service, its pod killed at once, and
        (bounded) waited for, so two primaries never accept writes together."""
        current = next((s for s in self.pods_now() if s["name"] == old), None)
        if current is None:
            return
        uid = current.get("uid")
        await self.kube.label_pod(old, namespace, {names.ROLE_LABEL: failover.REPLICA})
        await self.kube.delete_pod(old, namespace, grace_seconds=0)
        deadline = time.monotonic() + FENCE_WAIT_SECONDS
        while time.monotonic() < deadline:
            if not any(s["name"] == old and s.get("uid") == uid for s in self.pods_now()):
                return
            await asyncio.sleep(0.2)
        self.logger.warning("old primary %s still terminating after %.0fs (its node may be gone): its pod is out "
                            "of the write Service; promoting anyway", old, FENCE_WAIT_SECONDS)

    # ---------------------------------------------------------------------------------------- switchover

    async def switch_over(self, owner: Mapping[str, Any], topology: Topology, target: str, message: str,
                          reason: str = failover.Reason.HOME_CAUGHT_UP) -> None:
        """Move the write role to `target` (a caught-up replica) with writes down only while it replays the
        last of the fenced primary's WAL and is promoted."""
        meta = owner["metadata"]
        namespace = meta["namespace"]
        child = names.ChildNames(meta["name"])
        current = topology.primary
        pods = {p.name: p for p in self.pods()}
        password = await self.password(child, namespace)
        if password is None or not pods.get(current) or not pods.get(target) or not pods[current].ip \
                or not pods[target].ip:
            return
        started = time.monotonic()
        self.logger.warning("switchover %s -> %s: %s", current, target, message)
        self.memory.switch_reason = message
        await self.write_status(owner, topology, "SwitchingOver", reason, message)
        await self.kube.post_event(dict(owner), "Normal", "SwitchingOver", message)
        old_server = pgclient.Server(str(pods[current].ip), password, SUPERUSER)
        new_server = pgclient.Server(str(pods[target].ip), password, SUPERUSER)
        await self.kube.label_pod(current, namespace, {names.ROLE_LABEL: failover.REPLICA})
        try:
            fenced_at = await pgclient.run(old_server.fence, seconds=10)
            deadline = time.monotonic() + CATCH_UP_SECONDS
            while (await pgclient.run(new_server.position, seconds=5)).replayed < fenced_at:
                if time.monotonic() > deadline:
                    raise pgclient.PostgresError(f"{target} did not replay up to the fenced primary's WAL "
                                                 f"within {CATCH_UP_SECONDS:g}s")
                await asyncio.sleep(0.1)
        except pgclient.PostgresError as exc:
            with_unfence = f"switchover to {target} aborted, {current} keeps the write role: {exc}"
            await pgclient.run(old_server.unfence, seconds=10)
            await self.kube.label_pod(current, namespace, {names.ROLE_LABEL: failover.PRIMARY})
            await self.write_status(owner, topology, "Healthy" if current == child.home_primary else "Promoted",
                                    "SwitchoverAborted", with_unfence)
            await self.kube.post_event(dict(owner), "Warning", "SwitchoverAborted", with_unfence)
            return
        # The point of no return: the new topology (and, with synchronous commits, the hold) is recorded
        # before the old primary goes, so that its pod restarts as a replica and a guard that stops here
        # finishes the move (resume_switchover).
        moved = Topology(target, topology.epoch + 1)
        try:
            synchronous = api.parse_spec(owner.get("spec")).database.synchronous
        except pydantic.ValidationError:
            synchronous = False
        if synchronous:
            self.memory.sync_hold, self.memory.retightened_at, self.memory.sync_mark = True, None, None
        await self.write_status(owner, moved, "SwitchingOver", reason, message)
        await self.write_topology(owner, target)
        await self.hand_over(namespace, current, new_server)
        await self.finish_switchover(owner, moved, current, started)

    async def hand_over(self, namespace: str, old: str, target: pgclient.Server) -> None:
        """Shut the old primary down cleanly, so that it can rejoin as a standby without a new base backup
        (Patroni's and CloudNativePG's switchover: demote the primary with a clean shutdown first, then promote
        the target; the old one follows the new timeline, pg_rewind or a new copy only where it must).

        Its pod is deleted with its grace period: the kubelet's SIGTERM is a fast shutdown (postgres-start.sh),
        which writes the shutdown checkpoint, and every WAL sender exits only once its standby confirmed all it
        sent. So once the target's WAL receiver stops streaming (or the pod is gone) the target has the old
        primary's whole WAL, and its timeline starts right after that checkpoint: replica-bootstrap.sh then
        finds the old data an ancestor of the new timeline and rejoins it as it is. Bounded: past
        HANDOVER_SECONDS the target is promoted anyway. Nothing acknowledged is at stake here: the target
        replayed everything up to the fence before this, and the old pod restarting re-seeds itself whenever
        its WAL goes further than the new timeline's start."""
        current = next((s for s in self.pods_now() if s["name"] == old), None)
        if current is None:
            return
        uid = current.get("uid")
        await self.kube.delete_pod(old, namespace)
        deadline = time.monotonic() + HANDOVER_SECONDS
        while time.monotonic() < deadline:
            pod = next((s for s in self.pods_now() if s["name"] == old and s.get("uid") == uid), None)
            if pod is None or not pod.get("running"):
                return
            try:
                if not await pgclient.run(target.receiving, seconds=3):
                    return
            except pgclient.PostgresError as exc:
                self.logger.info("handover: %s", exc)
            await asyncio.sleep(0.1)
        self.logger.warning("switchover: %s's stream did not end within %.0fs of its shutdown; promoting anyway",
                            old, HANDOVER_SECONDS)

    async def finish_switchover(self, owner: Mapping[str, Any], topology: Topology, old: str,
                                started: float) -> None:
        meta = owner["metadata"]
        namespace = meta["namespace"]
        child = names.ChildNames(meta["name"])
        target = topology.primary
        await self.write_topology(owner, target)
        pods = self.pods()
        chosen = next((p for p in pods if p.name == target and p.ip), None)
        password = await self.password(child, namespace)
        if chosen is None or password is None:
            return
        server = pgclient.Server(str(chosen.ip), password, SUPERUSER)
        await pgclient.run(server.ensure_slots, sorted(slot_name(p.name) for p in pods if p.name != target),
                           seconds=10)
        if (await pgclient.run(server.position, seconds=5)).in_recovery:
            # With synchronous commits, the new primary's only standby may be the old primary, restarting: commits
            # are local until a standby streams (the hold, check_sync_hold). Patroni's non-strict synchronous mode
            # does the same when no synchronous standby is left (docs: replication_modes, "synchronous mode"), and
            # promotes only a standby known to be synchronous, as the hold forbids failover meanwhile.
            await pgclient.run(server.prepare_promotion, self.sync_hold(owner), seconds=10)
            await pgclient.run(server.promote, seconds=30)
        await self.relabel(namespace, failover.relabels(self.pods(), topology))
        seconds = round(time.monotonic() - started, 1)
        done = (f"{target} holds the write role (epoch {topology.epoch}); {old} restarts as its replica"
                + (" (commits local until a standby streams)" if self.sync_hold(owner) else ""))
        record = {"time": rfc3339(), "kind": "switchover", "from": old, "to": target,
                  "reason": self.memory.switch_reason or "resumed", "seconds": seconds}
        phase = "Healthy" if target == child.home_primary else "Promoted"
        await self.write_status(owner, topology, phase, "SwitchedOver", done, last_move=record)
        self.memory.last_ready = time.monotonic()
        self.logger.info("switchover done in %.1fs: %s", seconds, done)
        await self.kube.post_event(dict(owner), "Normal", "SwitchedOver", done)

    async def resume_switchover(self, owner: Mapping[str, Any], topology: Topology, home: str) -> None:
        """A guard that stopped during a switchover. The pod status names is asked: still a standby means the
        move was recorded (the point of no return) but not finished, so it is finished, any other pod still
        running as a primary restarted first (it was fenced; its WAL now goes past the new timeline's start,
        so it is seeded again). A primary means the role never left it (or the move completed): it is
        unfenced and keeps the role."""
        meta = owner["metadata"]
        namespace = meta["namespace"]
        child = names.ChildNames(meta["name"])
        pods = self.pods()
        password = await self.password(child, namespace)
        holder = next((p for p in pods if p.name == topology.primary and p.ip), None)
        if holder is None or password is None:
            return
        positions = await pgclient.positions(
            {p.name: pgclient.Server(str(p.ip), password, SUPERUSER) for p in pods if p.ip and p.running})
        answer = positions.get(holder.name)
        if answer is None:
            return  # asked again next tick
        if answer.in_recovery:
            others = sorted(name for name, pos in positions.items()
                            if name != holder.name and pos is not None and not pos.in_recovery)
            for other in others:
                await self.kube.label_pod(other, namespace, {names.ROLE_LABEL: failover.REPLICA})
                await self.kube.delete_pod(other, namespace)
            old = next(iter(others), next(iter(sorted(p.name for p in pods if p.name != holder.name)), home))
            await self.finish_switchover(owner, topology, old, time.monotonic())
            return
        await pgclient.run(pgclient.Server(str(holder.ip), password, SUPERUSER).unfence, seconds=10)
        await self.relabel(namespace, failover.relabels(self.pods(), topology))
        phase = "Healthy" if topology.primary == home else "Promoted"
        await self.write_status(owner, topology, phase, "SwitchoverResumed",
                                f"a switchover was interrupted; {topology.primary} holds the write role")

    async def postgres_template(self, statefulset: str, namespace: str) -> Mapping[str, Any] | None:
        """The postgres container of a StatefulSet's pod template (from the watch cache)."""
        sts = await self.kube.get_cached("apps/v1", "StatefulSet", statefulset, namespace)
        containers = ((((sts or {}).get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers")
        return next((c for c in containers or [] if c.get("name") == CONTAINER), None)

    async def restart_by_switchover(self, owner: Mapping[str, Any], child: names.ChildNames, topology: Topology,
                                    pods: Sequence[DbPod]) -> bool:
        """When the home primary's pod runs an older template (image, settings, or a size it could not take in
        place), move the role to a caught-up replica that runs its own current template (one its StatefulSet
        has still to roll would be restarted while holding the role); the switchover restarts the old primary,
        which comes back on the new template and later takes the role home again. True when it switched."""
        namespace = owner["metadata"]["namespace"]
        primary = next((p for p in pods if p.name == topology.primary), None)
        if primary is None or topology.primary != child.home_primary:
            return False
        template = await self.postgres_template(child.db_primary, namespace)
        why = failover.restart_needed(primary, template.get("image", ""), template.get("args") or [],
                                      failover.resource_key(template.get("resources"))) if template else None
        # The scaler writes the template, then resizes the pod: a sweep between the two sees them differ.
        # Only a difference still there at the next sweep means the resize did not reach the pod.
        unconfirmed = why == failover.RESIZE_NOT_APPLIED and self.memory.restart_why != why
        self.memory.restart_why = why or ""
        if why is None or unconfirmed:
            return False
        replicas = await self.postgres_template(child.db_replicas, namespace) or {}
        rolled = [p for p in pods if not p.name.startswith(f"{child.db_replicas}-")
                  or failover.restart_needed(p, replicas.get("image", ""), replicas.get("args") or []) is None]
        plan = failover.planned_switchover(rolled, topology, await self.positions(child, namespace, pods), why)
        if plan.action != failover.Action.SWITCHOVER or plan.target is None:
            await self.report(owner, topology, "Healthy", plan)
            return False
        await self.switch_over(owner, topology, plan.target, plan.message, plan.reason)
        return True

    async def move_off_draining_node(self, owner: Mapping[str, Any], child: names.ChildNames, topology: Topology,
                                     phase: str, pods: Sequence[DbPod]) -> None:
        """The primary's node is cordoned: a drain is coming, and the primary's PodDisruptionBudget refuses
        its eviction until the role has moved (positions are asked each second only while this lasts)."""
        primary = next(p for p in pods if p.name == topology.primary)
        positions = await self.positions(child, owner["metadata"]["namespace"], pods)
        plan = failover.drain_switchover(pods, topology, positions, primary.node in self.memory.drained_from)
        if plan.action != failover.Action.SWITCHOVER or plan.target is None:
            await self.report(owner, topology, phase, plan)
            return
        self.memory.drained_from.add(primary.node)
        await self.switch_over(owner, topology, plan.target, plan.message, plan.reason)

    # --------------------------------------------------------------------------------------------- sweep

    async def sweep(self, owner: Mapping[str, Any], child: names.ChildNames, topology: Topology,
                    pods: Sequence[DbPod]) -> None:
        """Keep the topology ConfigMap in line with status, and drop the slots of replicas that are gone
        (a slot nobody streams from keeps WAL on the primary's volume, up to max_slot_wal_keep_size)."""
        namespace = owner["metadata"]["namespace"]
        if await self.restart_by_switchover(owner, child, topology, pods):
            return
        live = await self.kube.get_cached("v1", "ConfigMap", child.db_topology, namespace)
        if live is not None and (live.get("data") or {}).get(TOPOLOGY_KEY) != topology.primary:
            await self.write_topology(owner, topology.primary)
        primary = next((p for p in pods if p.name == topology.primary and p.ip), None)
        replicas = await self.kube.get_cached("apps/v1", "StatefulSet", child.db_replicas, namespace)
        password = await self.password(child, namespace)
        if primary is None or replicas is None or password is None:
            return
        wanted = int((replicas.get("spec") or {}).get("replicas") or 0)
        keep = {slot_name(f"{child.db_replicas}-{i}") for i in range(wanted)}
        keep |= {slot_name(p.name) for p in pods} | {slot_name(child.home_primary)}
        server = pgclient.Server(str(primary.ip), password, SUPERUSER)
        try:
            dropped = await pgclient.run(server.drop_slots_except, sorted(keep), seconds=10)
        except pgclient.PostgresError as exc:
            self.logger.info("slot sweep skipped: %s", exc)
            return
        if dropped:
            message = f"dropped the replication slots of removed replicas: {', '.join(dropped)}"
            self.logger.info(message)
            await self.kube.post_event(dict(owner), "Normal", "SlotsDropped", message)


    async def reload_tls(self, owner: Mapping[str, Any], child: names.ChildNames, namespace: str,
                         pods: Sequence[DbPod]) -> None:
        """Renewed certificates: each running Postgres server reloads once its mounted files have them."""
        login = await self.password(child, namespace)
        if login is None:
            return
        servers = [pgclient.Server(str(p.ip), login, SUPERUSER) for p in pods if p.ip and p.running]
        if await dbtls.reload_when_propagated(owner, self.kube, servers):
            self.logger.info("Postgres servers reloaded the renewed certificates")


    async def ensure_operator_role(self, owner: Mapping[str, Any], child: names.ChildNames, namespace: str,
                                   primary: DbPod) -> None:
        """The certificate role on a primary older than it (dbtls.ensure_operator_role): once per primary. The
        roles' passwords are not the operator's business: each Postgres pod's password-sync sidecar makes the
        database take the mounted credentials Secret's (resources/pg_sidecars.py, password_sync_script)."""
        login = dbtls.operator_login(child, namespace)
        if login is None or not primary.ip:
            return
        try:
            if await dbtls.ensure_operator_role(self.kube, owner, pgclient.Server(str(primary.ip), login, SUPERUSER)):
                self.logger.info("created the role %s the operator's certificate logs in as", login.user)
        except pgclient.PostgresError as exc:
            self.logger.warning("the operator's certificate role: %s", exc)


async def run_guard(kube: Kube, body: Mapping[str, Any], pods_now: PodsNow, logger: Logger,
                    stopped: Any, draining_nodes: DrainingNodes = no_draining_nodes) -> None:
    """The daemon's loop: a tick a second; a failing tick is logged and the next one tries again."""
    guard = Guard(kube, pods_now, logger, draining_nodes)
    while not stopped:
        owner = dict(body)  # this tick's view: the live body empties when the ScaledApp is deleted
        if not owner.get("metadata"):
            break
        try:
            await guard.tick(owner)
        except (KubeError, pgclient.PostgresError) as exc:
            logger.warning("failover guard: %s", exc)
        except Exception:  # a bug must not end the guard of this ScaledApp: say so, and tick again
            logger.exception("failover guard: unexpected error")
        await stopped.wait(INTERVAL_SECONDS)
