"""The tick's first phase, observe: the ScaledApp (status, time, pause), each tier's workload (its size,
readiness and rollout, as the tier reads them) and one Prometheus snapshot of every enabled tier's signals.
What it returns is what the rest of the tick works from: the `Shell` (the tick's context) and an
`Observed` (what the workloads say, and the decision's `Tick` when there is one to make).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import pydantic

from scaledapp import api, prometheus, tiers
from scaledapp.kube import Kube
from scaledapp.observation import Snapshot
from scaledapp.plan import Tick
from scaledapp.reasons import ConditionType, Reason
from scaledapp.resources import names
from scaledapp.resources.common import Manifest
from scaledapp.sizes import TierName
from scaledapp.tiers.base import ONSET_WINDOW, RATE_WINDOW, Scope

Logger = logging.Logger | logging.LoggerAdapter[Any]


@dataclass(frozen=True)
class Shell:
    """What the shell's phases of one tick share: the API, the ScaledApp and its parsed spec, the status it
    had at the start of the tick, the time, and the log (plain values: the phases read, never compute)."""

    kube: Kube
    body: Manifest
    spec: api.ScaledAppSpec
    status: api.ScaledAppStatus
    now: dt.datetime
    logger: Logger
    name: str
    namespace: str
    generation: int | None
    paused: bool  # the pause annotation

    @property
    def meta(self) -> Manifest:
        return cast(Manifest, self.body["metadata"])


@dataclass(frozen=True)
class Workloads:
    """Each tier's live workload (None: not there, or not seen yet)."""

    by_tier: Mapping[TierName, Manifest | None]

    def of(self, tier_name: TierName) -> Manifest | None:
        return self.by_tier.get(tier_name)

    @property
    def complete(self) -> bool:
        """Every tier that cannot be switched off has its workload."""
        return all(self.of(t.name) is not None for t in tiers.TIERS if not t.optional)


@dataclass(frozen=True)
class Observed:
    """What observe found: the workloads' reading, the decision's input when a decision is due (None: the
    workloads are incomplete, or the write role is moving), and why the Prometheus URL is refused, if it is."""

    reading: tiers.Reading
    tick: Tick | None
    refused: str | None


def shell(kube: Kube, body: Manifest, spec: api.ScaledAppSpec, logger: Logger) -> Shell:
    """The tick's context: the ScaledApp as it is now (a hand-edited status must not stop the scaler)."""
    meta = body["metadata"]
    try:
        status = api.ScaledAppStatus.model_validate(body.get("status") or {})
    except pydantic.ValidationError:
        status = api.ScaledAppStatus()
    annotations: dict[str, str] = meta.get("annotations") or {}
    return Shell(kube, body, spec, status, dt.datetime.now(dt.UTC), logger, str(meta["name"]),
                 str(meta["namespace"]), meta.get("generation"),
                 annotations.get(api.PAUSE_ANNOTATION, "").lower() == "true")


async def observe_tick(kube: Kube, body: Manifest, spec: api.ScaledAppSpec, logger: Logger) -> tuple[Shell, Observed]:
    """Observe one tick: the workloads, then (when a decision is due and the scaler is on) Prometheus."""
    context = shell(kube, body, spec, logger)
    return context, await _observed(context)


async def _observed(context: Shell) -> Observed:
    # Until its first reconcile, a new ScaledApp's workloads are not there: a GET each per tick found nothing (at
    # 500 new ScaledApps, ticking while their reconciles queued, most of the operator's API calls).
    workloads = await read_workloads(context.kube, context.name, context.namespace,
                                     fetch_missing=not api.never_reconciled(context.body))
    reading = tiers.read(workloads.by_tier, context.spec)
    # While the write role moves (failover, switchover home) the database tiers are not what the workloads
    # say: no decision until it is home again (dbguard.py).
    due = workloads.complete and context.status.database.phase == "Healthy"
    refused = prometheus.refusal(context.spec.scaling.prometheus_url)
    return Observed(reading, await _tick(context, reading) if due else None, refused)


async def _tick(context: Shell, reading: tiers.Reading) -> Tick:
    """The decision's input: one Prometheus snapshot (none when the scaler is off) with the workloads."""
    spec, status = context.spec, context.status
    off = spec.scaling.mode == api.ScalingMode.OFF
    snapshot, why = (None, "scaler is off") if off else await observe(spec, context.name, context.namespace,
                                                                       context.now)
    if snapshot is None and not off:
        # A warning when it stops answering; then the MetricsAvailable condition says so (a line a tick for each
        # ScaledApp while it stays down would bury the log).
        was = next((c for c in status.conditions if c.type == ConditionType.METRICS_AVAILABLE), None)
        still = was is not None and was.reason == Reason.PROMETHEUS_UNAVAILABLE
        (context.logger.debug if still else context.logger.warning)(
            "Prometheus at %s did not answer (%s): holding", spec.scaling.prometheus_url, why)
    return Tick(spec, snapshot, reading.sizes, status.scaler, status.last_action, context.now,
                paused=context.paused, settling=reading.settling)


async def read_workloads(kube: Kube, name: str, namespace: str, *, fetch_missing: bool = True) -> Workloads:
    """Every tier's scaler-owned workload, from the watch cache (a GET only for one not seen yet, unless not
    `fetch_missing`: a ScaledApp never reconciled has no workloads to fetch, and its first reconcile puts
    every one it applies into the cache)."""
    child = names.ChildNames(name)
    live: dict[TierName, Manifest | None] = {}
    for t in tiers.TIERS:
        workload = t.workload(child)
        if fetch_missing:
            live[t.name] = await kube.get_cached(workload.api_version, workload.kind, workload.name, namespace)
        else:
            live[t.name] = kube.cache.get(workload.kind, workload.name, namespace)
    return Workloads(live)


async def observe(
    spec: api.ScaledAppSpec,
    name: str,
    namespace: str,
    now: dt.datetime,
    window: str = RATE_WINDOW,
    onset_window: str | None = None,
) -> tuple[Snapshot | None, str]:
    """One Prometheus snapshot of every enabled tier's signals, over the rate window and the onset window;
    None (and why) when Prometheus is unreachable. `window` is the rate window: tests and the twin scrape
    every second and use a shorter one (and then no onset window unless `onset_window` names one)."""
    refused = prometheus.refusal(spec.scaling.prometheus_url)
    if refused:
        return None, refused
    client = prometheus.client_for(spec.scaling.prometheus_url, spec.scaling.query_timeout_seconds)
    if (down := client.down()) is not None:  # before building the queries: nothing is sent anyway
        return None, down
    scope = Scope(namespace, name)
    queries = tiers.queries(spec, scope, window)
    if onset_window is None and window == RATE_WINDOW:
        onset_window = ONSET_WINDOW
    onset = tiers.onset_queries(spec, scope, onset_window, window) if onset_window else {}
    flat = {f"{tier_name}|{signal}|": promql
            for tier_name, signals in queries.items() for signal, promql in signals.items()}
    flat.update({f"{tier_name}|{signal}|onset": promql
                 for tier_name, signals in onset.items() for signal, promql in signals.items()})
    result = await client.snapshot(flat)
    if result.unreachable:
        return None, next(iter(result.errors.values()), "no answer")
    signals: dict[TierName, dict[str, float | None]] = {t: {} for t in queries}
    fast: dict[TierName, dict[str, float | None]] = {t: {} for t in onset}
    for key, value in result.values.items():
        tier_name, signal, which = key.split("|", 2)
        (fast if which else signals)[tier_name][signal] = value
    return Snapshot(time=now, signals=signals, onset=fast), ""
