"""The demo's report: a markdown summary of what moved, and a PNG of load, p95 and replicas over time."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: the plot is a file
import matplotlib.pyplot as plt

from devharness.demo.record import Sample

HORIZONTAL = ("app", "db-read", "workers")


def _actions(samples: Sequence[Sample]) -> list[tuple[float, str]]:
    """(time, "Reason: message") of every Event the operator posted, in order."""
    return [(s.t, e) for s in samples for e in s.events if not e.startswith("(")]


def _bottleneck_spans(samples: Sequence[Sample]) -> list[tuple[float, float, str]]:
    """Contiguous stretches with the same bottleneck ('' = none): (start, end, tier)."""
    spans: list[tuple[float, float, str]] = []
    for s in samples:
        if spans and spans[-1][2] == s.bottleneck:
            spans[-1] = (spans[-1][0], s.t, s.bottleneck)
        else:
            spans.append((s.t, s.t, s.bottleneck))
    return spans


def step_name(event: str) -> str:
    """"widen app" / "narrow workers" from the operator's Event text ("" for other Events)."""
    widened = re.match(r"Widened: (\S+) is the bottleneck", event)
    narrowed = re.match(r"Narrowed: .*?; (\S+) peak pressure", event)
    if widened:
        return f"widen {widened.group(1)}"
    return f"narrow {narrowed.group(1)}" if narrowed else ""


def phase_table(samples: Sequence[Sample], phases: Sequence[tuple[float, str, str]]) -> list[str]:
    """Per load phase: the tier it was meant to press, and the steps the operator took meanwhile."""
    lines = ["## Load phases and what the operator did", "", "| phase | from | meant to press | steps in the phase |",
             "|---|---|---|---|"]
    ends = [start for start, _, _ in phases[1:]] + [float("inf")]
    for (start, name, expect), end in zip(phases, ends, strict=True):
        steps = [step_name(e) for t, e in _actions(samples) if start <= t < end and step_name(e)]
        lines.append(f"| {name} | {start:.0f}s | {expect or '-'} | {'; '.join(steps) or 'none'} |")
    return [*lines, ""]


def markdown(samples: Sequence[Sample], *, title: str, settings: dict[str, str], plot: str,
             phases: Sequence[tuple[float, str, str]] = ()) -> str:
    lines = [f"# {title}", ""]
    lines += [f"- {k}: {v}" for k, v in settings.items()]
    if samples:
        first, last = samples[0], samples[-1]
        lines += [f"- duration recorded: {last.t:.0f}s, {len(samples)} samples", ""]
        lines += ["## Sizes", "", "| tier | start | end |", "|---|---|---|"]
        for tier in HORIZONTAL:
            lines.append(f"| {tier} | {first.replicas.get(tier, '-')} | {last.replicas.get(tier, '-')} |")
        for tier in ("cache", "db-write"):
            lines.append(f"| {tier} | {first.sizes.get(tier, '-')} | {last.sizes.get(tier, '-')} |")
        lines += ["", "## Bottleneck over time", "", "| from | to | bottleneck |", "|---|---|---|"]
        for start, end, tier in _bottleneck_spans(samples):
            lines.append(f"| {start:.0f}s | {end:.0f}s | {tier or '(none)'} |")
    lines += ["", *phase_table(samples, phases)] if phases else []
    lines += ["", "## Decisions (the ScaledApp's Events)", ""]
    actions = _actions(samples)
    lines += [f"- {t:.0f}s {e}" for t, e in actions] or ["- none"]
    p95 = [s.p95_seconds for s in samples if s.p95_seconds is not None]
    if p95:
        lines += ["", f"p95 latency: worst {max(p95) * 1000:.0f} ms, last {p95[-1] * 1000:.0f} ms", ""]
    lines += ["", f"![load, p95 latency and replicas over time]({plot})", ""]
    return "\n".join(lines)


def plot(samples: Sequence[Sample], path: Path, title: str, phases: Sequence[tuple[float, str]] = ()) -> None:
    """Three stacked panels sharing the time axis: load (with the profile's phases), p95 latency (with the
    bottleneck the operator named), ready replicas per tier; every step as a vertical line."""
    t = [s.t for s in samples]
    fig, (load_ax, p95_ax, size_ax) = plt.subplots(3, 1, sharex=True, figsize=(11, 8.5))
    load_ax.plot(t, [s.load if s.load is not None else float("nan") for s in samples], label="offered load")
    load_ax.plot(t, [s.rps if s.rps is not None else float("nan") for s in samples], label="served (Prometheus)",
                 linestyle="--")
    load_ax.set_ylabel("requests/s")
    for start, name in phases:
        load_ax.axvline(start, color="tab:blue", alpha=0.25, linestyle=":")
        load_ax.text(start, 0.02, f" {name}", transform=load_ax.get_xaxis_transform(), fontsize=7, rotation=90,
                     va="bottom", color="tab:blue")
    load_ax.legend(loc="upper left")
    p95_ax.plot(t, [s.p95_seconds * 1000 if s.p95_seconds is not None else float("nan") for s in samples],
                color="tab:red")
    p95_ax.set_ylabel("p95 latency (ms)")
    for tier in HORIZONTAL:
        size_ax.step(t, [s.replicas.get(tier, 0) for s in samples], where="post", label=f"{tier} replicas")
    size_ax.set_ylabel("ready replicas")
    size_ax.set_xlabel("seconds since start")
    size_ax.legend(loc="upper left")
    for when, event in _actions(samples):
        if event.startswith(("Widened", "Narrowed")):
            for ax in (load_ax, p95_ax, size_ax):
                ax.axvline(when, color="grey", alpha=0.4, linewidth=0.8)
            size_ax.annotate(event.split(":", 1)[1].strip()[:28], (when, size_ax.get_ylim()[1]), rotation=90,
                             fontsize=7, va="top", ha="right", color="dimgrey")
    for start, end, tier in _bottleneck_spans(samples):
        if tier:
            p95_ax.axvspan(start, end, alpha=0.08, color="tab:orange")
            p95_ax.text((start + end) / 2, 0.95, tier, transform=p95_ax.get_xaxis_transform(), ha="center",
                        va="top", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
