"""The ScaledApp API: pydantic models of spec and status. The CRD schema is generated from these.

Field names are snake_case in Python and camelCase on the wire (aliases). Every field has a
description, so `kubectl explain scaledapp.spec.database` is useful. Rules that a JSON schema cannot
say (min <= max, quantity floors and ordering, cross-field limits) are `Rule`s in a model's RULES: each is
a CEL rule the API server runs (x-kubernetes-validations, with the message naming the field) and the same
check in Python, run by pydantic, so the operator refuses exactly what the API server refuses. Transition
rules (immutability) have no Python side: only the API server sees the old object.
"""

from __future__ import annotations

import enum
import json
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic.alias_generators import to_snake

from scaledapp import apistatus
from scaledapp.apibase import (
    DNS_SUBDOMAIN_PATTERN,
    ENV_NAME_PATTERN,
    MIN_CACHE_MEMORY,
    MIN_CPU,
    MIN_DATABASE_MEMORY,
    MIN_MEMORY,
    MIN_STORAGE,
    PATH_PATTERN,
    PROMETHEUS_URL_PATTERN,
    QUANTITY_PATTERN,
    RESERVED_ENV,
    Image,
    Model,
    Quantity,
    Rule,
    at_least,
    cel,
    not_above,
)

# The status models live in apistatus.py; here too, as api.Condition, api.ScaledAppStatus, ...
Action = apistatus.Action
Condition = apistatus.Condition
DatabaseStatus = apistatus.DatabaseStatus
Evidence = apistatus.Evidence
FailoverRecord = apistatus.FailoverRecord
ScaledAppStatus = apistatus.ScaledAppStatus
ScalerState = apistatus.ScalerState
TierStatus = apistatus.TierStatus
TiersStatus = apistatus.TiersStatus

GROUP = "scaledapp.dev"
VERSION = "v1alpha1"
KIND = "ScaledApp"
PLURAL = "scaledapps"
SINGULAR = "scaledapp"
SHORT_NAMES = ["sapp"]
API_VERSION = f"{GROUP}/{VERSION}"

# Child names are "<name>-db-read" and a StatefulSet's pods add "-N" plus a 10-char revision hash
# label; 40 characters keeps every derived name a valid 63-character DNS label.
MAX_NAME_LENGTH = 40
PAUSE_ANNOTATION = f"{GROUP}/paused"

DEMO_APP_IMAGE = "ghcr.io/scaledapp/demo-app:0.1.0"
REDIS_IMAGE = "redis:7.4.2-alpine"
POSTGRES_IMAGE = "postgres:17.5"
# Pinned exporter images: the same versions the data-plane tests build from Go modules
# (hack/localcluster/versions.env). postgres_exporter metric names changed in v0.20.
REDIS_EXPORTER_IMAGE = "oliver006/redis_exporter:v1.88.0"
POSTGRES_EXPORTER_IMAGE = "quay.io/prometheuscommunity/postgres-exporter:v0.19.1"

# ---------------------------------------------------------------------------------------------- shared


class ReplicaRange(Model):
    """Bounds the scaler keeps a horizontally scaled tier within."""

    min: int = Field(1, ge=0, le=1000, description="Fewest replicas; the scaler never goes below.")
    max: int = Field(10, ge=0, le=1000, description="Most replicas; at this bound the tier is AtCeiling.")

    RULES = (Rule("self.min <= self.max", "min must be less than or equal to max", ".min",
                  lambda m: m.min <= m.max),)


class AppReplicaRange(ReplicaRange):
    """Bounds of the app tier: at least one pod, since an app with none serves nothing and reports no metric
    that could scale it back up."""

    min: int = Field(1, ge=1, le=1000, description="Fewest replicas (at least 1); the scaler never goes below.")


MAX_READ_REPLICAS = 30


class ReadReplicaRange(ReplicaRange):
    """Bounds of the read replicas. The ceiling is fixed (not the spec's) in the servers' settings, so that
    changing readReplicas.max never asks a standby for fewer WAL senders than its primary has."""

    min: int = Field(1, ge=0, le=MAX_READ_REPLICAS, description="Fewest replicas; the scaler never goes below.")
    max: int = Field(10, ge=0, le=MAX_READ_REPLICAS,
                     description=f"Most replicas (at most {MAX_READ_REPLICAS}); at this bound the tier is AtCeiling.")


