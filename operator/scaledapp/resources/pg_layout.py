"""Where things are in every Postgres pod: the paths and file names that the database builders, their
sidecars (pg_sidecars.py) and the scripts in resources/files share."""

DATA_DIR = "/var/lib/postgresql/data"
# A subdirectory: a fresh volume's root may hold lost+found, and initdb wants an empty directory.
PGDATA = f"{DATA_DIR}/pgdata"
SCRIPTS_DIR = "/scripts"
TOPOLOGY_DIR = "/etc/scaledapp-topology"
TOPOLOGY_KEY = "primary"  # in the db-topology ConfigMap: the pod holding the write role (the failover's key)
QUERIES_DIR = "/etc/postgres-exporter"
TLS_DIR = "/etc/postgres-tls"  # the db-tls Secret, in every Postgres pod
HBA_KEY = "pg_hba.conf"  # in the db-scripts ConfigMap
# Our own emptyDir, not the image's directory (which may not exist, or not be writable by uid 999).
SOCKET_DIR = "/var/run/postgresql"

# The db-scripts ConfigMap's files (resources/files).
POSTGRES_START = "postgres-start.sh"
PRIMARY_INIT = "primary-init.sh"
APP_ROLE = "app-role.sh"
PASSWORD_SYNC = "password-sync.sql"
REPLICA_BOOTSTRAP = "replica-bootstrap.sh"
EXPORTER_QUERIES = "postgres-exporter-queries.yaml"
QUERIES_KEY = "queries.yaml"
