"""Who holds the write role, and when it moves: the pure judgement behind failover (no I/O).

The shell (dbguard.py) observes the Postgres pods (from the operator's pod index, no API calls), asks the
servers where they stand in the WAL (pgclient.py) only when a judgement needs it, and carries out the plan
this module returns. docs/failure.md tells the whole story; the rules, briefly:

* The write role is a pod name (the topology, kept in the ScaledApp's status and in the db-topology
  ConfigMap the pods read at start). The `db-write` Service selects the pod labelled role=primary; the
  labels follow the topology, never the other way round.
* Failover: the primary has not been Ready for `delay` seconds, it does not answer the operator either
  (a primary that answers is busy, not dead: failing over a loaded primary makes things worse), every
  running replica has told its WAL position (never promote while one that might be further ahead is
  silent), and there is one to promote. The most advanced replica (received WAL, then replayed, then name)
  is promoted.
* Synchronous hold: a switchover promotes its target with synchronous commits relaxed to local ones until a
  standby streams again (the old primary restarting is often the only one). Writes acknowledged meanwhile may
  exist on the primary alone, so no failover happens until a standby has flushed past them
  (`Topology.sync_hold`).
* Failback: after a failover the write role sits on a pod of the replicas' StatefulSet, where the scaler
  cannot size it and a scale-down could remove it. Once the primary's home pod (the primary StatefulSet's
  pod, re-seeded as a replica) has caught up, a controlled switchover moves the role home.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from scaledapp.quantity import parse_bytes, parse_cpu_millicores

PRIMARY = "primary"
REPLICA = "replica"
# A switchover home waits until the home pod is this close behind the primary (it then waits for exact
# catch-up after fencing, bounded, so the writes-down window stays short).
CAUGHT_UP_BYTES = 1024 * 1024


@dataclass(frozen=True)
class Position:
    """Where a server stands in the WAL. For a primary, received = replayed = its current insert position."""

    in_recovery: bool
    received: int  # bytes into the WAL stream (pg_lsn as a number); 0 if never received anything
    replayed: int
    timeline: int


class Action(enum.StrEnum):
    NONE = "None"
    FAILOVER = "Failover"
    SWITCHOVER = "Switchover"


class Reason(enum.StrEnum):
    PRIMARY_READY = "PrimaryReady"
    PRIMARY_NOT_READY = "PrimaryNotReady"  # not Ready yet, within the delay
    PRIMARY_ANSWERS = "PrimaryAnswers"  # not Ready per the kubelet, but the server answers: hold
    POSITIONS_UNKNOWN = "ReplicaPositionsUnknown"
    NO_REPLICA = "NoReplicaToPromote"
    PRIMARY_LOST = "PrimaryLost"
    HOME_CATCHING_UP = "HomeCatchingUp"
    HOME_CAUGHT_UP = "HomeCaughtUp"
    RESTART_NEEDED = "RestartNeeded"  # the primary's pod must restart for its template: planned switchover
    NO_CAUGHT_UP_REPLICA = "NoCaughtUpReplica"
    NODE_DRAINING = "NodeDraining"  # the primary's node is cordoned: planned switchover off it
    DRAIN_BLOCKED = "DrainBlocked"  # ... and no replica can take the role: the primary's budget holds the drain
    HOME_DRAINING = "HomeDraining"  # the home pod's node is cordoned: the role does not go home yet
    SYNC_HOLD = "SynchronousHold"  # the primary may hold acknowledged writes no standby has: no failover


@dataclass(frozen=True)
class DbPod:
    name: str
    role: str | None  # its role label now
    ready: bool
    running: bool  # the postgres container runs (a server might answer)
    terminating: bool = False
    ip: str | None = None
    image: str = ""  # the postgres container's, as running
    args: tuple[str, ...] = ()
    node: str = ""
    draining: bool = False  # its node is cordoned (kubectl drain starts so): it is about to be evicted
    resources: tuple[int, ...] = ()  # the postgres container's, as the pod spec says (resource_key)
    resize_infeasible: bool = False  # the kubelet refused an in-place resize (PodResizePending/Infeasible)


@dataclass(frozen=True)
class Topology:
    primary: str
    epoch: int = 0
    # Synchronous commits were relaxed by a switchover and no standby has confirmed the writes acknowledged
    # since (status.database.syncHold): no failover.
    sync_hold: bool = False


@dataclass(frozen=True)
class Plan:
    action: Action
    reason: Reason
    message: str
    target: str | None = None
    relabel: Mapping[str, str] = field(default_factory=dict)  # pod -> the role label it must carry


def relabels(pods: Sequence[DbPod], topology: Topology) -> dict[str, str]:
    """The role label each live pod must carry for the topology, where it carries another."""
    out = {}
    for pod in pods:
        want = PRIMARY if pod.name == topology.primary else REPLICA
        if not pod.terminating and pod.role != want:
            out[pod.name] = want
    return out


def needs_positions(pods: Sequence[DbPod], topology: Topology, home: str, down_for: float, delay: float) -> bool:
    """Whether judging needs the servers' positions (asked only then: a healthy steady state costs nothing)."""
    primary = next((p for p in pods if p.name == topology.primary and not p.terminating), None)
    if primary is None or not primary.ready:
        return down_for >= delay
    return topology.primary != home


