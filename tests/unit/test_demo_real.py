"""`make demo` on the real node (devharness/demo/real.py): the load plan, the timeline's offered load, the
report's Job table, and the demo's ScaledApp fitting the node at its widest. Pure: no cluster."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import yaml
from hack import loadjob

from devharness.demo import real
from devharness.demo.record import Sample
from scaledapp import api
from scaledapp.quantity import parse_cpu_millicores
from tests.unit.test_resources import requested

ROOT = Path(__file__).resolve().parents[2]


def test_the_phases_fill_the_duration_in_order_by_share() -> None:
    plan = real.schedule(real.PLANS["bottleneck-shift"], 420)
    assert [s.phase.name for s in plan] == ["warm-up", "cpu-heavy", "reports", "order-surge"]
    assert plan[0].start == 0 and plan[-1].start + plan[-1].length == pytest.approx(420)
    for before, after in itertools.pairwise(plan):
        assert after.start == pytest.approx(before.start + before.length)
    assert [s.phase.expect for s in plan] == ["", "app", "db-read", "workers"]
    # Shorter runs keep the proportions.
    short = real.schedule(real.PLANS["bottleneck-shift"], 210)
    assert [s.length for s in short] == pytest.approx([s.length / 2 for s in plan])


@pytest.mark.parametrize("profile", sorted(real.PLANS))
def test_every_plan_parses_and_ends_with_the_tier_it_names(profile: str) -> None:
    plan = real.schedule(real.PLANS[profile], 300)
    real.validate(plan)
    assert plan[0].phase is real.WARM_UP
    lines = real.describe(plan)
    assert len(lines) == len(plan) and all(s.phase.name in line for s, line in zip(plan, lines, strict=True))


def test_offered_load_follows_the_phase_profiles() -> None:
    plan = real.schedule(real.PLANS["bottleneck-shift"], 420)
    _, cpu, reports, orders = plan
    sample = Sample(t=1.0)
    real.offer(sample, plan)
    assert (sample.load, sample.phase) == (10.0, "warm-up")
    ramp_mid = cpu.start + cpu.length / 2
    sample = Sample(t=ramp_mid)
    real.offer(sample, plan)
    assert sample.phase == "cpu-heavy" and sample.load == pytest.approx(25.0, abs=0.1)  # 10 -> 40 ramp
    sample = Sample(t=reports.start + 1)
    real.offer(sample, plan)
    assert (sample.load, sample.phase) == (28.0, "reports")
    sample = Sample(t=430.0)
    real.offer(sample, plan)
    assert (sample.load, sample.phase) == (0.0, "")
    assert real.phase_at(plan, orders.start) is orders


def test_each_phase_is_a_load_job_with_its_mix_and_keys() -> None:
    (_, cpu, reports, orders) = real.schedule(real.PLANS["bottleneck-shift"], 420)
    spec = loadjob.LoadSpec("ns", "demo", reports.phase.profile, 100, args=reports.phase.load_args(),
                            cpu_request=real.LOAD_CPU_REQUEST)
    container = loadjob.job_manifest(spec, "load-2-reports")["spec"]["template"]["spec"]["containers"][0]
    command = container["command"]
    assert command[command.index("--keys") + 1] == "1000" and command[command.index("--zipf") + 1] == "0"
    assert command[-3:] == ["--json", "-", "--quiet"]  # the report stays parseable by loadjob.finish
    assert container["resources"]["requests"]["cpu"] == real.LOAD_CPU_REQUEST
    assert "order=" in orders.phase.mix and "order" not in cpu.phase.mix


def test_the_jobs_table_counts_failures_by_kind_and_shows_jobs_without_a_report() -> None:
    plan = real.schedule(real.PLANS["app"], 100)
    report = {"sent": 100, "ok": 97, "errors": {"http_503": 2, "timeout": 1}, "p50_ms": 11.2, "p95_ms": 80.0,
              "p99_ms": 120.4}
    lines = real.jobs_table([(plan[0], "load-0-warm-up", report), (plan[1], "load-1-cpu-heavy", None)])
    assert "| warm-up | load-0-warm-up | 100 | 97 | 3 (http_503 2, timeout 1) | 11 ms | 80 ms | 120 ms |" in lines
    assert "| cpu-heavy | load-1-cpu-heavy | - | - | - | - | - | - |" in lines


def test_the_demo_scaledapp_fits_the_node_at_its_widest() -> None:
    """Every tier at its max, plus the load Job, within a 2-CPU node that also runs the operator, Prometheus
    and CoreDNS (100m + 100m + 50m)."""
    body = yaml.safe_load((ROOT / "examples" / "demo-real.yaml").read_text())
    spec = api.ScaledApp.model_validate(body).spec
    widest = spec.model_copy(deep=True)
    for bounds in (widest.app.replicas, widest.database.read_replicas, widest.workers.replicas):
        bounds.min = bounds.max
    cpu, _ = requested(widest)
    assert cpu + parse_cpu_millicores(real.LOAD_CPU_REQUEST) <= 2000 - 250, f"{cpu}m at the widest"
    # The knobs the load phases rely on are set.
    env = {e.name: e.value for e in spec.app.env}
    assert {"APP_CPU_WORK_MS", "APP_READ_QUERY_COST_ROWS", "APP_JOB_DURATION_SECONDS"} <= env.keys()
    assert spec.cache.ttl_seconds <= 30  # reads spread over the catalogue must miss
    assert real.EXAMPLE == ROOT / "examples" / "demo-real.yaml"
