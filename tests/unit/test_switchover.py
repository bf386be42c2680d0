"""The switchover's order and the synchronous hold (dbguard.py), on an in-memory API and scripted servers.

What must hold whatever the timing: every acknowledged write is on the target before the old primary goes
(it replays past the fence), the move is recorded (with the hold, under synchronous commits) before the old
primary is shut down, the shutdown is a clean one (a deletion with its grace period, never a kill), the
target is promoted with commits relaxed only under the hold, and the hold ends only once a standby has
flushed past the mark taken after the re-tightening.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable
from typing import Any, cast

import pytest

from scaledapp import dbguard, dbtls, pgclient
from scaledapp.failover import Position, Topology
from scaledapp.kube import Kube
from scaledapp.resources.names import ChildNames

NS, NAME = "shop-ns", "shop"
HOME, R0 = "shop-db-0", "shop-db-read-0"
IPS = {HOME: "10.0.0.1", R0: "10.0.0.2"}


class Api:
    """The calls the guard makes, in order, and the pods as its index would show them."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.pods = [self.pod(HOME, "primary"), self.pod(R0, "replica")]

    @staticmethod
    def pod(name: str, role: str) -> dict[str, Any]:
        return {"name": name, "uid": f"uid-{name}", "role": role, "ready": True, "running": True,
                "terminating": False, "ip": IPS[name], "image": "", "args": [], "node": "n", "resources": []}

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None) -> dict[str, Any] | None:
        if kind == "Secret":
            return {"data": {"superuser-password": base64.b64encode(b"pw").decode()}}
        return None

    async def apply_status(self, name: str, namespace: str, status: dict[str, Any], manager: str) -> None:
        self.calls.append(("status", dict(status["database"])))

    async def apply(self, body: dict[str, Any], manager: str) -> dict[str, Any]:
        self.calls.append(("topology", body["data"]))
        return body

    async def label_pod(self, name: str, namespace: str, labels: dict[str, str]) -> bool:
        self.calls.append(("label", name, labels["scaledapp.dev/role"]))
        return True

    async def delete_pod(self, name: str, namespace: str, grace_seconds: int | None = None) -> bool:
        self.calls.append(("delete", name, grace_seconds))
        self.pods = [p for p in self.pods if p["name"] != name]  # gone (its replacement comes later)
        return True

    async def post_event(self, owner: Any, kind: str, reason: str, message: str) -> None:
        self.calls.append(("event", reason))


def scripted(monkeypatch: pytest.MonkeyPatch, api: Api, *, fenced_at: int = 100, replayed: int = 100,
             flushes: Callable[[], list[int]] = list, mark: int | None = 500) -> None:
    """Server methods answering from a script and recording into the same call list (host -> pod name)."""
    pod_of = {ip: name for name, ip in IPS.items()}
    promoted: set[str] = set()

    def record(name: str, answer: Callable[[pgclient.Server], Any]) -> Callable[..., Any]:
        def method(self: pgclient.Server, *args: Any) -> Any:
            api.calls.append((name, pod_of[self.host], *args))
            return answer(self)
        return method

    def position(server: pgclient.Server) -> Position:
        pod = pod_of[server.host]
        if pod == HOME or pod in promoted:
            return Position(False, fenced_at, fenced_at, 1)
        return Position(True, replayed, replayed, 1)

    def promote(server: pgclient.Server) -> None:
        promoted.add(pod_of[server.host])

    for name, answer in {"fence": lambda s: fenced_at, "unfence": lambda s: None, "ensure_slots": lambda s: [],
                         "prepare_promotion": lambda s: None, "promote": promote, "receiving": lambda s: False,
                         "standby_flushes": lambda s: flushes(), "retighten": lambda s: "2026-11-30 18:00:00+00",
                         "sync_mark": lambda s: mark}.items():
        monkeypatch.setattr(pgclient.Server, name, record(name, answer))
    monkeypatch.setattr(pgclient.Server, "position", lambda self: position(self))


def owner(synchronous: bool, database: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": NAME, "namespace": NS, "uid": "u"},
            "spec": {"database": {"synchronous": synchronous, "readReplicas": {"min": 1, "max": 3}}},
            "status": {"database": database or {"primary": HOME, "epoch": 1, "phase": "Healthy"}}}


def guard(api: Api) -> dbguard.Guard:
    return dbguard.Guard(cast(Kube, api), lambda: api.pods, logging.getLogger("test"))


def names(calls: list[tuple[Any, ...]]) -> list[str]:
    return [str(c[0]) for c in calls]


