"""The twin exposes what the real processes expose: for every pod role, each family the twin renders
exists in the real process's /metrics (the demo app and worker, redis_exporter on a real Redis,
postgres_exporter on a real primary and replica) with the same type and the same label names, and the
twin leaves out none of the app's and worker's own families. Label values the tier queries select on
(dependency, operation, result) are ones the real app uses.

So a PromQL query that works against the twin works against the real data plane, and the other way
round: the closed loop in tests/e2e proves the operator on the twin, and this test ties the twin to reality.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devharness.twin import Load, TwinModel
from devharness.twin.model import POD_TIERS
from scaledapp.sizes import TierName
from tests.dataplane.test_metrics_contract import documented_metrics
from tests.support.dataplane import (
    MONITOR_PASSWORD,
    MONITOR_USER,
    AppProcess,
    PostgresCluster,
    RedisServer,
    WorkerProcess,
)
from tests.support.prometheus import Harness
from tests.support.wait import wait_for

pytestmark = pytest.mark.dataplane

# sample name -> (family type, set of label-name sets), and the label values seen per label name
Shape = dict[str, tuple[str, set[frozenset[str]]]]
SELECTED_LABELS = ("dependency", "operation", "result")


def shape(text: str) -> tuple[Shape, dict[str, set[str]]]:
    out: Shape = {}
    values: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            _kind, labels = out.setdefault(sample.name, (family.type, set()))
            labels.add(frozenset(sample.labels))
            for key in SELECTED_LABELS:
                if key in sample.labels:
                    values.setdefault(key, set()).add(sample.labels[key])
    return out, values


def base_name(sample: str) -> str:
    return re.sub(r"_(bucket|sum|count)$", "", sample)


def twin_pages() -> dict[TierName, str]:
    """One pod's page per role, after a minute of mixed load (every series has had its events)."""
    model = TwinModel(seed=11, pod_series=True)
    for _ in range(60):
        model.step(Load(200, 20, 2))
    return {tier: model.pod_metrics(tier)[0][1] for tier in POD_TIERS}


@pytest.fixture(scope="module")
def twin() -> dict[TierName, str]:
    return twin_pages()


def compare(role: str, twin_text: str, real_text: str, *, complete: frozenset[str] = frozenset()) -> list[str]:
    """Problems: twin families missing in the real page, type or label-name differences; and real
    families named in `complete` (base names) that the twin does not render."""
    twin_shape, _ = shape(twin_text)
    real_shape, _ = shape(real_text)
    problems = []
    for sample, (kind, label_sets) in sorted(twin_shape.items()):
        if sample not in real_shape:
            problems.append(f"{role}: twin renders {sample}, the real process does not")
            continue
        real_kind, real_sets = real_shape[sample]
        if kind != real_kind:
            problems.append(f"{role}: {sample} is a {kind} in the twin, a {real_kind} in reality")
        if label_sets != real_sets:
            problems.append(f"{role}: {sample} labels {sorted(map(sorted, label_sets))} in the twin, "
                            f"{sorted(map(sorted, real_sets))} in reality")
    for sample in sorted(real_shape):
        if base_name(sample) in complete and sample not in twin_shape:
            problems.append(f"{role}: the real process exports {sample}, the twin does not")
    return problems


def exercise(app: AppProcess) -> None:
    """Every route once, an order done: the real app's per-route and per-dependency series exist."""
    with httpx.Client(base_url=app.url, timeout=5) as client:
        assert client.get("/items/1").status_code == 200
        assert client.get("/items/1").status_code == 200  # a cache hit
        assert client.put("/items/2", json={"name": "t", "value": "t"}).status_code == 200
        assert client.post("/items", json={"name": "t", "value": "t"}).status_code == 201
        status_url = client.post("/orders", json={"item_id": 1}).json()["status_url"]
        wait_for(lambda: client.get(status_url).json()["state"] == "done", 15, "the order done", interval=0.05)


