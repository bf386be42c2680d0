-- password-sync.sql: run by the password-sync sidecar of every Postgres pod (resources/database.py,
-- password_sync_script) when a mounted password of the credentials Secret does not log its role in. Logged in
-- over the Unix socket as the container's own user (pg_hba `peer`), which no password edit can lock out.
--
-- psql variables, set by the caller with -v: `role` (the role) and `file` (the mounted file holding its
-- password). The value never travels in an argv: psql reads the file itself (the backquoted `cat` gets the
-- file's name), and it is never printed. Prints one word: `set`, `absent` (no such role) or `replica`.
--
-- Only the pod holding the write role acts (not in recovery); a replica gets the new password by replication.
-- Nothing of this session may put the statement in the server's log (the value is in it as a literal): no
-- statement logging, none on error, none in pg_stat_statements.
SET log_statement = none;
SET log_min_error_statement = panic;
SET log_min_duration_statement = -1;
SET pg_stat_statements.track_utility = off;
SELECT NOT pg_is_in_recovery() AS is_primary,
       EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = :'role') AS known \gset
\if :is_primary
\if :known
\set pw `cat :'file'`
ALTER ROLE :"role" PASSWORD :'pw';
\unset pw
\echo set
\else
\echo absent
\endif
\else
\echo replica
\endif
