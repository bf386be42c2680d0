"""The kind path's steps (hack/kind/kind.sh, what `make kind-up images kind-load deploy chaos kind-down` run),
checked here without Docker: `kind` and `docker` are stand-ins that record their arguments, and the context
kind-scaledapp points at a private local control plane, so deploy runs the real kubectl and pinned helm
against a real API server. What only a Docker engine can do (build, load, pull, run containers) is not here.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from scaledapp.api import DEMO_APP_IMAGE
from tests.support.cluster import Cluster, private_cluster
from tests.support.operator import OperatorProcess, wait_crd_established

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]
KIND_SH = ROOT / "hack" / "kind" / "kind.sh"
FAKE = """#!/usr/bin/env bash
echo "$(basename "$0") $*" >> "{log}"
case "$(basename "$0") $1 $2" in
  "kind get clusters") echo scaledapp ;;
  "kind version"*) echo "kind v0.33.0 go1.25.1 linux/amd64" ;;
esac
exit 0
"""


@pytest.fixture(scope="module")
def kind_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, dict[str, str], Path]]:
    base = tmp_path_factory.mktemp("kind-path")
    with private_cluster(base / "state") as cluster:
        fakebin, log = base / "bin", base / "calls.log"
        fakebin.mkdir()
        for tool in ("kind", "docker"):
            (fakebin / tool).write_text(FAKE.format(log=log))
            (fakebin / tool).chmod(0o755)
        config = yaml.safe_load(cluster.kubeconfig.read_text())
        config["contexts"][0]["name"] = config["current-context"] = "kind-scaledapp"
        kubeconfig = base / "kind.kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(config))
        env = {**os.environ, "PATH": f"{fakebin}{os.pathsep}{cluster.env['PATH']}", "KUBECONFIG": str(kubeconfig)}
        operator = OperatorProcess(str(cluster.kubeconfig), base, name="operator-kind-path")
        cluster.kubectl("apply", "--server-side", "-f", str(ROOT / "crds"))
        wait_crd_established(cluster)
        operator.start()
        try:
            yield cluster, env, log
        finally:
            operator.stop()


def kind_sh(env: dict[str, str], step: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(KIND_SH), step], capture_output=True, text=True, timeout=1200, check=False,
                          cwd=ROOT, env={**env, **extra})


def test_images_and_kind_load_build_and_load_the_tags_the_chart_uses(
    kind_env: tuple[Cluster, dict[str, str], Path]
) -> None:
    _, env, log = kind_env
    chart = yaml.safe_load((ROOT / "charts" / "scaledapp-operator" / "Chart.yaml").read_text())
    values = yaml.safe_load((ROOT / "charts" / "scaledapp-operator" / "values.yaml").read_text())
    operator_image = f"{values['image']['repository']}:{chart['appVersion']}"
    for step in ("up", "images", "load-images"):
        proc = kind_sh(env, step)
        assert proc.returncode == 0, proc.stderr
        assert "==> " in proc.stderr  # it says what it does
        if step != "up":
            assert "\n+ " in f"\n{proc.stderr}"  # and prints each command it runs
    calls = log.read_text()
    assert f"docker build -f {ROOT}/operator/Dockerfile -t {operator_image} {ROOT}" in calls
    demo_image = DEMO_APP_IMAGE  # the default spec.app.image: what a ScaledApp runs unless told otherwise
    assert f"docker build -f {ROOT}/demo-app/Dockerfile -t {demo_image} {ROOT}" in calls
    assert f"kind load docker-image --name scaledapp {operator_image} {demo_image}" in calls
    assert "kind create cluster" not in calls  # the (stand-in) cluster exists already: nothing to do


def test_deploy_installs_the_chart_and_an_example_that_becomes_ready(
    kind_env: tuple[Cluster, dict[str, str], Path]
) -> None:
    cluster, env, _ = kind_env
    proc = kind_sh(env, "deploy")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--set prometheus.enabled=true" in proc.stderr and "--kube-context kind-scaledapp" in proc.stderr
    status = cluster.get_json("scaledapp", "demo", "-n", "demo")["status"]
    assert any(c["type"] == "Ready" and c["status"] == "True" for c in status["conditions"])
    assert cluster.get_json("service", "prometheus", "-n", "scaledapp-system")["spec"]["ports"][0]["port"] == 9090
    again = kind_sh(env, "deploy")  # idempotent: a second deploy upgrades in place
    assert again.returncode == 0, again.stderr[-3000:]

    drill = kind_sh(env, "chaos", CHAOS_ARGS="--no-load --tiers app,db-write")
    assert drill.returncode == 0, drill.stderr[-3000:]
    assert "| app |" in drill.stdout and "| db-write |" in drill.stdout


def test_kind_down_deletes_the_cluster(kind_env: tuple[Cluster, dict[str, str], Path]) -> None:
    _, env, log = kind_env
    proc = kind_sh(env, "down")
    assert proc.returncode == 0, proc.stderr
    assert "kind delete cluster --name scaledapp" in log.read_text()


def test_each_step_names_what_is_missing(tmp_path: Path) -> None:
    bare = {**os.environ, "PATH": "/usr/bin:/bin", "SCALEDAPP_BIN": str(tmp_path)}
    missing_kind = kind_sh(bare, "deploy")
    assert missing_kind.returncode == 2
    assert "make deploy needs:" in missing_kind.stderr and "kind: install kind v0.33.0" in missing_kind.stderr
    assert "helm" in missing_kind.stderr
