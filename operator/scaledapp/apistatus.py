"""The ScaledApp API's status models (spec in api.py, which re-exports these): what the reconciler, the scaler
and the failover guard write, each its own fields. The CRD schema's status is generated from these."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from scaledapp.apibase import Model


class Condition(Model):
    type: str = Field(..., description="Ready, Progressing, Degraded, MetricsAvailable, Scaling or AtCeiling.")
    status: Literal["True", "False", "Unknown"] = Field(..., description="True, False or Unknown.")
    reason: str = Field("", description="One CamelCase word.")
    message: str = Field("", description="What a person needs to know.")
    last_transition_time: str | None = Field(None, description="When status last changed (RFC 3339).")
    observed_generation: int | None = Field(None, description="The spec generation this was computed from.")


class TierStatus(Model):
    desired: int = Field(0, description="Replicas the workload asks for.")
    ready: int = Field(0, description="Replicas that are ready.")
    size: str | None = Field(None, description="Vertical size (cache maxmemory, primary cpu/memory).")


class TiersStatus(Model):
    app: TierStatus = Field(default_factory=TierStatus, description="Web pods.")
    cache: TierStatus = Field(default_factory=TierStatus, description="Redis.")
    db_read: TierStatus = Field(default_factory=TierStatus, description="Read replicas.")
    db_write: TierStatus = Field(default_factory=TierStatus, description="The primary.")
    workers: TierStatus = Field(default_factory=TierStatus, description="Queue workers.")


class Evidence(Model):
    tier: str = Field(..., description="The tier.")
    pressure: float | None = Field(None, description="1.0 = at target; null = unknown (missing metrics).")
    signal: str = Field("", description="The signal that set the pressure.")
    value: float | None = Field(None, description="Its measured value.")
    target: float | None = Field(None, description="Its target.")
    window: str = Field(
        "", description="The rate window the value is over: 1m, or the 30s onset window when that set it."
    )


class Action(Model):
    time: str = Field(..., description="When (RFC 3339).")
    tier: str = Field(..., description="The tier acted on.")
    kind: Literal["widen", "narrow", "hold", "recommend"] = Field(..., description="What was decided.")
    from_: str = Field("", alias="from", description="Size before (replicas or resources).")
    to: str = Field("", description="Size after.")
    reason: str = Field("", description="Why, in words.")
    applied: bool = Field(False, description="False in Recommend mode or when only recommended.")
    pressure: float | None = Field(None, description="The tier's pressure when decided.")
    throughput: float | None = Field(
        None,
        description="The tier's throughput when decided (app requests, reads or writes per second), so that "
        "a step that let more work through counts as effective even while the tier is still saturated.",
    )
    verdict: Literal["pending", "effective", "ineffective", "n/a"] = Field(
        "n/a", description="Verify-after-act: did the step lower the tier's pressure?"
    )


class ScalerState(Model):
    """What the scaler must remember across ticks and operator restarts (it keeps nothing in memory)."""

    last_action_time: str | None = Field(None, description="Start of the current cooldown.")
    hot_since: dict[str, str] = Field(default_factory=dict, description="Per tier: above target since.")
    calm_since: str | None = Field(None, description="All tiers below target since.")
    calm_peak: dict[str, float] = Field(
        default_factory=dict,
        description="Per tier: the highest pressure since calm_peak_since; a narrow step must keep even that calm.",
    )
    calm_peak_buckets: dict[str, list[float]] = Field(
        default_factory=dict,
        description="Per tier: the highest pressure of each quarter of the scale-down window before that, oldest "
        "first (with calm_peak they cover the whole window).",
    )
    calm_peak_previous: dict[str, float] = Field(
        default_factory=dict,
        description="Per tier: the highest pressure in the scale-down window before that (written by earlier "
        "versions; still counted while present).",
    )
    calm_peak_since: str | None = Field(None, description="Start of the current calm_peak window.")
    ineffective_until: dict[str, str] = Field(
        default_factory=dict, description="Per tier: a step that did not help is not repeated until then."
    )
    rolled_out_since: str | None = Field(
        None,
        description="When the pending widening step was first seen rolled out: it is judged early only on "
        "evidence from after that.",
    )


class FailoverRecord(Model):
    time: str = Field(..., description="When the new primary took writes (RFC 3339).")
    kind: Literal["failover", "switchover"] = Field(..., description="Failover (primary lost) or planned switchover.")
    from_: str = Field("", alias="from", description="The pod that held the write role.")
    to: str = Field("", description="The pod that holds it now.")
    reason: str = Field("", description="Why.")
    seconds: float | None = Field(None, description="From the decision until writes were accepted again.")


class DatabaseStatus(Model):
    """Who holds the write role (the failover guard's; the pods' role labels follow it)."""

    primary: str = Field("", description="The pod holding the write role; empty: the primary StatefulSet's pod.")
    epoch: int = Field(0, description="Increments with every move of the write role.")
    phase: Literal["Healthy", "FailingOver", "Promoted", "SwitchingOver"] = Field(
        "Healthy", description="Promoted: the role is on a replica's pod until its home pod has caught up.")
    reason: str = Field("", description="The guard's latest judgement, one CamelCase word.")
    message: str = Field("", description="What a person needs to know.")
    last_move: FailoverRecord | None = Field(None, description="The latest failover or switchover.")
    sync_hold: bool = Field(
        False, description="A switchover relaxed synchronous commits until a standby streams again; until a "
        "standby has confirmed the writes acknowledged meanwhile, the guard does not fail over.")


class ScaledAppStatus(Model):
    observed_generation: int | None = Field(None, description="The spec generation last reconciled.")
    app: str = Field("", description="App ready/desired, e.g. 3/4 (for kubectl get).")
    tiers: TiersStatus = Field(default_factory=TiersStatus, description="Per tier: desired and ready.")
    conditions: list[Condition] = Field(default_factory=list, description="Standard conditions.")
    bottleneck: str = Field("", description="The tier that is the bottleneck now, or empty when none.")
    pressures: list[Evidence] = Field(default_factory=list, description="Every tier's pressure with its evidence.")
    last_action: Action | None = Field(None, description="The last decision that was not a hold.")
    history: list[Action] = Field(default_factory=list, max_length=10, description="The last 10 decisions.")
    recommendation: str = Field("", description="Advice the scaler will not act on (e.g. shard the primary).")
    scaler: ScalerState = Field(default_factory=ScalerState, description="Scaler memory (windows, cooldown).")
    database: DatabaseStatus = Field(default_factory=DatabaseStatus, description="The write role and failovers.")
