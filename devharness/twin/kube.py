"""What the twin reads from the API server each tick: the real pods and the real sizes.

The control plane is real but kwok pods run nothing, so the twin is told the size of each tier by
the API server, exactly as the real data plane "is" its pods: the ready pods of each tier (their
names become the `pod` label of the simulated series), the cache's maxmemory from the scaler-owned
ConfigMap key, and the primary's CPU/memory from its StatefulSet's `postgres` container.

Every request carries a timeout: a stalled API server must not stall the twin's /metrics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes import config
from kubernetes.client import ApiClient, AppsV1Api, CoreV1Api
from kubernetes.client.exceptions import ApiException

from devharness.twin.tiers import TWIN_TIERS, LiveObjects
from devharness.twin.tiers import names as twin_tier_names
from scaledapp.resources.names import INSTANCE_LABEL, TIER_LABEL, ChildNames
from scaledapp.sizes import Sizes

REQUEST_TIMEOUT = 5.0  # seconds per API call
# Tiers whose pods the twin simulates (the queue's Redis carries no signal the operator reads).
SIMULATED_TIERS = twin_tier_names()


@dataclass(frozen=True)
class Pod:
    name: str
    tier: str


@dataclass(frozen=True)
class ClusterView:
    """One reading of the API server: the ready pods per tier and the sizes the data plane runs at."""

    sizes: Sizes
    pods: tuple[Pod, ...] = ()
    missing: tuple[str, ...] = field(default=())  # what could not be read (the previous value stands)

    def pods_of(self, tier: str) -> list[Pod]:
        return [p for p in self.pods if p.tier == tier]


def pod_is_serving(pod: Mapping[str, Any]) -> bool:
    """Running, Ready and not terminating: the pods a Service would route to and Prometheus would scrape."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    if meta.get("deletionTimestamp") or status.get("phase") != "Running":
        return False
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])


def serving_pods(items: Sequence[Mapping[str, Any]]) -> tuple[Pod, ...]:
    """Ready pods of the simulated tiers, sorted by (tier, name) so pod order is stable across ticks."""
    pods = []
    for item in items:
        labels = (item.get("metadata") or {}).get("labels") or {}
        tier = labels.get(TIER_LABEL)
        if tier in SIMULATED_TIERS and pod_is_serving(item):
            pods.append(Pod(str(item["metadata"]["name"]), str(tier)))
    return tuple(sorted(pods, key=lambda p: (p.tier, p.name)))


def build_view(pods: Sequence[Mapping[str, Any]], cache_config: Mapping[str, Any] | None,
               primary: Mapping[str, Any] | None, previous: Sizes) -> ClusterView:
    """Pure: the API objects -> what the twin simulates. A size the objects do not say keeps its previous value."""
    serving = serving_pods(pods)
    live = LiveObjects({tier: sum(1 for p in serving if p.tier == tier) for tier in SIMULATED_TIERS},
                       cache_config, primary)
    sizes, missing = dict(previous), []
    for t in TWIN_TIERS:
        size = t.read_size(live, previous)
        if size is None:
            missing.append(t.missing)
        else:
            sizes[t.name] = size
    return ClusterView(Sizes(sizes), serving, tuple(missing))


class ClusterReader:
    """Reads one ScaledApp's pods and sizes with the official client (blocking; the twin calls it per tick)."""

    def __init__(self, kubeconfig: str | None, namespace: str, name: str, initial: Sizes) -> None:
        self.client: ApiClient = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        self.core = CoreV1Api(self.client)
        self.apps = AppsV1Api(self.client)
        self.namespace = namespace
        self.name = name
        self.child = ChildNames(name)
        self.last = ClusterView(initial)

    def _get(self, read: Any, name: str) -> dict[str, Any] | None:
        try:
            obj = read(name, self.namespace, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        out: dict[str, Any] = self.client.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
        return out

    def read(self) -> ClusterView:
        """The current view; raises on an unreachable API server (the caller keeps the last view)."""
        pods = self.core.list_namespaced_pod(
            self.namespace, label_selector=f"{INSTANCE_LABEL}={self.name}", _request_timeout=REQUEST_TIMEOUT
        )
        items = self.client.sanitize_for_serialization(pods).get("items") or []  # type: ignore[no-untyped-call]
        cache = self._get(self.core.read_namespaced_config_map, self.child.cache_config)
        primary = self._get(self.apps.read_namespaced_stateful_set, self.child.db_primary)
        self.last = build_view(items, cache, primary, self.last.sizes)
        return self.last

    def close(self) -> None:
        self.client.close()  # type: ignore[no-untyped-call]
