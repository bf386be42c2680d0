"""The database credentials Secret: generated once by the shell, never overwritten.

Passwords are arguments, never generated here, so the builder stays pure. The shell creates the Secret
only when it does not exist (see `build_children(passwords=...)`) and afterwards leaves it alone:
regenerating it would lock every pod out of a database initialised with the old passwords.
Pods read the values through `secretKeyRef`; no password is ever an env literal.
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

# Keys in the Secret (one per role's password).
SUPERUSER_KEY = "superuser-password"
APP_KEY = "app-password"
REPLICATION_KEY = "replication-password"
EXPORTER_KEY = "exporter-password"
KEYS = (SUPERUSER_KEY, APP_KEY, REPLICATION_KEY, EXPORTER_KEY)


@dataclass(frozen=True)
class DbPasswords:
    superuser: str
    app: str
    replication: str
    exporter: str

    def as_secret_data(self) -> dict[str, str]:
        raw = {SUPERUSER_KEY: self.superuser, APP_KEY: self.app,
               REPLICATION_KEY: self.replication, EXPORTER_KEY: self.exporter}
        return {k: base64.b64encode(v.encode()).decode() for k, v in raw.items()}

    @classmethod
    def from_secret_data(cls, data: Mapping[str, str]) -> DbPasswords:
        """Decode a live Secret's `data` (base64), e.g. to check it is complete."""
        def get(key: str) -> str:
            return base64.b64decode(data[key]).decode()
        return cls(superuser=get(SUPERUSER_KEY), app=get(APP_KEY),
                   replication=get(REPLICATION_KEY), exporter=get(EXPORTER_KEY))


def generate_passwords() -> DbPasswords:
    """Fresh random passwords (the shell calls this once, when the Secret does not exist yet).

    Hex only: the values are spliced into libpq key=value DSNs and a shell script, where quotes,
    spaces or URL metacharacters would need escaping.
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
