"""Names and labels of a ScaledApp's children: one place, used by builders, tiers and tests."""

from __future__ import annotations

from dataclasses import dataclass

from scaledapp.api import GROUP

TIER_LABEL = f"{GROUP}/tier"
INSTANCE_LABEL = "app.kubernetes.io/instance"
# On Postgres pods: primary or replica. The write and read Services select by it; the operator moves it
# when the write role moves (failover.py); pod templates only give a new pod its starting value.
ROLE_LABEL = f"{GROUP}/role"
MANAGED_BY = "scaledapp-operator"
# The queue's Redis: pods of their own with a tier label, but not a scaling tier (scaledapp.tiers lists those).
QUEUE_TIER = "queue"
RECONCILER_MANAGER = "scaledapp-reconciler"
SCALER_MANAGER = "scaledapp-scaler"


@dataclass(frozen=True)
class ChildNames:
    """Every child's name, derived from the ScaledApp's name (<= 40 chars, so all fit DNS labels)."""

    owner: str

    @property
    def app(self) -> str:  # Deployment, Service, PodDisruptionBudget
        return f"{self.owner}-app"

    @property
    def cache(self) -> str:  # Deployment, Service, PodDisruptionBudget
        return f"{self.owner}-cache"

    @property
    def cache_config(self) -> str:  # ConfigMap: redis.conf (reconciler) + maxmemory (scaler)
        return f"{self.owner}-cache-config"

    @property
    def db_primary(self) -> str:  # StatefulSet and its headless Service
        return f"{self.owner}-db"

    @property
    def db_write(self) -> str:  # Service to the primary
        return f"{self.owner}-db-write"

    @property
    def db_replicas(self) -> str:  # StatefulSet of read replicas and its headless Service
        return f"{self.owner}-db-read"

    @property
    def db_read(self) -> str:  # Service over ready replicas
        return f"{self.owner}-db-read-svc"

    @property
    def db_primary_budget(self) -> str:  # PodDisruptionBudget: the write role's pod is never evicted
        return f"{self.owner}-db-primary"

    @property
    def db_replica_budget(self) -> str:  # PodDisruptionBudget: one replica evicted at a time
        return f"{self.owner}-db-replicas"

    @property
    def db_scripts(self) -> str:  # ConfigMap: primary-init, replica-bootstrap, exporter queries
        return f"{self.owner}-db-scripts"

    @property
    def db_topology(self) -> str:  # ConfigMap: which pod holds the write role (key `primary`, the failover's)
        return f"{self.owner}-db-topology"

    @property
    def home_primary(self) -> str:  # the pod that holds the write role unless a failover moved it
        return f"{self.db_primary}-0"

    @property
    def db_credentials(self) -> str:  # Secret, generated once by the operator, never overwritten
        return f"{self.owner}-db-credentials"

    @property
    def db_ca(self) -> str:  # Secret: the generated Postgres CA (tls.crt, tls.key), created once; no pod mounts it
        return f"{self.owner}-db-ca"

    @property
    def db_tls(self) -> str:  # Secret: ca.crt, the server and replication certificates (resources/tls.py)
        return f"{self.owner}-db-tls"

    @property
    def workers(self) -> str:  # Deployment, PodDisruptionBudget
        return f"{self.owner}-workers"

    @property
    def queue(self) -> str:  # StatefulSet (1 pod, PVC), Service, PodDisruptionBudget: the job queue's own durable Redis
        return f"{self.owner}-queue"

    def ingress_policy(self, tier: str) -> str:  # NetworkPolicy: who may connect to one tier's pods
        return f"{self.owner}-{tier}-ingress"

    def egress_policy(self, tier: str) -> str:  # NetworkPolicy: where one tier's pods may connect
        return f"{self.owner}-{tier}-egress"


def selector_labels(owner: str, tier: str) -> dict[str, str]:
    """The immutable labels a workload selects its pods by."""
    return {INSTANCE_LABEL: owner, TIER_LABEL: tier}


def labels(owner: str, tier: str, component: str | None = None) -> dict[str, str]:
    """Labels on every child and pod: Prometheus and the tests find them by these."""
    out = {
        "app.kubernetes.io/name": "scaledapp",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": owner,
        "app.kubernetes.io/component": component or tier,
        **selector_labels(owner, tier),
    }
    return out
