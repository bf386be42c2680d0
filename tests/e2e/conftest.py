"""End-to-end fixtures: a private control plane, and per test one closed loop on it.

Private, because the operator under test must be the only one acting: the shared control plane
may have other operators watching every namespace (the session's `operator` fixture of
tests/cluster, or another test session), and two schedulers of one ScaledApp would double every
step. A throw-away control plane costs ~10 s once per session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from devharness.demo.stack import Stack
from tests.support.cluster import Cluster, private_cluster


@pytest.fixture(scope="session")
def loop_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with private_cluster(tmp_path_factory.mktemp("e2e-cluster") / "state") as scratch:
        yield scratch


StartLoop = Callable[[dict[str, Any], str], Stack]


@pytest.fixture
def closed_loop(loop_cluster: Cluster, namespace_name: str, tmp_path: Path) -> Iterator[StartLoop]:
    """start(scaledapp, profile) -> a running Stack: Prometheus, the operator (watching only this
    test's namespace), the ScaledApp, its pods, the live twin, first scrapes. Stopped after the test;
    logs stay in tmp_path."""
    stacks: list[Stack] = []

    def start(scaledapp: dict[str, Any], profile: str) -> Stack:
        stack = Stack(tmp_path / "loop", str(loop_cluster.kubeconfig), str(loop_cluster.kubectl_path),
                      namespace_name, name=scaledapp["metadata"]["name"])
        stacks.append(stack)
        stack.up(scaledapp, profile, seed=7)
        return stack

    yield start
    for stack in stacks:
        stack.close()


@pytest.fixture
def namespace_name(request: pytest.FixtureRequest) -> str:
    base = request.node.name.lower().replace("_", "-")[:40].strip("-")
    return f"e2e-{base}"
