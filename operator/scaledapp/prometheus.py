"""The only module that talks to Prometheus.

One snapshot per tick: every signal is an instant query, run off the event loop in threads, each
with a timeout, and the whole snapshot under a deadline. A query that fails, times out, or returns no
series, several series, NaN or Inf yields None: unknown, never zero. The scaler holds on unknown.

Each Prometheus URL has its own few threads: a slow or unreachable Prometheus can only delay the ScaledApps
that use it, never take the threads the others' queries need. Which URLs a ScaledApp may use at all is the
operator's policy (`--prometheus-allow`, the chart's prometheus.allowedUrls): a ScaledApp naming another one
is held with MetricsAvailable=False, reason PrometheusUrlNotAllowed, and nothing is sent to that URL.
"""

from __future__ import annotations

import asyncio
import fnmatch
import math
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from prometheus_api_client import PrometheusConnect
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from scaledapp import metrics

POOL_THREADS = 8  # per Prometheus URL: one slow Prometheus holds at most these, never the others' threads
# A Prometheus that did not answer is not asked again for this long: the other ScaledApps' ticks hold at once,
# with the same reason. At 500 ScaledApps ticking every 5 s, a refused Prometheus cost a query a tick each (a sixth
# of the operator's CPU, py-spy, bench/results/scale.md); a hung one, a thread each for a timeout.
DOWN_SECONDS = 1.0


@dataclass(frozen=True)
class Answers:
    """Prometheus' answers to one batch of queries: signal name -> value (None = unknown), plus why each
    unknown one is unknown. (observe.observe turns them into the decision's observation.Snapshot.)"""

    values: dict[str, float | None]
    errors: dict[str, str] = field(default_factory=dict)
    unreachable: bool = False  # no query got any answer from Prometheus

    @property
    def unknown(self) -> list[str]:
        return [name for name, value in self.values.items() if value is None]


def value_of(result: Any) -> tuple[float | None, str | None]:
    """One instant-query result -> (value, reason it is unknown). Pure; mirrors KEDA's checks."""
    if not isinstance(result, list) or not result:
        return None, "no series"
    if len(result) > 1:
        return None, f"{len(result)} series (the query must aggregate to one)"
    try:
        value = float(result[0]["value"][1])
    except (KeyError, IndexError, TypeError, ValueError):
        return None, "malformed sample"
    if math.isnan(value) or math.isinf(value):
        return None, "NaN or Inf"
    return value, None


class Prometheus:
    """A client per Prometheus URL; retries are off because the next tick is the retry."""

    def __init__(self, url: str, timeout: float, down_seconds: float = DOWN_SECONDS) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.down_seconds = down_seconds
        self._down_until = float("-inf")  # monotonic time until which it is taken as down
        self._down_reason = ""
        self._client = PrometheusConnect(url=self.url, disable_ssl=False, retry=Retry(total=0), timeout=timeout)
        # As many pooled connections as query threads, so none is opened and thrown away per tick.
        self._client._session.mount(self.url, HTTPAdapter(max_retries=Retry(total=0), pool_maxsize=POOL_THREADS))
        self._pool = ThreadPoolExecutor(max_workers=POOL_THREADS, thread_name_prefix="prometheus")

    def _query(self, promql: str) -> tuple[float | None, str | None, bool]:
        """(value, why unknown, answered): answered is False when Prometheus itself did not answer."""
        with metrics.prometheus_query() as outcome:
            try:
                result = self._client.custom_query(promql, timeout=self.timeout)
            except Exception as exc:  # connection refused, timeout, HTTP 4xx/5xx: all mean "unknown"
                outcome.append("error")
                return None, f"{type(exc).__name__}: {str(exc)[:200]}", False
            value, reason = value_of(result)
            outcome.append(metrics.query_result(value, answered=True))
            return value, reason, True

    async def snapshot(self, queries: Mapping[str, str]) -> Answers:
        names = list(queries)
        if not names:
            return Answers({})
        if (down := self.down()) is not None:
            return self._all_unknown(names, down)
        loop = asyncio.get_running_loop()
        try:
            # One query first: when Prometheus is down, say so after one timeout, not after all of them.
            first = await asyncio.wait_for(loop.run_in_executor(self._pool, self._query, queries[names[0]]),
                                           timeout=self.timeout + 1)
            if not first[2]:
                self._down_until, self._down_reason = time.monotonic() + self.down_seconds, first[1] or "no answer"
                return self._all_unknown(names, self._down_reason)
            rest = [loop.run_in_executor(self._pool, self._query, queries[name]) for name in names[1:]]
            rounds = -(-len(rest) // POOL_THREADS)  # the rest queue for this URL's threads
            answers = [first, *await asyncio.wait_for(asyncio.gather(*rest),
                                                      timeout=self.timeout * max(2, rounds) + 1)]
        except TimeoutError:
            return Answers({n: None for n in names}, {n: "snapshot deadline exceeded" for n in names}, True)
        values: dict[str, float | None] = {}
        errors: dict[str, str] = {}
        for name, (value, reason, _answered) in zip(names, answers, strict=True):
            values[name] = value
            if reason is not None:
                errors[name] = reason
        unreachable = bool(names) and not any(answered for _v, _r, answered in answers)
        return Answers(values, errors, unreachable)

    def down(self) -> str | None:
        """Why it is taken as down (it did not answer within the last `down_seconds`), or None."""
        return self._down_reason if time.monotonic() < self._down_until else None

    @staticmethod
    def _all_unknown(names: list[str], reason: str) -> Answers:
        return Answers({n: None for n in names}, {n: reason for n in names}, True)


_clients: dict[tuple[str, float], Prometheus] = {}


def client_for(url: str, timeout: float) -> Prometheus:
    """Reuse one HTTP session per (URL, timeout): the operator may serve many ScaledApps."""
    key = (url, timeout)
    if key not in _clients:
        _clients[key] = Prometheus(url, timeout)
    return _clients[key]


class UrlPolicy:
    """Which Prometheus URLs ScaledApps may name. Each pattern is a host glob (`*.svc`, `prom.example.com`),
    optionally with a scheme and port (`https://prom.example.com:9090`); `*` allows any host. No patterns: any
    URL (the default of a bare `python -m scaledapp`; the chart always passes a list)."""

    def __init__(self, patterns: Iterable[str] = ()) -> None:
        self.patterns = [p.strip() for p in patterns if p.strip()]

    def refusal(self, url: str) -> str | None:
        """None when `url` may be used; else why not (for the ScaledApp's status)."""
        if not self.patterns:
            return None
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme not in ("http", "https") or not host:
            return f"prometheusUrl {url!r} is not an http(s) URL with a host"
        port = parts.port or (443 if parts.scheme == "https" else 80)
        for pattern in self.patterns:
            if "://" in pattern:
                allowed = urlsplit(pattern)
                allowed_port = allowed.port or (443 if allowed.scheme == "https" else 80)
                if allowed.scheme == parts.scheme and fnmatch.fnmatchcase(host, (allowed.hostname or "").lower()) \
                        and allowed_port == port:
                    return None
            elif fnmatch.fnmatchcase(host, pattern.lower()):
                return None
        return (f"prometheusUrl host {host!r} is not allowed by the operator's policy "
                f"(allowed: {', '.join(self.patterns)})")


_policy = UrlPolicy()


def set_policy(patterns: Iterable[str]) -> None:
    global _policy
    _policy = UrlPolicy(patterns)


def refusal(url: str) -> str | None:
    """Why the operator's policy refuses this Prometheus URL, or None when it may be queried."""
    return _policy.refusal(url)
