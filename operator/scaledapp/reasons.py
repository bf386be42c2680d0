"""The reasons the operator gives: every condition type and every condition or Event reason, in one place.

The values are a contract (status conditions, Events, the docs and the tests read them), so they are
written here once, as CloudNativePG writes its typed ConditionReason constants, and everywhere else
refers to a member. docs/reference.md lists them from `DOCS` (hack/gen_reference.py); a unit test checks
that every member is documented.
"""

from __future__ import annotations

import enum


class ConditionType(enum.StrEnum):
    READY = "Ready"
    METRICS_AVAILABLE = "MetricsAvailable"
    SCALING = "Scaling"
    AT_CEILING = "AtCeiling"
    PROGRESSING = "Progressing"
    DEGRADED = "Degraded"


class Reason(enum.StrEnum):
    # Ready (the scaler)
    ALL_TIERS_READY = "AllTiersReady"
    TIERS_NOT_READY = "TiersNotReady"
    # MetricsAvailable
    SIGNALS_KNOWN = "SignalsKnown"
    PROMETHEUS_UNAVAILABLE = "PrometheusUnavailable"
    SIGNALS_MISSING = "SignalsMissing"
    SCALER_OFF = "ScalerOff"
    # Scaling: a step
    WIDENED = "Widened"
    NARROWED = "Narrowed"
    RECOMMENDED = "Recommended"
    # Scaling: a hold
    OFF = "Off"
    PAUSED = "Paused"
    METRICS_UNAVAILABLE = "MetricsUnavailable"
    PROMETHEUS_URL_NOT_ALLOWED = "PrometheusUrlNotAllowed"
    INEFFECTIVE_BACKOFF = "IneffectiveBackoff"
    COOLDOWN = "Cooldown"
    SCALE_UP_WINDOW = "ScaleUpWindow"
    SCALE_DOWN_WINDOW = "ScaleDownWindow"
    WITHIN_TARGET = "WithinTarget"
    AT_MINIMUM = "AtMinimum"
    # AtCeiling (and Scaling when the bottleneck cannot be widened): a tier's Blocked
    BELOW_CEILING = "BelowCeiling"
    MAX_REPLICAS = "MaxReplicas"
    MAX_MEMORY = "MaxMemory"
    CACHE_CPU_BOUND = "CacheCpuBound"
    SHARDING_RECOMMENDED = "ShardingRecommended"
    REPLICA_LAG = "ReplicaLag"
    # Progressing / Degraded (the reconciler)
    APPLIED = "Applied"
    AS_EXPECTED = "AsExpected"
    INVALID_SPEC = "InvalidSpec"
    APPLY_FAILED = "ApplyFailed"
    # Events only
    DECIDED = "Decided"
    INEFFECTIVE_STEP = "IneffectiveStep"
    RESIZE_AT_RESTART = "ResizeAtRestart"
    CREATED = "Created"
    CREDENTIALS_GENERATED = "CredentialsGenerated"
    CREDENTIALS_RESTORED = "CredentialsRestored"
    CERTIFICATES_ISSUED = "CertificatesIssued"
    CA_INVALID = "CAInvalid"
    TLS_RELOADED = "TLSReloaded"
    PRUNED = "Pruned"
    REPAIRED = "Repaired"


