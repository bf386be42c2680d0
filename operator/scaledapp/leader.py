"""Leader election on a coordination.k8s.io/v1 Lease: at most one operator process acts at a time.

The chart runs two replicas. Each process first competes for the Lease; only the holder starts kopf (every
handler, daemon and drift repair), the other one waits as a standby that writes nothing but its attempts
to take the Lease. The leader renews every `retry_period`; if it could not renew for `renew_deadline` it
exits at once (os._exit: no handler in flight gets to write again) and its pod restarts as a standby. A
standby takes the Lease once the record it observes has not changed for `lease_duration`, measured on its
own monotonic clock (as client-go does: no trust in the other host's wall clock). Because
renew_deadline < lease_duration, a leader that cannot reach the API server has stopped acting before any
standby may start.

Takeover bounds (defaults: lease 10 s, renew deadline 7 s, retry period 2 s):
  * graceful stop (SIGTERM: rolling update, drain): the leader releases the Lease; a standby acts within
    retry_period + kopf's start (about 2-4 s).
  * crash or SIGKILL: the Lease runs out; a standby acts within lease_duration + retry_period + kopf's start
    after the last renewal (the last renewal is at most retry_period old when the leader dies): about 13 s
    with the defaults; measured 11.5 s on the kwok cluster (tests/cluster/test_leader.py, bound 15 s). client-go's
    15 s / 10 s would give about 17 s.

Why not kopf's peering: peering pauses an operator only when it sees a peer of higher priority (equal
priorities pause everyone), the peers learn of each other from a KopfPeering object after they started
processing (two fresh replicas both act until the first keepalive lands), and a dead peer is noticed only
after its lifetime (60 s by default). It avoids most overlap; it does not exclude it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import kubernetes
from kubernetes.client import ApiException

from scaledapp import metrics

log = logging.getLogger("scaledapp.leader")
LOST_EXIT_CODE = 75  # the pod restarts and comes back as a standby


@dataclass(frozen=True)
class LeaseConfig:
    name: str
    namespace: str
    identity: str
    lease_duration: float = 10.0
    renew_deadline: float = 7.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("leader election needs 0 < retry period < renew deadline < lease duration")


def default_identity() -> str:
    """The pod's name (the chart passes it), unique per process when run by hand."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def _micro_time(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Elector:
    """One attempt at a time to acquire or renew the Lease (blocking: run it in a thread)."""

    def __init__(self, config: LeaseConfig, client: kubernetes.client.ApiClient) -> None:
        self.config = config
        self._client = client
        self._observed: tuple[Any, ...] | None = None  # (holder, renewTime, transitions) last seen
        self._observed_at = 0.0  # monotonic time it was first seen
        self.calls = 0  # API calls made (a renewal costs a GET and a PUT)
        self.holder_seen: str | None = None  # the holder the last GET showed

    @property
    def _path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.config.namespace}/leases"

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        self.calls += 1
        timeout = max(1.0, self.config.retry_period)
        _, url, headers, _, _ = self._client.param_serialize(
            method, path, auth_settings=["BearerToken"],
            header_params={"Accept": "application/json", "Content-Type": "application/json"})
        response = self._client.call_api(method, url, header_params=headers, body=body, _request_timeout=timeout)
        data = response.read()  # type: ignore[no-untyped-call]
        if not 200 <= response.status <= 299:
            raise ApiException(http_resp=response)
        return json.loads(data) if data else None

    def _spec(self, transitions: int, acquired: str | None = None) -> dict[str, Any]:
        now = _micro_time(dt.datetime.now(dt.UTC))
        return {"holderIdentity": self.config.identity, "leaseDurationSeconds": int(self.config.lease_duration),
                "acquireTime": acquired or now, "renewTime": now, "leaseTransitions": transitions}

    def try_acquire_or_renew(self) -> bool:
        """True when this process holds the Lease after the call."""
        name = self.config.name
        try:
            lease = self._request("GET", f"{self._path}/{name}")
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": name, "namespace": self.config.namespace}, "spec": self._spec(0)}
            try:
                self._request("POST", self._path, body)
            except ApiException as create_exc:
                if create_exc.status == 409:
                    return False
                raise
            self.holder_seen = self.config.identity
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        self.holder_seen = holder
        transitions = int(spec.get("leaseTransitions") or 0)
        if holder == self.config.identity:
            lease["spec"] = self._spec(transitions, spec.get("acquireTime"))
        else:
            record = (holder, spec.get("renewTime"), transitions)
            now = time.monotonic()
            if record != self._observed:
                self._observed, self._observed_at = record, now
            duration = float(spec.get("leaseDurationSeconds") or self.config.lease_duration)
            if holder and now - self._observed_at < duration:
                return False  # held, and renewed within its duration as far as we can tell
            lease["spec"] = self._spec(transitions + 1)
        try:  # the resourceVersion in the body makes this a compare-and-swap: a racing peer gets 409
            self._request("PUT", f"{self._path}/{name}", lease)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        self.holder_seen = self.config.identity
        return True

    def release(self) -> None:
        """Give the Lease up (graceful stop): a standby takes over at its next attempt."""
        try:
            lease = self._request("GET", f"{self._path}/{self.config.name}")
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.config.identity:
                return
            lease["spec"] = {**spec, "holderIdentity": None, "leaseDurationSeconds": 1,
                             "renewTime": _micro_time(dt.datetime.now(dt.UTC))}
            self._request("PUT", f"{self._path}/{self.config.name}", lease)
            log.info("released the leader Lease %s/%s", self.config.namespace, self.config.name)
        except (ApiException, OSError) as exc:
            log.warning("could not release the leader Lease (a standby takes over when it expires): %s", exc)


