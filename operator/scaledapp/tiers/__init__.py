"""The tiers, one module each behind `base.TierModel`; TIERS, the registry, lists them in ladder order.

Adding a tier means a tier module here, a builder module in scaledapp.resources, one entry in TIERS and
one in scaledapp.resources.BUILDERS (plus the twin's model of it): docs/architecture.md walks through it.
The tier brings its own name, its size (its entry in `Sizes`), its spec block and its status.tiers entry
(`declare_api` adds those to the API models when the API does not declare them yet). Everything below asks
the tiers; nothing switches on a tier's name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from scaledapp import api, apibase
from scaledapp.observation import Snapshot
from scaledapp.resources.common import Manifest
from scaledapp.resources.names import ChildNames
from scaledapp.sizes import Sizes, TierName
from scaledapp.tiers import app, cache, db_read, db_write, workers
from scaledapp.tiers.base import ONSET_WINDOW, RATE_WINDOW, Scope, TierModel, TierPressure, Workload, onset_name

# The registry, in ladder order: cheaper rungs first (ties in pressure go to the earlier tier; scale-down
# runs reversed). A new tier is one entry here, where it sits on the ladder.
TIERS: tuple[TierModel[Any], ...] = (cache.TIER, app.TIER, db_read.TIER, workers.TIER, db_write.TIER)


def ladder() -> tuple[TierName, ...]:
    """The tiers' names, cheaper rungs first."""
    return tuple(t.name for t in TIERS)


def tier(name: TierName) -> TierModel[Any]:
    return next(t for t in TIERS if t.name == name)


def known(name: str) -> TierName | None:
    """`name` if a tier has it (a name read back from status may be anything)."""
    return name if any(t.name == name for t in TIERS) else None


def enabled_tiers(spec: api.ScaledAppSpec) -> tuple[TierModel[Any], ...]:
    return tuple(t for t in TIERS if t.enabled(spec))


def by_status_field(field_name: str) -> TierModel[Any]:
    """The tier whose entry in api.TiersStatus is `field_name`."""
    return next(t for t in TIERS if t.status_field == field_name)


def declare_api(tier_model: TierModel[Any]) -> Callable[[], None]:
    """Add a tier's spec block and its status.tiers entry to the API models (the spec, the status, the
    whole object) where the API does not declare them yet: `make crds` then puts them in the CRD. Returns
    how to take them back. The API declares every tier in TIERS already, so for those it changes nothing."""
    undo_status = apibase.add_field(api.TiersStatus, tier_model.status_field, api.TierStatus,
                                    tier_model.status_description, (api.ScaledAppStatus, api.ScaledApp))
    undo_spec: Callable[[], None] = lambda: None  # noqa: E731
    if tier_model.spec_model is not None:
        undo_spec = apibase.add_field(api.ScaledAppSpec, tier_model.spec_block, tier_model.spec_model,
                                      tier_model.spec_description, (api.ScaledApp,))

    def undo() -> None:
        undo_spec()
        undo_status()

    return undo


for _tier in TIERS:
    declare_api(_tier)


def waiting(status: api.TiersStatus, spec: api.ScaledAppSpec) -> list[str]:
    """What keeps each enabled tier from Ready, in status.tiers order ("db_read 1/2 ready")."""
    out = []
    for field_name, counts in status:
        t = by_status_field(field_name)
        if not t.enabled(spec):
            continue
        if counts.desired == 0 and not t.ready_when_empty:
            out.append(f"{field_name} has no replicas")
        elif counts.ready < counts.desired:
            out.append(f"{field_name} {counts.ready}/{counts.desired} ready")
    return out


def queries(spec: api.ScaledAppSpec, scope: Scope, window: str = RATE_WINDOW) -> dict[TierName, dict[str, str]]:
    """Every enabled tier's signals as instant PromQL: what the shell asks Prometheus each tick."""
    return {t.name: t.queries(scope, window) for t in enabled_tiers(spec)}


def onset_queries(
    spec: api.ScaledAppSpec, scope: Scope, window: str = ONSET_WINDOW, rate_window: str = RATE_WINDOW
) -> dict[TierName, dict[str, str]]:
    """The signals whose query depends on the window, over the onset window (gauges read the same in
    both windows and are not asked twice: Snapshot.onset_tier falls back to their 1m value)."""
    out: dict[TierName, dict[str, str]] = {}
    for t in enabled_tiers(spec):
        slow = t.queries(scope, rate_window)
        fast = {name: promql for name, promql in t.queries(scope, window).items() if promql != slow.get(name)}
        if fast:
            out[t.name] = fast
    return out


def metric_names() -> frozenset[str]:
    """Every metric name any tier's queries use (for the contract test against docs/metrics.md)."""
    return frozenset().union(*(t.metrics for t in TIERS))


def throughputs(signals: Mapping[TierName, Mapping[str, float | None]]) -> dict[TierName, float]:
    """Each tier's throughput signal, where it has one and it is known."""
    out: dict[TierName, float] = {}
    for t in TIERS:
        value = t.throughput(signals.get(t.name, {}))
        if value is not None:
            out[t.name] = value
    return out


# ---------------------------------------------------------------------------------------------- sizes


def initial_sizes(spec: api.ScaledAppSpec) -> Sizes:
    """Sizes at creation: every horizontal tier at its min, the cache and primary at their initial size."""
    return Sizes({t.name: t.initial(spec) for t in TIERS})


def enforce_bounds(spec: api.ScaledAppSpec, sizes: Sizes) -> Sizes:
    """Sizes pulled inside the spec's bounds (min/max edits take effect at the next tick this way)."""
    return Sizes({t.name: t.bounded(spec, t.size(sizes)) for t in TIERS})


