"""Design for failure, proven on real pods: the queue and the primary lost under writes, failover, the write
role coming home by switchover, a lagging replica leaving the read Service, and slots of removed replicas.

One release and one ScaledApp (synchronous commits, failover after 8 s, the scaler off so that only the
failure machinery acts) for the module; the drills run in file order and each leaves the service writing.
Times are reported (bench/failover.py measures them), never asserted: the assertions are that writes come
back, that no acknowledged write or accepted order is lost, and that the role, labels and status say so.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from hack.writeprobe import WriteProbe

from tests.support.cluster import Cluster, KubectlError
from tests.support.release import NAME, Deployed, apply_scaledapp, http_json, release
from tests.support.wait import wait_for

pytestmark = pytest.mark.realnode

HOME = f"{NAME}-db-0"
ROLE = "scaledapp.dev/role"


@pytest.fixture(scope="module")
def stack(real_cluster: Cluster) -> Iterator[Deployed]:
    with release(real_cluster, "ff", {"resyncSeconds": 10, "drainSwitchover": "on"}) as deployed:
        try:
            yield apply_scaledapp(deployed, {"database": {"synchronous": True, "failover": {"delaySeconds": 8}},
                                             "scaling": {"mode": "Off"}})
        finally:  # what the guard said, for a failed drill's report
            print(deployed.cluster.kubectl_run("logs", "-n", deployed.system, "-l",
                                               "app.kubernetes.io/component=operator", "--tail=60").stdout)


def app_url(stack: Deployed) -> str:
    return stack.service_url(f"{NAME}-app", 8080)


def database(stack: Deployed) -> dict[str, Any]:
    return dict(stack.scaledapp().get("status", {}).get("database") or {})


def ids_in_database(stack: Deployed, prefix: str) -> set[int]:
    """The probe's rows on the pod status.database names as the primary (its label may lag a second; a pod
    fenced by a failover may linger, Failed, under the same name until its replacement runs)."""
    def read() -> tuple[set[int]]:  # a tuple: an empty set is an answer too
        out = stack.psql(database(stack)["primary"], f"select id from items where name like '{prefix}-%'")
        return ({int(line) for line in out.split() if line.strip()},)

    return wait_for(read, timeout=120, what="the primary answering", interval=2, ignore=(KubectlError,))[0]


def endpoints(stack: Deployed, service: str) -> set[str]:
    slices = stack.cluster.get_json("endpointslices", "-n", stack.apps, "-l", f"kubernetes.io/service-name={service}")
    return {e["targetRef"]["name"] for s in slices["items"] for e in s.get("endpoints") or []
            if (e.get("conditions") or {}).get("ready") and e.get("targetRef")}


def rejoined_without_a_copy(stack: Deployed, pod: str) -> bool:
    """Did the pod's bootstrap (the initContainer of its current incarnation) rejoin its data as a standby,
    rather than move it aside and copy the primary again? (replica-bootstrap.sh says which.)"""
    log = stack.cluster.kubectl_run("logs", "-n", stack.apps, pod, "-c", "bootstrap").stdout
    print(f"{pod} bootstrap: {log.strip()[-400:]}")
    return "rejoins as a standby" in log and "moving it aside" not in log


def writing(probe: WriteProbe, after: float, timeout: float, what: str) -> None:
    wait_for(lambda: probe.acked_after(after) >= 3, timeout=timeout, what=what, interval=0.5)


def test_the_write_role_is_a_label_the_services_follow(stack: Deployed) -> None:
    wait_for(lambda: database(stack).get("primary") == HOME, timeout=60, what="status.database.primary")
    assert database(stack)["phase"] == "Healthy"
    assert stack.pod_named("primary") == HOME
    assert endpoints(stack, f"{NAME}-db-write") == {HOME}
    assert endpoints(stack, f"{NAME}-db-read-svc") == {f"{NAME}-db-read-0"}
    # Synchronous commits: the primary waits for a replica.
    assert stack.psql(HOME, "show synchronous_standby_names").strip() == "ANY 1 (*)"
    assert stack.psql(HOME, "select sync_state from pg_stat_replication").split() == ["quorum"]


def test_accepted_orders_survive_the_loss_of_the_queue_pod(stack: Deployed) -> None:
    app = app_url(stack)
    accepted = [http_json(f"{app}/orders", {"item_id": 1 + i % 20})["job_id"] for i in range(40)]
    stack.cluster.kubectl("scale", "deployment", f"{NAME}-workers", "-n", stack.apps, "--replicas=0")
    try:
        accepted += [http_json(f"{app}/orders", {"item_id": 2})["job_id"] for _ in range(20)]  # these wait
        [queue_pod] = stack.cluster.kubectl("get", "pods", "-n", stack.apps, "-l",
                                            f"app.kubernetes.io/instance={NAME},scaledapp.dev/tier=queue",
                                            "-o", "jsonpath={.items[*].metadata.name}").split()
        stack.cluster.kubectl("delete", "pod", "-n", stack.apps, queue_pod, "--wait=true", timeout=90)

        def order_state(job: str) -> str:
            try:
                return str(http_json(f"{app}/orders/{job}")["state"])
            except urllib.error.HTTPError as exc:
                return "lost" if exc.code == 404 else f"http {exc.code}"

        def every_state() -> dict[str, str] | None:
            states = {job: order_state(job) for job in accepted}
            return None if any(s.startswith("http") for s in states.values()) else states

        # The app's breaker on the queue opens while the pod is away and closes after a successful probe.
        states = wait_for(every_state, timeout=120, what="the queue back and every order answered", interval=1,
                          ignore=(OSError,))
        lost = [job for job, state in states.items() if state == "lost"]
        assert lost == [], f"{len(lost)} of {len(accepted)} accepted orders lost with the queue pod"
        assert all(state in ("queued", "processing", "done") for state in states.values()), states
    finally:
        stack.cluster.kubectl("scale", "deployment", f"{NAME}-workers", "-n", stack.apps, "--replicas=1")


def test_a_deleted_credentials_secret_comes_back_with_the_same_values(stack: Deployed) -> None:
    """Generating new passwords would lock every pod out of a database that has the old ones: the operator puts
    the Secret back as it was (its periodic resync; it never lists or watches Secrets), and a new app pod, which
    reads it at start, logs in."""
    secret = f"{NAME}-db-credentials"
    before = stack.cluster.get_json("secret", secret, "-n", stack.apps)["data"]
    stack.cluster.kubectl("delete", "secret", secret, "-n", stack.apps)
    after = wait_for(lambda: stack.cluster.get_json("secret", secret, "-n", stack.apps)["data"], timeout=90,
                     what="the credentials Secret back", interval=1, ignore=(KubectlError,))
    assert after == before
    stack.cluster.kubectl("rollout", "restart", f"deployment/{NAME}-app", "-n", stack.apps)
    stack.cluster.kubectl("rollout", "status", f"deployment/{NAME}-app", "-n", stack.apps, "--timeout=180s",
                          timeout=200)
    # Locked out, the new pods' writes would fail for good; with the same values they succeed once the pools open.
    created = wait_for(lambda: http_json(f"{app_url(stack)}/items", {"name": "after-secret", "value": "v"}),
                       timeout=60, what="a write through the restarted app", interval=1, ignore=(OSError,))
    assert created["id"]


def test_a_deleted_primary_pod_comes_back_and_no_acknowledged_write_is_lost(stack: Deployed) -> None:
    """Restarted in place, or failed over if the restart outlasts the delay: either way writes come back whole."""
    probe = WriteProbe(app_url(stack), prefix="kill").start()
    try:
        writing(probe, 0, 60, "writes before the drill")
        killed = stack.delete_pod_until_replaced(HOME)
        writing(probe, time.monotonic(), 180, "writes again after the primary's pod was deleted")
    finally:
        probe.stop()
    moved = (database(stack).get("lastMove") or {}).get("kind", "no move")
    print(f"primary pod deleted: writes down {probe.writes_down(killed):.1f}s ({moved}); "
          f"{len(probe.ids())} acknowledged, {probe.failures} refused")
    assert probe.lost(ids_in_database(stack, "kill")) == set()


def home_and_healthy(stack: Deployed) -> None:
    """The role home (a slow restart in an earlier drill may have failed over and switched back) and a replica."""
    wait_for(lambda: database(stack).get("phase") == "Healthy" and database(stack).get("primary") == HOME,
             timeout=400, what="the write role home", interval=2)
    wait_for(lambda: endpoints(stack, f"{NAME}-db-read-svc"), timeout=300, what="a Ready replica", interval=2)


def test_a_hung_primary_is_failed_over_then_the_role_comes_home_without_losing_a_write(stack: Deployed) -> None:
    home_and_healthy(stack)
    epoch = int(database(stack).get("epoch") or 0)
    probe = WriteProbe(app_url(stack), prefix="hung").start()
    try:
        writing(probe, 0, 60, "writes before the drill")
        frozen = time.monotonic()
        # Every process of the postgres container but its pid 1 stops: connections hang, probes time out.
        stack.cluster.kubectl("exec", "-n", stack.apps, HOME, "-c", "postgres", "--", "sh", "-c", "kill -STOP -1")

        def moved() -> dict[str, Any] | None:
            db = database(stack)
            return db if int(db.get("epoch") or 0) > epoch and db.get("phase") != "FailingOver" else None

        after = wait_for(moved, timeout=120, what="a failover", interval=1)
        moved_at = time.monotonic()
        assert after["lastMove"]["kind"] == "failover" and after["lastMove"]["from"] == HOME
        promoted = after["lastMove"]["to"]
        assert promoted.startswith(f"{NAME}-db-read-")
        wait_for(lambda: endpoints(stack, f"{NAME}-db-write") == {promoted}, timeout=30,
                 what=f"db-write serving {promoted}")
        writing(probe, moved_at, 60, "writes on the promoted replica")  # not the in-flight ones of the freeze
        failed_over = probe.writes_down(frozen)
        print("acknowledged after the freeze (s):", [round(t - frozen, 1) for t in probe.times() if t > frozen][:8])
        events = stack.cluster.kubectl("get", "events", "-n", stack.apps, "--field-selector",
                                       f"involvedObject.name={NAME}", "-o", "jsonpath={.items[*].reason}").split()
        assert "FailingOver" in events and "FailedOver" in events

        # The old primary comes back as a replica, catches up, and the role is switched home.
        def home_again() -> dict[str, Any] | None:
            db = database(stack)
            last = db.get("lastMove") or {}
            return db if last.get("kind") == "switchover" and db.get("primary") == HOME \
                and db.get("phase") == "Healthy" else None

        switched_at = time.monotonic()
        home = wait_for(home_again, timeout=400, what="the switchover home", interval=2)
        wait_for(lambda: endpoints(stack, f"{NAME}-db-write") == {HOME}, timeout=30, what="db-write home")
        writing(probe, time.monotonic(), 60, "writes after the switchover")
    finally:
        probe.stop()
    print(f"hung primary: writes down {failed_over:.1f}s until the failover to {promoted}; switchover home took "
          f"{home['lastMove']['seconds']}s, longest write gap since {probe.writes_down(switched_at):.1f}s")
    # Synchronous commits: not one acknowledged write is missing from the primary that has the role now.
    assert probe.lost(ids_in_database(stack, "hung")) == set()
    wait_for(lambda: endpoints(stack, f"{NAME}-db-read-svc") >= {promoted}, timeout=400,
             what=f"{promoted} back and serving reads", interval=2)
    # The switchover home handed over cleanly: the pod that gave the role back rejoined as a standby as it was
    # (no new base backup), and the commits the new primary made local until it streamed are synchronous again.
    wait_for(lambda: rejoined_without_a_copy(stack, promoted), timeout=60, what=f"{promoted} rejoined as it was",
             interval=2, ignore=(KubectlError,))
    wait_for(lambda: database(stack).get("syncHold") is False, timeout=90, what="the synchronous hold released",
             interval=1)
    assert stack.psql(HOME, "show synchronous_commit").strip() == "on"
    restored = stack.cluster.kubectl("get", "events", "-n", stack.apps, "--field-selector",
                                     f"involvedObject.name={NAME},reason=SynchronousRestored",
                                     "-o", "jsonpath={.items[*].reason}")
    assert "SynchronousRestored" in restored


def test_a_lagging_replica_leaves_the_read_service_until_it_catches_up(stack: Deployed) -> None:
    replica = f"{NAME}-db-read-0"
    wait_for(lambda: replica in endpoints(stack, f"{NAME}-db-read-svc"), timeout=300, what=f"{replica} Ready")
    probe = WriteProbe(app_url(stack), prefix="lag", interval=0.1).start()
    try:
        stack.psql(replica, "select pg_wal_replay_pause()")  # receives WAL, replays none: lag grows with writes
        wait_for(lambda: replica not in endpoints(stack, f"{NAME}-db-read-svc"), timeout=90,
                 what=f"{replica} out of the read Service while it lags", interval=1)
        stack.psql(replica, "select pg_wal_replay_resume()")
        wait_for(lambda: replica in endpoints(stack, f"{NAME}-db-read-svc"), timeout=90,
                 what=f"{replica} back once it caught up", interval=1)
    finally:
        probe.stop()


def scaler_sets_replicas(stack: Deployed, statefulset: str, replicas: int) -> None:
    """The replicas field as the scaler writes it (its field manager; a `kubectl scale` would be put back)."""
    body = {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": statefulset, "namespace": stack.apps},
            "spec": {"replicas": replicas}}
    stack.cluster.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=scaledapp-scaler",
                          "-f", "-", input=json.dumps(body))


def test_the_slot_of_a_removed_replica_is_dropped(stack: Deployed) -> None:
    sts = f"{NAME}-db-read"
    second = f"{NAME}-db-read-1"
    scaler_sets_replicas(stack, sts, 2)

    def slots() -> dict[str, bool]:
        query = "select slot_name || ':' || case when active then 'yes' else 'no' end from pg_replication_slots"
        rows = stack.psql(stack.pod_named("primary"), query)
        return {row.split(":")[0]: row.split(":")[1] == "yes" for row in rows.split()}

    try:
        wait_for(lambda: slots().get(second.replace("-", "_")), timeout=300, what=f"{second} streaming on its slot",
                 interval=2)
    finally:
        scaler_sets_replicas(stack, sts, 1)
    wait_for(lambda: second.replace("-", "_") not in slots(), timeout=120, what=f"{second}'s slot dropped",
             interval=2)
    events = stack.cluster.kubectl("get", "events", "-n", stack.apps, "--field-selector",
                                   f"involvedObject.name={NAME},reason=SlotsDropped", "-o", "json")
    assert any(second.replace("-", "_") in e["message"] for e in json.loads(events)["items"])


def test_a_change_that_needs_the_primary_restarted_goes_through_a_switchover(stack: Deployed) -> None:
    """The primary's StatefulSet is OnDelete: a server-setting change (here: synchronous commits off) reaches the
    primary's pod through a switchover to a caught-up replica, the restart of the old primary on the new
    template, and the switchover home; writes are down only for the switchovers, and none is lost."""
    home_and_healthy(stack)
    epoch = int(database(stack).get("epoch") or 0)
    probe = WriteProbe(app_url(stack), prefix="planned").start()
    try:
        writing(probe, 0, 60, "writes before the change")
        stack.cluster.kubectl("patch", "scaledapp", NAME, "-n", stack.apps, "--type=merge",
                              "-p", json.dumps({"spec": {"database": {"synchronous": False}}}))

        def planned() -> bool:
            out = stack.cluster.kubectl("get", "events", "-n", stack.apps, "--field-selector",
                                        f"involvedObject.name={NAME},reason=SwitchingOver",
                                        "-o", "jsonpath={.items[*].message}")
            return f"{HOME} must restart" in out

        # The switchover away (its Event: the record in status may already be the switchover home).
        wait_for(planned, timeout=300, what="a planned switchover away from the primary", interval=1)
        assert int(database(stack).get("epoch") or 0) > epoch
        home_and_healthy(stack)
        writing(probe, time.monotonic(), 60, "writes after the switchover home")
    finally:
        probe.stop()
    assert stack.psql(HOME, "show synchronous_standby_names").strip() == ""  # the new template runs
    assert probe.lost(ids_in_database(stack, "planned")) == set()
    # The switchover away shut the old primary down cleanly: it restarted on the new template and rejoined
    # as a standby as it was (the switchover home since then does not restart it).
    assert rejoined_without_a_copy(stack, HOME)


def evict(stack: Deployed, pod: str) -> str:
    """The Eviction API call kubectl drain makes for each pod: '' when granted, else the refusal."""
    body = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod, "namespace": stack.apps}}
    try:
        stack.cluster.kubectl("create", "--raw", f"/api/v1/namespaces/{stack.apps}/pods/{pod}/eviction", "-f", "-",
                              input=json.dumps(body))
    except KubectlError as exc:
        return str(exc)
    return ""


def test_a_drain_of_the_primarys_node_moves_the_role_by_switchover(stack: Deployed) -> None:
    """kubectl drain cordons the node, then evicts its pods. The primary's disruption budget refuses its eviction,
    and the cordon makes the guard switch the role to a caught-up replica first. This cluster has one node, so
    the role leaves the pod being drained once (to the replica beside it) and the budget then holds the drain
    (no other node could take the primary): writes go on throughout, and none is lost. Last in the file: the
    drill before turned synchronous commits off; with them on and one replica, the replica's pod leaving with
    the drain would stop writes until it returns, whichever pod held the role (docs/failure.md)."""
    home_and_healthy(stack)
    node = stack.cluster.kubectl("get", "pod", HOME, "-n", stack.apps, "-o", "jsonpath={.spec.nodeName}").strip()
    refused = evict(stack, HOME)
    assert "disruption budget" in refused, refused  # not even once: the role has not moved yet
    probe = WriteProbe(app_url(stack), prefix="drain").start()
    try:
        writing(probe, 0, 60, "writes before the drain")
        cordoned = time.monotonic()
        stack.cluster.kubectl("cordon", node)

        def switched() -> dict[str, Any] | None:
            db = database(stack)
            last = db.get("lastMove") or {}
            return db if last.get("kind") == "switchover" and last.get("from") == HOME and "drained" in str(
                last.get("reason")) and db.get("phase") != "SwitchingOver" else None

        after = wait_for(switched, timeout=90, what="a switchover off the cordoned node", interval=1)
        moved_to = after["primary"]
        assert moved_to.startswith(f"{NAME}-db-read-")
        wait_for(lambda: endpoints(stack, f"{NAME}-db-write") == {moved_to}, timeout=30,
                 what=f"db-write serving {moved_to}")
        writing(probe, time.monotonic(), 60, "writes after the switchover")
        # The new primary is on the same (cordoned) node: refused too, and the status says why.
        assert "disruption budget" in evict(stack, moved_to)
        wait_for(lambda: database(stack).get("reason") == "DrainBlocked", timeout=30, what="status: DrainBlocked")
    finally:
        stack.cluster.kubectl("uncordon", node)
        probe.stop()
    print(f"drain: longest write gap {probe.writes_down(cordoned):.1f}s; switchover {after['lastMove']['seconds']}s")
    home_and_healthy(stack)
    assert probe.lost(ids_in_database(stack, "drain")) == set()


def test_a_synchronous_switchover_keeps_writing_while_the_old_primary_is_away(stack: Deployed) -> None:
    """With synchronous commits and one replica, the new primary's only standby is the old primary. A switchover
    promotes with commits made local until a standby streams, and holds failover meanwhile (status.database.
    syncHold): here the old primary cannot come back at all (the node is cordoned, its pod stays Pending), and
    writes go on; once it is back and has every write acknowledged meanwhile, the hold ends and none is lost."""
    stack.cluster.kubectl("patch", "scaledapp", NAME, "-n", stack.apps, "--type=merge",
                          "-p", json.dumps({"spec": {"database": {"synchronous": True}}}))
    # A server setting: the primary restarts through a switchover away and home (as the drill above).
    wait_for(lambda: stack.psql(HOME, "show synchronous_standby_names").strip() == "ANY 1 (*)", timeout=300,
             what="synchronous commits on the primary's new template", interval=2, ignore=(KubectlError,))
    home_and_healthy(stack)
    wait_for(lambda: database(stack).get("syncHold") is False, timeout=90, what="no hold to begin with", interval=1)
    node = stack.cluster.kubectl("get", "pod", HOME, "-n", stack.apps, "-o", "jsonpath={.spec.nodeName}").strip()
    probe = WriteProbe(app_url(stack), prefix="synchold").start()
    try:
        writing(probe, 0, 60, "writes before the drill")
        stack.cluster.kubectl("cordon", node)

        def held() -> dict[str, Any] | None:
            db = database(stack)
            last = db.get("lastMove") or {}
            return db if last.get("kind") == "switchover" and last.get("from") == HOME and db.get("syncHold") \
                and db.get("phase") != "SwitchingOver" else None

        after = wait_for(held, timeout=90, what="a switchover off the cordoned node, with the hold", interval=1)
        switched = time.monotonic()
        # The old primary's pod cannot be scheduled: no standby at all, and synchronous writes go on.
        writing(probe, switched + 3, 60, "writes while no standby streams")
        assert database(stack).get("syncHold") is True
        assert stack.psql(after["primary"], "show synchronous_commit").strip() == "local"
        gap = probe.writes_down(switched)
    finally:
        stack.cluster.kubectl("uncordon", node)
        probe.stop()
    wait_for(lambda: database(stack).get("syncHold") is False, timeout=300,
             what="the hold released once the old primary streams again", interval=1)
    home_and_healthy(stack)
    assert stack.psql(HOME, "show synchronous_commit").strip() == "on"
    print(f"synchronous switchover with the old primary away: longest write gap {gap:.1f}s after the switchover")
    assert probe.lost(ids_in_database(stack, "synchold")) == set()


def app_pods(stack: Deployed) -> list[dict[str, Any]]:
    pods = stack.cluster.get_json("pods", "-n", stack.apps, "-l",
                                  f"app.kubernetes.io/instance={NAME},scaledapp.dev/tier=app")["items"]
    return [p for p in pods if p["status"].get("phase") == "Running" and p["status"].get("podIP")]


def scrape(ip: str, port: int) -> dict[str, float]:
    """A pod's metrics by name and labels as written (`name{labels}` -> value)."""
    with urllib.request.urlopen(f"http://{ip}:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


def redis_logins(stack: Deployed, pod: str) -> dict[str, str]:
    """From an app pod, with its own environment: does each Redis take the password the pod started with (in
    REDIS_URL / QUEUE_URL) and the one in its mounted file? No password appears in a command line."""
    script = (
        "import os, redis\n"
        "for url, path in (('REDIS_URL', 'REDIS_PASSWORD_FILE'), ('QUEUE_URL', 'QUEUE_PASSWORD_FILE')):\n"
        "    for how in ('start', 'file'):\n"
        "        client = redis.Redis.from_url(os.environ[url], socket_timeout=3)\n"
        "        if how == 'file':  # the URL's password wins over a keyword: replace it in the pool's\n"
        "            client.connection_pool.connection_kwargs['password'] = open(os.environ[path]).read()\n"
        "        try:\n"
        "            client.ping()\n"
        "            print(url, how, 'ok')\n"
        "        except redis.RedisError as exc:\n"
        "            print(url, how, type(exc).__name__)\n")
    out = stack.cluster.kubectl("exec", "-n", stack.apps, pod, "-c", "app", "--", "python", "-c", script)
    return {f"{url} {how}": result for url, how, result in (line.split() for line in out.splitlines() if line)}


def pods_and_restarts(stack: Deployed) -> dict[str, tuple[str, int]]:
    pods = stack.cluster.get_json("pods", "-n", stack.apps, "-l", f"app.kubernetes.io/instance={NAME}")["items"]
    return {p["metadata"]["name"]: (p["metadata"]["uid"], sum(c.get("restartCount", 0)
                                                               for c in p["status"].get("containerStatuses") or []))
            for p in pods if p["status"].get("phase") == "Running"}


def test_edited_passwords_reach_every_holder_and_nobody_is_locked_out(stack: Deployed) -> None:
    """The Secret is the source of truth. Edit the app's, the exporters' and both Redis' passwords: the database
    is made to agree (ALTER ROLE), both Redis take the new one live and the old one only for a grace, the app,
    workers and exporters follow their mounted files; no pod is restarted or replaced, none is locked out."""
    home_and_healthy(stack)
    secret = f"{NAME}-db-credentials"
    pods_before = pods_and_restarts(stack)
    edited = {key: base64.b64encode(secrets.token_urlsafe(24).encode()).decode()
              for key in ("app-password", "exporter-password", "cache-password", "queue-password")}
    stack.cluster.kubectl("patch", "secret", secret, "-n", stack.apps, "--type=merge",
                          "-p", json.dumps({"data": edited}))
    pod = app_pods(stack)[0]["metadata"]["name"]
    # Both Redis take only the new passwords once the grace is over (the kubelet brings the edit into the files
    # within its sync period, 10 s here; the grace is 180 s).
    new_only = {"REDIS_URL start": "AuthenticationError", "REDIS_URL file": "ok",
                "QUEUE_URL start": "AuthenticationError", "QUEUE_URL file": "ok"}
    seen: dict[str, str] = {}

    def only_new() -> bool:
        seen.update(redis_logins(stack, pod))
        print(f"logins from {pod}: {seen}")
        return seen == new_only

    wait_for(only_new, timeout=330, what="both Redis taking only the new passwords", interval=5,
             ignore=(KubectlError,))
    app = app_url(stack)
    # Writes: the app's new connections log in with the new database password (the primary's password-sync).
    created = wait_for(lambda: http_json(f"{app}/items", {"name": "after-edit", "value": "v"}), timeout=120,
                       what="a write after the edit", interval=1, ignore=(OSError,))

    def hits() -> float:
        return sum(scrape(p["status"]["podIP"], 8080).get('scaledapp_cache_requests_total{result="hit"}', 0.0)
                   for p in app_pods(stack))

    # Reads through the cache: a hit needs the app's cache client logged in with the new password.
    before = hits()

    def cache_hit() -> bool:
        for _ in range(6):
            http_json(f"{app}/items/{created['id']}")
        return hits() > before

    wait_for(cache_hit, timeout=60, what="a cache hit after the edit", interval=2, ignore=(OSError,))
    # Orders: accepted by the queue and done by a worker (both with the new queue password).
    job = http_json(f"{app}/orders", {"item_id": created["id"]})["job_id"]
    wait_for(lambda: http_json(f"{app}/orders/{job}")["state"] == "done", timeout=90, what="an order done",
             interval=1, ignore=(OSError,))
    # The exporters log in again with the new passwords: pg_up and redis_up are 1 on every Postgres and cache pod.
    pods = stack.cluster.get_json("pods", "-n", stack.apps, "-l", f"app.kubernetes.io/instance={NAME}")["items"]
    for p in pods:
        tier = p["metadata"]["labels"].get("scaledapp.dev/tier")
        port, up = {"db-write": (9187, "pg_up"), "db-read": (9187, "pg_up"),
                    "cache": (9121, "redis_up")}.get(tier or "", (0, ""))
        if port and p["status"].get("podIP"):
            wait_for(lambda ip=p["status"]["podIP"], port=port, up=up: scrape(ip, port).get(up) == 1.0, timeout=90,
                     what=f"{up} 1 on {p['metadata']['name']}", interval=3, ignore=(OSError,))
    after = pods_and_restarts(stack)
    assert {name: after.get(name) for name in pods_before} == pods_before, "a pod was restarted or replaced"
