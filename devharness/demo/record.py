"""The demo's eyes: one sample every few seconds of what the operator says and what Prometheus sees.

What the operator decided comes from the ScaledApp's status and its Events (never from the operator's
memory or log); what the service feels comes from Prometheus (the p95 the app's histogram reports);
the offered load comes from the twin's trace (the load profile is the twin's input, not a measurement).
"""

from __future__ import annotations

import json
import math
import time
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import config
from kubernetes.client import ApiClient, CoreV1Api, CustomObjectsApi
from kubernetes.client.exceptions import ApiException

from scaledapp import api

REQUEST_TIMEOUT = 5.0
TIERS = ("app", "cache", "db-read", "db-write", "workers")
EVENT_WIDTH = 150  # an Event listing every unknown signal runs to a screenful


@dataclass
class Sample:
    t: float  # seconds since the demo started
    load: float | None = None  # offered requests/s (the twin's profile)
    phase: str = ""  # the profile's phase name
    p95_seconds: float | None = None  # measured through Prometheus
    rps: float | None = None  # measured through Prometheus
    bottleneck: str = ""
    pressure: float | None = None
    signal: str = ""
    pressures: dict[str, float | None] = field(default_factory=dict)
    replicas: dict[str, int] = field(default_factory=dict)  # ready pods per horizontal tier
    sizes: dict[str, str] = field(default_factory=dict)  # cache and primary sizes
    scaling: str = ""  # the Scaling condition's reason
    metrics_available: str = ""
    events: list[str] = field(default_factory=list)  # Events that arrived since the previous sample


def prometheus_value(base_url: str, promql: str, timeout: float = REQUEST_TIMEOUT) -> float | None:
    """One instant query -> its single value; None when unanswered, empty or NaN (unknown, never zero)."""
    url = f"{base_url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            result = json.load(response)["data"]["result"]
        value = float(result[0]["value"][1]) if len(result) == 1 else None
    except (OSError, ValueError, KeyError, IndexError):
        return None
    return None if value is None or math.isnan(value) or math.isinf(value) else value


