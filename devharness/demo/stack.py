"""The processes of a closed loop on one machine, started in order and stopped in reverse.

Shared by `make demo` and the end-to-end tests: the local control plane (already up), the CRD, a real
Prometheus on loopback, the operator (`python -m scaledapp`), one ScaledApp, and the live twin
feeding Prometheus what its pods would expose. Everything it starts, it stops (`close()`), also
after an exception or Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import yaml

from devharness.procs import REPO, Child, HarnessError, free_port, poll
from devharness.prometheus import LocalPrometheus, operator_scrape_config

CRD = REPO / "crds" / "scaledapps.scaledapp.dev.yaml"
CLUSTER_SH = REPO / "hack" / "localcluster" / "cluster.sh"
TIERS = ("app", "cache", "db-write", "db-read", "workers")


def cluster_exports(overrides: dict[str, str] | None = None) -> dict[str, str]:
    """What `cluster.sh env` exports: KUBECONFIG of the local cluster and a PATH with the pinned binaries first."""
    out = subprocess.run([str(CLUSTER_SH), "env"], capture_output=True, text=True, check=True, timeout=30,
                         env={**os.environ, **(overrides or {})}).stdout
    return dict(re.findall(r"^export (\w+)=(.*)$", out, flags=re.MULTILINE))


def cluster_env(overrides: dict[str, str] | None = None) -> tuple[str, str]:
    """(kubeconfig, kubectl) of a running local control plane (`cluster.sh env`)."""
    exported = cluster_exports(overrides)
    kubectl = shutil.which("kubectl", path=exported["PATH"])
    if kubectl is None:
        raise HarnessError("kubectl not found among the pinned binaries: run `make tools`")
    return exported["KUBECONFIG"], kubectl


def python_env() -> dict[str, str]:
    # scaledapp and demo_app are installed into the venv (`make venv`); devharness lives in the repository root,
    # where `python -m devharness...` runs (cwd REPO): no PYTHONPATH.
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


class Stack:
    """One ScaledApp's closed loop. Use as a context manager, or call close() yourself."""

    def __init__(self, workdir: Path, kubeconfig: str, kubectl: str, namespace: str, name: str = "demo",
                 *, scrape_interval: str = "2s") -> None:
        self.workdir = workdir
        self.kubeconfig, self.kubectl_path = kubeconfig, kubectl
        self.namespace, self.name = namespace, name
        # The operator's /metrics, scraped as the chart's bundled Prometheus scrapes the operator pods (its
        # `scaledapp-operator` job), so a dashboard over this Prometheus shows the operator's panels too.
        self.metrics_port = free_port()
        self.prometheus = LocalPrometheus(
            workdir / "prometheus", scrape_interval=scrape_interval, evaluation_interval=scrape_interval,
            extra_scrape_configs=[operator_scrape_config(f"127.0.0.1:{self.metrics_port}", namespace)])
        self.operator = Child("operator", workdir / "operator.log")
        self.twin = Child("twin", workdir / "twin.log")
        self.trace = workdir / "trace.jsonl"
        self.operator_port = 0
        self._exit = ExitStack()
        self._namespace_created = False

    # ------------------------------------------------------------------ kubectl

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 60.0, check: bool = True) -> str:
        proc = subprocess.run([self.kubectl_path, f"--kubeconfig={self.kubeconfig}", *args], input=input,
                              capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise HarnessError(f"kubectl {' '.join(args)}: {proc.stderr.strip() or proc.stdout.strip()}")
        return proc.stdout

    def get_json(self, *args: str) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.kubectl("get", "-n", self.namespace, *args, "-o", "json"))
        return out

    # ------------------------------------------------------------------ pieces

    def install_crd(self) -> None:
        self.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))

        def established() -> bool:
            # Polled, not `kubectl wait`: that fails outright while a new CRD has no conditions yet.
            crd = json.loads(self.kubectl("get", "crd/scaledapps.scaledapp.dev", "-o", "json"))
            conditions = crd.get("status", {}).get("conditions") or []
            return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)

        poll(established, 60, "the ScaledApp CRD Established", 0.2)

    def create_namespace(self) -> None:
        self.kubectl("create", "namespace", self.namespace)
        self._namespace_created = True
        self._exit.callback(self.kubectl, "delete", "namespace", self.namespace, "--wait=false",
                            "--ignore-not-found", check=False)
        poll(lambda: self.kubectl("get", "serviceaccount", "default", "-n", self.namespace, check=False),
             30, f"the default ServiceAccount in {self.namespace}", 0.2)

    def start_prometheus(self) -> None:
        self._exit.callback(self.prometheus.stop)
        self.prometheus.start()

    def start_operator(self, extra_args: Sequence[str] = ()) -> None:
        self.operator_port = free_port()
        self._exit.callback(self.operator.stop)
        self.operator.spawn([sys.executable, "-m", "scaledapp", "--namespace", self.namespace, "--log-format",
                             "json", "--liveness", f"http://127.0.0.1:{self.operator_port}/healthz",
                             f"--metrics-port={self.metrics_port}", *extra_args],
                            env={**python_env(), "KUBECONFIG": self.kubeconfig})
        poll(self._operator_healthy, 60, f"the operator's liveness endpoint (log: {self.operator.log_path})", 0.2)

    def _operator_healthy(self) -> bool:
        self.operator.check_alive()
        with urllib.request.urlopen(f"http://127.0.0.1:{self.operator_port}/healthz", timeout=2) as response:
            return bool(response.status == 200)

    def apply_scaledapp(self, body: dict[str, Any]) -> None:
        body = {**body, "metadata": {**body.get("metadata", {}), "name": self.name, "namespace": self.namespace}}
        body["spec"].setdefault("scaling", {})["prometheusUrl"] = self.prometheus.url
        self.kubectl("apply", "--server-side", "--field-manager=demo", "-f", "-", input=json.dumps(body))

    def pods_by_tier(self) -> dict[str, list[str]]:
        """Running, Ready, not-terminating pods of the ScaledApp per tier."""
        items = self.get_json("pods", "-l", f"app.kubernetes.io/instance={self.name}")["items"]
        out: dict[str, list[str]] = {t: [] for t in TIERS}
        for pod in items:
            tier = pod["metadata"].get("labels", {}).get("scaledapp.dev/tier")
            ready = any(c.get("type") == "Ready" and c.get("status") == "True"
                        for c in pod.get("status", {}).get("conditions", []))
            if tier in out and ready and not pod["metadata"].get("deletionTimestamp"):
                out[tier].append(pod["metadata"]["name"])
        return out

    def wait_for_pods(self, timeout: float = 120.0) -> dict[str, list[str]]:
        """Every tier has a ready pod (the operator created the children and set their sizes)."""
        def every_tier() -> dict[str, list[str]] | None:
            self.operator.check_alive()
            pods = self.pods_by_tier()
            return pods if all(pods.values()) else None

        return poll(every_tier, timeout, f"a ready pod in every tier of {self.namespace}/{self.name}", 0.5)

    def start_twin(self, profile: str, seed: int = 0) -> None:
        self._exit.callback(self.twin.stop)
        self.twin.spawn([sys.executable, "-m", "devharness.twin", "--kubeconfig", str(Path(self.kubeconfig).resolve()),
                         "--namespace", self.namespace, "--name", self.name, "--profile", profile,
                         "--seed", str(seed), "--targets-file", str(self.prometheus.targets_path.resolve()),
                         "--trace", str(self.trace.resolve())], env=python_env(), cwd=REPO)

    def wait_for_scrapes(self, timeout: float = 60.0) -> None:
        """Prometheus has every tier's twin pods up (the operator's signals can be computed)."""
        sel = f'namespace="{self.namespace}",app_kubernetes_io_instance="{self.name}"'

        def scraped() -> bool:
            self.twin.check_alive()
            result = self.prometheus.query(f"count by (scaledapp_dev_tier) (up{{{sel}}} == 1)")
            return {r["metric"].get("scaledapp_dev_tier") for r in result} >= set(TIERS)

        poll(scraped, timeout, f"Prometheus scraping every tier of the twin (log: {self.twin.log_path})", 0.5)

    # ------------------------------------------------------------------ all together

    def up(self, scaledapp: dict[str, Any], profile: str, seed: int = 0) -> None:
        """CRD, namespace, Prometheus, operator, ScaledApp, pods, twin, first scrapes: in that order."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.install_crd()
        self.create_namespace()
        self.start_prometheus()
        self.start_operator()
        self.apply_scaledapp(scaledapp)
        self.wait_for_pods()
        self.start_twin(profile, seed)
        self.wait_for_scrapes()

    def close(self) -> None:
        """Stop what was started, newest first (twin, operator, Prometheus; the namespace last)."""
        self._exit.close()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_example(path: Path) -> dict[str, Any]:
    body: dict[str, Any] = yaml.safe_load(path.read_text())
    return body
