"""NetworkPolicies: every tier accepts only the pods that use it, and reaches only what it uses.

Each tier has two policies, `<name>-<tier>-ingress` and `<name>-<tier>-egress`. Peers are pods of the same
ScaledApp (instance label) in the same namespace.

Ingress (who may connect):

* app, on `spec.app.port` (its API and its /metrics): anyone. The app's Service is the ScaledApp's front
  door, and whoever sends traffic (an Ingress controller, a load Job, another namespace) is not ours to know.
* workers, on 9100 (/metrics): anyone (Prometheus). A worker serves nothing else.
* cache and queue, on 6379: app and workers.
* db-write and db-read, on 5432: app and workers; every Postgres pod (replication: the write role moves
  between the two StatefulSets on failover, so each accepts the other); the operator's pods in any
  namespace (the failover guard asks the servers for their WAL positions and promotes one).
* the exporters, cache 9121 and Postgres 9187: anyone.

Metrics ports are open to any source: Prometheus may run in any namespace and under any labels, and a
metrics page exposes no data. Every other port of every tier is closed.

Egress (where a tier may connect):

* app and workers: DNS; the Postgres pods on 5432; cache and queue on 6379.
* db-write and db-read: DNS; the Postgres pods on 5432 (a replica's bootstrap and streaming, a former
  primary re-seeding, all through the write Service to whichever pod holds the role).
* cache and queue: nothing. A Redis connects nowhere; its exporter and reloader use the pod's loopback,
  which no policy filters.

DNS may go to any destination on port 53, not only to the cluster's DNS pods in kube-system, for two
reasons. The cluster resolver recurses to the outside world anyway, so narrowing the destination would stop
no DNS tunnel. And the resolver is not always a pod in kube-system: NodeLocal DNSCache answers on a
link-local address of the node, some clusters run CoreDNS on the host network; there a kube-system
selector would cut name resolution, and with it every tier. A cluster whose DNS pods listen on another
port than 53 (the local node's CoreDNS listens on 1053 behind the kube-dns Service on 53; policies match
the pod's port) needs its own allowance, as does an app that calls anything else (an outside API, a
tracing collector): NetworkPolicies add up, so a user's own policy selecting the app pods
(`app.kubernetes.io/instance=<name>`, `scaledapp.dev/tier=app`) widens ours without touching it.

What enforces them is the cluster's network plugin; one that ignores NetworkPolicy (the local node's
bridge, flannel) lets every pod connect anywhere. Kind since v0.24 enforces them (kindnet with
kube-network-policies). The Redis and Postgres passwords are what keeps a stranger pod out everywhere.
Traffic from the node itself (the kubelet's probes) is always allowed, and so are replies to allowed
connections.
"""

from __future__ import annotations

from collections.abc import Sequence

from scaledapp import api
from scaledapp.resources import names
from scaledapp.resources.common import (
    POSTGRES_EXPORTER_PORT,
    POSTGRES_PORT,
    REDIS_EXPORTER_PORT,
    REDIS_PORT,
    WORKER_METRICS_PORT,
    Manifest,
    object_meta,
)

CLIENT_TIERS = ("app", "workers")
POSTGRES_TIERS = ("db-write", "db-read")
REDIS_TIERS = ("cache", names.QUEUE_TIER)
POSTGRES_PEERS = (*CLIENT_TIERS, *POSTGRES_TIERS)
DNS_PORT = 53
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


def _tcp(port: int) -> list[Manifest]:
    return [{"protocol": "TCP", "port": port}]


def _rule(direction: str, peers: list[Manifest] | None, port: int) -> Manifest:
    """One rule: `port` to or from `peers` (None: any source or destination)."""
    rule: Manifest = {"ports": _tcp(port)}
    if peers is not None:
        rule["from" if direction == "Ingress" else "to"] = peers
    return rule


def _dns() -> Manifest:
    return {"ports": [{"protocol": "UDP", "port": DNS_PORT}, {"protocol": "TCP", "port": DNS_PORT}]}


def _policy(child: names.ChildNames, namespace: str, tier: str, direction: str, rules: list[Manifest]) -> Manifest:
    name = child.ingress_policy(tier) if direction == "Ingress" else child.egress_policy(tier)
    key = "ingress" if direction == "Ingress" else "egress"
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": object_meta(child.owner, namespace, name, tier, "network-policy"),
        "spec": {
            "podSelector": {"matchLabels": names.selector_labels(child.owner, tier)},
            "policyTypes": [direction],
            # An empty list: nothing allowed in that direction (the Redis' egress).
            key: rules,
        },
    }


def _ingress_rules(child: names.ChildNames, tier: str, app_port: int) -> list[Manifest]:
    clients = [_peers(child.owner, CLIENT_TIERS)]
    postgres_sources = [_peers(child.owner, POSTGRES_PEERS), OPERATOR_PODS]
    by_tier: dict[str, list[Manifest]] = {
        "app": [_rule("Ingress", None, app_port)],
        "workers": [_rule("Ingress", None, WORKER_METRICS_PORT)],
        "cache": [_rule("Ingress", clients, REDIS_PORT), _rule("Ingress", None, REDIS_EXPORTER_PORT)],
        names.QUEUE_TIER: [_rule("Ingress", clients, REDIS_PORT)],
        **{t: [_rule("Ingress", postgres_sources, POSTGRES_PORT), _rule("Ingress", None, POSTGRES_EXPORTER_PORT)]
           for t in POSTGRES_TIERS},
    }
    return by_tier[tier]


def _egress_rules(child: names.ChildNames, tier: str) -> list[Manifest]:
    postgres = _rule("Egress", [_peers(child.owner, POSTGRES_TIERS)], POSTGRES_PORT)
    redis = _rule("Egress", [_peers(child.owner, REDIS_TIERS)], REDIS_PORT)
    if tier in CLIENT_TIERS:
        return [_dns(), postgres, redis]
    if tier in POSTGRES_TIERS:
        return [_dns(), postgres]
    return []  # the Redis connect nowhere


def policies(child: names.ChildNames, namespace: str, tier: str, ingress: list[Manifest],
             egress: list[Manifest]) -> list[Manifest]:
    """A tier's two policies from its rules (a tier these rules do not name brings its own; an empty list
    allows nothing in that direction)."""
    return [_policy(child, namespace, tier, "Ingress", ingress), _policy(child, namespace, tier, "Egress", egress)]


def tier_policies(child: names.ChildNames, namespace: str, spec: api.ScaledAppSpec, tier: str) -> list[Manifest]:
    """The two policies of one of the tiers above (its builder asks for them while it runs the tier)."""
    return policies(child, namespace, tier, _ingress_rules(child, tier, spec.app.port), _egress_rules(child, tier))


def policy_kinds(child: names.ChildNames, tier: str) -> list[tuple[str, str, str]]:
    """(apiVersion, kind, name) of a tier's two policies, for the pruner."""
    return [("networking.k8s.io/v1", "NetworkPolicy", name)
            for name in (child.ingress_policy(tier), child.egress_policy(tier))]
