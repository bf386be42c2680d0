"""One scaler tick, as named phases: observe (the workloads + one Prometheus snapshot, observe.py) -> judge,
track windows, verify the last step and plan (decide.py, pure) -> act (act.py) -> explain (explain.py).
docs/architecture.md follows it.

The scaler writes only its own fields, as field manager `scaledapp-scaler`: each tier's size, where the
tier says it lives (`TierModel.workload` / `size_body`). Everything it must remember lives in status, so
a restarted operator resumes cooldowns and windows where they were.
"""

from __future__ import annotations

import pydantic

from scaledapp import act, api, explain, observe, tiers
from scaledapp.act import apply_sizes, owned_by_scaler, set_initial_sizes, sized_children
from scaledapp.decide import decide
from scaledapp.explain import changed, forget
from scaledapp.kube import Kube
from scaledapp.observe import Logger, Workloads, read_workloads
from scaledapp.resources.common import Manifest
from scaledapp.sizes import Sizes, TierName

__all__ = [
    "Workloads",
    "apply_sizes",
    "changed",
    "forget",
    "owned_by_scaler",
    "read_workloads",
    "set_initial_sizes",
    "settling_tiers",
    "sized_children",
    "sizes_of",
    "tick",
    "tiers_status",
]

RETRY_SECONDS = 30  # when the spec cannot be read at all


async def tick(kube: Kube, body: Manifest, logger: Logger) -> float:
    """Observe, judge, decide, act, explain. Returns the seconds until the next tick."""
    try:
        spec = api.spec_of(body)
    except pydantic.ValidationError:
        return RETRY_SECONDS  # the reconciler reports invalid specs
    # Observe: each tier's size, readiness and rollout; then Prometheus, when a decision is due.
    shell, observed = await observe.observe_tick(kube, body, spec, logger)
    # Judge, track windows, verify the last step and plan (decide.py, pure).
    decision = decide(observed.tick) if observed.tick is not None else None
    # Act: apply the one step (or the sizes pulled back inside the spec's bounds). A step is put on record in
    # status first (its lastAction starts the tier's cooldown): a leader that dies between the two leaves its
    # successor a cooldown to keep, never an unrecorded step it could take again at once. An apply that fails
    # after the record leaves a step that did not happen: its tier waits out one cooldown, never steps twice.
    if decision is not None:
        if decision.applied:
            await explain.record(shell, observed, decision)
        await act.act(shell, observed.reading.sizes, decision)
    # Explain: one log line, Events for what was decided or flipped, the status when it changed.
    await explain.explain(shell, observed, decision)
    return float(spec.scaling.interval_seconds)


def sizes_of(workloads: Workloads, spec: api.ScaledAppSpec) -> Sizes:
    """What the scaler-owned fields say now (the spec's starting points where a field is not set yet)."""
    return tiers.sizes_of(workloads.by_tier, spec)


def tiers_status(workloads: Workloads, sizes: Sizes) -> api.TiersStatus:
    """status.tiers: each tier's desired/ready (and size) as its workload reports them."""
    return tiers.status_of(workloads.by_tier, sizes)


def settling_tiers(status: api.TiersStatus) -> set[TierName]:
    """Tiers still rolling out their last change: a step is judged only once it has taken effect."""
    return set(tiers.settling(status))
