"""docs/metrics.md is the one list of metric names and labels: every app and worker row must exist in a
live process with exactly the documented labels, and the processes must not export undocumented
scaledapp_* metrics."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.dataplane import REPO, AppProcess, WorkerProcess
from tests.support.wait import wait_for

pytestmark = pytest.mark.dataplane

DOC = REPO / "docs" / "metrics.md"


@dataclass(frozen=True)
class Documented:
    name: str
    type: str
    labels: frozenset[str]
    emitters: frozenset[str]


def documented_metrics(path: Path = DOC) -> list[Documented]:
    """Rows of the markdown tables whose header is `metric | type | labels | meaning | emitted by`."""
    rows = []
    for line in path.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or not cells[0].startswith("`"):
            continue
        name = cells[0].strip("`")
        labels = frozenset(re.findall(r"`([a-z_]+)`", cells[2])) if cells[2] != "—" else frozenset()
        if cells[2].startswith("same as"):
            labels = next(r.labels for r in rows if r.name == re.findall(r"`([a-z_]+)`", cells[2])[0])
        emitters = frozenset(e.strip() for e in cells[4].split(","))
        rows.append(Documented(name, cells[1], labels, emitters))
    return rows


def test_the_doc_table_parses() -> None:
    rows = documented_metrics()
    names = [r.name for r in rows]
    assert len(names) == len(set(names)), "a metric is documented twice"
    assert {"app", "worker", "redis_exporter", "postgres_exporter"} <= {e for r in rows for e in r.emitters}
    assert all(r.type in {"counter", "gauge", "histogram"} for r in rows)


def _families(url: str) -> dict[str, tuple[str, list[tuple[str, frozenset[str]]]]]:
    """Exposed sample name -> (family type, [(sample name, label names)]), keyed by every sample name."""
    out: dict[str, tuple[str, list[tuple[str, frozenset[str]]]]] = {}
    for family in text_string_to_metric_families(httpx.get(url, timeout=5).text):
        samples = [(s.name, frozenset(s.labels)) for s in family.samples]
        for sample_name, _ in samples:
            out.setdefault(sample_name, (family.type, samples))
    return out


def _check(doc: Documented, families: dict[str, tuple[str, list[tuple[str, frozenset[str]]]]], who: str) -> list[str]:
    problems = []
    expected = {doc.name: doc.labels}
    if doc.type == "histogram":
        expected = {f"{doc.name}_bucket": doc.labels | {"le"}, f"{doc.name}_sum": doc.labels,
                    f"{doc.name}_count": doc.labels}
    for sample_name, labels in expected.items():
        if sample_name not in families:
            problems.append(f"{who}: {sample_name} missing")
            continue
        family_type, samples = families[sample_name]
        if family_type != doc.type:
            problems.append(f"{who}: {doc.name} is a {family_type}, documented as {doc.type}")
        seen = {lbl for name, lbl in samples if name == sample_name}
        if seen != {labels}:
            problems.append(f"{who}: {sample_name} has labels {sorted(map(sorted, seen))}, documented {sorted(labels)}")
    return problems


def test_every_documented_series_exists_with_its_labels(demo_app: AppProcess, demo_worker: WorkerProcess) -> None:
    # Exercise every route once so the per-route series exist, and have the worker finish a job.
    with httpx.Client(base_url=demo_app.url, timeout=5) as client:
        assert client.get("/items/1").status_code == 200
        assert client.put("/items/2", json={"name": "m", "value": "m"}).status_code == 200
        assert client.post("/items", json={"name": "m", "value": "m"}).status_code == 201
        status_url = client.post("/orders", json={"item_id": 1}).json()["status_url"]
        wait_for(lambda: client.get(status_url).json()["state"] == "done", 15, "the order done", interval=0.05)
    scraped = {"app": _families(demo_app.url + "/metrics"), "worker": _families(demo_worker.metrics_url)}

    problems: list[str] = []
    documented = [d for d in documented_metrics() if d.emitters & {"app", "worker"}]
    for doc in documented:
        for who in sorted(doc.emitters & {"app", "worker"}):
            problems += _check(doc, scraped[who], who)
    # And nothing of ours goes undocumented.
    names = {d.name for d in documented}
    for who, families in scraped.items():
        for sample_name in families:
            base = re.sub(r"_(bucket|sum|count)$", "", sample_name)
            if sample_name.startswith("scaledapp_") and sample_name not in names and base not in names:
                problems.append(f"{who}: {sample_name} is exported but not documented")
    assert problems == []
