"""dbtls.ensure against an in-memory API: the CA and the TLS Secret are made once, put back when deleted,
re-issued when due (and then a reload is pending), and the operator's certificate login is minted privately."""

from __future__ import annotations

import asyncio
import datetime as dt
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from scaledapp import api, dbtls
from scaledapp.kube import Kube
from scaledapp.resources import names, tls

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
OWNER = {"metadata": {"name": "shop", "namespace": "prod", "uid": "u1"}, "status": {"observedGeneration": 1}}
CHILD = names.ChildNames("shop")


class Api:
    """The calls dbtls makes, on a dict of Secrets; Events are kept as (reason, message)."""

    def __init__(self) -> None:
        self.secrets: dict[str, dict[str, Any]] = {}
        self.events: list[tuple[str, str]] = []
        self.applied: list[str] = []
        self.reads: list[str] = []

    async def get(self, api_version: str, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        self.reads.append(name)
        return self.secrets.get(name)

    async def create_once(self, body: dict[str, Any]) -> bool:
        if body["metadata"]["name"] in self.secrets:
            return False
        self.secrets[body["metadata"]["name"]] = body
        return True

    async def apply(self, body: dict[str, Any], manager: str) -> dict[str, Any]:
        self.secrets[body["metadata"]["name"]] = body
        self.applied.append(body["metadata"]["name"])
        return body

    async def post_event(self, owner: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((str(reason), message))


@pytest.fixture(autouse=True)
def fresh() -> Iterator[None]:
    dbtls.forget(CHILD, "prod")
    yield
    dbtls.forget(CHILD, "prod")


def ensure(fake: Api, spec: api.ScaledAppSpec | None = None, now: dt.datetime = NOW,
           owner: dict[str, Any] = OWNER) -> bool:
    return asyncio.run(dbtls.ensure(cast(Kube, fake), owner, spec or api.ScaledAppSpec(), lambda m: m,
                                    "scaledapp-reconciler", now=now))


def test_a_new_scaledapps_first_reconcile_reads_no_secret_it_cannot_have_yet() -> None:
    """At 500 new ScaledApps two GETs each that could only find nothing; a CA made meanwhile is still used."""
    new = {"metadata": OWNER["metadata"]}
    fake = Api()
    assert ensure(fake, owner=new) is True
    assert fake.reads == [] and {CHILD.db_ca, CHILD.db_tls} <= set(fake.secrets)
    dbtls.forget(CHILD, "prod")
    theirs = fake.secrets[CHILD.db_ca]
    ensure(fake, owner=new)  # the same new ScaledApp again (a retried first reconcile): the CA that is there
    assert fake.reads == [CHILD.db_ca] and fake.secrets[CHILD.db_ca] is theirs


def test_the_ca_and_the_tls_secret_are_made_once_and_put_back_when_deleted() -> None:
    fake = Api()
    assert ensure(fake) is True
    ca = tls.ca_from_secret_data(fake.secrets[CHILD.db_ca]["data"])
    assert ca is not None
    issued = tls.decode(fake.secrets[CHILD.db_tls]["data"])
    assert tls.renew_reason(issued, ca.cert_pem, tls.server_names(CHILD, "prod"), NOW) is None
    assert not dbtls.reload_pending(CHILD, "prod")  # nothing ran the old certificate
    # At rest: nothing issued again.
    assert ensure(fake) is False and fake.applied == [CHILD.db_tls]
    # Deleted: back with the same values (no new CA, no new certificates).
    del fake.secrets[CHILD.db_tls], fake.secrets[CHILD.db_ca]
    assert ensure(fake) is False
    assert tls.decode(fake.secrets[CHILD.db_tls]["data"]) == issued
    assert tls.ca_from_secret_data(fake.secrets[CHILD.db_ca]["data"]) == ca
    assert sum("was deleted" in m for _, m in fake.events) == 2
    # No Event carries a key.
    assert not any("PRIVATE" in m for _, m in fake.events)


def test_certificates_are_renewed_at_two_thirds_and_then_a_reload_is_pending() -> None:
    fake = Api()
    ensure(fake)
    first = tls.decode(fake.secrets[CHILD.db_tls]["data"])
    assert ensure(fake, now=NOW + dt.timedelta(days=59)) is False
    assert ensure(fake, now=NOW + dt.timedelta(days=61)) is True
    renewed = tls.decode(fake.secrets[CHILD.db_tls]["data"])
    assert renewed[tls.TLS_CERT_KEY] != first[tls.TLS_CERT_KEY] and renewed[tls.CA_CERT_KEY] == first[tls.CA_CERT_KEY]
    assert dbtls.reload_pending(CHILD, "prod")
    assert any(r == "CertificatesIssued" and "due for renewal" in m for r, m in fake.events)


def test_a_new_operator_process_reloads_the_servers_once() -> None:
    """It cannot know whether a renewal before it reached every server: one reload once the files match."""
    fake = Api()
    ensure(fake)
    assert not dbtls.reload_pending(CHILD, "prod")
    dbtls.forget(CHILD, "prod")  # the operator restarts
    assert ensure(fake) is False
    assert dbtls.reload_pending(CHILD, "prod")


def test_a_user_ca_signs_the_certificates_and_a_bad_one_is_reported() -> None:
    fake = Api()
    mine = tls.new_ca("corp", NOW)
    fake.secrets["corp-ca"] = {"data": tls.encode({"tls.crt": mine.cert_pem, "tls.key": mine.key_pem})}
    spec = api.ScaledAppSpec.model_validate({"database": {"tls": {"caSecretName": "corp-ca"}}})
    assert ensure(fake, spec) is True
    assert CHILD.db_ca not in fake.secrets  # no CA of our own
    assert tls.signed_by(tls.decode(fake.secrets[CHILD.db_tls]["data"])[tls.TLS_CERT_KEY], mine.cert_pem)
    dbtls.forget(CHILD, "prod")
    fake.secrets["corp-ca"] = {"data": {"tls.crt": fake.secrets["corp-ca"]["data"]["tls.crt"]}}  # no key
    assert ensure(fake, spec) is False
    assert fake.events[-1][0] == "CAInvalid"


def test_the_operator_login_is_minted_from_the_ca_into_private_files() -> None:
    assert dbtls.operator_login(CHILD, "prod", NOW) is None  # no CA known yet
    ensure(Api())
    login = dbtls.operator_login(CHILD, "prod", NOW)
    assert login is not None and login.user == tls.OPERATOR_USER
    key = Path(login.sslkey)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert dbtls.operator_login(CHILD, "prod", NOW) == login  # kept
    renewed = dbtls.operator_login(CHILD, "prod", NOW + dt.timedelta(days=61))
    assert renewed is not None and renewed != login and not key.exists()


def test_the_operator_login_follows_a_new_ca() -> None:
    fake = Api()
    ensure(fake)
    login = dbtls.operator_login(CHILD, "prod", NOW)
    assert login is not None
    mine = tls.new_ca("corp", NOW)
    fake.secrets["corp-ca"] = {"data": tls.encode({"tls.crt": mine.cert_pem, "tls.key": mine.key_pem})}
    ensure(fake, api.ScaledAppSpec.model_validate({"database": {"tls": {"caSecretName": "corp-ca"}}}))
    moved = dbtls.operator_login(CHILD, "prod", NOW)
    assert moved is not None and moved != login and not Path(login.sslcert).exists()
    assert tls.signed_by(Path(moved.sslcert).read_text(), mine.cert_pem)
    assert Path(moved.sslrootcert).read_text() == mine.cert_pem
    assert dbtls.operator_login(CHILD, "prod", NOW) == moved  # kept
