"""The demo's timeline and report, from recorded samples: pure functions, no servers."""

from __future__ import annotations

from pathlib import Path

from devharness.demo.record import Sample, status_fields, timeline_line
from devharness.demo.report import markdown, phase_table, plot, step_name

STATUS = {
    "bottleneck": "app",
    "pressures": [{"tier": "app", "pressure": 1.58, "signal": "self_seconds"},
                  {"tier": "cache", "pressure": 0.4, "signal": "hit_ratio"}],
    "tiers": {"app": {"desired": 3, "ready": 2}, "dbRead": {"desired": 1, "ready": 1},
              "workers": {"desired": 1, "ready": 1}, "cache": {"size": "48Mi"},
              "dbWrite": {"size": "500m CPU, 512Mi"}},
    "conditions": [{"type": "Scaling", "status": "True", "reason": "Widened"},
                   {"type": "MetricsAvailable", "status": "True", "reason": "AllSignalsKnown"}],
}


def test_status_fields_pick_the_bottleneck_its_evidence_and_ready_replicas() -> None:
    sample = Sample(t=18.0)
    status_fields(STATUS, sample)
    assert (sample.bottleneck, sample.pressure, sample.signal) == ("app", 1.58, "self_seconds")
    assert sample.replicas == {"app": 2, "db-read": 1, "workers": 1}
    assert sample.sizes == {"cache": "48Mi", "db-write": "500m CPU, 512Mi"}
    assert (sample.scaling, sample.metrics_available) == ("Widened", "True")


def test_a_timeline_line_shows_load_p95_bottleneck_replicas_action_and_new_events() -> None:
    sample = Sample(t=18.0, load=160.4, p95_seconds=0.628, events=["Widened: " + "x" * 300])
    status_fields(STATUS, sample)
    head, event = timeline_line(sample).splitlines()
    for part in ("18s", "160/s", "628ms", "app", "1.58 self_seconds", "2/1/1", "Widened"):
        assert part in head, part
    assert event.strip().startswith("event  Widened: ") and event.endswith("...") and len(event) < 200


def test_unknown_values_show_as_dashes_and_missing_metrics_say_so() -> None:
    line = timeline_line(Sample(t=3.0, metrics_available="False", scaling="MetricsUnavailable"))
    assert "-/s" not in line and " - " in line
    assert "(metrics unavailable)" in line


def test_steps_are_attributed_to_the_phase_they_happened_in(tmp_path: Path) -> None:
    samples = [Sample(t=5.0), Sample(t=20.0, events=["Widened: app is the bottleneck: cpu (pressure 1.5)"]),
               Sample(t=120.0, events=["Repaired: reverted a change to Deployment demo-app",
                                       "Narrowed: all tiers calm for 62s; workers peak pressure 0.1 -> 0.2"])]
    phases = [(0.0, "warm-up", ""), (10.0, "app", "app"), (100.0, "cache", "cache")]
    table = "\n".join(phase_table(samples, phases))
    assert "| app | 10s | app | widen app |" in table
    assert "| cache | 100s | cache | narrow workers |" in table
    assert "| warm-up | 0s | - | none |" in table
    assert step_name("Repaired: reverted a change to Deployment demo-app") == ""
    report = markdown(samples, title="t", settings={"profile": "x"}, plot="plot.png", phases=phases)
    assert "![load, p95 latency and replicas over time](plot.png)" in report
    plot(samples, tmp_path / "plot.png", "t", [(p[0], p[1]) for p in phases])
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
