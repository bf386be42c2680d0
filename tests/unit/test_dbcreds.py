"""The credentials Secret as the source of truth, the pure parts: which role each key sets, the fingerprint."""

from __future__ import annotations

from scaledapp import dbcreds
from scaledapp.resources import secrets


def test_every_key_of_the_secret_sets_one_role() -> None:
    passwords = secrets.DbPasswords(superuser="s", app="a", replication="r", exporter="e", cache="c", queue="q")
    wanted = dbcreds.wanted_passwords(passwords.as_secret_data())
    assert wanted == {"postgres": "s", "app": "a", "replicator": "r", "exporter": "e"}
    # Every Postgres role's key; the Redis passwords are read by the servers at start (docs/failure.md).
    assert set(dbcreds.ROLE_OF_KEY) == set(secrets.KEYS) - {secrets.CACHE_KEY, secrets.QUEUE_KEY}


def test_an_incomplete_or_missing_secret_sets_nothing() -> None:
    passwords = secrets.DbPasswords(superuser="s", app="a", replication="r", exporter="e", cache="c", queue="q")
    data = passwords.as_secret_data()
    del data[secrets.APP_KEY]
    assert dbcreds.wanted_passwords(data) is None
    assert dbcreds.wanted_passwords(None) is None


def test_the_fingerprint_changes_with_any_value_and_shows_none() -> None:
    one = dbcreds.fingerprint({"app": "secret-value-1", "postgres": "x"})
    assert one == dbcreds.fingerprint({"postgres": "x", "app": "secret-value-1"})
    assert one != dbcreds.fingerprint({"app": "secret-value-2", "postgres": "x"})
    assert "secret-value" not in one
