#!/usr/bin/env bash
# The app's own login: owner of the app database (so it can create its schema), no other rights.
# Runs after primary-init.sh, on a primary's temporary server (postgres-start.sh INIT_SCRIPTS).
#
# Environment (read here):
#   POSTGRES_USER       superuser to connect as (default: postgres)
#   POSTGRES_DB         the app database (default: $POSTGRES_USER)
#   APP_USER            the app's role (required)
#   APP_PASSWORD        its password (required)
#   PGHOST, PGPORT      optional, standard libpq: where the server listens
# Idempotent: re-running it changes nothing. The password travels as a psql variable.
set -euo pipefail

: "${APP_USER:?APP_USER must be set}"
: "${APP_PASSWORD:?APP_PASSWORD must be set}"
POSTGRES_USER="${POSTGRES_USER:-postgres}"
POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"

psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v name="$APP_USER" -v pw="$APP_PASSWORD" -v db="$POSTGRES_DB" <<'SQL'
SELECT format('CREATE ROLE %I WITH LOGIN', :'name') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'name')
\gexec
SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L', :'name', :'pw')
\gexec
SELECT format('ALTER DATABASE %I OWNER TO %I', :'db', :'name')
\gexec
SQL
echo "app-role: role '$APP_USER' owns database '$POSTGRES_DB'"
