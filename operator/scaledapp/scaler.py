"""One scaler tick, as named phases: observe (workloads + one Prometheus snapshot) -> judge, track windows,
verify the last step and plan (decide.py, pure) -> act -> explain. docs/architecture.md follows it.

The scaler writes only its own fields, as field manager `scaledapp-scaler`: each tier's size, where the
tier says it lives (`TierModel.workload` / `size_body`). Everything it must remember lives in status, so
a restarted operator resumes cooldowns and windows where they were.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

import pydantic

from scaledapp import api, conditions, metrics, prometheus, tiers, trace
from scaledapp.decide import Decision, Tick, decide, status_fields
from scaledapp.kube import Kube, KubeError, without_nulls
from scaledapp.observation import Snapshot
from scaledapp.reasons import ConditionType, Reason
from scaledapp.resources import names
from scaledapp.resources.common import Manifest
from scaledapp.sizes import Sizes, Step, TierName
from scaledapp.tiers.base import ONSET_WINDOW, RATE_WINDOW, Scope

Logger = logging.Logger | logging.LoggerAdapter[Any]
RETRY_SECONDS = 30  # when the spec cannot be read at all


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


def sizes_of(workloads: Workloads, spec: api.ScaledAppSpec) -> Sizes:
    """What the scaler-owned fields say now (the spec's starting points where a field is not set yet)."""
    return tiers.sizes_of(workloads.by_tier, spec)


def tiers_status(workloads: Workloads, sizes: Sizes) -> api.TiersStatus:
    """status.tiers: each tier's desired/ready (and size) as its workload reports them."""
    return tiers.status_of(workloads.by_tier, sizes)


def settling_tiers(status: api.TiersStatus) -> set[TierName]:
    """Tiers still rolling out their last change: a step is judged only once it has taken effect."""
    return set(tiers.settling(status))


def owned_by_scaler(live: Manifest) -> bool:
    return any(f.get("manager") == names.SCALER_MANAGER for f in live["metadata"].get("managedFields") or [])


async def set_initial_sizes(kube: Kube, owner: Manifest, spec: api.ScaledAppSpec, applied: list[Manifest]) -> None:
    """Give each scaler-owned field of the children just `applied` (the server's answers, with their
    managedFields) its starting size, once: later the scaler's own decisions stand."""
    meta = owner["metadata"]
    answers = {(m["kind"], m["metadata"]["name"]): m for m in applied}
    new = [body for body in tiers.initial_scaler_bodies(meta["name"], meta["namespace"], spec)
           if (live := answers.get((body["kind"], body["metadata"]["name"]))) is not None
           and not owned_by_scaler(live)]
    await asyncio.gather(*(kube.apply(body, names.SCALER_MANAGER) for body in new))  # one round trip, not five


async def apply_sizes(kube: Kube, name: str, namespace: str, before: Sizes, after: Sizes) -> list[str]:
    """Patch only the workloads whose size changed; returns what was done, for the log."""
    done = []
    for change in tiers.size_changes(names.ChildNames(name), namespace, before, after):
        await kube.apply(change.body, names.SCALER_MANAGER)
        if change.resize is not None:
            pod, patch = change.resize
            if not await kube.resize_pod(pod, namespace, patch):
                done.append(f"{change.tier}: in-place resize unavailable; the new size applies at the next restart")
        done.append(change.tier)
    return done


def _status_model(raw: Manifest | None) -> api.ScaledAppStatus:
    try:
        return api.ScaledAppStatus.model_validate(raw or {})
    except pydantic.ValidationError:
        return api.ScaledAppStatus()  # a hand-edited status must not stop the scaler


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
    scope = Scope(namespace, name)
    queries = tiers.queries(spec, scope, window)
    if onset_window is None and window == RATE_WINDOW:
        onset_window = ONSET_WINDOW
    onset = tiers.onset_queries(spec, scope, onset_window, window) if onset_window else {}
    flat = {f"{tier_name}|{signal}|": promql
            for tier_name, signals in queries.items() for signal, promql in signals.items()}
    flat.update({f"{tier_name}|{signal}|onset": promql
                 for tier_name, signals in onset.items() for signal, promql in signals.items()})
    refused = prometheus.refusal(spec.scaling.prometheus_url)
    if refused:
        return None, refused
    client = prometheus.client_for(spec.scaling.prometheus_url, spec.scaling.query_timeout_seconds)
    result = await client.snapshot(flat)
    if result.unreachable:
        return None, next(iter(result.errors.values()), "no answer")
    signals: dict[TierName, dict[str, float | None]] = {t: {} for t in queries}
    fast: dict[TierName, dict[str, float | None]] = {t: {} for t in onset}
    for key, value in result.values.items():
        tier_name, signal, which = key.split("|", 2)
        (fast if which else signals)[cast(TierName, tier_name)][signal] = value
    return Snapshot(time=now, signals=signals, onset=fast), ""


@dataclass(frozen=True)
class Shell:
    """What the shell's phases of one tick share: the API, the ScaledApp and its parsed spec, the status
    it had at the start of the tick, the time, and the log."""

    kube: Kube
    body: Manifest
    spec: api.ScaledAppSpec
    status: api.ScaledAppStatus
    now: dt.datetime
    logger: Logger

    @property
    def meta(self) -> Manifest:
        return cast(Manifest, self.body["metadata"])

    @property
    def name(self) -> str:
        return str(self.meta["name"])

    @property
    def namespace(self) -> str:
        return str(self.meta["namespace"])

    @property
    def observed(self) -> conditions.Observed:
        return conditions.Observed(self.meta.get("generation"), self.now)

    @property
    def paused(self) -> bool:
        annotations: dict[str, str] = self.meta.get("annotations") or {}
        return annotations.get(api.PAUSE_ANNOTATION, "").lower() == "true"


async def tick(kube: Kube, body: Manifest, logger: Logger) -> float:
    """Observe, judge, decide, act, explain. Returns the seconds until the next tick."""
    try:
        spec = api.parse_spec(body.get("spec"))
    except pydantic.ValidationError:
        return RETRY_SECONDS  # the reconciler reports invalid specs
    shell = Shell(kube, body, spec, _status_model(body.get("status")), dt.datetime.now(dt.UTC), logger)
    # Observe the workloads: each tier's size, readiness and rollout.
    # Until its first reconcile, a new ScaledApp's workloads are not there: a GET each per tick found nothing (at
    # 500 new ScaledApps, ticking while their reconciles queued, most of the operator's API calls).
    reconciled = (body.get("status") or {}).get("observedGeneration") is not None
    workloads = await read_workloads(kube, shell.name, shell.namespace, fetch_missing=reconciled)
    reading = tiers.read(workloads.by_tier, spec)
    metrics.record_tiers(body, reading.status)
    conds = _ready_condition(shell, reading.status)
    patch: Manifest = {"app": f"{reading.status.app.ready}/{reading.status.app.desired}",
                       "tiers": reading.status.model_dump(by_alias=True, exclude_none=True)}
    # While the write role moves (failover, switchover home) the database tiers are not what the workloads
    # say: no step until it is home again (dbguard.py).
    if workloads.complete and shell.status.database.phase == "Healthy":
        # Observe Prometheus, then judge, track windows, verify and plan (decide.py, pure).
        decision = await _decide(shell, reading)
        # Act: apply the one step (or the sizes pulled back inside the spec's bounds).
        await _act(shell, reading.sizes, decision)
        patch.update(status_fields(decision, shell.status.history, shell.status.last_action))
        conds = _decision_conditions(shell, conds, decision)
        # Explain: one log line, and Events for what was decided or flipped.
        await _explain(shell, decision)
    await _write_status(shell, patch, conds)
    return float(spec.scaling.interval_seconds)


def _ready_condition(shell: Shell, tier_counts: api.TiersStatus) -> list[Manifest]:
    """The conditions from status with Ready set from the tiers' readiness."""
    conds = [c.model_dump(by_alias=True, exclude_none=True) for c in shell.status.conditions]
    return conditions.set_ready(conds, tier_counts, shell.spec, shell.observed)


def _decision_conditions(shell: Shell, conds: list[Manifest], decision: Decision) -> list[Manifest]:
    for cond in decision.conditions:
        conds = conditions.set_condition(conds, cond.type, _bool(cond.status), cond.reason, cond.message,
                                         shell.observed)
    refused = prometheus.refusal(shell.spec.scaling.prometheus_url)
    if refused and shell.spec.scaling.mode != api.ScalingMode.OFF:  # the chart's Prometheus URL policy said no
        conds = conditions.set_condition(conds, ConditionType.METRICS_AVAILABLE, False,
                                         Reason.PROMETHEUS_URL_NOT_ALLOWED, refused, shell.observed)
    return conds


PROGRESS_SECONDS = 30.0  # while a ScaledApp is not Ready, how often its tiers' ready counts alone are written
# uid -> (time.monotonic(), body) of the scaler's last status write, in memory: see _write_status.
_WRITTEN: dict[str, tuple[float, Manifest]] = {}


def forget(uid: str) -> None:
    """The ScaledApp is gone: drop what the scaler remembers of its status writes."""
    _WRITTEN.pop(uid, None)


async def _write_status(shell: Shell, patch: Manifest, conds: list[Manifest]) -> None:
    """Server-side apply the scaler's status fields, only when they change (no watch event otherwise).

    Not again what this process wrote last (under load the watch brings our own write back after the next tick,
    which compared with the older body and wrote the same status again, with new transition times: kopf hands
    a ScaledApp's events on only after its reconcile, so at 500 new ScaledApps the bodies stayed minutes old
    and every tick rewrote the status), and while the ScaledApp is not Ready
    and stays so, a change of its ready counts alone at most every PROGRESS_SECONDS (pods arriving changed the
    status at nearly every tick: a write, and a watch event for every watcher, each time)."""
    patch["conditions"] = [c for c in conds if c["type"] in conditions.SCALER_CONDITIONS]
    current = dict(shell.body.get("status") or {})
    current["conditions"] = [c for c in current.get("conditions") or []
                             if c.get("type") in conditions.SCALER_CONDITIONS]
    # Compare what would go on the wire: empty maps and nulls are dropped from an apply body, so an all-empty
    # status.scaler is absent from the live status and compared raw it looked changed: one PATCH every tick.
    wire = without_nulls(patch)
    gone = any(key not in wire and current.get(key) for key in patch)  # a field emptied: the apply removes it
    if not (gone or changed(current, wire)):
        return
    uid, now = str(shell.meta.get("uid") or ""), time.monotonic()
    last = _WRITTEN.get(uid)
    if last is not None and not gone:
        when, written = last
        # A body older than our last write gives unchanged conditions a new transition time: not a change.
        if timeless(written) == timeless(wire) or (progress_only(written, wire) and now - when < PROGRESS_SECONDS):
            return
    await shell.kube.apply_status(shell.name, shell.namespace, patch, names.SCALER_MANAGER)
    _WRITTEN[uid] = (now, wire)


def timeless(status: Manifest) -> Manifest:
    """The status with its conditions' transition times left out."""
    return {**status, "conditions": [{k: v for k, v in c.items() if k != "lastTransitionTime"}
                                     for c in status.get("conditions") or []]}


def progress_only(before: Manifest, after: Manifest) -> bool:
    """Do the scaler's status fields differ only in ready counts, with Ready False before and after?"""
    def ready(status: Manifest) -> Manifest:
        return next((c for c in status.get("conditions") or [] if c.get("type") == ConditionType.READY), {})

    if not ready(before).get("status") == ready(after).get("status") == "False":
        return False

    def rest(status: Manifest) -> Manifest:
        out = {k: v for k, v in status.items() if k not in ("app", "tiers", "conditions")}
        out["conditions"] = [{k: v for k, v in c.items() if k != "message"} if c.get("type") == ConditionType.READY
                             else c for c in status.get("conditions") or []]
        return out

    return timeless(rest(before)) == timeless(rest(after))


def changed(current: Manifest, patch: Manifest) -> bool:
    """Would merging `patch` into the status `current` change anything?"""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(current.get(key), dict):
            if changed(current[key], value):
                return True
        elif current.get(key) != value:
            return True
    return False


async def _decide(shell: Shell, reading: tiers.Reading) -> Decision:
    """Observe Prometheus (unless the scaler is off) and decide."""
    spec, status = shell.spec, shell.status
    off = spec.scaling.mode == api.ScalingMode.OFF
    snapshot, why = (None, "scaler is off") if off else await observe(spec, shell.name, shell.namespace, shell.now)
    if snapshot is None and not off:
        shell.logger.warning("Prometheus at %s did not answer (%s): holding", spec.scaling.prometheus_url, why)
    return decide(Tick(spec, snapshot, reading.sizes, status.scaler, status.last_action, shell.now,
                       paused=shell.paused, settling=reading.settling))


async def _act(shell: Shell, sizes: Sizes, decision: Decision) -> None:
    """Apply the decided sizes; a resize that must wait for a restart is reported."""
    if decision.desired == sizes:
        return
    try:
        done = await apply_sizes(shell.kube, shell.name, shell.namespace, sizes, decision.desired)
    except KubeError as exc:
        shell.logger.error("could not apply %s: %s", decision.step, exc)
        raise
    for note in (d for d in done if "unavailable" in d):
        shell.logger.warning(note)
        await shell.kube.post_event({"metadata": shell.meta}, "Warning", Reason.RESIZE_AT_RESTART, note)


def _bool(status: str) -> bool | None:
    return None if status == "Unknown" else status == "True"


async def _explain(shell: Shell, decision: Decision) -> None:
    """One structured log line per decision; an Event when something was decided or a state flipped."""
    kube, body, action = shell.kube, shell.body, decision.action
    trace.log_decision(shell.logger, decision)  # the decision as structured fields (scaledapp.trace)
    metrics.record_tick(body, decision)
    if action is not None:
        await kube.post_event(body, "Normal", _action_reason(action), decision.message)
    previous = {c.type: c for c in shell.status.conditions}
    for cond in decision.conditions:
        old = previous.get(cond.type)
        flipped = old is None or old.status != cond.status or old.reason != cond.reason
        if flipped and cond.type == ConditionType.METRICS_AVAILABLE and cond.status == "False":
            await kube.post_event(body, "Warning", Reason.METRICS_UNAVAILABLE, f"holding: {cond.message}")
        if flipped and cond.type == ConditionType.AT_CEILING and cond.status == "True":
            await kube.post_event(body, "Warning", cond.reason, cond.message)
    if decision.verified is not None and decision.verified.verdict == "ineffective":
        await kube.post_event(body, "Warning", Reason.INEFFECTIVE_STEP,
                              f"widening {decision.verified.tier} did not lower its pressure; backing off")


def _action_reason(action: api.Action) -> Reason:
    if not action.applied:
        return Reason.RECOMMENDED
    return {"widen": Reason.WIDENED, "narrow": Reason.NARROWED}.get(action.kind, Reason.DECIDED)


def step_summary(step: Step | None) -> str:
    return "none" if step is None else f"{step.kind} {step.tier} {step.from_text}->{step.to_text}"