def test_a_synchronous_switchover_records_the_hold_before_the_old_primary_goes_and_promotes_relaxed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = Api()
    scripted(monkeypatch, api)
    asyncio.run(guard(api).switch_over(owner(True), Topology(HOME, 1), R0, "planned"))
    calls, order = api.calls, names(api.calls)
    assert calls[order.index("label")] == ("label", HOME, "replica")  # out of the write Service first
    assert order.index("label") < order.index("fence") < order.index("delete")
    moved = next(c[1] for c in calls if c[0] == "status" and c[1]["primary"] == R0)
    assert moved["epoch"] == 2 and moved["syncHold"] is True and moved["phase"] == "SwitchingOver"
    first_moved = next(i for i, c in enumerate(calls) if c[0] == "status" and c[1]["primary"] == R0)
    assert first_moved < order.index("topology") < order.index("delete") < order.index("promote")
    assert ("delete", HOME, None) in calls  # its grace period: a clean (fast) shutdown, never a kill
    assert ("prepare_promotion", R0, True) in calls and order.index("prepare_promotion") < order.index("promote")
    assert ("label", R0, "primary") in calls and order.index("promote") < len(order) - 1 - order[::-1].index("label")
    last = [c[1] for c in calls if c[0] == "status"][-1]
    assert last["primary"] == R0 and last["lastMove"]["kind"] == "switchover" and last["syncHold"] is True


def test_an_asynchronous_switchover_promotes_without_relaxing_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    api = Api()
    scripted(monkeypatch, api)
    asyncio.run(guard(api).switch_over(owner(False), Topology(HOME, 1), R0, "planned"))
    assert ("prepare_promotion", R0, False) in api.calls
    assert all(c[1]["syncHold"] is False for c in api.calls if c[0] == "status")


def test_a_target_that_does_not_catch_up_aborts_before_anything_moved(monkeypatch: pytest.MonkeyPatch) -> None:
    api = Api()
    scripted(monkeypatch, api, fenced_at=200, replayed=100)
    monkeypatch.setattr(dbguard, "CATCH_UP_SECONDS", 0.3)
    asyncio.run(guard(api).switch_over(owner(True), Topology(HOME, 1), R0, "planned"))
    order = names(api.calls)
    assert "delete" not in order and "promote" not in order and "topology" not in order
    assert ("unfence", HOME) in api.calls and api.calls[-3:][0] == ("label", HOME, "primary")
    assert all(c[1]["primary"] == HOME and c[1]["syncHold"] is False for c in api.calls if c[0] == "status")


def test_the_hold_ends_only_after_retightening_a_mark_and_a_standby_flushed_past_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = Api()
    streaming: list[int] = []
    scripted(monkeypatch, api, flushes=lambda: list(streaming), mark=500)
    g = guard(api)
    held = owner(True, {"primary": HOME, "epoch": 2, "phase": "Healthy", "syncHold": True})
    primary = dbguard.db_pod(api.pods[0])

    def tick() -> None:
        asyncio.run(g.check_sync_hold(held, Topology(HOME, 2), "Healthy", primary, "pw"))

    tick()  # nobody streams: commits stay local
    assert "retighten" not in names(api.calls) and g.sync_hold(held)
    streaming.append(400)
    tick()  # a standby streams: synchronous again
    assert "retighten" in names(api.calls) and g.sync_hold(held)
    tick()  # the mark, once no relaxed statement can still commit
    assert ("sync_mark", HOME, "2026-11-30 18:00:00+00") in api.calls and g.sync_hold(held)
    tick()  # the standby is at 400 < 500: still held
    assert g.sync_hold(held) and "SynchronousRestored" not in [c[1] for c in api.calls if c[0] == "event"]
    streaming[0] = 500
    tick()
    assert not g.sync_hold(held)
    assert ("event", "SynchronousRestored") in api.calls
    assert [c[1] for c in api.calls if c[0] == "status"][-1]["syncHold"] is False


class SteadyApi(Api):
    """Api counting every read (the watch-fed cache is no API call)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    async def get(self, api_version: str, kind: str, name: str, namespace: str | None) -> dict[str, Any] | None:
        self.reads.append(f"{kind}/{name}")
        return await super().get(api_version, kind, name, namespace)

    async def get_cached(self, api_version: str, kind: str, name: str, namespace: str | None) -> None:
        return None


def test_a_healthy_primary_costs_the_guard_no_api_call_and_one_role_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """At steady state the guard reads nothing: the passwords are the Postgres pods' business (their password-sync
    sidecar), and the operator's certificate role is checked once per primary, by a login, not a Secret read."""
    api = SteadyApi()
    login = pgclient.CertLogin("scaledapp_operator", "c.crt", "c.key", "ca.crt")
    monkeypatch.setattr(dbtls, "operator_login", lambda child, namespace, now=None: login)
    pings: list[str] = []
    monkeypatch.setattr(pgclient.Server, "ping", lambda self: pings.append(self.host))
    the_guard = guard(api)
    body = owner(False, {"primary": HOME, "epoch": 1, "phase": "Healthy", "reason": "PrimaryReady"})
    try:
        for _ in range(5):
            asyncio.run(the_guard.tick(body))
    finally:
        dbtls.forget(ChildNames(NAME), NS)
    assert api.reads == []
    assert pings == [IPS[HOME]]
