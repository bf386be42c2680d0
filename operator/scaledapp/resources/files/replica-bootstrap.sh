#!/usr/bin/env bash
# Seed a streaming read replica's data directory from the primary. Meant for an initContainer that
# uses the same postgres image (and user) as the replica's main container, where postgres-start.sh
# (POSTGRES_ROLE=replica) finds PG_VERSION and starts a hot standby that follows the primary.
#
# Every Postgres pod runs it, the primary's too: the write role can move (failover, docs/failure.md), so
# whether this pod is a replica is read from the topology file (the db-topology ConfigMap, mounted):
#   this pod holds the write role    nothing to do (postgres-start.sh initialises or starts the primary)
#   a seeded standby                 nothing to do (it follows whoever holds the role, via the Service)
#   a former primary                 data that ran as a primary (no standby.signal) while the topology
#                                    names another pod: it may hold writes the new primary never had,
#                                    so it is moved aside to "$PGDATA.diverged" (kept for inspection,
#                                    replacing an older one) and the pod is seeded again
# With no topology written yet, the home primary (HOME_PRIMARY) holds the role and nothing is moved aside.
#
#   pg_basebackup -X stream -R   copies the data, streams the WAL needed to make it consistent, and
#                                writes standby.signal + primary_conninfo/primary_slot_name
#   named slot per replica       the primary keeps the WAL this replica has not received yet (bounded
#                                by max_slot_wal_keep_size, see primary-init.sh); whoever scales the
#                                replicas down drops the slot (pg_drop_replication_slot)
#
# Environment (read here):
#   PGDATA                 data directory to seed (required)
#   PRIMARY_HOST           primary's host name or address (required)
#   PRIMARY_PORT           its port (default: 5432)
#   REPLICATION_USER       replication role (default: replicator)
#   REPLICATION_PASSWORD   its password (optional: none when PRIMARY_CONNINFO logs in with a certificate)
#   PRIMARY_CONNINFO       extra libpq key=value options for every connection to the primary, e.g. TLS:
#                          "sslmode=verify-full sslrootcert=... sslcert=... sslkey=..." (the pods' own); they
#                          end up in primary_conninfo, so the standby streams the same way
#   REPLICA_NAME           this replica's name, e.g. the pod name (default: $HOSTNAME); it becomes the
#                          application_name on the primary and, sanitised, the slot name
#   REPLICATION_SLOT       slot name override (default: derived from REPLICA_NAME)
#   WAIT_TIMEOUT_SECONDS   give up if the primary is not reachable and copied within this (default: 300)
#   POD_NAME               this pod's name (default: $REPLICA_NAME)
#   TOPOLOGY_FILE          file holding the name of the pod with the write role (absent or empty: unknown)
#   HOME_PRIMARY           the pod that holds the write role while the topology names none
#
# Idempotent on restart: a data directory this script finished seeding is left alone (exit 0); one a
# previous run left half-copied is emptied and seeded again.
set -euo pipefail

: "${PGDATA:?PGDATA must be set}"
: "${PRIMARY_HOST:?PRIMARY_HOST must be set}"
PRIMARY_PORT="${PRIMARY_PORT:-5432}"
REPLICATION_USER="${REPLICATION_USER:-replicator}"
REPLICA_NAME="${REPLICA_NAME:-${HOSTNAME:-replica}}"
WAIT_TIMEOUT_SECONDS="${WAIT_TIMEOUT_SECONDS:-300}"
# Slot names allow only [a-z0-9_], up to 63 characters.
default_slot="$(printf '%s' "$REPLICA_NAME" | tr '[:upper:]' '[:lower:]' | tr -c 'a-z0-9_' '_' | cut -c1-63)"
REPLICATION_SLOT="${REPLICATION_SLOT:-$default_slot}"
DONE_MARKER="$PGDATA/scaledapp-replica-seeded"
POD_NAME="${POD_NAME:-$REPLICA_NAME}"
named_primary="$(cat "${TOPOLOGY_FILE:-/nonexistent}" 2>/dev/null || true)"
primary="${named_primary:-${HOME_PRIMARY:-}}"

log() { echo "replica-bootstrap: $*" >&2; }

if [ "$primary" = "$POD_NAME" ]; then
  log "$POD_NAME holds the write role: nothing to seed"
  exit 0
fi
if [ -s "$PGDATA/PG_VERSION" ] && [ ! -f "$PGDATA/standby.signal" ]; then
  if [ -z "$named_primary" ]; then
    log "$PGDATA ran as a primary and no topology names another pod: left as it is"
    exit 0
  fi
  log "WARNING: $PGDATA ran as a primary, but $named_primary holds the write role now: moving it aside"
  log "to $PGDATA.diverged (writes it has that $named_primary lacks were never replicated) and seeding again"
  rm -rf "$PGDATA.diverged" "$PGDATA.initdb"
  mv "$PGDATA" "$PGDATA.diverged"
fi

if [ -s "$PGDATA/PG_VERSION" ] && [ -f "$DONE_MARKER" ]; then
  log "$PGDATA already seeded; nothing to do"
  exit 0
fi

mkdir -p "$PGDATA"
chmod 0700 "$PGDATA"
if [ -n "$(ls -A "$PGDATA")" ]; then
  log "$PGDATA holds an unfinished copy; emptying it"
  # Empty it rather than remove it: PGDATA may be a mount point.
  find "$PGDATA" -mindepth 1 -delete
fi

if [ -n "${REPLICATION_PASSWORD:-}" ]; then export PGPASSWORD="$REPLICATION_PASSWORD"; fi
export PGCONNECT_TIMEOUT=5
PRIMARY_CONNINFO="${PRIMARY_CONNINFO:-}"
conn=(--host "$PRIMARY_HOST" --port "$PRIMARY_PORT" --username "$REPLICATION_USER" --no-password)
deadline=$(( $(date +%s) + WAIT_TIMEOUT_SECONDS ))
remaining() { echo $(( deadline - $(date +%s) )); }

until pg_isready --quiet --host "$PRIMARY_HOST" --port "$PRIMARY_PORT"; do
  [ "$(remaining)" -gt 0 ] || { log "primary ${PRIMARY_HOST}:${PRIMARY_PORT} not ready after ${WAIT_TIMEOUT_SECONDS}s"; exit 1; }
  log "waiting for primary ${PRIMARY_HOST}:${PRIMARY_PORT}"
  sleep 1
done

# Create the slot unless it exists already (a replica re-seeded under the same name keeps its slot).
until pg_receivewal "${conn[@]}" --dbname "$PRIMARY_CONNINFO" --slot "$REPLICATION_SLOT" --create-slot --if-not-exists; do
  [ "$(remaining)" -gt 0 ] || { log "could not create slot ${REPLICATION_SLOT}"; exit 1; }
  sleep 1
done

until pg_basebackup "${conn[@]}" --pgdata "$PGDATA" --wal-method stream --write-recovery-conf \
        --slot "$REPLICATION_SLOT" --checkpoint fast --dbname "$PRIMARY_CONNINFO application_name=${REPLICA_NAME}"; do
  [ "$(remaining)" -gt 0 ] || { log "pg_basebackup did not complete within ${WAIT_TIMEOUT_SECONDS}s"; exit 1; }
  log "pg_basebackup failed; retrying"
  find "$PGDATA" -mindepth 1 -delete
  sleep 2
done

touch "$DONE_MARKER"
log "seeded $PGDATA from ${PRIMARY_HOST}:${PRIMARY_PORT} (slot ${REPLICATION_SLOT})"
