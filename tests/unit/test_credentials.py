"""The credentials Secret of an older version gains the keys it lacks (the Redis passwords), and nothing else.

A stand-in for the API server's side of it (create-if-absent, get, a merge patch conditional on the
resourceVersion) keeps this a unit test; tests/cluster/test_reconciler.py runs the same against a real one.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any, cast

from scaledapp import reconciler
from scaledapp.kube import Kube
from scaledapp.resources import secrets
from scaledapp.resources.names import ChildNames

NS = "shop-ns"
C = ChildNames("shop")
OLD_KEYS = ("superuser-password", "app-password", "replication-password", "exporter-password")


class SecretStore:
    """One namespace's Secrets, as much of Kube as _ensure_credentials uses."""

    def __init__(self, secret: dict[str, Any] | None = None, conflict: bool = False) -> None:
        self.secret = secret
        self.conflict = conflict  # someone else writes the Secret between our get and our patch
        self.patches: list[dict[str, str]] = []
        self.events: list[tuple[str, str]] = []
        self.calls: list[str] = []

    async def create_once(self, body: dict[str, Any]) -> bool:
        self.calls.append("create")
        if self.secret is not None:
            return False
        self.secret = {**body, "metadata": {**body["metadata"], "resourceVersion": "1"}}
        return True

    async def get(self, api_version: str, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        self.calls.append("get")
        return self.secret

    async def add_secret_keys(self, name: str, namespace: str, data: dict[str, str], resource_version: str) -> bool:
        assert self.secret is not None
        if self.conflict or resource_version != self.secret["metadata"]["resourceVersion"]:
            return False
        self.patches.append(data)
        version = str(int(self.secret["metadata"]["resourceVersion"]) + 1)
        self.secret = {**self.secret, "data": {**self.secret["data"], **data},
                       "metadata": {**self.secret["metadata"], "resourceVersion": version}}
        return True

    async def post_event(self, owner: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((reason, message))


def owner(uid: str) -> dict[str, Any]:
    return {"metadata": {"name": C.owner, "namespace": NS, "uid": uid}}


def old_secret() -> dict[str, Any]:
    data = {k: base64.b64encode(f"old-{k}".encode()).decode() for k in OLD_KEYS}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": C.db_credentials, "namespace": NS,
                                                                "resourceVersion": "7"}, "data": data}


def ensure(store: SecretStore, uid: str, *, reconciled: bool = False) -> None:
    body = owner(uid) | ({"status": {"observedGeneration": 1}} if reconciled else {})
    asyncio.run(reconciler._ensure_credentials(cast(Kube, store), body, C, NS))


def decoded(store: SecretStore) -> dict[str, str]:
    assert store.secret is not None
    return {k: base64.b64decode(v).decode() for k, v in store.secret["data"].items()}


def test_an_older_secret_gains_the_redis_passwords_and_keeps_its_own() -> None:
    store = SecretStore(old_secret())
    ensure(store, "uid-upgrade")
    values = decoded(store)
    assert set(values) == set(secrets.KEYS)
    assert {k: values[k] for k in OLD_KEYS} == {k: f"old-{k}" for k in OLD_KEYS}  # never rewritten
    assert [set(p) for p in store.patches] == [{"cache-password", "queue-password"}]  # only what was missing
    assert len(values["cache-password"]) == 48 and values["cache-password"] != values["queue-password"]
    (reason, message), = store.events
    assert reason == "CredentialsGenerated" and "cache-password, queue-password" in message
    assert not any(values["cache-password"] in m for _r, m in store.events)  # names, never values
    # Remembered complete: the next pass changes nothing, and a deleted Secret comes back with these values.
    ensure(store, "uid-upgrade")
    assert len(store.patches) == 1
    store.secret = None
    ensure(store, "uid-upgrade")
    assert decoded(store) == values


def test_a_secret_changed_meanwhile_is_not_patched_and_read_again_next_time() -> None:
    store = SecretStore(old_secret(), conflict=True)
    ensure(store, "uid-conflict")
    assert store.patches == [] and store.events == []
    assert set(decoded(store)) == set(OLD_KEYS)
    store.conflict = False
    ensure(store, "uid-conflict")  # not remembered after the conflict: read and completed now
    assert set(decoded(store)) == set(secrets.KEYS)


def test_a_complete_secret_is_read_once_and_never_patched() -> None:
    store = SecretStore()
    ensure(store, "uid-new")
    assert set(decoded(store)) == set(secrets.KEYS) and store.patches == []
    assert store.events == []  # a new ScaledApp's Created Event names the Secret
    reconciler._KNOWN_CREDENTIALS.pop("uid-new")  # as a restarted operator: knows nothing yet
    ensure(store, "uid-new")
    assert store.patches == [] and reconciler._KNOWN_CREDENTIALS["uid-new"] == store.secret["data"]  # type: ignore[index]


def test_a_secret_this_process_has_seen_is_read_not_created_again() -> None:
    """At every resync the Secret is most likely there: one read, where a create that fails and a read made two."""
    store = SecretStore()
    ensure(store, "uid-seen")
    assert store.calls == ["create"]
    values = decoded(store)
    ensure(store, "uid-seen", reconciled=True)
    assert store.calls == ["create", "get"] and store.patches == []
    store.secret = None  # deleted by hand
    ensure(store, "uid-seen", reconciled=True)
    assert store.calls == ["create", "get", "get", "create"]
    assert decoded(store) == values
    assert [r for r, _m in store.events] == ["CredentialsRestored"]


def test_a_key_removed_by_hand_comes_back_with_the_value_last_seen() -> None:
    store = SecretStore()
    ensure(store, "uid-key")
    values = decoded(store)
    assert store.secret is not None
    del store.secret["data"]["queue-password"]
    ensure(store, "uid-key", reconciled=True)
    assert decoded(store) == values and [set(p) for p in store.patches] == [{"queue-password"}]


def test_credentials_generated_for_a_running_scaledapp_are_told_by_an_event() -> None:
    """Deleted while no operator remembered it: new values, and an Event saying so (a new ScaledApp's are
    named by its Created Event instead)."""
    store = SecretStore()
    ensure(store, "uid-running", reconciled=True)
    assert [r for r, _m in store.events] == ["CredentialsGenerated"]
