"""The sidecars of every Postgres pod (resources/database.py builds the pods): postgres_exporter, the
`pgpass-writer` that keeps the exporter's pgpass file in step with the credentials Secret, and `password-sync`,
which makes the database take the Secret's passwords. docs/failure.md tells why the pods, not the operator,
follow an edited Secret."""

from __future__ import annotations

from scaledapp import api
from scaledapp.resources import names, tls
from scaledapp.resources.common import (
    POSTGRES_EXPORTER_PORT,
    POSTGRES_PORT,
    Manifest,
    container_security_context,
    env_value,
    resources,
    sidecar_loop,
)
from scaledapp.resources.pg_layout import (
    PASSWORD_SYNC,
    QUERIES_DIR,
    QUERIES_KEY,
    SCRIPTS_DIR,
    SOCKET_DIR,
    TLS_DIR,
)
from scaledapp.resources.secrets import (
    APP_KEY,
    APP_USER,
    EXPORTER_KEY,
    EXPORTER_USER,
    REPLICATION_KEY,
    REPLICATION_USER,
    SUPERUSER,
    SUPERUSER_KEY,
)

CREDENTIALS_DIR = "/etc/postgres-credentials"  # the exporter's key of the credentials Secret
PGPASS_DIR = "/run/postgres-exporter"  # memory emptyDir: the exporter's pgpass file
PGPASS_FILE = "pgpass"
PGPASS_SECONDS = 5
PASSWORDS_DIR = "/etc/postgres-passwords"  # every Postgres role's key of the credentials Secret (password-sync)
PASSWORD_SYNC_SECONDS = 5
# While the file's password does not log in on a replica (its primary has not set it yet), or setting it failed,
# the sidecar tries again after this many periods: not a refused login every period meanwhile.
PASSWORD_RETRY_LOOPS = 6


def pgpass_script(password_file: str = f"{CREDENTIALS_DIR}/{EXPORTER_KEY}", pgpass_dir: str = PGPASS_DIR,
                  user: str = EXPORTER_USER, period: float = PGPASS_SECONDS) -> str:
    """The pgpass-writer sidecar: the mounted password as a pgpass line for the exporter's role (`:` and `\\`
    escaped), written afresh (0600, then renamed into place) whenever the mounted file changes. The value goes
    through printf (a shell builtin) and sed's stdin, never an argv."""
    target = f"{pgpass_dir}/{PGPASS_FILE}"
    return sidecar_loop('last=""', f"""\
  p="$(cat {password_file} 2>/dev/null)"
  if [ -n "$p" ] && [ "$p" != "$last" ]; then
    esc="$(printf '%s' "$p" | sed 's/[\\\\:]/\\\\&/g')"
    if (umask 077; printf '*:*:*:{user}:%s\\n' "$esc" > {target}.new) && mv -f {target}.new {target}; then
      [ -z "$last" ] || echo "the exporter's password changed in the Secret: {target} follows it"
      last="$p"
    fi
  fi
""", period)


# Secret key -> the role whose password it is: every Postgres role's (the Redis passwords are the Redis pods').
PASSWORD_ROLES = (
    (SUPERUSER_KEY, SUPERUSER),
    (APP_KEY, APP_USER),
    (REPLICATION_KEY, REPLICATION_USER),
    (EXPORTER_KEY, EXPORTER_USER),
)


def password_sync_script(password_dir: str = PASSWORDS_DIR, sql_file: str = f"{SCRIPTS_DIR}/{PASSWORD_SYNC}",
                         socket_dir: str = SOCKET_DIR, port: int = POSTGRES_PORT, login: str = SUPERUSER,
                         period: float = PASSWORD_SYNC_SECONDS) -> str:
    """The password-sync sidecar of every Postgres pod: the database takes the mounted Secret's passwords.

    Each period it compares every mounted password file with the one it last saw agreed (a checksum, not the
    value). Only when a file changed, and once at start: does the file's password log its role in over TCP,
    as a client does (TLS, PGPASSWORD in psql's environment)? If not, `password-sync.sql` runs on the Unix
    socket as the container's own user (`login`, pg_hba `peer`: no password involved, so no edit can lock it
    out) and sets the role's password from the file, on the pod holding the write role only (not in
    recovery): a replica gets it by replication, and its next test login agrees. So after a failover the new
    primary acts on whatever its predecessor had not set. Values never reach an argv or the output."""
    tcp = f"host=127.0.0.1 port={port} dbname=postgres connect_timeout=5 sslmode=require"
    blocks = "".join(f"""\
  sum="$(cksum 2>/dev/null < {password_dir}/{key})"
  if [ -n "$sum" ] && [ "$sum" != "$agreed_{role}" ] && [ "$tick" -ge "$retry_{role}" ]; then
    agree {password_dir}/{key} {role}; rc=$?
    if [ "$rc" -eq 0 ]; then agreed_{role}="$sum"
    elif [ "$rc" -eq 2 ]; then retry_{role}=$((tick + {PASSWORD_RETRY_LOOPS})); fi
  fi
""" for key, role in PASSWORD_ROLES)
    state = " ".join(f'agreed_{role}="" retry_{role}=0' for _, role in PASSWORD_ROLES)
    prelude = f"""\
# 0: the database takes the file's password (now); 1: not known yet (server not up); 2: wait (a replica, or failed)
agree() {{
  # Over TCP: the socket-only server that initialises a new primary is not the one to judge.
  pg_isready -q -h 127.0.0.1 -p {port} || return 1
  p="$(cat "$1" 2>/dev/null)"
  [ -n "$p" ] || return 1
  if PGPASSWORD="$p" psql -Xqtw "{tcp} user=$2" -c 'select 1' >/dev/null 2>&1; then p=""; return 0; fi
  p=""
  out="$(psql -Xqtw -v ON_ERROR_STOP=1 -v VERBOSITY=terse -v role="$2" -v file="$1" \\
    -h {socket_dir} -p {port} -U {login} -d postgres -f {sql_file} 2>&1)"
  case "$out" in
    set) echo "role $2: the mounted password did not log in: set it on this primary (ALTER ROLE)"; return 0 ;;
    absent) echo "role $2: no such role here: nothing to set"; return 0 ;;
    replica) return 2 ;;
  esac
  echo "role $2: could not set the mounted password: $(printf '%s\\n' "$out" | head -n 1)"
  return 2
}}
tick=0 {state}"""
    return sidecar_loop(prelude, blocks + "  tick=$((tick + 1))\n", period)


