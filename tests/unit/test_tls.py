"""Postgres TLS, the pure parts: certificates (resources/tls.py), the pg_hba and settings (resources/database.py),
and what the pods and the app get (mounts, DSNs)."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from scaledapp import api
from scaledapp.resources import build_children, database, names, pg_layout, pg_sidecars, tls

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
CHILD = names.ChildNames("shop")
CA = tls.new_ca("shop CA", NOW)


def test_the_ca_signs_leaves_only_and_its_key_never_shows_in_a_repr() -> None:
    cert = CA.cert
    constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0
    assert cert.not_valid_after_utc - NOW >= dt.timedelta(days=3600)
    assert "PRIVATE KEY" in CA.key_pem and "PRIVATE" not in repr(CA)


def test_a_long_owner_and_namespace_still_make_a_ca_and_a_server_certificate() -> None:
    """The CA is named after the ScaledApp and its namespace; X.509 allows 64 characters in a commonName (a
    40-character name in a 63-character namespace failed the reconcile until the label was cut)."""
    owner, namespace = "a" * 40, "n" * 63
    ca = tls.new_ca(f"{owner} Postgres CA ({namespace})", NOW)
    cn = ca.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert len(cn) == 64 and cn.startswith(owner)
    material = tls.issue_server_tls(ca, names.ChildNames(owner), namespace, "replicator", NOW)
    assert f"{owner}-db-write.{namespace}.svc" in tls.dns_names_of(material.server.cert_pem)


def test_the_server_certificate_covers_the_services_and_the_pods_headless_names() -> None:
    material = tls.issue_server_tls(CA, CHILD, "prod", "replicator", NOW)
    names_ = tls.dns_names_of(material.server.cert_pem)
    for name in ("shop-db-write", "shop-db-write.prod.svc", "shop-db-read-svc.prod.svc.cluster.local",
                 "*.shop-db.prod.svc", "*.shop-db-read.prod.svc.cluster.local"):
        assert name in names_
    usage = material.server.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(usage) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert tls.signed_by(material.server.cert_pem, CA.cert_pem)
    # The replication certificate is a client's, its CN the role pg_hba `cert` logs in.
    replication = material.replication.cert
    assert replication.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "replicator"
    assert list(replication.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == \
        [ExtendedKeyUsageOID.CLIENT_AUTH]


def test_ip_addresses_go_into_the_subject_alt_name_as_addresses() -> None:
    pair = tls.issue(CA, "x", NOW, alt_names=["127.0.0.1", "db.example"], server=True)
    alt = pair.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in alt.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert alt.get_values_for_type(x509.DNSName) == ["db.example"]


def test_renewal_is_due_at_two_thirds_of_the_lifetime() -> None:
    pair = tls.issue(CA, "x", NOW)
    assert not tls.renewal_due(pair.cert_pem, NOW + dt.timedelta(days=59))
    assert tls.renewal_due(pair.cert_pem, NOW + dt.timedelta(days=61))
    assert tls.renewal_due(pair.cert_pem, NOW + dt.timedelta(days=200))  # expired


def test_a_leaf_never_outlives_its_ca() -> None:
    short_ca = tls.new_ca("short", NOW, lifetime=dt.timedelta(days=10))
    assert tls.issue(short_ca, "x", NOW).cert.not_valid_after_utc == short_ca.cert.not_valid_after_utc


def test_why_the_tls_secret_is_issued_again() -> None:
    wanted = tls.server_names(CHILD, "prod")
    good = tls.decode(tls.issue_server_tls(CA, CHILD, "prod", "replicator", NOW).as_data())
    assert tls.renew_reason(good, CA.cert_pem, wanted, NOW) is None
    assert tls.renew_reason(None, CA.cert_pem, wanted, NOW) == "missing"
    assert tls.renew_reason({**good, tls.TLS_KEY_KEY: ""}, CA.cert_pem, wanted, NOW) == "missing"
    assert tls.renew_reason(good, CA.cert_pem, wanted, NOW + dt.timedelta(days=61)) == "tls.crt is due for renewal"
    other = tls.new_ca("other", NOW)
    assert tls.renew_reason(good, other.cert_pem, wanted, NOW) == "the CA changed"
    moved = tls.server_names(names.ChildNames("shop"), "staging")  # same ScaledApp, another namespace
    assert tls.renew_reason(good, CA.cert_pem, moved, NOW) == "the server certificate does not cover every Service name"


def test_a_user_ca_is_read_from_its_secret_ec_or_rsa() -> None:
    assert tls.ca_from_secret_data(tls.ca_secret(CHILD, "prod", CA)["data"]) == CA
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "corp CA")])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(1).not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    rsa_ca = tls.KeyPair(cert.public_bytes(serialization.Encoding.PEM).decode(),
                         key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()).decode())
    loaded = tls.ca_from_secret_data(tls.encode({"tls.crt": rsa_ca.cert_pem, "tls.key": rsa_ca.key_pem}))
    assert loaded == rsa_ca
    assert tls.signed_by(tls.issue(rsa_ca, "x", NOW).cert_pem, rsa_ca.cert_pem)
    # A leaf is not a CA; an incomplete Secret is none.
    leaf = tls.issue(CA, "x", NOW)
    assert tls.ca_from_secret_data(tls.encode({"tls.crt": leaf.cert_pem, "tls.key": leaf.key_pem})) is None
    assert tls.ca_from_secret_data({"tls.crt": "eA=="}) is None


def hba_rules() -> list[list[str]]:
    return [line.split() for line in database.pg_hba().splitlines() if line and not line.startswith("#")]


def test_pg_hba_lets_nothing_in_over_tcp_without_tls_and_the_first_match_decides() -> None:
    rules = hba_rules()
    assert not [r for r in rules if r[0] == "host"]
    assert ["hostnossl", "all", "all", "all", "reject"] in rules
    tcp = [r for r in rules if r[0] == "hostssl"]
    # Certificates for the replication role and the operator, and before the password line that would take them.
    assert tcp[0] == ["hostssl", "all", tls.OPERATOR_USER, "all", "cert"]
    assert tcp[1] == ["hostssl", "replication", "replicator", "all", "cert"]
    assert tcp[2] == ["hostssl", "all", "all", "all", "scram-sha-256"]
    assert "trust" not in database.pg_hba()
    assert rules[0] == ["local", "all", "postgres", "peer"]


def test_every_postgres_pod_serves_tls_from_the_mounted_secret() -> None:
    spec = api.ScaledAppSpec()
    built = {(m["kind"], m["metadata"]["name"]): m for m in build_children("shop", "prod", spec)}
    hba = built[("ConfigMap", CHILD.db_scripts)]["data"]["pg_hba.conf"]
    assert hba == database.pg_hba()
    for sts_name in (CHILD.db_primary, CHILD.db_replicas):
        pod = built[("StatefulSet", sts_name)]["spec"]["template"]["spec"]
        volume = next(v for v in pod["volumes"] if v["name"] == "tls")
        assert volume["secret"] == {"secretName": CHILD.db_tls, "defaultMode": 0o640}
        for container in (*pod["containers"], *pod["initContainers"]):
            if container["name"] not in ("pgpass-writer", "password-sync"):  # they need no certificate
                assert {"name": "tls", "mountPath": pg_layout.TLS_DIR, "readOnly": True} in container["volumeMounts"]
        args = next(c for c in pod["containers"] if c["name"] == "postgres")["args"]
        for setting in ("ssl=on", "ssl_cert_file=/etc/postgres-tls/tls.crt", "ssl_key_file=/etc/postgres-tls/tls.key",
                        "ssl_ca_file=/etc/postgres-tls/ca.crt", "hba_file=/scripts/pg_hba.conf"):
            assert setting in args
        exporter = next(c for c in pod["containers"] if c["name"] == "postgres-exporter")
        uri = next(e["value"] for e in exporter["env"] if e["name"] == "DATA_SOURCE_NAME")
        assert "sslmode=verify-ca" in uri and "sslrootcert=/etc/postgres-tls/ca.crt" in uri
    # No Secret with keys is in the children: the shell issues the certificates, never the builders.
    assert not any(kind == "Secret" and name == CHILD.db_tls for kind, name in built)


@pytest.mark.parametrize("workload", ["app", "workers"])
def test_the_app_and_workers_verify_the_server_with_the_ca_only(workload: str) -> None:
    spec = api.ScaledAppSpec()
    built = {(m["kind"], m["metadata"]["name"]): m for m in build_children("shop", "prod", spec)}
    pod = built[("Deployment", getattr(CHILD, workload))]["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "db-ca")
    assert volume["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]  # never the server's key
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["DB_SSLROOTCERT"] == tls.CLIENT_CA_FILE
    for dsn in (env["DB_WRITE_DSN"], env["DB_READ_DSN"]):
        assert "sslmode=verify-full sslrootcert=$(DB_SSLROOTCERT)" in dsn


def test_app_and_workers_read_the_password_from_the_mounted_secret_at_each_connection() -> None:
    spec = api.ScaledAppSpec()
    built = {(m["kind"], m["metadata"]["name"]): m for m in build_children("shop", "prod", spec)}
    for workload in (CHILD.app, CHILD.workers):
        pod = built[("Deployment", workload)]["spec"]["template"]["spec"]
        volume = next(v for v in pod["volumes"] if v["name"] == "db-credentials")
        assert volume["secret"]["secretName"] == CHILD.db_credentials
        # Its own passwords only: the app role's and the two Redis' (not the superuser's, replication's...).
        assert volume["secret"]["items"] == [{"key": k, "path": k}
                                             for k in ("app-password", "cache-password", "queue-password")]
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "db-credentials")
        assert env["DB_PASSWORD_FILE"] == f"{mount['mountPath']}/app-password"
        assert env["REDIS_PASSWORD_FILE"] == f"{mount['mountPath']}/cache-password"
        assert env["QUEUE_PASSWORD_FILE"] == f"{mount['mountPath']}/queue-password"
    # Without a cache, no cache password.
    off = api.ScaledAppSpec.model_validate({"cache": {"enabled": False}})
    app = next(m for m in build_children("shop", "prod", off)
               if m["kind"] == "Deployment" and m["metadata"]["name"] == CHILD.app)
    items = next(v for v in app["spec"]["template"]["spec"]["volumes"] if v["name"] == "db-credentials")
    assert [i["key"] for i in items["secret"]["items"]] == ["app-password", "queue-password"]


def test_the_postgres_exporter_reads_a_pgpass_file_its_sidecar_keeps_in_step_with_the_secret() -> None:
    built = {(m["kind"], m["metadata"]["name"]): m for m in build_children("shop", "prod", api.ScaledAppSpec())}
    for sts_name in (CHILD.db_primary, CHILD.db_replicas):
        pod = built[("StatefulSet", sts_name)]["spec"]["template"]["spec"]
        containers = {c["name"]: c for c in pod["containers"]}
        env = {e["name"]: e for e in containers["postgres-exporter"]["env"]}
        assert set(env) == {"DATA_SOURCE_NAME", "PGPASSFILE"}  # no password in its environment
        assert ":@" not in env["DATA_SOURCE_NAME"]["value"] and "sslmode=verify-ca" in env["DATA_SOURCE_NAME"]["value"]
        assert env["PGPASSFILE"]["value"] == f"{pg_sidecars.PGPASS_DIR}/{pg_sidecars.PGPASS_FILE}"
        writer = containers["pgpass-writer"]
        assert writer["image"] == api.ScaledAppSpec().database.image
        assert writer["command"] == ["sh", "-c", pg_sidecars.pgpass_script()]
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["pgpass"]["emptyDir"]["medium"] == "Memory"
        assert volumes["exporter-credentials"]["secret"]["items"] == [{"key": "exporter-password",
                                                                        "path": "exporter-password"}]


def test_every_postgres_pod_runs_the_password_sync_with_the_postgres_roles_keys_and_the_socket() -> None:
    """Every Postgres pod (the write role moves): its own container, the four Postgres roles' keys only (not the
    Redis passwords), the server's socket for `peer`, the SQL from the scripts ConfigMap; restricted, read-only
    root, a few millicores."""
    built = {(m["kind"], m["metadata"]["name"]): m for m in build_children("shop", "prod", api.ScaledAppSpec())}
    keys = ["superuser-password", "app-password", "replication-password", "exporter-password"]
    assert built[("ConfigMap", CHILD.db_scripts)]["data"][pg_layout.PASSWORD_SYNC] == \
        database.package_file(pg_layout.PASSWORD_SYNC)
    for sts_name in (CHILD.db_primary, CHILD.db_replicas):
        pod = built[("StatefulSet", sts_name)]["spec"]["template"]["spec"]
        containers = {c["name"]: c for c in pod["containers"]}
        sync = containers["password-sync"]
        assert sync["image"] == containers["postgres"]["image"]
        assert sync["command"] == ["sh", "-c", pg_sidecars.password_sync_script()]
        assert "env" not in sync  # no password in its environment: it reads the mounted files
        assert sync["securityContext"]["readOnlyRootFilesystem"] is True
        assert sync["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert sync["resources"]["requests"] == {"cpu": "5m", "memory": "16Mi"}
        mounts = {m["name"]: m for m in sync["volumeMounts"]}
        assert mounts == {
            "passwords": {"name": "passwords", "mountPath": pg_sidecars.PASSWORDS_DIR, "readOnly": True},
            "scripts": {"name": "scripts", "mountPath": pg_layout.SCRIPTS_DIR, "readOnly": True},
            "run": {"name": "run", "mountPath": pg_layout.SOCKET_DIR},  # the same emptyDir as the server's socket
        }
        postgres_run = next(m for m in containers["postgres"]["volumeMounts"] if m["name"] == "run")
        assert postgres_run["mountPath"] == pg_layout.SOCKET_DIR
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes["passwords"]["secret"] == {"secretName": CHILD.db_credentials, "defaultMode": 0o440,
                                                  "items": [{"key": k, "path": k} for k in keys]}
        # No other container sees these keys.
        assert [c["name"] for c in pod["containers"] if "passwords" in {m["name"] for m in c["volumeMounts"]}] \
            == ["password-sync"]


def test_the_password_sync_script_keeps_values_out_of_argv_and_logs_in_by_peer() -> None:
    """What the script hands to other programs: the files' names and the roles, never a value. The value goes
    to the test login in PGPASSWORD (the environment) and to ALTER ROLE through psql reading the file itself."""
    script = pg_sidecars.password_sync_script()
    for key, role in pg_sidecars.PASSWORD_ROLES:
        assert f"agree {pg_sidecars.PASSWORDS_DIR}/{key} {role};" in script
    assert 'PGPASSWORD="$p" psql' in script
    # The value's only uses: a test (a shell builtin) and psql's environment.
    assert [line.strip() for line in script.splitlines() if "$p" in line] == [
        '[ -n "$p" ] || return 1',
        'if PGPASSWORD="$p" psql -Xqtw "host=127.0.0.1 port=5432 dbname=postgres connect_timeout=5 sslmode=require '
        'user=$2" -c \'select 1\' >/dev/null 2>&1; then p=""; return 0; fi']
    assert f"-h {pg_layout.SOCKET_DIR} -p 5432 -U postgres -d postgres -f /scripts/password-sync.sql" in script
    assert "sslmode=require" in script and "host=127.0.0.1 port=5432" in script
    sql = database.package_file(pg_layout.PASSWORD_SYNC)
    assert "\\set pw `cat :'file'`" in sql and "ALTER ROLE :\"role\" PASSWORD :'pw';" in sql
    assert "NOT pg_is_in_recovery()" in sql
    for setting in ("log_statement = none", "log_min_error_statement = panic", "track_utility = off"):
        assert setting in sql
    # Its period and the replicas' retry: a refused test login on a replica at most every 30 s.
    assert "sleep 5 & wait $!\n" in script
    assert pg_sidecars.PASSWORD_SYNC_SECONDS * pg_sidecars.PASSWORD_RETRY_LOOPS == 30
