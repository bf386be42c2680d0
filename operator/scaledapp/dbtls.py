"""Postgres TLS in the shell: the CA and the TLS Secret (read, created and renewed through kube.py), the
operator's own client certificate, and the reload that makes running servers pick renewed files up.

The certificates themselves are made by resources/tls.py (pure). What is kept here, per ScaledApp (keyed by
namespace/name), in memory only: the CA (its key never logged, never in status), the TLS Secret's values as
last written or read (so a deleted Secret is put back with the same values), the operator's client
certificate, and the server certificate the Postgres pods have yet to reload.

The operator's client certificate (CN `scaledapp_operator`, a superuser role that pg_hba accepts by `cert`
only) is minted here from the CA, never stored in the cluster, and written to a private directory (0700,
the key 0600) because libpq reads certificates from files. With it the operator logs in whatever the
passwords in the credentials Secret are.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scaledapp import api, pgclient
from scaledapp.kube import Kube
from scaledapp.reasons import Reason
from scaledapp.resources import names, tls
from scaledapp.resources.common import Manifest
from scaledapp.resources.secrets import REPLICATION_USER, SUPERUSER, SUPERUSER_KEY


@dataclass
class _State:
    ca: tls.KeyPair | None = None
    ca_source: str = ""  # the Secret the CA came from
    server: dict[str, str] | None = None  # the TLS Secret's decoded data, as last written or read
    login: pgclient.CertLogin | None = None
    # When the login is renewed, and the CA certificate it was issued by: judged on these, not by parsing and
    # verifying its certificate at each guard tick (a signature check a second per ScaledApp: a tenth of the
    # operator's CPU at 500, bench/results/scale.md).
    login_renew_at: dt.datetime | None = None
    login_ca: str = ""
    reload_pending: str = ""  # a server certificate written but not yet reloaded by every pod
    role_seen: set[str] = field(default_factory=set)  # host:port of primaries the certificate role logs in to
    role_asked: dict[str, float] = field(default_factory=dict)  # host:port -> monotonic time of the last try


ROLE_RETRY_SECONDS = 60.0
_STATES: dict[str, _State] = {}
_FILES_DIR: Path | None = None


def _state(child: names.ChildNames, namespace: str) -> _State:
    return _STATES.setdefault(f"{namespace}/{child.owner}", _State())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _where(owner: Mapping[str, Any]) -> tuple[names.ChildNames, str]:
    return names.ChildNames(owner["metadata"]["name"]), str(owner["metadata"]["namespace"])


async def _load_ca(kube: Kube, owner: Mapping[str, Any], spec: api.ScaledAppSpec,
                   adopt: Callable[[Manifest], Manifest], now: dt.datetime) -> tls.KeyPair | None:
    child, namespace = _where(owner)
    state = _state(child, namespace)
    user_ca = spec.database.tls.ca_secret_name
    source = user_ca or child.db_ca
    if state.ca is not None and state.ca_source == source and not user_ca:
        # Ours: put a deleted CA Secret back with the same values (a 409 when it is there: one call).
        if await kube.create_once(adopt(tls.ca_secret(child, namespace, state.ca))):
            await kube.post_event(dict(owner), "Warning", Reason.CERTIFICATES_ISSUED,
                                  f"Secret {child.db_ca} was deleted: restored with the same CA")
        return state.ca
    # A new ScaledApp's own CA cannot be there yet: no read (a create that finds one reads it below).
    live = None if api.never_reconciled(owner) and not user_ca else await kube.get("v1", "Secret", source, namespace)
    ca = tls.ca_from_secret_data((live or {}).get("data"))
    if ca is None and user_ca:
        await kube.post_event(dict(owner), "Warning", Reason.CA_INVALID,
                              f"Secret {user_ca} (spec.database.tls.caSecretName) holds no usable CA: tls.crt and "
                              "tls.key, a CA certificate and its EC or RSA key")
        return None
    if ca is None:
        ca = tls.new_ca(f"{child.owner} Postgres CA ({namespace})", now)
        if not await kube.create_once(adopt(tls.ca_secret(child, namespace, ca))):
            # Someone made it between our read and our create: use theirs.
            live = await kube.get("v1", "Secret", source, namespace)
            ca = tls.ca_from_secret_data((live or {}).get("data"))
            if ca is None:
                return None
    state.ca, state.ca_source = ca, source
    return ca


async def ensure(kube: Kube, owner: Mapping[str, Any], spec: api.ScaledAppSpec,
                 adopt: Callable[[Manifest], Manifest], manager: str, now: dt.datetime | None = None) -> bool:
    """The CA and the TLS Secret exist and are good; the TLS Secret is (re)issued when it is missing, signed
    by another CA, short of a Service name, or two thirds through its lifetime. True when it was issued now."""
    now = now or _now()
    ca = await _load_ca(kube, owner, spec, adopt, now)
    if ca is None:
        return False
    child, namespace = _where(owner)
    state = _state(child, namespace)
    if state.server is None and not api.never_reconciled(owner):
        live = await kube.get("v1", "Secret", child.db_tls, namespace)
        data = (live or {}).get("data")
        state.server = tls.decode(data) if data else None
        if state.server and state.server.get(tls.TLS_CERT_KEY):
            # A new operator process cannot know whether a renewal before it was reloaded everywhere: one
            # reload per server once its files hold this certificate (harmless when it was).
            state.reload_pending = state.server[tls.TLS_CERT_KEY]
    why = tls.renew_reason(state.server, ca.cert_pem, tls.server_names(child, namespace), now)
    if why is None and state.server is not None:
        kept = tls.tls_secret(child, namespace, tls.ServerTls(
            state.server[tls.CA_CERT_KEY], tls.KeyPair(state.server[tls.TLS_CERT_KEY], state.server[tls.TLS_KEY_KEY]),
            tls.KeyPair(state.server[tls.REPLICATION_CERT_KEY], state.server[tls.REPLICATION_KEY_KEY])))
        if await kube.create_once(adopt(kept)):
            await kube.post_event(dict(owner), "Warning", Reason.CERTIFICATES_ISSUED,
                                  f"Secret {child.db_tls} was deleted: restored with the same certificates")
        return False
    material = tls.issue_server_tls(ca, child, namespace, REPLICATION_USER, now)
    await kube.apply(adopt(tls.tls_secret(child, namespace, material)), manager)
    first = state.server is None
    state.server = tls.decode(material.as_data())
    if not first:
        state.reload_pending = material.server.cert_pem
    if first and api.never_reconciled(owner):
        return True  # a new ScaledApp's Created Event names the Secret (one call per new ScaledApp fewer)
    expires = material.server.cert.not_valid_after_utc.strftime("%Y-%m-%d")
    await kube.post_event(dict(owner), "Normal", Reason.CERTIFICATES_ISSUED,
                          f"issued the Postgres server and replication certificates in Secret {child.db_tls} "
                          f"({why}); valid until {expires}")
    return True


def _files_dir() -> Path:
    global _FILES_DIR
    if _FILES_DIR is None:
        _FILES_DIR = Path(tempfile.mkdtemp(prefix="scaledapp-pgtls-"))  # 0700
    return _FILES_DIR


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def mint_login(ca: tls.KeyPair, directory: Path, stem: str, now: dt.datetime) -> tuple[pgclient.CertLogin, str]:
    """A client certificate for the operator's role, written with its key and the CA's certificate to
    private files (new names each time, so a connection in progress never reads half of a renewal)."""
    pair = tls.issue(ca, tls.OPERATOR_USER, now)
    serial = format(pair.cert.serial_number, "x")[:16]
    files = {kind: directory / f"{stem}-{serial}.{kind}" for kind in ("crt", "key", "ca")}
    _write_private(files["key"], pair.key_pem)
    _write_private(files["crt"], pair.cert_pem)
    _write_private(files["ca"], ca.cert_pem)
    return pgclient.CertLogin(tls.OPERATOR_USER, str(files["crt"]), str(files["key"]), str(files["ca"])), pair.cert_pem


def operator_login(child: names.ChildNames, namespace: str,
                   now: dt.datetime | None = None) -> pgclient.CertLogin | None:
    """The operator's certificate login to this ScaledApp's Postgres, once its CA is known (the reconciler
    loads it); renewed in memory at two thirds of its lifetime. None before that."""
    now = now or _now()
    state = _state(child, namespace)
    if state.ca is None:
        return None
    if (state.login is None or state.login_renew_at is None or now >= state.login_renew_at
            or state.login_ca != state.ca.cert_pem):
        old = state.login
        state.login, cert_pem = mint_login(state.ca, _files_dir(), f"{namespace}-{child.owner}", now)
        state.login_renew_at, state.login_ca = tls.renewal_time(cert_pem), state.ca.cert_pem
        if old is not None:
            for path in (old.sslcert, old.sslkey, old.sslrootcert):
                Path(path).unlink(missing_ok=True)
    return state.login


async def reload_when_propagated(owner: Mapping[str, Any], kube: Kube, logins: Sequence[pgclient.Server]) -> bool:
    """After a renewal: once every Postgres pod sees the new server certificate in its mounted files (the
    kubelet takes up to about a minute), reload each (pg_reload_conf). Called each guard tick while a
    reload is pending; a pod that does not have the file yet is asked again next tick. True when done."""
    meta = owner["metadata"]
    child = names.ChildNames(meta["name"])
    state = _state(child, meta["namespace"])
    if not state.reload_pending or not logins:
        return False
    done = []
    for server in logins:
        try:
            done.append(await pgclient.run(server.reload_if_cert, state.reload_pending, seconds=5))
        except pgclient.PostgresError:
            done.append(False)
    if not all(done):
        return False
    state.reload_pending = ""
    await kube.post_event(dict(owner), "Normal", Reason.TLS_RELOADED,
                          f"{len(logins)} Postgres server(s) reloaded the renewed certificates")
    return True


async def ensure_operator_role(kube: Kube, owner: Mapping[str, Any], primary: pgclient.Server) -> bool:
    """A primary initialised before the operator's certificate role existed (primary-init.sh creates it now)
    gets it, created as the superuser with the credentials Secret's password. Asked once per primary address
    in the operator's lifetime (one certificate login, no API call); the Secret is read only when the role is
    missing. A failed try is repeated after ROLE_RETRY_SECONDS. True when the role was created now."""
    child, namespace = _where(owner)
    state = _state(child, namespace)
    login, seen = primary.password, f"{primary.host}:{primary.port}"
    if not isinstance(login, pgclient.CertLogin) or seen in state.role_seen:
        return False
    now = time.monotonic()
    if now - state.role_asked.get(seen, float("-inf")) < ROLE_RETRY_SECONDS:
        return False
    state.role_asked[seen] = now
    created = False
    try:
        await pgclient.run(primary.ping, seconds=10)
    except pgclient.PostgresError as exc:
        if "does not exist" not in str(exc):
            raise
        secret = await kube.get("v1", "Secret", child.db_credentials, namespace)
        encoded = ((secret or {}).get("data") or {}).get(SUPERUSER_KEY)
        if not encoded:
            return False  # the reconciler restores the Secret; asked again next tick
        superuser = pgclient.Server(primary.host, base64.b64decode(encoded).decode(), SUPERUSER, port=primary.port)
        created = await pgclient.run(superuser.create_superuser_role, login.user, seconds=10)
    state.role_seen.add(seen)
    return created


def reload_pending(child: names.ChildNames, namespace: str) -> bool:
    return bool(_state(child, namespace).reload_pending)


def forget(child: names.ChildNames, namespace: str) -> None:
    """The ScaledApp is gone: drop what was kept of it (and the operator's files for it)."""
    state = _STATES.pop(f"{namespace}/{child.owner}", None)
    if state is not None and state.login is not None:
        for path in (state.login.sslcert, state.login.sslkey, state.login.sslrootcert):
            Path(path).unlink(missing_ok=True)