_SCALING = "Scaling"
_CEILING = "AtCeiling, Scaling, Warning Event"
# Reason -> (where it appears, what it means): the table in docs/reference.md.
DOCS: dict[Reason, tuple[str, str]] = {
    Reason.ALL_TIERS_READY: ("Ready", "every enabled tier has all its desired replicas ready"),
    Reason.TIERS_NOT_READY: ("Ready", "some tier is short of ready replicas; the message names it"),
    Reason.SIGNALS_KNOWN: ("MetricsAvailable", "every needed signal of every enabled tier is known"),
    Reason.PROMETHEUS_UNAVAILABLE: ("MetricsAvailable", "Prometheus could not be queried; the scaler holds"),
    Reason.SIGNALS_MISSING: ("MetricsAvailable", "a needed signal is unknown (never taken as zero); the scaler holds"),
    Reason.SCALER_OFF: ("MetricsAvailable, AtCeiling", "spec.scaling.mode is Off: nothing was observed"),
    Reason.WIDENED: (f"{_SCALING}, Event", "the bottleneck tier was widened by one step"),
    Reason.NARROWED: (f"{_SCALING}, Event", "all tiers were calm for the scale-down window; one tier was narrowed"),
    Reason.RECOMMENDED: (f"{_SCALING}, Event", "Recommend mode: a step was decided but not applied"),
    Reason.OFF: (_SCALING, "spec.scaling.mode is Off"),
    Reason.PAUSED: (_SCALING, "the pause annotation freezes the scaler"),
    Reason.PROMETHEUS_URL_NOT_ALLOWED: (
        "MetricsAvailable",
        "spec.scaling.prometheusUrl is not one the chart allows (prometheus.allowedUrls): never queried",
    ),
    Reason.METRICS_UNAVAILABLE: (
        f"{_SCALING}, AtCeiling, Warning Event",
        "holding: signals are unknown (see MetricsAvailable)",
    ),
    Reason.INEFFECTIVE_BACKOFF: (_SCALING, "every hot tier is backing off after a step that did not help"),
    Reason.COOLDOWN: (_SCALING, "holding until the cooldown after the last step is over (or the step is judged)"),
    Reason.SCALE_UP_WINDOW: (_SCALING, "the bottleneck has not been hot for the scale-up window yet"),
    Reason.SCALE_DOWN_WINDOW: (_SCALING, "all tiers are calm, but not yet for the scale-down window"),
    Reason.WITHIN_TARGET: (_SCALING, "no tier is above target, and not all are calm enough to narrow"),
    Reason.AT_MINIMUM: (_SCALING, "all tiers are calm and none can narrow without getting busy"),
    Reason.BELOW_CEILING: ("AtCeiling", "the bottleneck, if any, can still be widened"),
    Reason.MAX_REPLICAS: (_CEILING, "a horizontal tier is the bottleneck at its max replicas"),
    Reason.MAX_MEMORY: (_CEILING, "the cache is the bottleneck at its max memory"),
    Reason.CACHE_CPU_BOUND: (_CEILING, "Redis is CPU-bound on its one command thread: more memory would not help"),
    Reason.SHARDING_RECOMMENDED: (_CEILING, "the primary is the bottleneck at its max size; shard or cut writes"),
    Reason.REPLICA_LAG: (_SCALING, "read replicas lag: no replica is added while they do"),
    Reason.APPLIED: ("Progressing", "every child was applied from the spec"),
    Reason.AS_EXPECTED: ("Degraded", "nothing is degraded"),
    Reason.INVALID_SPEC: ("Progressing, Degraded, Warning Event", "the spec fails validation; nothing was applied"),
    Reason.APPLY_FAILED: ("Progressing, Degraded, Warning Event", "the API server refused a child"),
    Reason.DECIDED: ("Event", "an applied action of an unknown kind (not expected in practice)"),
    Reason.INEFFECTIVE_STEP: ("Warning Event", "a widening step did not lower its tier's pressure; backing off"),
    Reason.RESIZE_AT_RESTART: ("Warning Event", "in-place resize of the primary is unavailable; applies at restart"),
    Reason.CREATED: ("Event", "every tier was created; the message names the generated credentials and"
                              " certificates Secrets"),
    Reason.CREDENTIALS_GENERATED: ("Event", "credentials (database and Redis passwords) were generated in their"
                                            " Secret after the ScaledApp was created (a deleted Secret no operator"
                                            " remembered, or the keys an older Secret lacked; a new ScaledApp's"
                                            " are named by Created)"),
    Reason.CREDENTIALS_RESTORED: ("Warning Event", "the deleted credentials Secret was put back with the same values"),
    Reason.CERTIFICATES_ISSUED: ("Event", "the Postgres server and replication certificates were issued (renewed"
                                 " before expiry, re-issued for a new CA, or issued again after a restart); the"
                                 " message says why (a new ScaledApp's first ones are named by Created)"),
    Reason.CA_INVALID: ("Warning Event", "spec.database.tls.caSecretName names a Secret without a usable CA "
                        "(tls.crt, tls.key); no certificate is issued until it has one"),
    Reason.TLS_RELOADED: ("Event", "the Postgres servers reloaded their configuration after renewed certificates "
                          "reached their pods"),
    Reason.PRUNED: ("Event", "a child no longer in the spec was deleted"),
    Reason.REPAIRED: ("Event", "a deleted or edited child was put back"),
}


def markdown_table() -> str:
    """The reasons as a Markdown table, for docs/reference.md."""
    rows = ["| Reason | Where | Meaning |", "| --- | --- | --- |"]
    rows += [f"| `{reason.value}` | {where} | {meaning} |" for reason, (where, meaning) in DOCS.items()]
    return "\n".join(rows)
