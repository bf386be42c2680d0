#!/usr/bin/env bash
# Primary-only init: postgres-start.sh runs it (INIT_SCRIPTS) once, when it initialises a data directory,
# against its temporary socket-only server (no image entrypoint is involved).
# It adds what streaming replicas need: a replication role, a pg_hba line that lets it connect from
# other pods (the "host all all all" line does not cover replication connections), and a cap
# on the WAL a lagging or abandoned replication slot may hold.
#
# Environment (read here):
#   PGDATA                  data directory being initialised (set by postgres-start.sh)
#   POSTGRES_USER           superuser initdb created (default: postgres)
#   POSTGRES_DB             database to connect to (default: $POSTGRES_USER)
#   REPLICATION_USER        role replicas connect as (default: replicator)
#   REPLICATION_PASSWORD    its password (required)
#   REPLICATION_HBA_ADDRESS client addresses allowed to replicate (default: all; e.g. the pod CIDR)
#   HBA_AUTH_METHOD         auth method for the replication line (default: scram-sha-256)
#   MAX_SLOT_WAL_KEEP_SIZE  WAL a slot may retain before it is invalidated (default: 1GB)
#   MONITOR_USER, MONITOR_PASSWORD  optional: a pg_monitor role for postgres_exporter
#   OPERATOR_USER           optional: a superuser role with no password, for the operator's client certificate
#                           (pg_hba `hostssl all <it> all cert`: it can log in whatever the passwords are)
#   PGHOST, PGPORT          optional, standard libpq: where the server listens (postgres-start.sh sets them
#                           to its temporary server's socket, with PGPASSWORD; tests to their own server)
# Idempotent: re-running it changes nothing.
set -euo pipefail

: "${PGDATA:?PGDATA must be set}"
: "${REPLICATION_PASSWORD:?REPLICATION_PASSWORD must be set}"
POSTGRES_USER="${POSTGRES_USER:-postgres}"
POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
REPLICATION_USER="${REPLICATION_USER:-replicator}"
REPLICATION_HBA_ADDRESS="${REPLICATION_HBA_ADDRESS:-all}"
HBA_AUTH_METHOD="${HBA_AUTH_METHOD:-scram-sha-256}"
MAX_SLOT_WAL_KEEP_SIZE="${MAX_SLOT_WAL_KEEP_SIZE:-1GB}"

sql() {
  psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" "$@"
}

# Passwords travel as psql variables (:'name' quotes them), never spliced into SQL text.
ensure_role() {  # name password extra-attributes
  sql -v name="$1" -v pw="$2" <<SQL
SELECT format('CREATE ROLE %I WITH LOGIN $3', :'name') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'name')
\gexec
SELECT format('ALTER ROLE %I WITH LOGIN $3 PASSWORD %L', :'name', :'pw')
\gexec
SQL
}

ensure_role "$REPLICATION_USER" "$REPLICATION_PASSWORD" "REPLICATION"
if [ -n "${MONITOR_USER:-}" ]; then
  ensure_role "$MONITOR_USER" "${MONITOR_PASSWORD:?MONITOR_PASSWORD must be set with MONITOR_USER}" ""
  sql -v name="$MONITOR_USER" <<'SQL'
SELECT format('GRANT pg_monitor TO %I', :'name')
\gexec
SQL
fi

if [ -n "${OPERATOR_USER:-}" ]; then
  sql -v name="$OPERATOR_USER" <<'SQL'
SELECT format('CREATE ROLE %I WITH LOGIN SUPERUSER', :'name') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'name')
\gexec
SQL
fi

hba_line="host replication ${REPLICATION_USER} ${REPLICATION_HBA_ADDRESS} ${HBA_AUTH_METHOD}"
if ! grep -qxF "$hba_line" "$PGDATA/pg_hba.conf"; then
  printf '\n# streaming replicas (scaledapp primary-init.sh)\n%s\n' "$hba_line" >> "$PGDATA/pg_hba.conf"
fi

# ALTER SYSTEM cannot run in a transaction block: one statement per psql call.
sql -c "ALTER SYSTEM SET max_slot_wal_keep_size = '${MAX_SLOT_WAL_KEEP_SIZE}'"
# Copied to every replica by pg_basebackup: replicas running reads tell the primary which rows
# they still need, so long reads are not cancelled by vacuum replay.
sql -c "ALTER SYSTEM SET hot_standby_feedback = on"
sql -c "SELECT pg_reload_conf()" >/dev/null
echo "primary-init: replication role '${REPLICATION_USER}', pg_hba replication line, max_slot_wal_keep_size=${MAX_SLOT_WAL_KEEP_SIZE}"
