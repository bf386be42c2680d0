"""What the operator remembers of the cluster between calls (kube.py makes the calls): its own writes, to tell
their watch echoes from someone's edit (Seen); the latest body of each child the watches bring (WatchCache, an
informer's cache); and a rate limit on Events (EventLimiter). In memory only, no I/O: a restarted operator
refills them from its first listing."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

SETTLE_SECONDS = 30.0  # longest a drift check waits for our own write of the object to answer
# Events per object and reason: a burst, then one per refill period (client-go's spam filter does the same per
# object, 25 then one per 5 min; per reason here, so a flood of one kind never hides another kind).
EVENT_BURST = 10
EVENT_REFILL_SECONDS = 30.0


class EventLimiter:
    """A token bucket per (object uid, reason): a flapping condition cannot flood the API server or bury the
    object's other Events. Clock injected, for the tests."""

    def __init__(self, burst: int = EVENT_BURST, refill_seconds: float = EVENT_REFILL_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.burst = burst
        self.refill_seconds = refill_seconds
        self.clock = clock
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}  # key -> (tokens, at)
        self.suppressed = 0

    def allow(self, uid: str, reason: str) -> bool:
        now = self.clock()
        tokens, at = self._buckets.get((uid, reason), (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) / self.refill_seconds)
        if tokens < 1.0:
            self._buckets[(uid, reason)] = (tokens, now)
            self.suppressed += 1
            return False
        self._buckets[(uid, reason)] = (tokens - 1.0, now)
        if len(self._buckets) > 10_000:  # objects long gone: drop the full (idle) buckets
            self._buckets = {k: v for k, v in self._buckets.items()
                             if v[0] + (now - v[1]) / self.refill_seconds < self.burst}
        return True


class Seen:
    """The last version of each child the operator wrote or saw (uid -> generation, resourceVersion).

    It tells our own writes, echoed back by the watch, from someone else's edits. It lives in memory
    only: after a restart the first listing refills it and `resume` re-applies everything anyway.
    """

    def __init__(self) -> None:
        self._versions: dict[str, tuple[int | None, str | None]] = {}
        # Writes in flight, by (kind, namespace, name): their echo can reach the watch before their answer
        # reaches us (the controllers' "expectations"); an edit in that instant waits for the next event.
        self._writing: dict[tuple[str, str, str], int] = {}
        self._done: dict[tuple[str, str, str], asyncio.Event] = {}  # set when a key's writes have all answered

    @contextlib.contextmanager
    def writing(self, obj: dict[str, Any]) -> Iterator[None]:
        """Around one of our writes of `obj`: its watch events are not drift until it has answered."""
        key = object_key(obj)
        self._writing[key] = self._writing.get(key, 0) + 1
        self._done.setdefault(key, asyncio.Event())
        try:
            yield
        finally:
            self._writing[key] -= 1
            if not self._writing[key]:
                del self._writing[key]
                self._done.pop(key).set()

    async def settled(self, obj: dict[str, Any]) -> None:
        """Wait (at most SETTLE_SECONDS) until no write of ours to `obj` is in flight. An event that arrived
        during one may be someone's edit landing just after our write: judged against what our write answered,
        it is not lost (ignoring it, and recording its version as seen, left such an edit unrepaired until the
        periodic resync)."""
        done = self._done.get(object_key(obj))
        if done is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(SETTLE_SECONDS):
                    await done.wait()

    def record(self, obj: dict[str, Any]) -> None:
        """Remember `obj`'s version unless a newer one of it is known. Watch events lag behind our writes' answers
        under load: a late event of an older version (the ADDED of a Deployment the scaler has since sized) took
        the place of our newer answer, and the event of our own write then looked like someone's edit (at 500
        new ScaledApps, a repair - three GETs and an apply - of most children written twice at creation)."""
        meta = obj.get("metadata") or {}
        if meta.get("uid"):
            known = self._versions.get(meta["uid"])
            if known is not None and _newer(known[1], meta.get("resourceVersion")):
                return
            generation = meta.get("generation")
            self._versions[meta["uid"]] = (int(generation) if generation is not None else None,
                                          meta.get("resourceVersion"))

    def forget(self, uid: str) -> None:
        self._versions.pop(uid, None)

    def drifted(self, event_type: str | None, child: dict[str, Any]) -> bool:
        """Is this watch event worth a repair? Deletions always; objects with a generation only when it
        grew past what we last saw (their status changes all the time); others when their version is
        not the one we wrote or saw last."""
        meta = child.get("metadata") or {}
        if event_type == "DELETED":
            return True
        if event_type != "MODIFIED" or meta.get("deletionTimestamp") or object_key(child) in self._writing:
            return False
        known = self._versions.get(meta.get("uid", ""))
        if known is None:
            return True
        generation = meta.get("generation")
        if generation is not None and known[0] is not None:
            return int(generation) > known[0]
        return meta.get("resourceVersion") != known[1]


