"""Run the demo load generator (`python -m demo_app.load`) as a Job inside the cluster, against the app's Service.

In the cluster, not through `kubectl port-forward`: a port-forward pins every request to ONE pod, so the
pods the scaler adds would never see load. A Job behind the Service spreads it like real clients.

    python -m hack.loadjob [--namespace demo] [--name demo] [--profile step:rate=20,peak=150,at=60] [--seconds 300]

prints the commands it runs, follows the Job, and prints the generator's report (text, and JSON with --json).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from typing import Any

from hack.kubeutil import DEFAULT_CONTEXT, Kubectl, KubectlFailedError, poll

DEMO_IMAGE = "ghcr.io/scaledapp/demo-app:0.1.0"  # the CRD's default spec.app.image; `make images` builds it
APP_UID = 10001
LABEL = "app.kubernetes.io/name=scaledapp-load"


@dataclass(frozen=True)
class LoadSpec:
    namespace: str
    scaledapp: str
    profile: str
    seconds: float
    image: str = DEMO_IMAGE
    port: int = 8080
    args: tuple[str, ...] = ()  # more `demo_app.load` options, e.g. ("--mix", "read=1", "--keys", "20")
    cpu_request: str = "500m"  # what the scheduler reserves for the generator (its limit is 1 CPU)

    @property
    def url(self) -> str:
        # The app Service is "<ScaledApp>-app" (scaledapp.resources.names.ChildNames.app).
        return f"http://{self.scaledapp}-app.{self.namespace}.svc:{self.port}"


def job_manifest(spec: LoadSpec, name: str) -> dict[str, Any]:
    """A one-shot Job that passes the restricted Pod Security profile."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": spec.namespace, "labels": {"app.kubernetes.io/name": "scaledapp-load"}},
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 3600,
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "scaledapp-load"}},
                "spec": {
                    "restartPolicy": "Never",
                    "securityContext": {"runAsNonRoot": True, "runAsUser": APP_UID, "runAsGroup": APP_UID,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "load",
                        "image": spec.image,
                        "command": ["python", "-m", "demo_app.load", "--url", spec.url, "--profile", spec.profile,
                                    "--duration", f"{spec.seconds:g}", *spec.args, "--json", "-", "--quiet"],
                        "resources": {"requests": {"cpu": spec.cpu_request, "memory": "128Mi"},
                                      "limits": {"cpu": "1", "memory": "256Mi"}},
                        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                                            "readOnlyRootFilesystem": True, "runAsNonRoot": True},
                    }],
                },
            },
        },
    }


def start(kubectl: Kubectl, spec: LoadSpec, name: str | None = None) -> str:
    name = name or f"load-{time.strftime('%H%M%S')}"
    kubectl.run("apply", "-f", "-", input=json.dumps(job_manifest(spec, name)))
    return name


def wait_running(kubectl: Kubectl, namespace: str, job: str, timeout: float = 180.0) -> None:
    def running() -> bool:
        items = kubectl.get("pods", "-n", namespace, "-l", f"job-name={job}")["items"]
        return any(p.get("status", {}).get("phase") in ("Running", "Succeeded", "Failed") for p in items)

    poll(running, timeout, f"the load Job {job} to start (image pulled, pod scheduled)")


def finish(kubectl: Kubectl, namespace: str, job: str, timeout: float) -> dict[str, Any]:
    """Wait for the Job, return the generator's JSON report (its `errors` count failed requests by kind)."""
    def done() -> str | None:
        status = (kubectl.find("job", job, "-n", namespace) or {}).get("status", {})
        if status.get("succeeded"):
            return "ok"
        return "failed" if status.get("failed") else None

    outcome = poll(done, timeout, f"the load Job {job} to finish")
    logs = kubectl.run("logs", "-n", namespace, f"job/{job}", quiet=True)
    text, _, rest = logs.partition("\n{")
    if outcome != "ok" or not rest:
        raise KubectlFailedError(f"load Job {job} {outcome}; its log:\n{logs[-2000:]}")
    report: dict[str, Any] = json.loads("{" + rest)
    report["text"] = text.strip()
    return report


def failed_requests(report: dict[str, Any]) -> int:
    return int(sum(report.get("errors", {}).values()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hack.loadjob", description=__doc__.split("\n\n")[0])
    parser.add_argument("--namespace", default="demo")
    parser.add_argument("--name", default="demo", help="the ScaledApp")
    parser.add_argument("--profile", default="step:rate=20,peak=150,at=60", help="see python -m demo_app.load -h")
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--image", default=DEMO_IMAGE)
    parser.add_argument("--context", default=DEFAULT_CONTEXT, help="kubectl context ('' = current)")
    parser.add_argument("--json", action="store_true", help="print the JSON report too")
    args = parser.parse_args(argv)
    kubectl = Kubectl(context=args.context or None)
    spec = LoadSpec(args.namespace, args.name, args.profile, args.seconds, args.image)
    print(f"==> load: {spec.profile} for {spec.seconds:g}s against {spec.url} (a Job in {spec.namespace})",
          file=sys.stderr)
    print(f"    watch it work: kubectl --context {args.context} -n {spec.namespace} get scaledapp {spec.scaledapp} -w",
          file=sys.stderr)
    try:
        job = start(kubectl, spec)
        wait_running(kubectl, spec.namespace, job)
        report = finish(kubectl, spec.namespace, job, timeout=spec.seconds + 120)
    except (KubectlFailedError, TimeoutError) as exc:
        print(f"load failed: {exc}", file=sys.stderr)
        return 1
    print(report["text"])
    if args.json:
        print(json.dumps({k: v for k, v in report.items() if k != "text"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
