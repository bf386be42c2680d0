"""Fixture plugins: each real-server harness lives in its own module under tests/support."""

pytest_plugins = [
    "tests.support.cluster",
    "tests.support.dataplane",
    "tests.support.operator",
    "tests.support.prometheus",
]