def most_advanced(candidates: Sequence[DbPod], positions: Mapping[str, Position | None]) -> DbPod:
    """Highest received WAL, then replayed; among equals the first by name (max keeps the first)."""
    def key(pod: DbPod) -> tuple[int, int]:
        pos = positions[pod.name]
        assert pos is not None
        return pos.received, pos.replayed

    return max(sorted(candidates, key=lambda p: p.name), key=key)


def judge(
    pods: Sequence[DbPod],
    topology: Topology,
    home: str,
    positions: Mapping[str, Position | None],
    *,
    down_for: float,
    delay: float,
) -> Plan:
    """What to do about the write role now. `down_for`: seconds since the primary was last seen Ready;
    `positions`: what each pod answered (missing or None: unknown); `topology.sync_hold`: synchronous commits
    were relaxed by a switchover and no standby has confirmed the writes acknowledged since."""
    relabel = relabels(pods, topology)
    primary = next((p for p in pods if p.name == topology.primary and not p.terminating), None)
    if primary is not None and primary.ready:
        return _failback(pods, topology, home, positions, relabel)
    if down_for < delay:
        return Plan(Action.NONE, Reason.PRIMARY_NOT_READY,
                    f"primary {topology.primary} not Ready for {down_for:.0f}s; failover after {delay:g}s",
                    relabel=relabel)
    answer = positions.get(topology.primary)
    if answer is not None and not answer.in_recovery:
        return Plan(Action.NONE, Reason.PRIMARY_ANSWERS,
                    f"primary {topology.primary} is not Ready but answers as a primary: holding (busy, not dead)",
                    relabel=relabel)
    if topology.sync_hold:
        return Plan(Action.NONE, Reason.SYNC_HOLD,
                    f"primary {topology.primary} lost, but it acknowledged writes while no standby was synchronous "
                    "(after a switchover) and no standby has confirmed them: no failover, waiting for it to return",
                    relabel=relabel)
    running = [p for p in pods if p.name != topology.primary and p.running and not p.terminating]
    silent = [p.name for p in running if positions.get(p.name) is None]
    if silent:
        return Plan(Action.NONE, Reason.POSITIONS_UNKNOWN,
                    f"primary {topology.primary} lost, but {', '.join(sorted(silent))} did not tell its WAL "
                    "position: no failover while a replica that may be further ahead is silent", relabel=relabel)
    candidates = [p for p in running if (pos := positions.get(p.name)) is not None and pos.in_recovery]
    if not candidates:
        return Plan(Action.NONE, Reason.NO_REPLICA,
                    f"primary {topology.primary} lost and no running replica to promote", relabel=relabel)
    chosen = most_advanced(candidates, positions)
    return Plan(Action.FAILOVER, Reason.PRIMARY_LOST,
                f"primary {topology.primary} not Ready for {down_for:.0f}s and not answering: promoting "
                f"{chosen.name}, the most advanced of {len(candidates)} replica(s)",
                target=chosen.name, relabel=relabel)


def _failback(
    pods: Sequence[DbPod], topology: Topology, home: str, positions: Mapping[str, Position | None],
    relabel: dict[str, str],
) -> Plan:
    if topology.primary == home:
        return Plan(Action.NONE, Reason.PRIMARY_READY, f"primary {home} Ready", relabel=relabel)
    home_pod = next((p for p in pods if p.name == home and not p.terminating), None)
    here, there = positions.get(home), positions.get(topology.primary)
    if home_pod is not None and home_pod.draining:
        return Plan(Action.NONE, Reason.HOME_DRAINING,
                    f"primary {topology.primary}; {home}'s node {home_pod.node} is being drained: the role stays",
                    relabel=relabel)
    if home_pod is None or not home_pod.ready or here is None or there is None or not here.in_recovery:
        return Plan(Action.NONE, Reason.HOME_CATCHING_UP,
                    f"primary {topology.primary} (after a failover); {home} is not yet a Ready replica",
                    relabel=relabel)
    behind = there.received - here.replayed
    if behind > CAUGHT_UP_BYTES:
        return Plan(Action.NONE, Reason.HOME_CATCHING_UP,
                    f"primary {topology.primary} (after a failover); {home} is {behind} bytes behind",
                    relabel=relabel)
    return Plan(Action.SWITCHOVER, Reason.HOME_CAUGHT_UP,
                f"{home} has caught up with {topology.primary}: switching the write role home",
                target=home, relabel=relabel)