async def _attempt(elector: Elector, deadline: float) -> bool:
    try:
        return await asyncio.wait_for(asyncio.to_thread(elector.try_acquire_or_renew), timeout=deadline)
    except (TimeoutError, ApiException, OSError) as exc:
        log.warning("leader Lease attempt failed: %s", getattr(exc, "reason", None) or type(exc).__name__)
        return False
    except Exception as exc:  # urllib3 errors and the like: the API server is unreachable
        log.warning("leader Lease attempt failed: %s: %s", type(exc).__name__, exc)
        return False


@contextlib.asynccontextmanager
async def _standby_health(liveness: str | None) -> Any:
    """While waiting, answer the liveness URL ourselves (kopf serves it once it runs), so the kubelet keeps
    the standby: `200 standby`."""
    if not liveness:
        yield
        return
    url = urlparse(liveness)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 22\r\n"
                         b"Connection: close\r\n\r\n{\"leader\": \"standby\"}\n")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, url.hostname or "0.0.0.0", url.port or 80, reuse_address=True)
    try:
        yield
    finally:
        server.close()
        await server.wait_closed()


async def run_as_leader(config: LeaseConfig, work: Callable[[], Coroutine[Any, Any, None]], *,
                        liveness: str | None = None, client: kubernetes.client.ApiClient | None = None) -> int:
    """Wait for the Lease, then run `work` (kopf) while renewing it. Returns when `work` ends (the Lease is
    released); exits the process when the Lease is lost."""
    if client is None:
        from scaledapp.kube import load_config

        client = load_config()
    elector = Elector(config, client)
    log.info("waiting for the leader Lease %s/%s as %s", config.namespace, config.name, config.identity)
    async with _standby_health(liveness):
        while True:  # polling the API server: there is no local flag to wait on
            if await _attempt(elector, config.retry_period):
                break
            await asyncio.sleep(config.retry_period)
    acquired = time.monotonic()
    log.info("became the leader (Lease %s/%s, identity %s)", config.namespace, config.name, config.identity)
    metrics.set_leader(True)
    task = asyncio.create_task(work())
    last_renewed = acquired
    try:
        while True:
            left = config.renew_deadline - (time.monotonic() - last_renewed)
            done, _ = await asyncio.wait({task}, timeout=max(0.0, min(config.retry_period, left)))
            if done:
                break
            left = config.renew_deadline - (time.monotonic() - last_renewed)
            if left <= 0 or elector.holder_seen not in (None, config.identity):
                log.error("lost the leader Lease (not renewed for %.0f s, holder now %r): stopping at once",
                          time.monotonic() - last_renewed, elector.holder_seen)
                logging.shutdown()
                os._exit(LOST_EXIT_CODE)
            if await _attempt(elector, max(0.5, min(config.retry_period, left))):
                last_renewed = time.monotonic()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await asyncio.to_thread(elector.release)
    await task
    return 0
