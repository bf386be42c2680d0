"""The chart's observability pieces, rendered by the pinned helm: the operator's metrics Service; the ServiceMonitor
and PodMonitor (validated against the Prometheus Operator's own CRD schemas, vendored in tests/data with their
source), and that they scrape what the operator's queries read; the Grafana dashboard; securityContext values; the
values schema as a subchart; the generated chart README."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from hack import gen_chart_readme

from scaledapp import api, resources
from tests.dataplane.test_metrics_contract import documented_metrics
from tests.support.helm import CHART, helm_run, render, set_args
from tests.unit.test_chart import K8S_VERSION, by_kind, operator_deployment, the

DATA = Path(__file__).resolve().parents[1] / "data"
MONITORING_KINDS = {"ServiceMonitor": "servicemonitors", "PodMonitor": "podmonitors"}


def monitoring_schema(kind: str) -> dict[str, Any]:
    vendored = json.loads((DATA / f"monitoring.coreos.com_{MONITORING_KINDS[kind]}.schema.json").read_text())
    assert vendored["kind"] == kind and "prometheus-operator" in vendored["source"]
    schema: dict[str, Any] = vendored["openAPIV3Schema"]
    return schema


def validate(obj: dict[str, Any]) -> None:
    if obj["kind"] in MONITORING_KINDS:
        assert obj["apiVersion"] == "monitoring.coreos.com/v1"
        jsonschema.validate(obj, monitoring_schema(obj["kind"]), cls=jsonschema.Draft7Validator)
    else:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_by_default_a_metrics_service_and_no_monitoring_objects() -> None:
    objects = render()
    assert not by_kind(objects, "ServiceMonitor") and not by_kind(objects, "PodMonitor")
    assert not [o for o in by_kind(objects, "ConfigMap") if o["metadata"]["name"].endswith("-dashboard")]
    service = the(objects, "Service", "-metrics")
    container = operator_deployment(objects)["spec"]["template"]["spec"]["containers"][0]
    assert "--metrics-port=8081" in container["args"]
    assert {"name": "metrics", "containerPort": 8081, "protocol": "TCP"} in container["ports"]
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8081, "targetPort": "metrics", "protocol": "TCP"}]
    pod_labels = operator_deployment(objects)["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()


def test_metrics_off_means_no_port_no_service() -> None:
    objects = render({"metrics.enabled": False, "monitoring.enabled": True})
    container = operator_deployment(objects)["spec"]["template"]["spec"]["containers"][0]
    assert "--metrics-port=0" in container["args"]
    assert all(p["name"] != "metrics" for p in container["ports"])
    assert not [s for s in by_kind(objects, "Service") if s["metadata"]["name"].endswith("-metrics")]
    assert not by_kind(objects, "ServiceMonitor")


@pytest.mark.parametrize("values", [{"monitoring.enabled": True},
                                    {"monitoring.enabled": True, "watchNamespaces": ["shop"],
                                     "monitoring.labels": {"release": "kube-prometheus-stack"}},
                                    {"monitoring.podMonitor.enabled": True, "monitoring.podMonitor.namespaces": ["a"]},
                                    {"monitoring.serviceMonitor.enabled": True}], ids=str)
def test_monitoring_objects_are_valid_against_the_prometheus_operator_crds(values: dict[str, Any]) -> None:
    objects = render(values)
    assert by_kind(objects, "ServiceMonitor") or by_kind(objects, "PodMonitor")
    for obj in objects:
        validate(obj)


def test_an_invalid_monitor_fails_the_vendored_schema() -> None:
    monitor = the(render({"monitoring.enabled": True}), "ServiceMonitor")
    monitor["spec"]["endpoints"][0]["interval"] = "often"
    with pytest.raises(jsonschema.ValidationError):
        validate(monitor)


def test_one_value_gives_servicemonitor_podmonitor_and_dashboard() -> None:
    objects = render({"monitoring.enabled": True, "monitoring.labels": {"release": "kps"}})
    monitor = the(objects, "ServiceMonitor")
    service = the(objects, "Service", "-metrics")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [service["metadata"]["namespace"]]}
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics" and monitor["spec"]["endpoints"][0]["honorLabels"]
    assert monitor["metadata"]["labels"]["release"] == "kps"
    assert the(objects, "PodMonitor")["metadata"]["labels"]["release"] == "kps"
    assert the(objects, "ConfigMap", "-dashboard")["metadata"]["labels"]["grafana_dashboard"] == "1"


def test_the_podmonitor_scrapes_every_annotated_scaledapp_pod_with_the_labels_the_queries_use() -> None:
    """Each ScaledApp pod that the bundled Prometheus scrapes by annotation is selected by the PodMonitor on the
    same port and path; labelmap keeps the pod labels the queries select on (tiers.base.Scope)."""
    monitor = the(render({"monitoring.enabled": True}), "PodMonitor")
    spec = monitor["spec"]
    assert spec["namespaceSelector"] == {"any": True}
    endpoints = {e["port"]: e for e in spec["podMetricsEndpoints"]}
    for endpoint in endpoints.values():
        assert {"action": "labelmap", "regex": "__meta_kubernetes_pod_label_(.+)"} in endpoint["relabelings"]
    scraped = 0
    for child in resources.build_children("demo", "shop", api.ScaledAppSpec()):
        if child["kind"] not in ("Deployment", "StatefulSet"):
            continue
        template = child["spec"]["template"]
        annotations = template["metadata"].get("annotations") or {}
        if annotations.get("prometheus.io/scrape") != "true":
            continue
        labels = template["metadata"]["labels"]
        assert spec["selector"]["matchLabels"].items() <= labels.items(), child["metadata"]["name"]
        assert {"app.kubernetes.io/instance", "scaledapp.dev/tier"} <= set(labels)
        ports = {p["containerPort"]: p["name"] for c in template["spec"]["containers"] for p in c.get("ports", [])}
        name = ports[int(annotations["prometheus.io/port"])]
        assert name in endpoints, (child["metadata"]["name"], name)
        assert endpoints[name]["path"] == annotations["prometheus.io/path"]
        scraped += 1
    assert scraped >= 5  # app, workers, cache, primary, read replicas
    namespaced = the(render({"monitoring.enabled": True, "watchNamespaces": ["shop", "blog"]}), "PodMonitor")
    assert namespaced["spec"]["namespaceSelector"] == {"matchNames": ["shop", "blog"]}


def test_the_dashboard_reads_only_documented_metrics_and_labels() -> None:
    cm = the(render({"monitoring.dashboard.enabled": True}), "ConfigMap", "-dashboard")
    dashboard = json.loads(cm["data"]["scaledapp.json"])
    assert dashboard == json.loads((CHART / "dashboards" / "scaledapp.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    titles = " ".join(p["title"] for p in dashboard["panels"]).lower()
    assert all(word in titles for word in ("load", "p95", "pressure", "replicas", "decisions"))
    documented = {d.name: d.labels for d in documented_metrics()}
    scrape_labels = {"namespace", "app_kubernetes_io_instance", "le"}
    for expr in exprs:
        for metric, selector in re.findall(r"([a-z_]+)(?:\{([^}]*)\})?\[?", expr):
            base = re.sub(r"_bucket$", "", metric)
            if not base.startswith("scaledapp_"):
                continue
            assert base in documented, (base, expr)
            used = set(re.findall(r"([a-z_]+)\s*[=!~]+", selector or ""))
            assert used <= documented[base] | scrape_labels, (base, used)
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "namespace", "scaledapp"} <= variables


def test_security_context_values_merge_into_the_restricted_defaults() -> None:
    pod = operator_deployment(render({"podSecurityContext.fsGroup": 2000, "securityContext.privileged": False}))
    spec = pod["spec"]["template"]["spec"]
    assert spec["securityContext"] == {"runAsUser": 10001, "runAsGroup": 10001, "runAsNonRoot": True,
                                       "fsGroup": 2000, "seccompProfile": {"type": "RuntimeDefault"}}
    container = spec["containers"][0]["securityContext"]
    assert container["privileged"] is False and container["readOnlyRootFilesystem"] is True
    assert container["capabilities"] == {"drop": ["ALL"]}


def test_the_values_schema_works_when_the_chart_is_a_subchart(tmp_path: Path) -> None:
    parent = tmp_path / "parent"
    (parent / "charts").mkdir(parents=True)
    (parent / "Chart.yaml").write_text(yaml.safe_dump({"apiVersion": "v2", "name": "parent", "version": "1.0.0"}))
    shutil.copytree(CHART, parent / "charts" / "scaledapp-operator")
    ok = helm_run("template", "p", str(parent), *set_args({"global.imageRegistry": "example.test",
                                                           "scaledapp-operator.monitoring.enabled": True}))
    assert ok.returncode == 0, ok.stderr
    assert "kind: ServiceMonitor" in ok.stdout
    bad = helm_run("template", "p", str(parent), *set_args({"scaledapp-operator.logFormat": "xml"}))
    assert bad.returncode != 0 and "schema" in bad.stderr


def test_the_chart_readme_is_generated_and_current() -> None:
    assert gen_chart_readme.main(["--check"]) == 0, "run `make chart-readme`"
    text = (CHART / "README.md").read_text()
    for path, _value in gen_chart_readme.leaves(yaml.safe_load((CHART / "values.yaml").read_text())):
        assert f"| `{path}` |" in text, path


def test_helm_lint_strict_is_clean_with_every_monitoring_piece_on() -> None:
    proc = helm_run("lint", "--strict", str(CHART), *set_args({"monitoring.enabled": True,
                                                                "monitoring.labels": {"release": "kps"},
                                                                "podSecurityContext.fsGroup": 10001}))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout
