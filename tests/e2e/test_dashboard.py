"""The chart's Grafana dashboard against a real Prometheus: every panel's query returns data.

The closed loop of test_closed_loop.py (the real operator, the live twin's exposition of every tier, a real
Prometheus on loopback) with the operator's own /metrics scraped the way the chart's bundled Prometheus scrapes the
operator pods (its `scaledapp-operator` job, honor_labels). After a load step made the operator widen the app and
judge its step, the dashboard's template variables are resolved as Grafana resolves them (label values), substituted
into each panel target, and each target is run as the range query a panel runs over the test's time range: each
must return at least one series with a number in it.
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from devharness.demo.stack import Stack
from devharness.prometheus import OPERATOR_JOB
from tests.e2e.conftest import StartLoop
from tests.e2e.test_closed_loop import diagnose, scaledapp, status, wait_for_widen
from tests.support.helm import render
from tests.support.wait import wait_for

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "charts" / "scaledapp-operator" / "dashboards" / "scaledapp.json"
# Grafana's $__rate_interval: max($__interval + scrape interval, 4 x scrape interval); the loop scrapes every 2 s
# and a panel over a few minutes has a $__interval of about the scrape interval.
SCRAPE_SECONDS = 2
RATE_INTERVAL = f"{4 * SCRAPE_SECONDS}s"
KNOWN = {"namespace", "scaledapp", "__rate_interval", "datasource"}


def dashboard() -> dict[str, Any]:
    out: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return out


def panel_targets() -> list[tuple[str, str, str]]:
    """(panel title, refId, expr) of every target of every panel (rows' nested panels included)."""
    out = []
    panels = list(dashboard()["panels"])
    while panels:
        panel = panels.pop(0)
        panels += panel.get("panels", [])
        for target in panel.get("targets", []):
            out.append((panel["title"], target.get("refId", "?"), target["expr"]))
    return out


def variables(expr: str) -> set[str]:
    return set(re.findall(r"\$\{?(\w+)\}?", expr))


def substitute(expr: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{?(\w+)\}?", lambda m: values[m.group(1)], expr)


def label_values(stack: Stack, query: str, values: dict[str, str]) -> list[str]:
    """Grafana's label_values(METRIC_SELECTOR, LABEL) variable query through Prometheus' label values API."""
    match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", substitute(query, values))
    assert match, query
    selector, label = match.groups()
    found: list[str] = stack.prometheus.api(f"label/{label}/values", {"match[]": selector})
    return found


def test_the_dashboard_has_no_target_without_a_query_and_only_known_variables() -> None:
    targets = panel_targets()
    assert len(targets) >= 10
    for title, ref, expr in targets:
        assert expr.strip(), (title, ref)
        assert variables(expr) <= KNOWN, (title, ref, variables(expr) - KNOWN)


def test_the_loops_operator_job_is_the_charts() -> None:
    """What the loop's Prometheus does with the operator's series is what the chart's bundled Prometheus does."""
    objects = render({"prometheus.enabled": True})
    config = yaml.safe_load(next(o for o in objects if o["kind"] == "ConfigMap"
                                 and o["metadata"]["name"].endswith("-prometheus"))["data"]["prometheus.yml"])
    chart_job = next(j for j in config["scrape_configs"] if j["job_name"] == OPERATOR_JOB)
    stack = Stack(Path("/nonexistent"), "", "", "ns")
    (loop_job,) = [j for j in stack.prometheus.extra_scrape_configs if j["job_name"] == OPERATOR_JOB]
    assert loop_job["honor_labels"] is chart_job["honor_labels"] is True
    target_labels = {r["target_label"] for r in chart_job["relabel_configs"] if "target_label" in r}
    assert set(loop_job["static_configs"][0]["labels"]) == target_labels


def test_every_dashboard_query_returns_data_from_a_real_prometheus(closed_loop: StartLoop) -> None:
    start = time.time()
    stack = closed_loop(scaledapp(), "step")  # reads 150/s -> 330/s at 20 s: the app is the bottleneck
    wait_for_widen(stack, "app", 120)
    # The step judged (verify-after-act): the verdict panel has something to show.
    try:
        wait_for(lambda: (status(stack).get("lastAction") or {}).get("verdict") not in (None, "pending"), 90,
                 "a verdict on the app step", interval=1.0)
    except AssertionError as exc:
        raise AssertionError(f"{exc}{diagnose(stack)}") from None

    # Template variables, as Grafana resolves them: the namespace list holds the loop's, the ScaledApp list its name.
    values = {"__rate_interval": RATE_INTERVAL, "datasource": "prometheus"}
    templating = {v["name"]: v for v in dashboard()["templating"]["list"]}
    namespaces = label_values(stack, templating["namespace"]["query"]["query"], values)
    assert stack.namespace in namespaces, namespaces
    values["namespace"] = stack.namespace
    names = label_values(stack, templating["scaledapp"]["query"]["query"], values)
    assert names == [stack.name], names
    values["scaledapp"] = stack.name

    # Every target, as a panel's range query over the run; the counters' increase() needs two scrapes of a series
    # in the window, so the run is polled (with a deadline) rather than queried once.
    pending = {(title, ref): substitute(expr, values) for title, ref, expr in panel_targets()}

    def empty() -> dict[tuple[str, str], str]:
        end = time.time()
        for key, promql in list(pending.items()):
            series = stack.prometheus.query_range(promql, start, end, SCRAPE_SECONDS)
            numbers = [float(v) for s in series for _, v in s["values"] if not math.isnan(float(v))]
            if numbers:
                del pending[key]
        return pending

    try:
        wait_for(lambda: not empty(), 60, "data for every dashboard target", interval=2.0)
    except AssertionError:
        missing = {f"{title} [{ref}]": promql for (title, ref), promql in pending.items()}
        raise AssertionError(f"dashboard targets without data: {json.dumps(missing, indent=1)}{diagnose(stack)}") \
            from None