class ResourceAmounts(Model):
    """CPU and memory for one Postgres container."""

    cpu: str = Quantity("250m", f"CPU, as a Kubernetes quantity (e.g. 250m, 1); at least {MIN_CPU}.")
    memory: str = Quantity(
        "256Mi", f"Memory, as a Kubernetes quantity (e.g. 256Mi, 1Gi); at least {MIN_DATABASE_MEMORY}."
    )

    RULES = (
        at_least("cpu", MIN_CPU),
        at_least("memory", MIN_DATABASE_MEMORY, " (Postgres' default shared_buffers alone is 128MB)"),
    )


class AppResources(Model):
    """CPU and memory of each app (and worker) container."""

    cpu: str = Quantity(
        "500m",
        "CPU limit: the container's CPU budget. The app reports it as a metric, and CPU utilization (what the "
        f"scaler reads) is usage over this limit. At least {MIN_CPU}.",
    )
    memory: str = Quantity("256Mi", f"Memory limit, and request; at least {MIN_MEMORY}.")
    cpu_request: str | None = Field(
        None,
        pattern=QUANTITY_PATTERN,
        max_length=20,
        description="CPU the scheduler reserves per container (requests.cpu); a fifth of cpu when unset; at "
        f"least {MIN_CPU} and at most cpu. Below cpu the pod is Burstable: it uses up to its limit when the node "
        "has the CPU. Set it to cpu for Guaranteed QoS.",
    )

    RULES = (
        at_least("cpu", MIN_CPU),
        at_least("memory", MIN_MEMORY, " (below that a container is OOM-killed as it starts)"),
        at_least("cpuRequest", MIN_CPU, optional=True),
        not_above("cpuRequest", "cpu", " (a request above the limit is refused by Kubernetes)", optional=True),
    )


class EnvVar(Model):
    name: str = Field(..., min_length=1, max_length=128, pattern=ENV_NAME_PATTERN, description="Variable name.")
    value: str = Field("", max_length=4096, description="Literal value (never put secrets here).")


# ---------------------------------------------------------------------------------------------- tiers


class ProbePaths(Model):
    readiness_path: str = Field(
        "/readyz",
        max_length=256,
        pattern=PATH_PATTERN,
        description="HTTP path of the readiness probe: out of rotation when failing.",
    )
    liveness_path: str = Field(
        "/livez",
        max_length=256,
        pattern=PATH_PATTERN,
        description="HTTP path of the liveness probe: restarted when failing.",
    )


class AppSpec(Model):
    """The stateless web tier: a Deployment behind a Service, widened horizontally."""

    image: str = Image(DEMO_APP_IMAGE, "Container image of the app: [registry[:port]/]path[:tag][@digest].")
    port: int = Field(8080, ge=1024, le=65535, description="Port the app listens on (unprivileged).")
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=64,
        description="Extra environment variables for app and worker pods; names are unique. A name the "
        "operator also sets replaces its value, except " + " and ".join(RESERVED_ENV) + " (the probes use "
        "them: set port instead).",
        # One entry per name: the API server refuses duplicates, and server-side apply merges by name.
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    resources: AppResources = Field(
        default_factory=AppResources,
        description="Limits and requests of each app container (the CPU limit is also reported by the app as "
        "a metric, so CPU utilization needs no kube-state-metrics).",
    )
    replicas: AppReplicaRange = Field(
        default_factory=lambda: AppReplicaRange(min=2, max=10), description="Replica bounds for the app tier."
    )
    probes: ProbePaths = Field(default_factory=ProbePaths, description="Health-check paths.")

    RULES = (
        Rule(
            "!has(self.env) || !self.env.exists(e, e.name in " + str(list(RESERVED_ENV)) + ")",
            "env must not set " + " or ".join(RESERVED_ENV)
            + ": the probes use the operator's values (set port instead)",
            ".env",
            lambda m: not any(e.name in RESERVED_ENV for e in m.env),
        ),
    )

    @field_validator("env")
    @classmethod
    def _unique_env_names(cls, env: list[EnvVar]) -> list[EnvVar]:
        seen: set[str] = set()
        for var in env:
            if var.name in seen:
                raise ValueError(f"env names must be unique: {var.name} is set twice")
            seen.add(var.name)
        return env


