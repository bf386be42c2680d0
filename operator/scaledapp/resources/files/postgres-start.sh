#!/usr/bin/env bash
# Start Postgres in a pod, primary or streaming replica, without any image entrypoint. All it needs of the
# image: the server tools (postgres, initdb, pg_ctl, psql) on PATH and a user with a passwd entry (initdb
# asks for one): uid 999 `postgres` in the official image and in a Debian-built one alike.
#
# Primary:
#   first boot          initdb into "$PGDATA.initdb" beside PGDATA (superuser and password from the
#                       environment; scram-sha-256 for every connection, the local socket too), a temporary
#                       server on the socket only, POSTGRES_DB, INIT_SCRIPTS in order; stop it, write the
#                       completion marker, and only then rename the directory to PGDATA. A PGDATA made here
#                       is therefore always complete, and no client ever reached a half-made one.
#   half-initialised    "$PGDATA.initdb" left behind (PG_VERSION, no marker) is a first boot that died (OOM
#                       kill, node loss, a failing script). Nothing ever listened on it, so nothing was ever
#                       acknowledged: it is removed and initialised again, with a warning in the log.
#   no marker in PGDATA the directory was not made here (the official image's entrypoint, an older
#                       operator): it may hold acknowledged writes, so it is never wiped. The idempotent init
#                       steps run again on a temporary server, then the marker is written.
# Replica: replica-bootstrap.sh (the initContainer) seeded PGDATA; this only starts the standby, and never
# runs initdb (an unseeded replica initialised as a primary would serve an empty database).
#
# Then postgres runs as this script's child, listening on LISTEN_ADDRESSES (an image's default may be
# localhost only) with its socket in SOCKET_DIR (not wherever the image's build put it), plus the arguments.
#
# Shutdown: this script stays the container's main process and turns SIGTERM (what the kubelet and every
# runtime send) into SIGINT, Postgres' "fast" shutdown: clients are disconnected, a checkpoint is written,
# it exits. SIGTERM itself would be a "smart" shutdown that waits for every client to leave, and pooled
# connections never do: the pod would hang for its whole grace period, be killed and need crash recovery.
# The official image gets the same from STOPSIGNAL SIGINT. A preStop `pg_ctl stop -m fast` was not chosen:
# only a kubelet runs hooks (not a runtime's own stop, nor the loopback tests), and the hook's time comes
# out of the same grace period.
#
# Environment (read here):
#   PGDATA              data directory (required); for a primary a subdirectory of the volume, not its mount point
#   POSTGRES_ROLE       primary or replica (default: primary); overridden by the topology when TOPOLOGY_FILE is set
#   TOPOLOGY_FILE       file naming the pod that holds the write role (the db-topology ConfigMap); absent or
#                       empty: HOME_PRIMARY holds it. This pod (POD_NAME) is the primary iff it is named.
#   POD_NAME, HOME_PRIMARY  see TOPOLOGY_FILE
#   POSTGRES_USER       superuser initdb creates (default: postgres)
#   POSTGRES_PASSWORD   its password (required to initialise a primary)
#   POSTGRES_DB         database created at initialisation (default: $POSTGRES_USER)
#   INIT_SCRIPTS        bash scripts (space-separated paths) run in order on a primary's temporary server,
#                       with PGDATA, PGHOST, PGPORT and PGPASSWORD set for them
#   SOCKET_DIR          Unix socket directory, created if missing (default: /var/run/postgresql)
#   PGPORT              port (default: 5432)
#   LISTEN_ADDRESSES    addresses to listen on (default: *)
# Arguments: options for the server (e.g. -c wal_level=replica), given to the final server only.
set -euo pipefail

: "${PGDATA:?PGDATA must be set}"
PGDATA="${PGDATA%/}"
POSTGRES_ROLE="${POSTGRES_ROLE:-primary}"
if [ -n "${TOPOLOGY_FILE:-}" ]; then
  holder="$(cat "$TOPOLOGY_FILE" 2>/dev/null || true)"
  holder="${holder:-${HOME_PRIMARY:-}}"
  if [ "$holder" = "${POD_NAME:-}" ]; then POSTGRES_ROLE=primary; else POSTGRES_ROLE=replica; fi
fi
POSTGRES_USER="${POSTGRES_USER:-postgres}"
POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
INIT_SCRIPTS="${INIT_SCRIPTS:-}"
SOCKET_DIR="${SOCKET_DIR:-/var/run/postgresql}"
PORT="${PGPORT:-5432}"
LISTEN_ADDRESSES="${LISTEN_ADDRESSES:-*}"
STAGING="$PGDATA.initdb"
MARKER="scaledapp-primary-initialised"

log() { echo "postgres-start: $*" >&2; }
warn() { echo "postgres-start: WARNING: $*" >&2; }

mkdir -p "$SOCKET_DIR"
[ -w "$SOCKET_DIR" ] || { log "socket directory $SOCKET_DIR is not writable"; exit 1; }

# ------------------------------------------------------------------------------------ initialisation

temp_data=""  # the data directory of the running temporary server, if any

# Never leave a temporary server behind: a failing step or a stop request during initialisation ends here.
stop_temp_server() {
  if [ -n "$temp_data" ]; then
    pg_ctl -D "$temp_data" -m fast -w -t 120 stop >&2 || true
    temp_data=""
  fi
}
trap stop_temp_server EXIT
# bash runs a trap once the current step returns; the next boot redoes an unfinished initialisation.
trap 'log "stop requested during initialisation"; exit 143' TERM INT

