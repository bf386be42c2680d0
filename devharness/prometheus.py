"""A real, pinned Prometheus on loopback that scrapes targets labelled as the cluster's pods would be.

In the cluster, Prometheus discovers pods by annotation and relabels them (job `kubernetes-pods`:
`labelmap` of the pod labels, plus `namespace` and `pod`), so every series carries `namespace`, `pod`,
`app_kubernetes_io_instance` and `scaledapp_dev_tier`, which is what the tier queries select on. Here
the same labels come from a file_sd file, so the operator's PromQL runs unchanged against local
processes (the demo app, exporters, a simulated twin).

    from devharness.prometheus import LocalPrometheus, Target

    with LocalPrometheus(workdir) as prom:          # started, /-/ready answered
        prom.set_targets([Target("127.0.0.1:8080", namespace="demo", pod="demo-app-0",
                                 instance="demo", tier="app")])
        prom.wait_for_targets()                      # every target scraped and up
        prom.query('sum(up{namespace="demo"})')      # -> [{"metric": {...}, "value": [t, "1"]}]
    # stopped; the data dir (under workdir) is left for post-mortems unless you delete it

Target changes take about 5 s to reach the scrapers (Prometheus throttles discovery updates to one
per 5 s; the interval is not configurable in v3.16), so write targets before starting the processes
behind them and then wait_for_targets(). Scrape and evaluation intervals default to 1 s (the cluster
uses 15 s), so pass a short rate window to `scaledapp.tiers.queries(spec, scope, window="10s")`.
"""

from __future__ import annotations

import json
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from devharness.procs import Child, HarnessError, free_port, pinned_binary, poll
from scaledapp.tiers.base import PROM_INSTANCE_LABEL, PROM_TIER_LABEL

# The job name of the chart's pod-discovery scrape config (resources/common.py scrape_annotations).
POD_JOB = "kubernetes-pods"
# The chart's job for the operator's own /metrics (charts/scaledapp-operator/templates/prometheus-config.yaml).
OPERATOR_JOB = "scaledapp-operator"


def operator_scrape_config(address: str, namespace: str, pod: str = "operator") -> dict[str, Any]:
    """The chart's `scaledapp-operator` job for an operator process on `address` (host:port of --metrics-port):
    honor_labels, so the operator's own `namespace` label (the ScaledApp's) is kept, and the target labels the chart
    gives an operator pod (`namespace` of the pod, `pod`), here from a static target instead of pod discovery."""
    return {"job_name": OPERATOR_JOB, "honor_labels": True,
            "static_configs": [{"targets": [address], "labels": {"namespace": namespace, "pod": pod}}]}


@dataclass(frozen=True)
class Target:
    """One scrape target as Prometheus would see a pod: address plus the labels pod relabelling yields.

    `instance` is the ScaledApp's name (pod label app.kubernetes.io/instance); `tier` is the pod label
    scaledapp.dev/tier. `labels` adds further target labels (Prometheus label names, e.g. other pod
    labels after labelmap)."""

    address: str  # host:port
    namespace: str
    pod: str
    instance: str
    tier: str
    job: str = POD_JOB
    metrics_path: str = "/metrics"
    labels: Mapping[str, str] = field(default_factory=dict)

    def target_labels(self) -> dict[str, str]:
        """The labels every series scraped from this target carries (besides `instance`=address)."""
        return {
            **self.labels,
            "job": self.job,
            "namespace": self.namespace,
            "pod": self.pod,
            PROM_INSTANCE_LABEL: self.instance,
            PROM_TIER_LABEL: self.tier,
        }

    def file_sd_group(self) -> dict[str, Any]:
        # A target label named `job` wins over the scrape config's job_name; __metrics_path__ is read
        # during relabelling and then dropped, as in the cluster's scrape config.
        return {"targets": [self.address], "labels": {**self.target_labels(), "__metrics_path__": self.metrics_path}}


