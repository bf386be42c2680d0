"""The dashboard's error-rate targets in a real Prometheus: 0 while nothing failed, the rate once something does.

Counters with an error label (`status="5.."`, `result="error"`, `code!="2xx"`) have no series until the first error
(prometheus_client creates a labelled child when it is first used), so a plain `sum(rate(...{error}[w]))` shows
"No data" on a healthy system. The dashboard adds `or 0 * sum(rate(<all>[w]))`: 0 while the process is scraped and
nothing failed. This checks that the fallback never hides a real error rate: the pinned Prometheus scrapes a
served exposition (a ScaledApp's app pod and the operator, labelled as the chart's jobs label them) that first has
no error series and then gains them.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from devharness.prometheus import Target, operator_scrape_config
from tests.support.prometheus import Harness
from tests.support.wait import wait_for

pytestmark = pytest.mark.dataplane
DASHBOARD = Path(__file__).resolve().parents[2] / "charts" / "scaledapp-operator" / "dashboards" / "scaledapp.json"
NAMESPACE, NAME = "dash-ns", "shop"


class Exposition:
    """/app and /operator serve whatever text is set for them (a process's /metrics that can change)."""

    def __init__(self) -> None:
        self.text = {"/app": "", "/operator": ""}
        texts = self.text

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = texts.get(self.path, "").encode()
                self.send_response(200 if self.path in texts else 404)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def exposition() -> Iterator[Exposition]:
    e = Exposition()
    yield e
    e.close()


def error_targets() -> dict[str, str]:
    """title [refId] -> expr of every target with the 0 fallback, the dashboard's variables filled in."""
    out = {}
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for t in panel.get("targets", []):
            if " or 0 * " in t["expr"]:
                expr = t["expr"].replace("$namespace", NAMESPACE).replace("$scaledapp", NAME)
                out[f"{panel['title']} [{t['refId']}]"] = expr.replace("$__rate_interval", "5s")
    return out


def app_text(ok: int, errors: int) -> str:
    lines = ["# TYPE scaledapp_http_requests_total counter",
             f'scaledapp_http_requests_total{{route="/items/{{item_id}}",method="GET",status="200"}} {ok}']
    if errors:
        lines.append(f'scaledapp_http_requests_total{{route="/items/{{item_id}}",method="GET",status="503"}} {errors}')
    return "\n".join(lines) + "\n"


def operator_text(ok: int, errors: int) -> str:
    lines = ["# TYPE scaledapp_operator_prometheus_queries_total counter",
             f'scaledapp_operator_prometheus_queries_total{{result="ok"}} {ok}',
             "# TYPE scaledapp_operator_kube_requests_total counter",
             f'scaledapp_operator_kube_requests_total{{method="PATCH",code="2xx"}} {ok}']
    if errors:
        lines += [f'scaledapp_operator_prometheus_queries_total{{result="error"}} {errors}',
                  f'scaledapp_operator_kube_requests_total{{method="PATCH",code="409"}} {errors}']
    return "\n".join(lines) + "\n"


def test_error_rates_are_zero_without_errors_and_the_rate_with_them(harness: Harness, exposition: Exposition) -> None:
    targets = error_targets()
    assert len(targets) == 3 and {re.sub(r" \[.*", "", k) for k in targets} == {"Load (requests/s)",
                                                                               "Operator health"}, targets
    # The pod-like job (as the chart's kubernetes-pods job labels the app pod) and the operator's job (the chart's
    # scaledapp-operator job), both on the served exposition.
    prom = harness.prometheus(
        [Target(exposition.address, namespace=NAMESPACE, pod=f"{NAME}-app-0", instance=NAME, tier="app",
                metrics_path="/app")], name="dash-prometheus",
        extra_scrape_configs=[operator_scrape_config(exposition.address, "scaledapp-system")
                              | {"metrics_path": "/operator"}])
    counts = {"ok": 0, "errors": 0}

    def serve(new_errors: int) -> None:
        """Traffic moves on every poll (rate() needs two samples of a series in its window)."""
        counts["ok"] += 100
        counts["errors"] += new_errors
        exposition.text["/app"] = app_text(counts["ok"], counts["errors"])
        exposition.text["/operator"] = operator_text(counts["ok"], counts["errors"])

    def values() -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for key, expr in targets.items():
            result = prom.query(expr)
            out[key] = float(result[0]["value"][1]) if len(result) == 1 else None
        return out

    def all_zero() -> dict[str, float | None] | None:
        serve(0)
        now = values()
        return now if all(v == 0 for v in now.values()) else None

    def all_positive() -> dict[str, float | None] | None:
        serve(10)
        now = values()
        return now if all(v is not None and v > 0 for v in now.values()) else None

    # Healthy: traffic and no error series at all; each error target answers 0, not "No data".
    assert set(wait_for(all_zero, 30, "each error target at 0 with traffic and no errors", interval=0.5)) == \
        set(targets)
    # Failing: the error series appear and grow; each error target answers the error rate, not the fallback's 0.
    wait_for(all_positive, 30, "each error target above 0 once errors happen", interval=0.5)
