"""NetworkPolicies: the data stores accept only the pods that use them.

* Postgres (db-write and db-read pods alike, since the write role moves between them on failover): app
  and workers, the other Postgres pods (replication), and the operator's pods in any namespace (failover
  asks the servers for their WAL positions and promotes one), on 5432.
* cache and queue Redis: app and workers on 6379.
* The exporters' metrics ports (9187, 9121) from any source: Prometheus may run in any namespace and
  under any labels, and a metrics endpoint exposes no data.

Peers are pods of the same ScaledApp (instance label) in the same namespace. Egress is not restricted.
Only ingress to these tiers is: the app's own Service must stay reachable for whoever sends traffic.
"""

from __future__ import annotations

from collections.abc import Sequence

from scaledapp.resources import names
from scaledapp.resources.common import (
    POSTGRES_EXPORTER_PORT,
    POSTGRES_PORT,
    REDIS_EXPORTER_PORT,
    REDIS_PORT,
    Manifest,
    object_meta,
)

CLIENT_TIERS = ("app", "workers")
POSTGRES_PEERS = (*CLIENT_TIERS, "db-write", "db-read")
# The chart's operator pods (app.kubernetes.io/name is the chart's name unless nameOverride changes it).
OPERATOR_PODS: Manifest = {
    "namespaceSelector": {},
    "podSelector": {"matchLabels": {"app.kubernetes.io/name": "scaledapp-operator",
                                    "app.kubernetes.io/component": "operator"}},
}


def _peers(owner: str, tiers: Sequence[str]) -> Manifest:
    return {"podSelector": {
        "matchLabels": {names.INSTANCE_LABEL: owner},
        "matchExpressions": [{"key": names.TIER_LABEL, "operator": "In", "values": list(tiers)}],
    }}


def _policy(
    child: names.ChildNames, namespace: str, tier: str, port: int, sources: list[Manifest], metrics_port: int | None,
) -> Manifest:
    ingress: list[Manifest] = [{"from": sources, "ports": [{"protocol": "TCP", "port": port}]}]
    if metrics_port is not None:
        ingress.append({"ports": [{"protocol": "TCP", "port": metrics_port}]})
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": object_meta(child.owner, namespace, child.ingress_policy(tier), tier, "network-policy"),
        "spec": {
            "podSelector": {"matchLabels": names.selector_labels(child.owner, tier)},
            "policyTypes": ["Ingress"],
            "ingress": ingress,
        },
    }


def network_policies(child: names.ChildNames, namespace: str, cache_enabled: bool) -> list[Manifest]:
    clients = [_peers(child.owner, CLIENT_TIERS)]
    postgres_sources = [_peers(child.owner, POSTGRES_PEERS), OPERATOR_PODS]
    policies = [
        *(_policy(child, namespace, tier, POSTGRES_PORT, postgres_sources, POSTGRES_EXPORTER_PORT)
          for tier in ("db-write", "db-read")),
        _policy(child, namespace, names.QUEUE_TIER, REDIS_PORT, clients, None),
    ]
    if cache_enabled:
        policies.append(_policy(child, namespace, "cache", REDIS_PORT, clients, REDIS_EXPORTER_PORT))
    return policies