def last_trace_line(path: Path | None) -> dict[str, Any]:
    """The twin's newest trace record ({} before the first)."""
    if path is None or not path.exists():
        return {}
    with path.open("rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - 8192))
        lines = f.read().decode(errors="replace").strip().splitlines()
    for line in reversed(lines):
        try:
            record: dict[str, Any] = json.loads(line)
        except ValueError:
            continue
        return record
    return {}


def status_fields(status: dict[str, Any], sample: Sample) -> None:
    """Copy what the timeline shows out of a ScaledApp status."""
    sample.bottleneck = str(status.get("bottleneck") or "")
    for evidence in status.get("pressures") or []:
        sample.pressures[str(evidence.get("tier"))] = evidence.get("pressure")
        if evidence.get("tier") == sample.bottleneck:
            sample.pressure, sample.signal = evidence.get("pressure"), str(evidence.get("signal") or "")
    tiers = status.get("tiers") or {}
    for tier, key in (("app", "app"), ("db-read", "dbRead"), ("workers", "workers")):
        sample.replicas[tier] = int((tiers.get(key) or {}).get("ready") or 0)
    for tier, key in (("cache", "cache"), ("db-write", "dbWrite")):
        if (tiers.get(key) or {}).get("size"):
            sample.sizes[tier] = str(tiers[key]["size"])
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Scaling":
            sample.scaling = str(cond.get("reason") or "")
        if cond.get("type") == "MetricsAvailable":
            sample.metrics_available = str(cond.get("status") or "")


class Recorder:
    """Polls the API server, Prometheus and the twin's trace; keeps every sample for the report."""

    def __init__(self, kubeconfig: str, namespace: str, name: str, prometheus_url: str,
                 trace: Path | None, start: float | None = None) -> None:
        self.client: ApiClient = config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]
        self.custom = CustomObjectsApi(self.client)
        self.core = CoreV1Api(self.client)
        self.namespace, self.name = namespace, name
        self.prometheus_url = prometheus_url
        self.trace = trace
        self.start = time.monotonic() if start is None else start
        self.samples: list[Sample] = []
        self._seen_events: set[str] = set()

    def scaledapp(self) -> dict[str, Any] | None:
        try:
            obj = self.custom.get_namespaced_custom_object(
                api.GROUP, api.VERSION, self.namespace, api.PLURAL, self.name, _request_timeout=REQUEST_TIMEOUT)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return obj if isinstance(obj, dict) else None

    def new_events(self) -> list[str]:
        """The ScaledApp's Events not reported yet, oldest first, as "Reason: message"."""
        events = self.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={self.name},involvedObject.kind={api.KIND}",
            _request_timeout=REQUEST_TIMEOUT)
        fresh = []
        for event in sorted(events.items, key=lambda e: str(e.last_timestamp or e.event_time or "")):
            key = f"{event.metadata.uid}/{event.count}"
            if key not in self._seen_events:
                self._seen_events.add(key)
                fresh.append(f"{event.reason}: {event.message}")
        return fresh

    def sample(self) -> Sample:
        twin = last_trace_line(self.trace)
        # The twin's clock is the load profile's clock: "at 100 s the reads go up" lines up with the timeline.
        sample = Sample(t=float(twin.get("t", round(time.monotonic() - self.start, 1))))
        sample.load, sample.phase = twin.get("load"), str(twin.get("phase") or "")
        sel = f'{{namespace="{self.namespace}",app_kubernetes_io_instance="{self.name}",scaledapp_dev_tier="app"}}'
        sample.p95_seconds = prometheus_value(self.prometheus_url, "histogram_quantile(0.95, sum by (le) "
                                              f"(rate(scaledapp_http_request_duration_seconds_bucket{sel}[1m])))")
        sample.rps = prometheus_value(self.prometheus_url, f"sum(rate(scaledapp_http_requests_total{sel}[1m]))")
        try:
            obj = self.scaledapp()
            if obj is not None:
                status_fields(obj.get("status") or {}, sample)
            sample.events = self.new_events()
        except (ApiException, OSError) as exc:  # a slow API server costs one sample, not the demo
            sample.events = [f"(API server: {type(exc).__name__})"]
        self.samples.append(sample)
        return sample

    def write(self, path: Path) -> None:
        with path.open("w") as f:
            for sample in self.samples:
                f.write(json.dumps(asdict(sample)) + "\n")

    def close(self) -> None:
        self.client.close()  # type: ignore[no-untyped-call]


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def timeline_header() -> str:
    return f"{'time':>6}  {'load':>7}  {'p95':>7}  {'bottleneck':<10} {'pressure':<26} replicas a/r/w  action"


def timeline_line(sample: Sample) -> str:
    """One line of the live timeline; events that arrived since the last line follow it."""
    pressure = f"{_num(sample.pressure, '.2f')} {sample.signal}" if sample.bottleneck else "-"
    p95 = f"{sample.p95_seconds * 1000:.0f}ms" if sample.p95_seconds is not None else "-"
    reps = "/".join(str(sample.replicas.get(t, "-")) for t in ("app", "db-read", "workers"))
    action = sample.scaling or "-"
    if sample.metrics_available == "False":
        action = f"{action} (metrics unavailable)"
    load = "-" if sample.load is None else f"{sample.load:.0f}/s"
    head = (f"{sample.t:5.0f}s  {load:>7}  {p95:>7}  {sample.bottleneck or '-':<10} "
            f"{pressure[:26]:<26} {reps:<15} {action}")
    events = [e if len(e) <= EVENT_WIDTH else e[: EVENT_WIDTH - 3] + "..." for e in sample.events]
    return "\n".join([head, *(f"{'':>8}event  {e}" for e in events)])
