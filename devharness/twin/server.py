"""The live twin: the model driven in real time by the real control plane, scraped by a real Prometheus.

Each tick (one second of wall time = one second of model time):
1. read the ScaledApp's ready pods and sizes from the API server (kube.py);
2. tell the model which pods exist and how big the cache and primary are, then advance it under the
   load the scenario offers now;
3. publish every ready pod's metrics on that pod's own loopback endpoint, and rewrite the file_sd
   targets (labelled as the pod's would be after relabelling) whenever the set of pods changed;
4. append one line of ground truth to the trace (load, p95, the model's own bottleneck), which the
   demo's report uses for "offered load".

The operator never talks to the twin: it reads Prometheus and writes workloads, exactly as with a
real data plane.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from kubernetes.client import CustomObjectsApi

from devharness.prometheus import Target
from devharness.twin.endpoints import Endpoints
from devharness.twin.kube import ClusterReader, ClusterView
from devharness.twin.model import POD_TIERS, Observation, TwinModel
from devharness.twin.params import TwinParams
from devharness.twin.scenarios import Scenario
from scaledapp import api
from scaledapp.tiers import cache, db_write, initial_sizes

log = logging.getLogger("twin")

# kwok marks a pod Ready the moment it is scheduled, and the operator judges its steps by that
# readiness. The twin trusts it too (no extra start-up delay), except that a new read replica still
# streams a base backup first: short, so a replica counts within the operator's cooldown.
LIVE_PARAMS: Mapping[str, float] = {"app_ready_seconds": 0.0, "worker_ready_seconds": 0.0,
                                    "replica_bootstrap_seconds": 10.0}


@dataclass(frozen=True)
class TwinConfig:
    kubeconfig: str | None
    namespace: str
    name: str
    scenario: Scenario
    targets_file: Path
    trace_file: Path | None = None
    seed: int = 0
    tick_seconds: float = 1.0
    host: str = "127.0.0.1"


def write_targets(path: Path, targets: list[Target]) -> None:
    """The file_sd file, replaced atomically (Prometheus must never read half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps([t.file_sd_group() for t in targets], indent=2) + "\n")
    tmp.replace(path)


def trace_record(t: float, scenario: Scenario, obs: Observation, view: ClusterView) -> dict[str, Any]:
    def finite(x: float | None) -> float | None:
        return None if x is None or math.isinf(x) or math.isnan(x) else round(x, 4)

    return {
        "t": round(t, 1),
        "phase": scenario.phase_at(t)[1].name,
        "load": round(obs.load.total, 1),
        "reads": round(obs.load.reads_per_second, 1),
        "writes": round(obs.load.writes_per_second, 1),
        "orders": round(obs.load.orders_per_second, 2),
        "p95_seconds": finite(obs.p95_seconds),
        "served": round(obs.served_per_second, 1),
        "errors": round(obs.errors_per_second, 1),
        "bottleneck": obs.bottleneck or "",
        "utilization": {k: round(v, 3) for k, v in obs.utilization.items()},
        "ready": dict(obs.ready),
        "cache_bytes": cache.TIER.size(view.sizes),
        "primary_millicores": db_write.TIER.size(view.sizes).cpu_millicores,
        "hit_ratio": finite(obs.hit_ratio),
        "queue_depth": round(obs.queue_depth, 1),
    }


class LiveTwin:
    """Owns the model, the endpoints and the targets file; `run()` ticks until `stop()`."""

    def __init__(self, config: TwinConfig, spec: api.ScaledAppSpec, reader: ClusterReader) -> None:
        self.config = config
        self.reader = reader
        self.base_params = TwinParams().with_(**LIVE_PARAMS)
        self.model = TwinModel(spec, params=config.scenario.params_at(self.base_params, 0.0), seed=config.seed,
                               sizes=reader.last.sizes, name=config.name, pod_series=True)
        self.endpoints = Endpoints(config.host)
        self._stop = threading.Event()
        self.ticks = 0

    def stop(self) -> None:
        self._stop.set()

    def targets(self) -> list[Target]:
        tiers = {p.name: p.tier for p in self.model.pods()}
        return [Target(self.endpoints.address(pod), namespace=self.config.namespace, pod=pod,
                       instance=self.config.name, tier=tiers[pod]) for pod in self.endpoints.pods]

    def read(self) -> ClusterView:
        try:
            return self.reader.read()
        except Exception as exc:  # an API server blip: keep simulating what was last seen
            log.warning("could not read the cluster (%s: %s); keeping the last view", type(exc).__name__, exc)
            return self.reader.last

    def tick(self) -> Observation:
        t = self.model.now
        view = self.read()
        by_tier = {tier: [p.name for p in view.pods_of(tier)] for tier in POD_TIERS}
        self.model.params = self.config.scenario.params_at(self.base_params, t)
        self.model.set_sizes(view.sizes, pods=by_tier)
        obs = self.model.step(self.config.scenario.load_at(t), self.config.tick_seconds)
        pages = {pod: text for tier in POD_TIERS for pod, text in self.model.pod_metrics(tier)}
        if self.endpoints.sync(pages):
            write_targets(self.config.targets_file, self.targets())
            log.info("serving %d pods: %s", len(pages), " ".join(sorted(pages)))
        for pod, text in pages.items():
            self.endpoints.set_page(pod, text)
        if self.config.trace_file is not None:
            with self.config.trace_file.open("a") as f:
                f.write(json.dumps(trace_record(self.model.now, self.config.scenario, obs, view)) + "\n")
        self.ticks += 1
        return obs

    def run(self) -> None:
        """Tick on a fixed wall-clock schedule; a late tick is not made up (the model's time stays
        in step with the operator's clock, which is what its rate windows measure)."""
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                self.tick()
                next_at += self.config.tick_seconds
                delay = next_at - time.monotonic()
                if delay < 0:
                    next_at = time.monotonic()
                self._stop.wait(max(0.0, delay))
        finally:
            write_targets(self.config.targets_file, [])
            self.endpoints.close()
            self.reader.close()


def read_spec(reader: ClusterReader, timeout: float) -> api.ScaledAppSpec:
    """The ScaledApp's spec as the API server stored it (defaults applied); waits for it to exist."""
    custom = CustomObjectsApi(reader.client)
    deadline = time.monotonic() + timeout
    while True:
        try:
            obj = custom.get_namespaced_custom_object(api.GROUP, api.VERSION, reader.namespace, api.PLURAL,
                                                      reader.name, _request_timeout=5)
            if isinstance(obj, dict):
                return api.parse_spec(obj.get("spec"))
            raise TypeError(f"unexpected answer {obj!r}")
        except Exception as exc:
            if time.monotonic() >= deadline:
                raise TimeoutError(f"ScaledApp {reader.namespace}/{reader.name} not readable: {exc}") from exc
            time.sleep(0.5)


def serve(config: TwinConfig, wait_seconds: float = 120.0) -> int:
    """Run the live twin until SIGTERM/SIGINT. Returns an exit code."""
    bootstrap = ClusterReader(config.kubeconfig, config.namespace, config.name, initial_sizes(api.ScaledAppSpec()))
    spec = read_spec(bootstrap, wait_seconds)
    bootstrap.close()
    reader = ClusterReader(config.kubeconfig, config.namespace, config.name, initial_sizes(spec))
    twin = LiveTwin(config, spec, reader)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping", signum)
        twin.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("twin of %s/%s: profile %s, seed %d, targets in %s", config.namespace, config.name,
             config.scenario.name, config.seed, config.targets_file)
    twin.run()
    return 0
