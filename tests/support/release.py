"""A chart release on the real node, as a user installs it, and the ScaledApp it runs (tests/realnode).

    with release(real_cluster, "rp") as deployed:       # operator + bundled Prometheus, watching one namespace
        apply_scaledapp(deployed, {"scaling": {...}})   # examples/minimal.yaml with this spec, Ready
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

from tests.support.cluster import ROOT, Cluster
from tests.support.helm import helm_run, install
from tests.support.operator import CRD, wait_crd_established
from tests.support.wait import wait_for

NAME = "demo"  # examples/minimal.yaml


@dataclass(frozen=True)
class Deployed:
    cluster: Cluster
    system: str  # the chart's namespace (operator + Prometheus)
    apps: str  # the ScaledApp's namespace
    release: str

    @property
    def prometheus(self) -> str:
        ip = self.cluster.kubectl("get", "service", "prometheus", "-n", self.system,
                                  "-o", "jsonpath={.spec.clusterIP}").strip()
        return f"http://{ip}:9090"

    def service_url(self, service: str, port: int) -> str:
        ip = self.cluster.kubectl("get", "service", service, "-n", self.apps, "-o", "jsonpath={.spec.clusterIP}")
        return f"http://{ip.strip()}:{port}"

    def psql(self, pod: str, query: str) -> str:
        # The superuser's password is in the pod's own environment (from the generated Secret): not in the test.
        script = f'PGPASSWORD="$POSTGRES_PASSWORD" psql -h 127.0.0.1 -U postgres -d app -tAc "{query}"'
        return self.cluster.kubectl("exec", "-n", self.apps, pod, "-c", "postgres", "--", "sh", "-c", script)

    def delete_pod_until_replaced(self, pod: str) -> float:
        """Delete `pod` and wait until the pod of that name is another one (or gone): only then is the old server
        surely stopped, so writes acknowledged afterwards are "back". Returns when it was deleted (monotonic)."""
        def uid() -> str | None:
            out = self.cluster.kubectl_run("get", "pod", pod, "-n", self.apps, "-o", "jsonpath={.metadata.uid}")
            return out.stdout.strip() if out.returncode == 0 else None

        old = uid()
        deleted = time.monotonic()
        self.cluster.kubectl("delete", "pod", "-n", self.apps, pod, "--wait=false")
        wait_for(lambda: uid() != old, timeout=120, what=f"{pod} replaced", interval=0.2)
        return deleted

    def scaledapp(self) -> dict[str, Any]:
        return self.cluster.get_json("scaledapp", NAME, "-n", self.apps)

    def pod_named(self, role: str) -> str:
        """The name of the Postgres pod carrying this role label (primary or replica; the first by name)."""
        out = self.cluster.kubectl("get", "pods", "-n", self.apps, "-l",
                                   f"app.kubernetes.io/instance={NAME},scaledapp.dev/role={role}",
                                   "-o", "jsonpath={.items[*].metadata.name}").split()
        return sorted(out)[0] if out else ""


def http_json(url: str, body: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"},
                                     method="POST" if body is not None else "GET")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c.get("type") == kind), {})


def create_namespace(cluster: Cluster, name: str) -> None:
    cluster.kubectl("create", "namespace", name)
    # Everything the operator and the chart run must pass the restricted profile, as on a hardened cluster.
    cluster.kubectl("label", "namespace", name, "pod-security.kubernetes.io/enforce=restricted")
    wait_for(lambda: cluster.kubectl_run("get", "serviceaccount", "default", "-n", name).returncode == 0,
             timeout=30, what=f"the default ServiceAccount in {name}")


@contextlib.contextmanager
def release(cluster: Cluster, prefix: str, values: dict[str, Any] | None = None) -> Iterator[Deployed]:
    """The chart (operator + bundled Prometheus scraping every 5 s) watching one fresh namespace; `values`
    add to or override the chart values given here."""
    suffix = secrets.token_hex(3)
    system, apps, name = f"t-{prefix}-sys-{suffix}", f"t-{prefix}-app-{suffix}", f"{prefix}-{suffix}"
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    wait_crd_established(cluster)
    for ns in (system, apps):
        create_namespace(cluster, ns)
    try:
        install(cluster.kubeconfig, name, system, {
            "fullnameOverride": f"scaledapp-{suffix}", "watchNamespaces": [apps],
            "prometheus.enabled": True, "prometheus.namespaces": [apps], "prometheus.scrapeInterval": "5s",
            "prometheus.scrapeTimeout": "4s", **(values or {}),
        }, skip_crds=True, timeout="180s")
        yield Deployed(cluster, system, apps, name)
    finally:
        # The ScaledApps first, while their operator still runs to release its finalizer on them.
        cluster.kubectl_run("delete", "scaledapps", "--all", "-n", apps, "--timeout=60s", timeout=90)
        helm_run("uninstall", name, "--namespace", system, "--wait", "--timeout", "60s",
                 kubeconfig=cluster.kubeconfig)
        for ns in (apps, system):
            cluster.kubectl_run("delete", "namespace", ns, "--wait=false", "--ignore-not-found")


def apply_scaledapp(deployed: Deployed, spec: dict[str, Any], timeout: float = 240.0) -> Deployed:
    """examples/minimal.yaml as a user applies it, with `spec` and the release's Prometheus; waits for Ready."""
    body = yaml.safe_load((ROOT / "examples" / "minimal.yaml").read_text())
    spec = json.loads(json.dumps(spec))
    spec.setdefault("scaling", {})["prometheusUrl"] = f"http://prometheus.{deployed.system}.svc:9090"
    body["spec"] = spec
    deployed.cluster.apply(body, namespace=deployed.apps)
    deployed.cluster.kubectl("wait", "-n", deployed.apps, "--for=condition=Ready", f"scaledapp/{NAME}",
                             f"--timeout={timeout:.0f}s", timeout=timeout + 20)
    return deployed
