"""The credentials Secret is the source of truth: the database's roles are made to agree with it.

The failover guard calls `sync` every `CHECK_SECONDS` while the primary is Ready. It reads the Secret by
name; when its values differ from the ones last made to agree (a fingerprint kept in memory, never the
values), it asks the primary which roles the Secret's passwords do not log in (one TLS login per role) and
sets those with ALTER ROLE ... PASSWORD, logged in with the operator's certificate, which does not depend
on any password. After an operator restart nothing is remembered, so the first check asks the database.

So an edited password (a rotation by hand) and a Secret the reconciler had to generate anew (deleted while
no operator remembered the values) both end with the database agreeing with the Secret. Running clients
are not locked out: a session keeps working after ALTER ROLE, and the app and the workers read their
password from the mounted Secret at each new connection (the kubelet updates the file within about a
minute). Values are never logged and never in Events: only role names.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Mapping
from typing import Any

from scaledapp import pgclient
from scaledapp.kube import Kube
from scaledapp.reasons import Reason
from scaledapp.resources import names, secrets

# The kubelet brings an edited Secret into the pods' files within about a minute (its sync period plus its
# cache): checking more often only makes the database agree before the clients can use the new value, at one
# GET per ScaledApp each time (at 500 ScaledApps every 30 s, a seventh of the operator's calls: bench/results/
# scale.md). The Secret cannot be watched: the operator has no list or watch on Secrets (least privilege).
CHECK_SECONDS = 60.0

# Secret key -> the role whose password it is.
ROLE_OF_KEY = {
    secrets.SUPERUSER_KEY: secrets.SUPERUSER,
    secrets.APP_KEY: secrets.APP_USER,
    secrets.REPLICATION_KEY: secrets.REPLICATION_USER,
    secrets.EXPORTER_KEY: secrets.EXPORTER_USER,
}

_AGREED: dict[str, str] = {}  # namespace/name -> fingerprint of the values the database agrees with
_CHECKED: dict[str, float] = {}  # namespace/name -> monotonic time of the last check
_ROLE_SEEN: set[str] = set()  # namespace/name@host:port of primaries the operator's certificate role logs in to


def fingerprint(passwords: Mapping[str, str]) -> str:
    """A digest of the values (to notice a change without keeping them)."""
    digest = hashlib.sha256()
    for key in sorted(passwords):
        digest.update(f"{key}\0{passwords[key]}\0".encode())
    return digest.hexdigest()


def wanted_passwords(data: Mapping[str, str] | None) -> dict[str, str] | None:
    """role -> password from the Secret's `data` (base64); None while the Secret is missing or incomplete."""
    if not data or any(key not in data for key in ROLE_OF_KEY):
        return None
    return {role: base64.b64decode(data[key]).decode() for key, role in ROLE_OF_KEY.items()}


def due(owner: Mapping[str, Any], now: float | None = None) -> bool:
    key = f"{owner['metadata']['namespace']}/{owner['metadata']['name']}"
    return (now if now is not None else time.monotonic()) - _CHECKED.get(key, float("-inf")) >= CHECK_SECONDS


async def sync(kube: Kube, owner: Mapping[str, Any], primary: pgclient.Server) -> list[str]:
    """Make the roles' passwords agree with the Secret; returns the roles changed (names only)."""
    meta = owner["metadata"]
    key = f"{meta['namespace']}/{meta['name']}"
    _CHECKED[key] = time.monotonic()
    child = names.ChildNames(meta["name"])
    secret = await kube.get("v1", "Secret", child.db_credentials, meta["namespace"])
    wanted = wanted_passwords((secret or {}).get("data"))
    if wanted is None:
        return []  # the reconciler restores or generates it; the next check makes the database agree
    await _ensure_operator_role(kube, owner, primary, wanted.get(secrets.SUPERUSER, ""))
    agreed = fingerprint(wanted)
    if _AGREED.get(key) == agreed:
        return []
    stale = {}
    for role, password in wanted.items():
        if not await pgclient.run(primary.password_works, role, password, seconds=10):
            stale[role] = password
    changed = await pgclient.run(primary.set_passwords, stale, seconds=10) if stale else []
    _AGREED[key] = agreed
    if changed:
        await kube.post_event(dict(owner), "Normal", Reason.CREDENTIALS_SYNCED,
                              f"the database now agrees with Secret {child.db_credentials}: new password for "
                              f"{', '.join(sorted(changed))}")
    return changed


async def _ensure_operator_role(kube: Kube, owner: Mapping[str, Any], primary: pgclient.Server,
                                superuser_password: str) -> None:
    """A primary initialised before the operator's certificate role existed (primary-init.sh creates it now)
    gets it once, created as the superuser with the Secret's password."""
    login = primary.password
    seen = f"{owner['metadata']['namespace']}/{owner['metadata']['name']}@{primary.host}:{primary.port}"
    if not isinstance(login, pgclient.CertLogin) or seen in _ROLE_SEEN:
        return
    try:
        await pgclient.run(primary.ping, seconds=10)
    except pgclient.PostgresError as exc:
        if "does not exist" not in str(exc):
            raise
        superuser = pgclient.Server(primary.host, superuser_password, secrets.SUPERUSER, port=primary.port)
        if await pgclient.run(superuser.create_superuser_role, login.user, seconds=10):
            await kube.post_event(dict(owner), "Normal", Reason.CREDENTIALS_SYNCED,
                                  f"created the role {login.user} the operator's certificate logs in as")
    _ROLE_SEEN.add(seen)


def forget(owner: Mapping[str, Any]) -> None:
    key = f"{owner['metadata']['namespace']}/{owner['metadata']['name']}"
    _AGREED.pop(key, None)
    _CHECKED.pop(key, None)
    _ROLE_SEEN.difference_update({s for s in _ROLE_SEEN if s.startswith(f"{key}@")})
