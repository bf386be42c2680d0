"""A write probe for failure drills: a steady trickle of writes through the app, each acknowledged one remembered,
so a drill can say how long writes were down and whether any acknowledged write was lost.

    probe = WriteProbe("http://10.96.12.7:8080", prefix="drill-1")
    probe.start(); ...break something...; probe.wait_for_success_after(time.monotonic()); probe.stop()
    probe.writes_down()          # the longest gap between two acknowledged writes, seconds
    probe.lost(ids_in_database)  # acknowledged ids the database does not have

Bounded: one request in flight, `interval` apart, each with a timeout, to one URL the caller gives (the app's
Service on the local node, or a port-forward). Used by the real-node tests, hack.chaos and bench/failover.py.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field


@dataclass
class WriteProbe:
    url: str  # the app's base URL
    prefix: str  # item names start with it, so the drill's rows can be found
    interval: float = 0.05
    timeout: float = 2.0
    acked: dict[int, float] = field(default_factory=dict)  # id -> monotonic time acknowledged
    failures: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> WriteProbe:
        self._thread = threading.Thread(target=self._run, name=f"write-probe-{self.prefix}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout + 5)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            body = json.dumps({"name": f"{self.prefix}-{n}", "value": str(n)}).encode()
            request = urllib.request.Request(f"{self.url}/items", data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    created = json.loads(response.read())
                with self._lock:
                    self.acked[int(created["id"])] = time.monotonic()
            except (OSError, urllib.error.URLError, ValueError, KeyError):
                with self._lock:
                    self.failures += 1
            self._stop.wait(self.interval)

    def timed_writes(self, seconds: float) -> list[float]:
        """Write in this thread for `seconds`, one at a time; the round trip of each acknowledged write."""
        samples = []
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline:
            n += 1
            body = json.dumps({"name": f"{self.prefix}-{n}", "value": str(n)}).encode()
            request = urllib.request.Request(f"{self.url}/items", data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            start = time.monotonic()
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    response.read()
                samples.append(time.monotonic() - start)
            except (OSError, urllib.error.URLError):
                self.failures += 1
            time.sleep(self.interval)
        return samples

    def times(self) -> list[float]:
        with self._lock:
            return sorted(self.acked.values())

    def ids(self) -> set[int]:
        with self._lock:
            return set(self.acked)

    def acked_after(self, moment: float) -> int:
        return sum(1 for t in self.times() if t > moment)

    def writes_down(self, since: float | None = None) -> float:
        """The longest gap between consecutive acknowledged writes (after `since`, counting from it)."""
        times = self.times()
        if since is not None:
            times = [since, *(t for t in times if t > since)]
        return max((b - a for a, b in itertools.pairwise(times)), default=0.0)

    def lost(self, present: set[int]) -> set[int]:
        return self.ids() - present


def post_orders(url: str, count: int, timeout: float = 5.0) -> list[str]:
    """Place `count` orders; returns the job ids the app accepted (202)."""
    accepted = []
    for i in range(count):
        body = json.dumps({"item_id": 1 + i % 20}).encode()
        request = urllib.request.Request(f"{url}/orders", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                accepted.append(str(json.loads(response.read())["job_id"]))
        except (OSError, urllib.error.URLError, ValueError, KeyError):
            continue
    return accepted


def order_state(url: str, job_id: str, timeout: float = 5.0) -> str:
    """The order's state, 'lost' when the app no longer knows it (404), 'http N' / 'unreachable' otherwise."""
    try:
        with urllib.request.urlopen(f"{url}/orders/{job_id}", timeout=timeout) as response:
            return str(json.loads(response.read())["state"])
    except urllib.error.HTTPError as exc:
        return "lost" if exc.code == 404 else f"http {exc.code}"
    except (OSError, ValueError, KeyError):
        return "unreachable"


def lost_orders(url: str, accepted: list[str], deadline_seconds: float = 120.0) -> int | None:
    """How many accepted orders the app no longer knows, once it answers for all of them (None: it never did)."""
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        states = [order_state(url, job) for job in accepted]
        if not any(s.startswith("http") or s == "unreachable" for s in states):
            return sum(1 for s in states if s == "lost")
        time.sleep(1)
    return None


def reachable(url: str, timeout: float = 2.0) -> bool:
    """Does the app answer its liveness endpoint at `url`?"""
    try:
        with urllib.request.urlopen(f"{url}/livez", timeout=timeout) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False