class LocalPrometheus:
    """The pinned Prometheus binary on a free 127.0.0.1 port with its own config and data under `workdir`.

    Small API: start(), set_targets(), wait_for_targets(), query(), stop() (or use it as a context
    manager). Not thread-safe; one instance per workdir."""

    def __init__(
        self,
        workdir: Path,
        *,
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
        port: int | None = None,
        binary: Path | None = None,
        extra_args: Iterable[str] = (),
        extra_scrape_configs: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        self.workdir = Path(workdir)
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.binary = binary
        self.extra_args = list(extra_args)
        # further scrape jobs beside the pod-like one (e.g. operator_scrape_config())
        self.extra_scrape_configs = [dict(c) for c in extra_scrape_configs]
        self.config_path = self.workdir / "prometheus.yml"
        self.targets_path = self.workdir / "targets.json"
        self.data_dir = self.workdir / "data"
        self._child = Child("prometheus", self.workdir / "prometheus.log")
        self._targets: list[Target] = []

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._child.running

    @property
    def targets(self) -> list[Target]:
        return list(self._targets)

    def config_text(self) -> str:
        """prometheus.yml: one pod-like job reading targets from the file_sd file (JSON is valid YAML)."""
        config = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,  # must not exceed the interval
                "evaluation_interval": self.evaluation_interval,
            },
            "scrape_configs": [
                {
                    "job_name": POD_JOB,
                    # file_sd watches the file (inotify); the refresh is only a fallback.
                    "file_sd_configs": [{"files": [str(self.targets_path)], "refresh_interval": "1s"}],
                },
                *self.extra_scrape_configs,
            ],
        }
        return json.dumps(config, indent=2) + "\n"

    def start(self, targets: Iterable[Target] = (), timeout: float = 60.0) -> None:
        """Write the config and targets, start Prometheus and wait for /-/ready (HarnessError on timeout)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        self.config_path.write_text(self.config_text())
        self.set_targets(targets)
        binary = self.binary or pinned_binary("prometheus")
        self._child.spawn([
            str(binary),
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.data_dir}",
            "--storage.tsdb.retention.time=2h",
            f"--web.listen-address={self.host}:{self.port}",
            "--log.level=warn",
            *self.extra_args,
        ])
        poll(self._ready, timeout, f"Prometheus /-/ready on {self.url} (log: {self._child.log_path})", 0.1)

    def _ready(self) -> bool:
        self._child.check_alive()
        with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
            return bool(response.status == 200)

    def set_targets(self, targets: Iterable[Target]) -> None:
        """Replace every target (written atomically, so Prometheus never reads half a file). Targets no
        longer listed are dropped at once, and their series go stale, as when a pod is deleted."""
        self._targets = list(targets)
        self.targets_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.targets_path.with_suffix(".tmp")
        tmp.write_text(json.dumps([t.file_sd_group() for t in self._targets], indent=2) + "\n")
        tmp.replace(self.targets_path)

    def api(self, path: str, params: Mapping[str, str] | None = None, timeout: float = 5.0) -> Any:
        """GET /api/v1/<path> and return its `data` (HarnessError unless status is success)."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}{query}", timeout=timeout) as response:
            body = json.loads(response.read())
        if body.get("status") != "success":
            raise HarnessError(f"Prometheus {path}: {body}")
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant vector query; the result list (each item has `metric` and `value`)."""
        data = self.api("query", {"query": promql})
        result: list[dict[str, Any]] = data["result"]
        return result

    def query_range(self, promql: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
        """A range query, as a dashboard panel runs it; the result list (each item has `metric` and `values`)."""
        data = self.api("query_range", {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                        "step": f"{step:g}"}, timeout=15.0)
        result: list[dict[str, Any]] = data["result"]
        return result

    def target_health(self) -> dict[tuple[str, str], str]:
        """(address, pod) -> "up" / "down" / "unknown" for the active targets Prometheus has now."""
        active = self.api("targets", {"state": "active"})["activeTargets"]
        return {(t["labels"].get("instance", ""), t["labels"].get("pod", "")): t["health"] for t in active}

    def wait_for_targets(self, timeout: float = 30.0) -> None:
        """Wait until every target set with set_targets() has been scraped successfully (health up)."""
        wanted = {(t.address, t.pod) for t in self._targets}

        def all_up() -> dict[tuple[str, str], str] | None:
            self._child.check_alive()
            health = self.target_health()
            return health if all(health.get(key) == "up" for key in wanted) else None

        poll(all_up, timeout, f"targets {sorted(wanted)} up in {self.url}", 0.2)

    def stop(self) -> None:
        """Stop Prometheus (idempotent). Its data dir stays in workdir; `url` then refuses connections."""
        self._child.stop()

    def log_tail(self, lines: int = 30) -> str:
        return self._child.log_tail(lines)

    def __enter__(self) -> LocalPrometheus:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


__all__ = ["POD_JOB", "HarnessError", "LocalPrometheus", "Target"]
