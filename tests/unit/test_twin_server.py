"""The live twin's plumbing without a cluster: what it reads from API objects, what it serves per pod,
and the file_sd targets it writes (labelled as the real pods would be after relabelling)."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devharness.twin import TwinParams
from devharness.twin.kube import ClusterView, build_view, pod_is_serving
from devharness.twin.scenarios import PROFILES, scenario
from devharness.twin.server import LiveTwin, TwinConfig
from scaledapp import api
from scaledapp.resources.names import INSTANCE_LABEL, TIER_LABEL
from scaledapp.sizes import Resources, Sizes
from scaledapp.tiers import initial_sizes

NS, NAME = "shop-ns", "shop"
REAL_PODS = {"app": ["shop-app-7d9c-abcde", "shop-app-7d9c-fghij"], "cache": ["shop-cache-5f6-xyz12"],
             "db-write": ["shop-db-0"], "db-read": ["shop-db-read-0"], "workers": ["shop-workers-88-q1w2e"]}


def pod(name: str, tier: str, *, ready: bool = True, phase: str = "Running", deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {INSTANCE_LABEL: NAME, TIER_LABEL: tier}}
    if deleting:
        meta["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"phase": phase,
                                         "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def api_pods(pods: dict[str, list[str]]) -> list[dict[str, Any]]:
    return [pod(n, tier) for tier, names in pods.items() for n in names]


def primary(cpu: str, memory: str) -> dict[str, Any]:
    return {"spec": {"template": {"spec": {"containers": [
        {"name": "exporter", "resources": {"limits": {"cpu": "100m", "memory": "64Mi"}}},
        {"name": "postgres", "resources": {"limits": {"cpu": cpu, "memory": memory}}},
    ]}}}}


def test_only_running_ready_live_pods_serve() -> None:
    assert pod_is_serving(pod("a", "app"))
    assert not pod_is_serving(pod("a", "app", ready=False))
    assert not pod_is_serving(pod("a", "app", phase="Pending"))
    assert not pod_is_serving(pod("a", "app", deleting=True))


def test_view_counts_ready_pods_and_reads_vertical_sizes() -> None:
    items = [*api_pods(REAL_PODS), pod("shop-app-7d9c-new00", "app", ready=False),
             pod("shop-queue-1-abc", "queue")]
    view = build_view(items, {"data": {"maxmemory": "134217728"}}, primary("1500m", "2Gi"),
                      initial_sizes(api.ScaledAppSpec()))
    assert view.sizes == Sizes({"app": 2, "db-read": 1, "workers": 1, "cache": 128 * 2**20,
                                "db-write": Resources(1500, 2 * 2**30)})
    assert [p.name for p in view.pods_of("app")] == REAL_PODS["app"]  # not the unready one
    assert not view.pods_of("queue")  # the queue's Redis carries no signal the operator reads
    assert view.missing == ()


def test_unset_vertical_sizes_keep_the_previous_value_and_say_so() -> None:
    previous = initial_sizes(api.ScaledAppSpec())
    view = build_view(api_pods(REAL_PODS), None, {"spec": {}}, previous)
    assert view.sizes["cache"] == previous["cache"]
    assert view.sizes["db-write"].cpu_millicores == previous["db-write"].cpu_millicores
    assert set(view.missing) == {"cache maxmemory", "primary resources"}


class FakeReader:
    """Stands in for ClusterReader: the pods and sizes a test says the API server has."""

    def __init__(self, pods: dict[str, list[str]]) -> None:
        self.pods = pods
        self.last = build_view(api_pods(pods), {"data": {"maxmemory": str(64 * 2**20)}}, primary("500m", "512Mi"),
                               initial_sizes(api.ScaledAppSpec()))
        self.closed = False

    def read(self) -> ClusterView:
        self.last = build_view(api_pods(self.pods), {"data": {"maxmemory": str(64 * 2**20)}},
                               primary("500m", "512Mi"), self.last.sizes)
        return self.last

    def close(self) -> None:
        self.closed = True


def scrape(address: str) -> str:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=5) as response:
        return str(response.read().decode())


def test_each_real_pod_gets_its_own_endpoint_and_a_pod_like_target(tmp_path: Path) -> None:
    targets_file = tmp_path / "targets.json"
    reader = FakeReader(dict(REAL_PODS))
    config = TwinConfig(None, NS, NAME, scenario("constant"), targets_file, tmp_path / "trace.jsonl", seed=3)
    twin = LiveTwin(config, api.ScaledAppSpec(), reader)  # type: ignore[arg-type]
    try:
        for _ in range(3):
            twin.tick()
        groups = json.loads(targets_file.read_text())
        by_pod = {g["labels"]["pod"]: g for g in groups}
        assert set(by_pod) == {n for names in REAL_PODS.values() for n in names}
        addresses = {g["targets"][0] for g in groups}
        assert len(addresses) == len(groups), "one address (so one `instance`) per pod"
        for tier, names in REAL_PODS.items():
            for name in names:
                labels = by_pod[name]["labels"]
                assert labels["namespace"] == NS
                assert labels["app_kubernetes_io_instance"] == NAME
                assert labels["scaledapp_dev_tier"] == tier
        app_page = scrape(by_pod[REAL_PODS["app"][0]]["targets"][0])
        families = {f.name for f in text_string_to_metric_families(app_page)}
        assert "scaledapp_http_request_duration_seconds" in families
        db_page = scrape(by_pod["shop-db-0"]["targets"][0])
        assert "pg_stat_activity_count" in {f.name for f in text_string_to_metric_families(db_page)}
        trace = [json.loads(line) for line in (tmp_path / "trace.jsonl").read_text().splitlines()]
        assert [r["t"] for r in trace] == [1.0, 2.0, 3.0]
        assert trace[-1]["load"] > 0

        # A pod is deleted and its controller makes a new one: the old endpoint goes, the new one comes.
        reader.pods["app"] = [REAL_PODS["app"][0], "shop-app-7d9c-zzzzz"]
        twin.tick()
        pods_now = {g["labels"]["pod"] for g in json.loads(targets_file.read_text())}
        assert "shop-app-7d9c-zzzzz" in pods_now
        assert REAL_PODS["app"][1] not in pods_now
    finally:
        twin.stop()
        twin.run()  # returns at once: clears the targets and closes every endpoint
    assert json.loads(targets_file.read_text()) == []
    assert reader.closed


def test_a_failing_api_server_keeps_the_last_view(tmp_path: Path) -> None:
    reader = FakeReader(dict(REAL_PODS))
    twin = LiveTwin(TwinConfig(None, NS, NAME, scenario("constant"), tmp_path / "t.json"), api.ScaledAppSpec(),
                    reader)  # type: ignore[arg-type]
    twin.tick()

    def down() -> ClusterView:
        raise ConnectionRefusedError("apiserver down")

    reader.read = down  # type: ignore[method-assign]
    try:
        obs = twin.tick()
        assert obs.ready["app"] == len(REAL_PODS["app"])
    finally:
        twin.endpoints.close()


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_profiles_start_at_zero_and_offer_load(name: str) -> None:
    scn = scenario(name)
    assert scn.phases[0].start == 0.0
    assert [p.start for p in scn.phases] == sorted(p.start for p in scn.phases)
    assert all(scn.load_at(t).total > 0 for t in range(0, int(scn.length) + 30, 5))


def test_bottleneck_shift_walks_the_ladder_and_ramps_between_phases() -> None:
    scn = scenario("bottleneck-shift")
    assert [p.expect for p in scn.phases if p.expect] == ["app", "cache", "db-read", "workers"]
    cache = next(p for p in scn.phases if p.expect == "cache")
    before = scn.load_at(cache.start - 1).total
    mid = scn.load_at(cache.start + cache.ramp_seconds / 2).total
    assert before < mid < cache.load.total
    # Knobs persist until a later phase changes them; the scenario's own constants always apply.
    base = scn.params_at(TwinParams(), cache.start + 1)
    assert base.cpu_work_ms == 0.0
    assert base.app_cpu_seconds_per_request == scn.params["app_cpu_seconds_per_request"]