class MemoryRange(Model):
    initial: str = Quantity("64Mi", f"Cache size at creation (Redis maxmemory); at least {MIN_CACHE_MEMORY}.")
    max: str = Quantity("512Mi", f"Largest size the scaler may grow the cache to; at least {MIN_MEMORY}.")

    RULES = (
        at_least("initial", MIN_CACHE_MEMORY, " (Redis maxmemory: 0 would mean no limit at all)"),
        at_least("max", MIN_MEMORY, " (the Redis container's memory limit is sized from it)"),
        not_above("initial", "max"),
    )


class CacheSpec(Model):
    """Redis as a read-through cache; widened by giving it more memory without emptying it."""

    enabled: bool = Field(True, description="Run the cache tier. Without it every read goes to the database.")
    image: str = Image(REDIS_IMAGE, "Redis image (also runs the queue's Redis).")
    memory: MemoryRange = Field(default_factory=MemoryRange, description="Cache memory (maxmemory) bounds.")
    ttl_seconds: int = Field(
        300, ge=1, le=86400, description="How long a cached item may live: a cache must know when it is stale."
    )


class ResourceRange(Model):
    initial: ResourceAmounts = Field(
        default_factory=lambda: ResourceAmounts(cpu="500m", memory="512Mi"), description="Size at creation."
    )
    max: ResourceAmounts = Field(
        default_factory=lambda: ResourceAmounts(cpu="4", memory="8Gi"),
        description="Largest size for vertical steps; beyond it the status recommends sharding.",
    )

    RULES = (not_above("initial.cpu", "max.cpu"), not_above("initial.memory", "max.memory"))


# The leading number of an image's tag ("17" of postgres:17.5-alpine@sha256:...; "" without a numeric tag).
_CEL_IMAGE_MAJOR = "{image}.find('[^/]*$').find('^[^@:]*:[0-9]+').find('[0-9]+$')"


class FailoverSpec(Model):
    """When the write role moves to a replica (docs/failure.md)."""

    enabled: bool = Field(True, description="Promote a replica when the primary is lost.")
    delay_seconds: int = Field(
        10, ge=1, le=3600,
        description="How long the primary may be not Ready (and not answering) before a replica is promoted. "
        "A pod the kubelet restarts within it keeps the role: no failover for a restart.",
    )


class DatabaseTlsSpec(Model):
    """Where the certificates of Postgres' TLS come from (docs/failure.md, "TLS")."""

    ca_secret_name: str | None = Field(
        None,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="A Secret in the ScaledApp's namespace holding your own CA as `tls.crt` and `tls.key` (PEM; an "
        "EC or RSA key; a cert-manager CA Secret fits). The operator signs the Postgres server and client certificates "
        "with it. Unset: the operator generates a CA of its own into `<name>-db-ca`. Either way every client "
        "connection to Postgres is TLS, verified against this CA.",
    )