def changed_tiers(before: Sizes, after: Sizes) -> list[TierName]:
    """Which tiers two size sets differ in (what the shell has to patch), in ladder order."""
    return [t.name for t in TIERS if t.resized(before, after)]


@dataclass(frozen=True)
class SizeChange:
    """What the scaler applies for one tier whose size changed."""

    tier: TierName
    body: Manifest  # the server-side-apply body of its workload
    resize: tuple[str, Manifest] | None  # (pod, patch) for an in-place resize of a running pod


def size_changes(child: ChildNames, namespace: str, before: Sizes, after: Sizes) -> list[SizeChange]:
    """The bodies (and in-place resizes) that take every resized tier from `before` to `after`."""
    return [
        SizeChange(t.name, t.size_body(child, namespace, after), t.live_resize(child, after))
        for t in TIERS
        if t.resized(before, after)
    ]


def sizes_of(live: Mapping[TierName, Manifest | None], spec: api.ScaledAppSpec) -> Sizes:
    """What the scaler-owned fields of the live workloads say (the spec's starting points where not set)."""
    return Sizes({t.name: t.read_size(live.get(t.name), spec) for t in TIERS})


def status_of(live: Mapping[TierName, Manifest | None], sizes: Sizes) -> api.TiersStatus:
    """status.tiers: each tier's desired/ready (and size) as its workload reports them."""
    return api.TiersStatus(**{t.status_field: t.status(live.get(t.name), sizes) for t in TIERS})


def settling(status: api.TiersStatus) -> frozenset[TierName]:
    """Tiers still rolling out their last change: a step is judged only once it has taken effect."""
    return frozenset(t.name for t in TIERS if t.settles and _rolling_out(getattr(status, t.status_field)))


def _rolling_out(counts: api.TierStatus) -> bool:
    return counts.ready < counts.desired


@dataclass(frozen=True)
class Reading:
    """What the live workloads say: every tier's size, its status.tiers entry, and which still roll out."""

    sizes: Sizes
    status: api.TiersStatus
    settling: frozenset[TierName]


def read(live: Mapping[TierName, Manifest | None], spec: api.ScaledAppSpec) -> Reading:
    """Each tier's size and readiness from its live workload (`live`: tier name -> workload or None)."""
    sizes = sizes_of(live, spec)
    status = status_of(live, sizes)
    return Reading(sizes, status, settling(status))


@dataclass(frozen=True)
class Judgement:
    """Each enabled tier's pressure with its evidence, and its throughput where it has one; `onset`: its
    pressure over the onset window, where that is known."""

    judged: dict[TierName, TierPressure]
    served: dict[TierName, float]
    onset: dict[TierName, TierPressure] = field(default_factory=dict)

    @property
    def missing(self) -> bool:
        return any(j.missing for j in self.judged.values())

    @property
    def blind(self) -> list[TierName]:
        """Tiers with a needed signal unknown (an exporter down, a query failing), in ladder order."""
        return [name for name in ladder() if name in self.judged and self.judged[name].missing]


def judge(snapshot: Snapshot, spec: api.ScaledAppSpec, sizes: Sizes) -> Judgement:
    """Judge every enabled tier's signals against the spec's targets, over the 1m window (with the onset
    window's values beside them, under tiers.base.onset_name) and, where it has signals, the onset window."""
    judged: dict[TierName, TierPressure] = {}
    onset: dict[TierName, TierPressure] = {}
    signals: dict[TierName, dict[str, float | None]] = {}
    for t in enabled_tiers(spec):
        slow = snapshot.tier(t.name)
        fast = snapshot.onset_tier(t.name)
        signals[t.name] = slow
        beside = {onset_name(name): value for name, value in (fast or {}).items()}
        judged[t.name] = t.pressure({**slow, **beside}, spec, sizes)
        if fast is not None:
            quick = t.pressure(fast, spec, sizes)
            # The onset window counts only where it judged the tier on the same signals as the 1m window: a
            # 30 s rate that lacks its second scrape comes out empty, or as zero through zero_if_reporting,
            # and "no reads" would skip the read timings that make the tier hot.
            if quick.pressure is not None and _signals_of(quick) == _signals_of(judged[t.name]):
                onset[t.name] = replace(quick, window=ONSET_WINDOW)
    return Judgement(judged, throughputs(signals), onset)


def _signals_of(judged: TierPressure) -> frozenset[str]:
    return frozenset(c.signal for c in judged.components)


def initial_scaler_bodies(name: str, namespace: str, spec: api.ScaledAppSpec) -> list[Manifest]:
    """The scaler's starting point, from the spec: minimum replicas and initial sizes, for enabled tiers.

    Apply right after the first reconcile, and only for fields the scaler does not own yet:
    re-applying later would undo the scaler's decisions.
    """
    child, sizes = ChildNames(name), initial_sizes(spec)
    return [t.size_body(child, namespace, sizes) for t in enabled_tiers(spec)]


__all__ = [
    "ONSET_WINDOW",
    "RATE_WINDOW",
    "TIERS",
    "Judgement",
    "Reading",
    "Scope",
    "SizeChange",
    "TierModel",
    "TierPressure",
    "Workload",
    "by_status_field",
    "changed_tiers",
    "declare_api",
    "enabled_tiers",
    "enforce_bounds",
    "initial_scaler_bodies",
    "initial_sizes",
    "judge",
    "known",
    "ladder",
    "metric_names",
    "onset_queries",
    "queries",
    "read",
    "settling",
    "size_changes",
    "sizes_of",
    "status_of",
    "throughputs",
    "tier",
    "waiting",
]
