"""The credentials Secret: every generated password of a ScaledApp, generated once by the shell, never
overwritten.

It holds the Postgres roles' passwords and the two Redis passwords (cache and queue). Passwords are
arguments, never generated here, so the builder stays pure. The shell creates the Secret only when it does
not exist (see `build_children(passwords=...)`) and afterwards leaves it alone: regenerating it would lock
every pod out of a database initialised with the old passwords. A Secret from before a key existed gets
that key added and nothing else (the reconciler's `_ensure_credentials`). Pods read the values through
`secretKeyRef`; no password is ever an env literal.

One password per Redis, not one for both: a client of only one of them (the cache's exporter today; an
outside reader of the queue tomorrow) then holds only that one, and each can be changed without the other.
Every pod that talks to both (app, workers) gets both; a second key costs nothing else.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, fields

from scaledapp.resources import names
from scaledapp.resources.common import Manifest, object_meta

# Database roles. The superuser is the image's default; the others are created by primary-init.sh.
SUPERUSER = "postgres"
APP_USER = "app"
REPLICATION_USER = "replicator"
EXPORTER_USER = "exporter"
DATABASE = "app"

# Keys in the Secret (one per role's password, one per Redis).
SUPERUSER_KEY = "superuser-password"
APP_KEY = "app-password"
REPLICATION_KEY = "replication-password"
EXPORTER_KEY = "exporter-password"
CACHE_KEY = "cache-password"  # the cache Redis (requirepass)
QUEUE_KEY = "queue-password"  # the queue Redis (requirepass)
KEYS = (SUPERUSER_KEY, APP_KEY, REPLICATION_KEY, EXPORTER_KEY, CACHE_KEY, QUEUE_KEY)


@dataclass(frozen=True)
class DbPasswords:
    """Every password in the credentials Secret: the Postgres roles' and the two Redis'."""

    superuser: str
    app: str
    replication: str
    exporter: str
    cache: str
    queue: str

    def _by_key(self) -> dict[str, str]:
        return {SUPERUSER_KEY: self.superuser, APP_KEY: self.app, REPLICATION_KEY: self.replication,
                EXPORTER_KEY: self.exporter, CACHE_KEY: self.cache, QUEUE_KEY: self.queue}

    def as_secret_data(self) -> dict[str, str]:
        return {k: base64.b64encode(v.encode()).decode() for k, v in self._by_key().items()}

    @classmethod
    def from_secret_data(cls, data: Mapping[str, str]) -> DbPasswords:
        """Decode a live Secret's `data` (base64), e.g. to check it is complete."""
        def get(key: str) -> str:
            return base64.b64decode(data[key]).decode()
        return cls(superuser=get(SUPERUSER_KEY), app=get(APP_KEY), replication=get(REPLICATION_KEY),
                   exporter=get(EXPORTER_KEY), cache=get(CACHE_KEY), queue=get(QUEUE_KEY))


def generate_passwords() -> DbPasswords:
    """Fresh random passwords (the shell calls this once, when the Secret does not exist yet).

    Hex only: the values are spliced into libpq key=value DSNs, redis:// URLs, a Redis config line and a
    shell script, where quotes, spaces or URL metacharacters would need escaping.
    """
    return DbPasswords(**{f.name: secrets.token_hex(24) for f in fields(DbPasswords)})


def credentials_secret(child: names.ChildNames, namespace: str, passwords: DbPasswords) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": object_meta(child.owner, namespace, child.db_credentials, "db-write", "credentials"),
        "type": "Opaque",
        # `data`, not `stringData`: stringData is write-only and server-side apply keeps re-diffing it.
        "data": passwords.as_secret_data(),
    }