class DatabaseSpec(Model):
    """Postgres: a primary (widened vertically) and streaming read replicas (widened horizontally)."""

    image: str = Image(
        POSTGRES_IMAGE,
        "Postgres image. Its major version (the tag's leading number) cannot change after creation: the data "
        "directory belongs to it.",
    )
    # Immutable: a StatefulSet's volumeClaimTemplates cannot change, so an edit could never be applied.
    storage: str = Field(
        "1Gi",
        description=f"Size of each database volume; at least {MIN_STORAGE}. Immutable.",
        pattern=QUANTITY_PATTERN,
        max_length=20,
        json_schema_extra=cel(("self == oldSelf", "storage is immutable", None)),
    )
    storage_class_name: str | None = Field(
        None,
        max_length=253,
        pattern=DNS_SUBDOMAIN_PATTERN,
        description="StorageClass of the volumes; the cluster default when unset. Immutable: it can be neither "
        "changed, set nor unset after creation.",
        json_schema_extra=cel(("self == oldSelf", "storageClassName is immutable", None)),
    )
    resources: ResourceRange = Field(
        default_factory=ResourceRange,
        description="Primary resources: initial size and vertical ceiling, as limits (the CPU request is a fifth of "
        "the CPU limit, memory is reserved in full). Replicas run at the initial size.",
    )
    read_replicas: ReadReplicaRange = Field(
        default_factory=lambda: ReadReplicaRange(min=1, max=5),
        description="Streaming read replicas (each bootstraps from the primary with pg_basebackup).",
    )
    failover: FailoverSpec = Field(
        default_factory=lambda: FailoverSpec(),
        description="Automatic failover: promote the most advanced replica when the primary is lost.",
    )
    tls: DatabaseTlsSpec = Field(
        default_factory=lambda: DatabaseTlsSpec(),
        description="TLS for every Postgres connection (clients, replication, the operator): its CA.",
    )
    synchronous: bool = Field(
        False,
        description="Commits wait until at least one replica has the WAL (synchronous_standby_names 'ANY 1 (*)'): "
        "an acknowledged write survives a failover. Needs readReplicas.min >= 1; while no replica is connected, "
        "commits wait. Off: a failover may lose the last writes the replicas had not received.",
    )

    RULES = (
        Rule("!self.synchronous || self.readReplicas.min >= 1",
             "synchronous needs readReplicas.min >= 1: with no replica a commit would wait forever", ".synchronous",
             lambda m: not m.synchronous or m.read_replicas.min >= 1),
        at_least("storage", MIN_STORAGE, " (a fresh Postgres data directory with its WAL takes over 100Mi)"),
        Rule(
            "has(self.storageClassName) == has(oldSelf.storageClassName)",
            "storageClassName is immutable: it cannot be set or unset after creation",
            ".storageClassName",
            None,
        ),
        Rule(
            "!has(oldSelf.image) || !has(self.image) || {old} == '' || {new} == {old}".format(
                old=_CEL_IMAGE_MAJOR.format(image="oldSelf.image"), new=_CEL_IMAGE_MAJOR.format(image="self.image")
            ),
            "the Postgres major version of image (its tag's leading number) cannot change after creation: the "
            "data directory belongs to that version",
            ".image",
            None,
        ),
    )


class WorkersSpec(Model):
    """Queue workers draining slow work from a Redis list; widened horizontally."""

    enabled: bool = Field(True, description="Run the worker tier.")
    image: str | None = Image(None, "Worker image; the app image when unset.")
    command: list[Annotated[str, Field(min_length=1, max_length=4096)]] = Field(
        default_factory=lambda: ["python", "-m", "demo_app.worker"],
        min_length=1,
        max_length=32,
        description="Worker command: the executable, then one entry per argument; no entry may be empty.",
    )
    replicas: ReplicaRange = Field(
        default_factory=lambda: ReplicaRange(min=1, max=10),
        description="Worker replica bounds; max at least 1 while enabled (min 0 lets the workers scale to zero).",
    )

    RULES = (
        Rule(
            "!self.enabled || self.replicas.max >= 1",
            "replicas.max must be at least 1 while the workers are enabled: nothing would drain the queue "
            "(set enabled: false instead)",
            ".replicas.max",
            lambda m: not m.enabled or m.replicas.max >= 1,
        ),
        Rule(
            "self.command.size() == 0 || !self.command[0].contains(' ')",
            "command[0] is the executable and must not contain spaces: give each argument its own entry",
            ".command",
            lambda m: " " not in m.command[0],
        ),
    )


# ---------------------------------------------------------------------------------------------- scaling


class ScalingMode(enum.StrEnum):
    AUTO = "Auto"
    RECOMMEND = "Recommend"
    OFF = "Off"


class Targets(Model):
    """What "at target" (pressure 1.0) means for each signal."""

    app_cpu_utilization: float = Field(0.7, gt=0, le=1, description="App CPU used / CPU limit.")
    app_in_flight_per_pod: float = Field(16, gt=0, description="Concurrent requests per app pod.")
    app_self_latency_seconds: float = Field(
        0.1, gt=0, description="p95 time spent in the app itself (request time minus dependency time)."
    )
    cache_hit_ratio: float = Field(
        0.8, gt=0, lt=1, description="Lowest acceptable cache hit ratio (below 1: a perfect one is unreachable)."
    )
    cache_memory_utilization: float = Field(0.9, gt=0, le=1, description="Redis used / maxmemory.")
    cache_cpu_cores: float = Field(0.8, gt=0, le=1, description="Redis CPU; it runs commands on one core.")
    read_latency_seconds: float = Field(0.05, gt=0, description="p95 read-query latency seen by the app.")
    read_pool_wait_seconds: float = Field(0.01, gt=0, description="p95 wait for a read connection.")
    replication_lag_seconds: float = Field(
        5, gt=0, description="Replica lag above which a replica is lagging (and not the answer to read load)."
    )
    write_latency_seconds: float = Field(0.1, gt=0, description="p95 write latency seen by the app.")
    write_lock_waits: float = Field(5, gt=0, description="Sessions waiting on locks on the primary.")
    db_connection_utilization: float = Field(0.8, gt=0, le=1, description="Primary connections / max.")
    queue_oldest_age_seconds: float = Field(30, gt=0, description="Age of the oldest queued job.")
    queue_depth_per_worker: float = Field(20, gt=0, description="Queued jobs per worker.")