def resource_key(resources: Mapping[str, Any] | None) -> tuple[int, ...]:
    """A container's requests and limits as numbers (millicores, bytes; -1 when unset), so that "500m" and
    "0.5" compare equal."""
    resources = resources or {}
    out = []
    for section in ("requests", "limits"):
        values = resources.get(section) or {}
        out.append(parse_cpu_millicores(str(values["cpu"])) if "cpu" in values else -1)
        out.append(parse_bytes(str(values["memory"])) if "memory" in values else -1)
    return tuple(out)


RESIZE_NOT_APPLIED = "a resize did not reach the running pod"


def restart_needed(pod: DbPod, image: str, args: Sequence[str], resources: tuple[int, ...] = ()) -> str | None:
    """Why the primary's pod must restart to run what its StatefulSet's template says, or None: an image or a
    server setting changed, or a resize the kubelet cannot do in place (refused as infeasible, or never applied
    to the pod: no in-place resize here). The primary's StatefulSet is OnDelete: without this, such a change
    would wait for the pod's next accidental restart."""
    if pod.resize_infeasible:
        return "the kubelet cannot resize it in place"
    if pod.resources and resources and pod.resources != resources:
        return RESIZE_NOT_APPLIED
    if pod.image and image and pod.image != image:
        return f"image {pod.image} -> {image}"
    if pod.args and args and tuple(args) != pod.args:  # either side unknown (empty): no judgement
        return "server settings changed"
    return None


def _caught_up(pods: Sequence[DbPod], topology: Topology, positions: Mapping[str, Position | None]) -> list[DbPod]:
    """Ready replicas within CAUGHT_UP_BYTES of the primary."""
    there = positions.get(topology.primary)
    return [p for p in pods if p.name != topology.primary and p.ready and not p.terminating
            and (pos := positions.get(p.name)) is not None and pos.in_recovery and there is not None
            and there.received - pos.replayed <= CAUGHT_UP_BYTES]


def planned_switchover(pods: Sequence[DbPod], topology: Topology, positions: Mapping[str, Position | None],
                       why: str) -> Plan:
    """Move the write role off a primary that must restart, to a Ready replica that is caught up (within
    CAUGHT_UP_BYTES), so that writes are down for a switchover instead of a restart. A replica whose node is
    being drained is taken only when no other one is caught up."""
    candidates = _caught_up(pods, topology, positions)
    if not candidates:
        return Plan(Action.NONE, Reason.NO_CAUGHT_UP_REPLICA,
                    f"{topology.primary} must restart ({why}); waiting for a caught-up replica to take the role")
    chosen = most_advanced([p for p in candidates if not p.draining] or candidates, positions)
    return Plan(Action.SWITCHOVER, Reason.RESTART_NEEDED,
                f"{topology.primary} must restart ({why}): switching the write role to {chosen.name} first",
                target=chosen.name)


def drain_switchover(pods: Sequence[DbPod], topology: Topology, positions: Mapping[str, Position | None],
                     moved_on_this_node: bool) -> Plan:
    """The primary's node is being drained; its disruption budget refuses the eviction, so the role must move
    first. To a caught-up replica on a node that is not draining; when every replica is on a draining node
    (a one-node cluster), once to the best of them, so the pod being evicted is not the primary, and then
    no more (moving the role around a node that is going away only adds write gaps)."""
    primary = next((p for p in pods if p.name == topology.primary), None)
    node = primary.node if primary is not None else ""
    candidates = _caught_up(pods, topology, positions)
    elsewhere = [p for p in candidates if not p.draining]
    pool = elsewhere or ([] if moved_on_this_node else candidates)
    if not pool:
        return Plan(Action.NONE, Reason.DRAIN_BLOCKED,
                    f"node {node} is being drained, and no caught-up replica on another node can take the write "
                    f"role from {topology.primary}: its disruption budget holds the drain (writes go on)")
    chosen = most_advanced(pool, positions)
    return Plan(Action.SWITCHOVER, Reason.NODE_DRAINING,
                f"node {node} is being drained: switching the write role from {topology.primary} to "
                f"{chosen.name} before the eviction", target=chosen.name)


def sync_hold_released(standby_flushes: Sequence[int], mark: int | None) -> bool:
    """Whether the synchronous hold ends: commits are synchronous again, `mark` is the primary's WAL position
    taken once no commit that started under the relaxed setting could still be running (None: not yet), and
    a standby has flushed up to it, so every write acknowledged while relaxed is on a standby. (Patroni counts
    a standby as synchronous only once it reached the primary's flush position of the moment
    synchronous_standby_names changed: patroni/postgresql/sync.py, SyncHandler.)"""
    return mark is not None and any(flush >= mark for flush in standby_flushes)