# What the init scripts (and psql here) need to reach the temporary server.
with_init_env() {
  PGDATA="$temp_data" PGHOST="$SOCKET_DIR" PGPORT="$PORT" PGPASSWORD="$POSTGRES_PASSWORD" "$@"
}

run_init_steps() {  # data directory
  : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set to initialise a primary}"
  # Socket only: no client outside this container can connect to a database that is not ready yet.
  if ! pg_ctl -D "$1" -w -t 120 -o "-c listen_addresses='' -c unix_socket_directories='$SOCKET_DIR' -p $PORT" \
      start >&2; then
    log "the temporary server did not start on $1"
    exit 1
  fi
  temp_data="$1"
  # CREATE DATABASE cannot run in a transaction: \gexec runs it as a statement of its own.
  with_init_env psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --username "$POSTGRES_USER" --dbname postgres \
    -v db="$POSTGRES_DB" <<'SQL'
SELECT format('CREATE DATABASE %I', :'db') WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db')
\gexec
SQL
  local scripts script
  read -r -a scripts <<< "$INIT_SCRIPTS"
  for script in "${scripts[@]}"; do
    log "running $script"
    with_init_env bash "$script"
  done
  stop_temp_server
}

initialise() {
  : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set to initialise a primary}"
  mkdir -p "$STAGING"
  chmod 0700 "$STAGING"
  log "initialising a new primary in $STAGING"
  initdb -D "$STAGING" --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    --auth=scram-sha-256 --encoding=UTF8 --locale=C --no-instructions >&2
  # Every client gives a password, the local socket too (the init steps get it as PGPASSWORD): nothing is
  # trusted. primary-init.sh appends the replication line.
  cat > "$STAGING/pg_hba.conf" <<'HBA'
# Written by scaledapp postgres-start.sh.
# TYPE  DATABASE  USER  ADDRESS  METHOD
local   all       all            scram-sha-256
host    all       all   all      scram-sha-256
HBA
  run_init_steps "$STAGING"
  touch "$STAGING/$MARKER"
  # An empty PGDATA (made by hand, or left by an older layout) is replaced; anything else stops us here.
  if [ -d "$PGDATA" ]; then
    rmdir "$PGDATA"
  fi
  mv "$STAGING" "$PGDATA"
  log "primary initialised: $PGDATA"
}

repair() {
  warn "$PGDATA has PG_VERSION but no completion marker ($MARKER): it was not initialised by this script"
  warn "(the official image's entrypoint or an older operator). It may hold acknowledged writes, so it is"
  warn "kept: running the idempotent init steps on a temporary server, then marking it complete."
  if ! grep -Eq '^[[:space:]]*host[[:space:]]+all[[:space:]]+all[[:space:]]+all[[:space:]]' "$PGDATA/pg_hba.conf"; then
    printf '\n# clients in other pods (scaledapp postgres-start.sh)\nhost all all all scram-sha-256\n' \
      >> "$PGDATA/pg_hba.conf"
  fi
  run_init_steps "$PGDATA"
  touch "$PGDATA/$MARKER"
}

case "$POSTGRES_ROLE" in
  primary)
    if [ -e "$STAGING" ]; then
      warn "HALF-INITIALISED PRIMARY: $STAGING was left by a first boot that died before it finished"
      warn "(initdb or an init script did not complete). No server ever listened on it, so nothing on it"
      warn "was ever acknowledged: removing it and initialising again."
      rm -rf "$STAGING"
    fi
    if [ -s "$PGDATA/PG_VERSION" ]; then
      if [ -f "$PGDATA/$MARKER" ]; then
        log "$PGDATA is an initialised primary"
      else
        repair
      fi
    elif [ -d "$PGDATA" ] && [ -n "$(ls -A "$PGDATA")" ]; then
      # Never made here (initdb runs beside it): refuse rather than delete what someone put there.
      log "$PGDATA is not empty but holds no PG_VERSION: not a data directory; refusing to touch it"
      exit 1
    else
      initialise
    fi
    ;;
  replica)
    if [ ! -s "$PGDATA/PG_VERSION" ]; then
      log "$PGDATA holds no data directory: replica-bootstrap.sh (the initContainer) seeds it, and a replica never runs initdb"
      exit 1
    fi
    log "$PGDATA is a seeded replica"
    ;;
  *)
    log "POSTGRES_ROLE must be primary or replica, not '$POSTGRES_ROLE'"
    exit 1
    ;;
esac
trap - EXIT TERM INT

# --------------------------------------------------------------------------------------------- serve

log "starting postgres: listen_addresses=$LISTEN_ADDRESSES port=$PORT socket=$SOCKET_DIR"
postgres -D "$PGDATA" -p "$PORT" -c "listen_addresses=$LISTEN_ADDRESSES" -c "unix_socket_directories=$SOCKET_DIR" \
  "$@" &
pid=$!
trap 'log "SIGTERM: fast shutdown"; kill -INT "$pid" 2>/dev/null || true' TERM
trap 'log "SIGINT: fast shutdown"; kill -INT "$pid" 2>/dev/null || true' INT
trap 'log "SIGQUIT: immediate shutdown"; kill -QUIT "$pid" 2>/dev/null || true' QUIT
# `wait` returns early when a trapped signal arrives: wait again until postgres has really exited.
status=0
while :; do
  if wait "$pid"; then status=0; else status=$?; fi
  kill -0 "$pid" 2>/dev/null || break
done
log "postgres exited with status $status"
exit "$status"
