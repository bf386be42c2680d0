#!/usr/bin/env bash
# Seed a streaming read replica's data directory from the primary. Meant for an initContainer that
# uses the same postgres image (and user) as the replica's main container, where postgres-start.sh
# (POSTGRES_ROLE=replica) finds PG_VERSION and starts a hot standby that follows the primary.
#
# Every Postgres pod runs it, the primary's too: the write role can move (failover, docs/failure.md), so
# whether this pod is a replica is read from the topology file (the db-topology ConfigMap, mounted):
#   this pod holds the write role    nothing to do (postgres-start.sh initialises or starts the primary)
#   a seeded standby                 nothing to do (it follows whoever holds the role, via the Service)
#   a former primary, handed over    data that ran as a primary, shut down cleanly (pg_controldata: "shut
#                                    down"), whose WAL the new primary has whole: its shutdown checkpoint
#                                    starts before the point where the new primary's timeline left ours
#                                    (TIMELINE_HISTORY over a replication connection). Since that checkpoint
#                                    is the last record it wrote, the new primary's history contains all
#                                    of it, and it rejoins as a standby of the new primary without copying
#                                    anything (standby.signal + primary_conninfo; recovery follows the
#                                    timeline switch). This is what a switchover leaves (docs/failure.md),
#                                    the check Patroni makes before it skips pg_rewind.
#   any other former primary         data that ran as a primary (no standby.signal) while the topology
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
#   REJOIN_WAIT_SECONDS    a cleanly shut-down former primary waits this long for a promoted primary to
#                          rejoin (default: 60); then it is seeded again
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

if [ -n "${REPLICATION_PASSWORD:-}" ]; then export PGPASSWORD="$REPLICATION_PASSWORD"; fi
export PGCONNECT_TIMEOUT=5
PRIMARY_CONNINFO="${PRIMARY_CONNINFO:-}"

lsn_number() {  # '16/B374D848' -> a decimal byte position
  local high="${1%/*}" low="${1#*/}"
  echo $(( (16#$high << 32) + 16#$low ))
}

control() {  # the value of one pg_controldata line
  LC_ALL=C pg_controldata -D "$PGDATA" | sed -n "s/^$1:[[:space:]]*//p"
}

replication_psql() {  # a replication command to the primary, unaligned output
  psql --no-psqlrc -XAt -F ' ' -c "$1" \
    "$PRIMARY_CONNINFO host=$PRIMARY_HOST port=$PRIMARY_PORT user=$REPLICATION_USER replication=true dbname=replication"
}

# A former primary that was shut down cleanly after the new primary received all its WAL (a switchover):
# make it a standby of the new primary as it is. True when done; false (nothing changed) when it must be
# seeded again. Waits for the new primary at most REJOIN_WAIT_SECONDS (a switchover promotes it within
# seconds of this pod's restart).
rejoin_as_standby() {
  local state checkpoint ours_tli system identify theirs_tli history switchpoint deadline
  state="$(control 'Database cluster state')"
  if [ "$state" != "shut down" ]; then
    log "$PGDATA ran as a primary and was not shut down cleanly ($state): it cannot rejoin as it is"
    return 1
  fi
  checkpoint="$(control 'Latest checkpoint location')"
  ours_tli="$(control "Latest checkpoint's TimeLineID")"
  system="$(control 'Database system identifier')"
  deadline=$(( $(date +%s) + ${REJOIN_WAIT_SECONDS:-60} ))
  while :; do
    # IDENTIFY_SYSTEM: systemid timeline xlogpos dbname. The new primary must be on a later timeline.
    if identify="$(replication_psql IDENTIFY_SYSTEM 2>/dev/null)" && [ -n "$identify" ]; then
      theirs_tli="$(echo "$identify" | cut -d' ' -f2)"
      if [ "$(echo "$identify" | cut -d' ' -f1)" != "$system" ]; then
        log "the primary is another database system (not $system): seeding again"
        return 1
      fi
      [ "$theirs_tli" -gt "$ours_tli" ] && break
    fi
    [ "$(date +%s)" -lt "$deadline" ] || { log "no promoted primary on a later timeline than $ours_tli yet"; return 1; }
    sleep 0.5
  done
  # The history file of the primary's timeline: "<parent tli> <switchpoint> <reason>" per ancestor.
  history="$(replication_psql "TIMELINE_HISTORY $theirs_tli" | sed '1s/^[^ ]* //')" || return 1
  switchpoint="$(printf '%s\n' "$history" | awk -v tli="$ours_tli" '$1 == tli { print $2; exit }')"
  if [ -z "$switchpoint" ]; then
    log "timeline $ours_tli is not in the primary's history (timeline $theirs_tli): seeding again"
    return 1
  fi
  if [ "$(lsn_number "$checkpoint")" -ge "$(lsn_number "$switchpoint")" ]; then
    log "$PGDATA has WAL past $switchpoint, where the primary's timeline left $ours_tli (its last checkpoint"
    log "is at $checkpoint): it may hold writes the primary never had"
    return 1
  fi
  # Settings the guard made while it was the primary (the switchover's read-only fence) or wrote for a
  # promotion stay behind; the connection settings are this script's.
  local auto="$PGDATA/postgresql.auto.conf"
  if [ -f "$auto" ]; then
    grep -Ev '^[[:space:]]*(default_transaction_read_only|synchronous_commit|primary_conninfo|primary_slot_name)[[:space:]]*=' \
      "$auto" > "$auto.new" || true
    mv "$auto.new" "$auto"
  fi
  local conninfo="host=$PRIMARY_HOST port=$PRIMARY_PORT user=$REPLICATION_USER application_name=$REPLICA_NAME"
  if [ -n "${REPLICATION_PASSWORD:-}" ]; then conninfo="$conninfo password=$REPLICATION_PASSWORD"; fi
  {
    echo "primary_conninfo = '$conninfo $PRIMARY_CONNINFO'"
    echo "primary_slot_name = '$REPLICATION_SLOT'"
  } >> "$auto"
  # Its slot on the new primary (the guard makes the slots at a promotion too; this covers a lost race).
  pg_receivewal --host "$PRIMARY_HOST" --port "$PRIMARY_PORT" --username "$REPLICATION_USER" --no-password \
    --dbname "$PRIMARY_CONNINFO" --slot "$REPLICATION_SLOT" --create-slot --if-not-exists || return 1
  touch "$PGDATA/standby.signal"
  log "$PGDATA was shut down cleanly at $checkpoint, before $switchpoint where the primary's timeline"
  log "$theirs_tli left $ours_tli: it rejoins as a standby of $PRIMARY_HOST without being seeded again"
}

if [ "$primary" = "$POD_NAME" ]; then
  log "$POD_NAME holds the write role: nothing to seed"
  exit 0
fi
if [ -s "$PGDATA/PG_VERSION" ] && [ ! -f "$PGDATA/standby.signal" ]; then
  if [ -z "$named_primary" ]; then
    log "$PGDATA ran as a primary and no topology names another pod: left as it is"
    exit 0
  fi
  if rejoin_as_standby; then
    touch "$DONE_MARKER"
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
