"""The kind-path scripts' pure parts: the load Job, the chaos report, the pins they share with the chart."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from hack import chaos, loadjob

from scaledapp import api
from scaledapp.resources.names import ChildNames

ROOT = Path(__file__).resolve().parents[2]


def test_the_load_job_is_valid_restricted_and_targets_the_app_service() -> None:
    spec = loadjob.LoadSpec("demo", "demo", "constant:rate=5", 30)
    job = loadjob.job_manifest(spec, "load-1")
    kubernetes_validate.validate(job, "1.34.0", strict=True)
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["seccompProfile"]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert spec.url == f"http://{ChildNames('demo').app}.demo.svc:{api.AppSpec().port}"
    assert container["command"][:3] == ["python", "-m", "demo_app.load"]
    assert container["command"][container["command"].index("--url") + 1] == spec.url


def test_the_scripts_use_the_images_the_chart_and_the_crd_default_to() -> None:
    assert loadjob.DEMO_IMAGE == api.DEMO_APP_IMAGE
    chart = yaml.safe_load((ROOT / "charts" / "scaledapp-operator" / "Chart.yaml").read_text())
    values = yaml.safe_load((ROOT / "charts" / "scaledapp-operator" / "values.yaml").read_text())
    script = (ROOT / "hack" / "kind" / "kind.sh").read_text()
    pins = dict(re.findall(r"^(OPERATOR_IMAGE|DEMO_IMAGE)=\$\{\w+:-([^}]+)\}", script, re.MULTILINE))
    assert pins == {"OPERATOR_IMAGE": f"{values['image']['repository']}:{chart['appVersion']}",
                    "DEMO_IMAGE": api.DEMO_APP_IMAGE}
    # The CRD's default prometheusUrl is the bundled Prometheus in the namespace deploy installs into.
    assert "SYSTEM_NS=scaledapp-system" in script
    assert api.ScalingSpec().prometheus_url == f"http://{values['prometheus']['serviceName']}.scaledapp-system.svc:9090"


def test_the_kind_node_image_is_pinned_by_digest_to_the_local_minor_version() -> None:
    config = yaml.safe_load((ROOT / "hack" / "kind" / "cluster.yaml").read_text())
    versions = dict(line.split("=", 1) for line in (ROOT / "hack" / "localcluster" / "versions.env").read_text()
                    .splitlines() if "=" in line and not line.startswith("#"))
    minor = ".".join(versions["K8S_VERSION"].split(".")[:2])
    for node in config["nodes"]:
        assert re.fullmatch(rf"kindest/node:v{re.escape(minor)}\.\d+@sha256:[0-9a-f]{{64}}", node["image"])


def test_chaos_report_table() -> None:
    rows = [chaos.Drill("(none: baseline)", sent=400, failed=0, p99_ms=41.2),
            chaos.Drill("db-write", pod="demo-db-0", ready_before=1, seconds_to_ready=9.5, sent=400, failed=12,
                        errors={"http_503": 12}, p99_ms=850.0, operator_events=["MetricsUnavailable: holding"],
                        writes_down_s=5.3, writes_acked=300, writes_lost=0),
            chaos.Drill("queue", pod="demo-queue-0", ready_before=1, seconds_to_ready=3.0, writes_down_s=0.1,
                        writes_acked=200, writes_lost=0, orders_accepted=20, orders_lost=0),
            chaos.Drill("workers", note="no Ready pod of this tier (tier disabled or not up): skipped")]
    text = chaos.table(rows)
    assert ("| db-write | demo-db-0 | 1 | 9.5 s | 12 / 400 | 850 ms | 5.3 s | 0 of 300 | "
            "MetricsUnavailable: holding |") in text
    assert "| queue | demo-queue-0 | 1 | 3.0 s | - | - | 0.1 s | 0 of 200, 0 of 20 |" in text
    assert "| (none: baseline) | - | - | - | 0 / 400 | 41 ms |" in text
    assert "skipped" in text.splitlines()[-1]


def test_chaos_rejects_unknown_tiers() -> None:
    with pytest.raises(SystemExit):
        chaos.parse_args(["--tiers", "app,frontend"])
    assert chaos.parse_args(["--tiers", "db-write"]).tiers == "db-write"


def test_the_readme_quickstart_lists_every_kind_step_in_order() -> None:
    readme = (ROOT / "README.md").read_text()
    sections = re.findall(r"^## (.+)$", readme, re.MULTILINE)
    assert sections[0] == "The two commands"
    quickstart = readme.split("## Quickstart on kind", 1)[1].split("\n## ", 1)[0]
    block = quickstart.split("```bash", 1)[1].split("```", 1)[0]
    steps = re.findall(r"^make ([a-z-]+)", block, re.MULTILINE)
    assert steps == ["kind-up", "images", "kind-load", "deploy", "load", "chaos", "kind-down"]
    makefile = (ROOT / "Makefile").read_text()
    for step in steps:
        assert re.search(rf"^{step}:.*## ", makefile, re.MULTILINE), f"make {step} has no documented target"


def _stand_in(bin_dir: Path, name: str, script: str) -> None:
    path = bin_dir / name
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


def test_the_minikube_path_uses_the_profile_its_context_and_minikubes_own_image_load(tmp_path: Path) -> None:
    """minikube and Docker cannot run here: stand-ins that log their arguments (minikube `status` fails until
    `start` ran) check which commands the script runs, in which order, with which profile and context."""
    log = tmp_path / "calls.log"
    _stand_in(tmp_path, "minikube", f'echo "minikube $*" >> {log}\n'
              f'case "$*" in *status*) test -e {tmp_path}/started ;; *start*) touch {tmp_path}/started ;; esac\n')
    _stand_in(tmp_path, "docker", f'echo "docker $*" >> {log}\n')
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", "CLUSTER": "minikube", "MINIKUBE_PROFILE": "p1"}

    def kind_sh(step: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(ROOT / "hack" / "kind" / "kind.sh"), step], env=env, capture_output=True,
                              text=True, timeout=60, check=False)

    assert kind_sh("load-images").returncode == 2  # not started yet: says so, runs nothing
    up = kind_sh("up")
    assert up.returncode == 0, up.stderr
    assert "+ minikube start -p p1 --kubernetes-version=v" in up.stderr
    loaded = kind_sh("load-images")
    assert loaded.returncode == 0, loaded.stderr
    assert "+ minikube -p p1 image load ghcr.io/scaledapp/operator:0.1.0" in loaded.stderr
    assert "+ minikube -p p1 image load ghcr.io/scaledapp/demo-app:0.1.0" in loaded.stderr
    assert kind_sh("down").returncode == 0
    calls = [line.split()[1:3] for line in log.read_text().splitlines() if line.startswith("minikube")]
    assert ["start", "-p"] in calls and calls[-1] == ["delete", "-p"]