class Stabilization(Model):
    scale_up_seconds: int = Field(
        0, ge=0, le=3600, description="Pressure must stay high this long to widen; at most scaleDownSeconds."
    )
    scale_down_seconds: int = Field(
        300, ge=0, le=86400, description="All tiers must stay calm this long before anything narrows."
    )

    RULES = (
        Rule(
            "self.scaleUpSeconds <= self.scaleDownSeconds",
            "scaleUpSeconds must be less than or equal to scaleDownSeconds: a scaler that narrows faster than "
            "it widens flaps",
            ".scaleUpSeconds",
            lambda m: m.scale_up_seconds <= m.scale_down_seconds,
        ),
    )


class Steps(Model):
    """How big one step is. A widening step is sized from the measured pressure, the way the HPA sizes its
    own (desired = ceil(replicas x pressure)), within these limits; a narrowing step as far as the recent
    peak allows."""

    replicas: int = Field(
        1, ge=1, le=100, description="Fewest replicas a horizontal step adds or removes (steps are sized from "
        "the pressure: ceil(replicas x pressure), at least this and at most maxReplicas)."
    )
    max_replicas: int = Field(
        4, ge=1, le=100,
        description="Most replicas one horizontal step adds or removes; at least replicas. (The HPA's default "
        "adds up to 4 pods, or doubles, per 15 s.)",
    )
    memory_factor: float = Field(
        2.0, gt=1, le=8,
        description="Largest cache memory multiplier per step (a step multiplies by the pressure, at most this).",
    )
    resource_factor: float = Field(
        2.0, gt=1, le=8,
        description="Largest primary CPU/memory multiplier per step (a step multiplies by the pressure, at most "
        "this).",
    )

    RULES = (
        Rule("self.replicas <= self.maxReplicas", "replicas must be less than or equal to maxReplicas",
             ".replicas", lambda m: m.replicas <= m.max_replicas),
    )


# Targets of ratios that cannot exceed 1 (a CPU limit, maxmemory, max_connections, Redis' one core): above
# target + hysteresis must stay reachable, or the signal can never make its tier hot.
SATURATING_TARGETS = ("appCpuUtilization", "cacheMemoryUtilization", "cacheCpuCores", "dbConnectionUtilization")


def _reachable(target: str) -> Rule:
    attr = to_snake(target)
    return Rule(
        f"self.targets.{target} * (1.0 + self.hysteresis) < 1.0",
        f"targets.{target} * (1 + hysteresis) must be below 1: the measured ratio cannot exceed 1, so the "
        "signal could never count as hot",
        f".targets.{target}",
        lambda m: getattr(m.targets, attr) * (1 + m.hysteresis) < 1,
    )