def exporter_dsn(tls_dir: str = TLS_DIR, host: str = "127.0.0.1", port: int = POSTGRES_PORT) -> str:
    """TLS like every other client (pg_hba has no plain-text line), checked against the CA (the name is
    127.0.0.1, which the server certificate does not carry: verify-ca). No password: lib/pq then reads
    PGPASSFILE, at each new connection."""
    return (f"postgresql://{EXPORTER_USER}@{host}:{port}/postgres?sslmode=verify-ca"
            f"&sslrootcert={tls_dir}/{tls.CA_CERT_KEY}")


def containers(image: str) -> list[Manifest]:
    """postgres_exporter, the sidecar that keeps its pgpass file in step with the Secret, and the one that makes
    the database take the Secret's passwords (password_sync_script)."""
    exporter: Manifest = {
        "name": "postgres-exporter",
        "image": api.POSTGRES_EXPORTER_IMAGE,
        "args": [f"--extend.query-path={QUERIES_DIR}/{QUERIES_KEY}"],
        "env": [
            env_value("DATA_SOURCE_NAME", exporter_dsn()),
            env_value("PGPASSFILE", f"{PGPASS_DIR}/{PGPASS_FILE}"),
        ],
        "ports": [{"name": "metrics", "containerPort": POSTGRES_EXPORTER_PORT, "protocol": "TCP"}],
        "resources": resources("10m", "32Mi", limit_cpu="200m", limit_memory="128Mi"),
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "scripts", "mountPath": QUERIES_DIR, "readOnly": True},
                         {"name": "tls", "mountPath": TLS_DIR, "readOnly": True},
                         {"name": "pgpass", "mountPath": PGPASS_DIR, "readOnly": True}],
    }
    writer: Manifest = {
        "name": "pgpass-writer",
        "image": image,  # the Postgres image: sh, cat, sed, mv
        "command": ["sh", "-c", pgpass_script()],
        "resources": resources("5m", "16Mi", limit_cpu="50m", limit_memory="32Mi"),
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "exporter-credentials", "mountPath": CREDENTIALS_DIR, "readOnly": True},
                         {"name": "pgpass", "mountPath": PGPASS_DIR}],
    }
    sync: Manifest = {
        "name": "password-sync",
        "image": image,  # the Postgres image: sh, cksum, cat, psql, pg_isready
        "command": ["sh", "-c", password_sync_script()],
        "resources": resources("5m", "16Mi", limit_cpu="100m", limit_memory="64Mi"),
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "passwords", "mountPath": PASSWORDS_DIR, "readOnly": True},
                         {"name": "scripts", "mountPath": SCRIPTS_DIR, "readOnly": True},
                         # The server's Unix socket (pg_hba `peer` for the container's own user).
                         {"name": "run", "mountPath": SOCKET_DIR}],
    }
    return [exporter, writer, sync]


def volumes(child: names.ChildNames) -> list[Manifest]:
    """The pod volumes only the sidecars mount."""
    return [
        # The exporter's password only, for pgpass-writer; the pgpass file it writes, in memory.
        {"name": "exporter-credentials", "secret": {"secretName": child.db_credentials, "defaultMode": 0o440,
                                                    "items": [{"key": EXPORTER_KEY, "path": EXPORTER_KEY}]}},
        {"name": "pgpass", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        # Every Postgres role's password (not the Redis ones), for password-sync only.
        {"name": "passwords", "secret": {"secretName": child.db_credentials, "defaultMode": 0o440,
                                         "items": [{"key": key, "path": key} for key, _ in PASSWORD_ROLES]}},
    ]