def _newer(known: str | None, other: str | None) -> bool:
    """Is resourceVersion `known` newer than `other`? (Opaque by contract; etcd's are integers. Unknown: no.)"""
    try:
        return int(known or "") > int(other or "")
    except ValueError:
        return False


def object_key(obj: dict[str, Any]) -> tuple[str, str, str]:
    meta = obj.get("metadata") or {}
    return str(obj.get("kind")), str(meta.get("namespace")), str(meta.get("name"))


class WatchCache:
    """The latest body of each child, fed by the watches the operator holds anyway (the drift handlers)
    and by our own applies, so a scaler tick reads its workloads without a GET each (an informer cache)."""

    def __init__(self) -> None:
        self._bodies: dict[tuple[str, str, str], dict[str, Any]] = {}

    CACHED_KINDS = ("Deployment", "StatefulSet", "ConfigMap")  # what a scaler tick reads; never Secrets

    # A tick reads small ConfigMaps (a cache's size, the write role); the Postgres scripts (30 KB a ScaledApp,
    # 15 MiB at 500) are never read from here: a ConfigMap with more data is not kept (a read of it asks the API).
    CACHED_CONFIGMAP_BYTES = 4096

    def remember(self, obj: dict[str, Any]) -> None:
        """Keep `obj` unless a newer version of it is already known (events and apply answers race)."""
        if obj.get("kind") not in self.CACHED_KINDS:
            return
        if obj.get("kind") == "ConfigMap" and _data_bytes(obj) > self.CACHED_CONFIGMAP_BYTES:
            self.forget(obj)
            return
        obj = slim(obj)
        key = object_key(obj)
        known = self._bodies.get(key)
        if known is None or _version(obj) >= _version(known) or known["metadata"].get("uid") != obj[
                "metadata"].get("uid"):
            self._bodies[key] = obj

    def forget(self, obj: dict[str, Any]) -> None:
        self._bodies.pop(object_key(obj), None)

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        return self._bodies.get((kind, namespace, name))


def slim(obj: dict[str, Any]) -> dict[str, Any]:
    """What a scaler tick and the failover guard read of a cached child - identity, sizes, images and
    arguments, readiness, a ConfigMap's data - and nothing else: at 500 ScaledApps whole bodies as Python
    dicts were most of the operator's memory."""
    meta = obj.get("metadata") or {}
    out: dict[str, Any] = {
        "apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"),
        "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "generation") if k in meta},
    }
    # Which managers own fields (whether the scaler has sized it yet), not the fields themselves.
    managers = [{"manager": f.get("manager")} for f in meta.get("managedFields") or []]
    if managers:
        out["metadata"]["managedFields"] = managers
    if obj.get("kind") == "ConfigMap":
        out["data"] = obj.get("data") or {}
        return out
    spec = obj.get("spec") or {}
    containers = (((spec.get("template") or {}).get("spec") or {}).get("containers")) or []
    # Image and args too: the failover guard compares the primary's pod with its template (a restart due).
    out["spec"] = {"replicas": spec.get("replicas"), "template": {"spec": {"containers": [
        {"name": c.get("name"), "image": c.get("image"), "args": c.get("args") or [],
         "resources": c.get("resources") or {}} for c in containers]}}}
    out["status"] = {"readyReplicas": (obj.get("status") or {}).get("readyReplicas")}
    return out


def _data_bytes(configmap: dict[str, Any]) -> int:
    data = configmap.get("data") or {}
    return sum(len(k) + len(str(v)) for k, v in data.items()) + len(str(configmap.get("binaryData") or ""))


def _version(obj: dict[str, Any]) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:  # opaque by contract; etcd's are integers, and a stale read is only a tick late
        return 0
