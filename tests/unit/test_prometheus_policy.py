"""The operator's Prometheus URL policy (prometheus.UrlPolicy): which endpoints a ScaledApp may name."""

from __future__ import annotations

import pytest

from scaledapp.prometheus import UrlPolicy

CHART_DEFAULT = UrlPolicy(["*.svc", "*.svc.cluster.local"])


@pytest.mark.parametrize("url", [
    "http://prometheus.scaledapp-system.svc:9090",  # the bundled one (the CRD's default prometheusUrl)
    "http://prometheus-operated.monitoring.svc.cluster.local:9090",
    "https://thanos-query.monitoring.svc/prefix",
    "http://PROMETHEUS.Monitoring.SVC:9090",
])
def test_the_chart_default_allows_in_cluster_services(url: str) -> None:
    assert CHART_DEFAULT.refusal(url) is None


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9090",
    "http://169.254.169.254/latest/meta-data",  # cloud metadata: the classic server-side request forgery
    "http://prometheus.example.com:9090",
    "http://kubernetes.default.svc.evil.com",  # .svc inside the name is not a Service
    "http://x.svc@evil.com:9090",  # the host is evil.com, not x.svc
    "ftp://prometheus.monitoring.svc",
    "not a url",
])
def test_the_chart_default_refuses_anything_else(url: str) -> None:
    why = CHART_DEFAULT.refusal(url)
    assert why is not None and ("not allowed" in why or "not an http" in why)


def test_a_full_url_pattern_pins_scheme_host_and_port() -> None:
    policy = UrlPolicy(["https://prom.example.com:9443"])
    assert policy.refusal("https://prom.example.com:9443/api") is None
    assert policy.refusal("http://prom.example.com:9443") is not None
    assert policy.refusal("https://prom.example.com") is not None
    assert UrlPolicy(["https://prom.example.com"]).refusal("https://prom.example.com:443") is None


def test_no_patterns_allow_any_url_and_star_allows_any_host() -> None:
    assert UrlPolicy().refusal("http://127.0.0.1:9") is None
    assert UrlPolicy(["*"]).refusal("http://10.0.0.1:9090") is None
    assert UrlPolicy(["*"]).refusal("file:///etc/passwd") is not None