class ScalingSpec(Model):
    """How the scaler finds the bottleneck and widens it."""

    mode: ScalingMode = Field(
        ScalingMode.AUTO,
        description="Auto: act. Recommend: decide and report in status, change nothing. Off: do not evaluate.",
    )
    prometheus_url: str = Field(
        "http://prometheus.scaledapp-system.svc:9090",
        max_length=512,
        pattern=PROMETHEUS_URL_PATTERN,
        description="Base URL of the Prometheus that scrapes this app's pods: http(s)://host[:port][/path], "
        "without credentials, query or fragment.",
    )
    interval_seconds: int = Field(15, ge=5, le=3600, description="Seconds between two evaluations.")
    query_timeout_seconds: float = Field(
        5, gt=0, le=60, description="Timeout of each Prometheus query; at most intervalSeconds."
    )
    hysteresis: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="A tier is a bottleneck only above 1 + hysteresis; calm below 1 - hysteresis (so below 1, or "
        "nothing is ever calm enough to narrow).",
    )
    cooldown_seconds: int = Field(60, ge=0, le=86400, description="Quiet time after every action.")
    verify_backoff_seconds: int = Field(
        600,
        ge=0,
        le=86400,
        description="After a step that did not lower its tier's pressure, do not repeat it this long.",
    )
    targets: Targets = Field(default_factory=Targets, description="Signal targets (pressure 1.0).")
    stabilization: Stabilization = Field(default_factory=Stabilization, description="Stabilization windows.")
    steps: Steps = Field(default_factory=Steps, description="Step sizes.")

    RULES = (
        Rule(
            "self.queryTimeoutSeconds <= double(self.intervalSeconds)",
            "queryTimeoutSeconds must be less than or equal to intervalSeconds: a query may not outlast the "
            "evaluation it serves",
            ".queryTimeoutSeconds",
            lambda m: m.query_timeout_seconds <= m.interval_seconds,
        ),
        *(_reachable(target) for target in SATURATING_TARGETS),
    )


class ScaledAppSpec(Model):
    app: AppSpec = Field(default_factory=AppSpec, description="The stateless web tier.")
    cache: CacheSpec = Field(default_factory=CacheSpec, description="The Redis cache tier.")
    database: DatabaseSpec = Field(default_factory=DatabaseSpec, description="The Postgres tiers (db-write, db-read).")
    workers: WorkersSpec = Field(default_factory=WorkersSpec, description="The queue-worker tier.")
    scaling: ScalingSpec = Field(default_factory=ScalingSpec, description="The bottleneck scaler.")


class ScaledApp(Model):
    """The whole object, for tests and examples (the operator works on spec and status)."""

    # Literal defaults (not API_VERSION/KIND, which mypy sees as plain str); test_crd checks they agree.
    api_version: Literal["scaledapp.dev/v1alpha1"] = Field("scaledapp.dev/v1alpha1")
    kind: Literal["ScaledApp"] = Field("ScaledApp")
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: ScaledAppSpec = Field(default_factory=ScaledAppSpec)
    status: ScaledAppStatus | None = None


def never_reconciled(owner: Mapping[str, Any]) -> bool:
    """A ScaledApp whose first reconcile has not finished: none of its children can be known yet (its first
    reconcile creates them), so there is nothing of its own to read back or prune."""
    return (owner.get("status") or {}).get("observedGeneration") is None


PARSED_SPECS_KEPT = 4096
# A spec's key -> its parsed model. The scaler and the failover guard parse the spec of every ScaledApp on every
# tick (the guard each second): at 500 ScaledApps pydantic's validation was about a fifth of the operator's busy
# CPU (py-spy, bench/results/scale.md). The key is (uid, generation) for a ScaledApp's body (the API server
# moves the generation with every change of the spec), else the spec's canonical JSON.
_PARSED: OrderedDict[Hashable, ScaledAppSpec] = OrderedDict()


def parse_spec(raw: dict[str, Any] | None) -> ScaledAppSpec:
    """Parse a spec as the API server stored it (defaults applied); raises pydantic.ValidationError.

    The same spec gives the same model object (kept for the most recent PARSED_SPECS_KEPT specs): read it,
    never change it in place (model_copy(update=...) makes a changed one)."""
    return _parsed(json.dumps(raw or {}, sort_keys=True, separators=(",", ":"), default=str), raw)


def spec_of(owner: Mapping[str, Any]) -> ScaledAppSpec:
    """parse_spec of a ScaledApp's spec, found again by its uid and generation (no serialisation per tick)."""
    meta = owner.get("metadata") or {}
    uid, generation = meta.get("uid"), meta.get("generation")
    if not uid or generation is None:
        return parse_spec(owner.get("spec"))
    return _parsed((uid, generation), owner.get("spec"))


def _parsed(key: Hashable, raw: dict[str, Any] | None) -> ScaledAppSpec:
    parsed = _PARSED.get(key)
    if parsed is None:
        parsed = ScaledAppSpec.model_validate(raw or {})  # an invalid spec raises, and is not kept
        _PARSED[key] = parsed
        if len(_PARSED) > PARSED_SPECS_KEPT:
            _PARSED.popitem(last=False)
    else:
        _PARSED.move_to_end(key)
    return parsed