def emitted_by(role: str) -> frozenset[str]:
    """What docs/metrics.md says a role emits (a process may register more, e.g. the app's registry
    holds the worker's families unused, but those are not its own)."""
    return frozenset(d.name for d in documented_metrics() if role in d.emitters)


def test_app_and_worker_pages_match_the_real_processes(
    twin: dict[TierName, str], demo_app: AppProcess, demo_worker: WorkerProcess
) -> None:
    exercise(demo_app)
    real_app = httpx.get(f"{demo_app.url}/metrics", timeout=5).text
    real_worker = httpx.get(demo_worker.metrics_url, timeout=5).text
    problems = compare("app", twin["app"], real_app, complete=emitted_by("app"))
    problems += compare("worker", twin["workers"], real_worker, complete=emitted_by("worker"))
    _, twin_values = shape(twin["app"])
    _, real_values = shape(real_app)
    for key in SELECTED_LABELS:
        extra = twin_values.get(key, set()) - real_values.get(key, set())
        if extra:
            problems.append(f"app: label {key} has values {sorted(extra)} in the twin that the real app never uses")
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def exporters(harness: Harness, redis_server: RedisServer, pg_cluster: PostgresCluster) -> Iterator[dict[str, str]]:
    """The real exporters' pages: redis_exporter on real Redis, postgres_exporter on the primary and
    the streaming replica (with the project's extra queries, as the pods run them)."""
    for server in (pg_cluster.primary, pg_cluster.replica):
        if not server.running:  # an outage drill elsewhere may have left one stopped
            server.start()
    redis = harness.redis_exporter(redis_server.address, name="contract-redis-exporter",
                                   password=redis_server.password)
    primary = harness.postgres_exporter(f"{pg_cluster.primary.host}:{pg_cluster.primary.port}", MONITOR_USER,
                                        MONITOR_PASSWORD, name="contract-pg-primary-exporter")
    replica = harness.postgres_exporter(f"{pg_cluster.replica.host}:{pg_cluster.replica.port}", MONITOR_USER,
                                        MONITOR_PASSWORD, name="contract-pg-replica-exporter")
    try:
        yield {"cache": redis.metrics_text(), "db-write": primary.metrics_text(), "db-read": replica.metrics_text()}
    finally:
        for exporter in (redis, primary, replica):
            exporter.stop()


@pytest.mark.parametrize("tier", ["cache", "db-write", "db-read"])
def test_exporter_pages_are_a_faithful_subset_of_the_real_exporters(
    twin: dict[TierName, str], exporters: dict[str, str], tier: TierName
) -> None:
    problems = compare(tier, twin[tier], exporters[tier])
    assert not problems, "\n".join(problems)


def test_every_documented_exporter_family_the_tiers_need_is_rendered(twin: dict[TierName, str]) -> None:
    """docs/metrics.md lists the exporter families; the twin renders each on the pods that emit it,
    with the documented labels."""
    rendered = {tier: shape(text)[0] for tier, text in twin.items()}
    problems = []
    for doc in documented_metrics():
        roles: list[TierName] = []
        if "redis_exporter" in doc.emitters:
            roles = ["cache"]
        if "postgres_exporter" in doc.emitters:
            roles = ["db-write", "db-read"]
        for role in roles:
            names = {base_name(s) for s in rendered[role]}
            if doc.name not in names:
                continue  # primary-only or replica-only families are checked against the real exporter above
            expected = doc.labels | ({"le"} if doc.type == "histogram" else set())
            seen = {frozenset(labels) for s, (_, sets) in rendered[role].items() if base_name(s) == doc.name
                    for labels in sets}
            if not all(labels <= expected for labels in seen):
                problems.append(f"{role}: {doc.name} labels {sorted(map(sorted, seen))}, documented {sorted(expected)}")
    assert not problems, "\n".join(problems)
