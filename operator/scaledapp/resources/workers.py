"""The workers tier: a Deployment of queue workers (the app image unless spec.workers.image is set), and
its PodDisruptionBudget.

Workers get the app's environment (see app.py) plus METRICS_PORT, and the app's container resources:
the spec sizes one kind of Python pod. `spec.replicas` is the scaler's.
"""

from __future__ import annotations

from scaledapp import api
from scaledapp.resources import names, network
from scaledapp.resources.app import DB_MOUNTS, container_resources, db_volumes, dependency_env
from scaledapp.resources.base import Build, Builder, ChildKind, Children
from scaledapp.resources.common import (
    APP_UID,
    WORKER_METRICS_PORT,
    Manifest,
    container_security_context,
    disruption_budget,
    env_value,
    merge_env,
    object_meta,
    pod_security_context,
    pod_template,
    scrape_annotations,
    selector,
)

TIER = "workers"
CONTAINER = "worker"
# A worker stops taking jobs on SIGTERM and finishes the one in hand: give it time to.
TERMINATION_GRACE_SECONDS = 60


def workers_deployment(child: names.ChildNames, namespace: str, spec: api.ScaledAppSpec) -> Manifest:
    workers, app = spec.workers, spec.app
    env = merge_env(
        [*dependency_env(child, spec, CONTAINER), env_value("METRICS_PORT", str(WORKER_METRICS_PORT))],
        [e.model_dump() for e in app.env],
    )
    container: Manifest = {
        "name": CONTAINER,
        "image": workers.image or app.image,
        "command": list(workers.command),
        "ports": [{"name": "metrics", "containerPort": WORKER_METRICS_PORT, "protocol": "TCP"}],
        "env": env,
        "resources": container_resources(app.resources),
        # A worker has no HTTP API; a hung process still stops serving /metrics, which liveness catches.
        "livenessProbe": {
            "httpGet": {"path": "/metrics", "port": "metrics"},
            "initialDelaySeconds": 10, "periodSeconds": 20, "failureThreshold": 3, "timeoutSeconds": 5,
        },
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *[dict(m) for m in DB_MOUNTS]],
    }
    pod = pod_template(
        child.owner,
        TIER,
        {
            "securityContext": pod_security_context(APP_UID),
            "terminationGracePeriodSeconds": TERMINATION_GRACE_SECONDS,
            "containers": [container],
            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}, *db_volumes(child, spec)],
        },
        annotations=scrape_annotations(WORKER_METRICS_PORT),
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_meta(child.owner, namespace, child.workers, TIER),
        "spec": {
            "selector": selector(child.owner, TIER),
            "revisionHistoryLimit": 5,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": pod,
        },
    }


def workers_pdb(child: names.ChildNames, namespace: str) -> Manifest:
    """Drains stop one worker at a time (each finishes the job in hand); jobs wait in the queue meanwhile."""
    return disruption_budget(child.owner, namespace, child.workers, TIER)


def _children(build: Build) -> Children:
    child, namespace, spec = build.child, build.namespace, build.spec
    if not spec.workers.enabled:
        return Children()
    return Children(policies=network.tier_policies(child, namespace, spec, TIER),
                    workloads=[workers_deployment(child, namespace, spec), workers_pdb(child, namespace)])


def _kinds(child: names.ChildNames) -> list[ChildKind]:
    return [*network.policy_kinds(child, TIER), ("apps/v1", "Deployment", child.workers),
            ("policy/v1", "PodDisruptionBudget", child.workers)]


BUILDER = Builder(TIER, _children, _kinds)
