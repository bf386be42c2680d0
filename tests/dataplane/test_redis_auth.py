"""Both Redis answer nobody without their password: the pods' own start scripts, probes and reloader, run on a
real redis-server on loopback; and the app and worker work only with the password.

The scripts are the ones the manifests carry (resources/cache.py), with the pod's directories swapped for
temporary ones and the network settings for a free loopback port. The password is generated the way the
operator generates it and never printed: assertions about it compare booleans, not the values.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from devharness.exporters import RedisExporter
from scaledapp import api
from scaledapp.resources import build_children, cache
from scaledapp.resources.names import ChildNames
from tests.support.dataplane import AppProcess, PostgresCluster, Process, RedisServer, app_settings, free_port
from tests.support.wait import wait_for

pytestmark = pytest.mark.dataplane

C = ChildNames("shop")


def manifests() -> dict[str, dict[str, Any]]:
    return {f"{m['kind']}/{m['metadata']['name']}": m for m in build_children("shop", "ns", api.ScaledAppSpec())}


def container(workload: dict[str, Any], name: str = "redis") -> dict[str, Any]:
    return next(c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def raw(port: int, *commands: bytes) -> list[bytes]:
    """Each command's first reply line, over a plain socket: no client library that might log in for us."""
    replies = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        stream = conn.makefile("rb")
        for command in commands:
            conn.sendall(command + b"\r\n")
            replies.append(stream.readline().rstrip())
    return replies


@dataclass
class PodRedis:
    """A redis-server started by a pod's script, with the pod's environment and its mounted password file."""

    process: Process
    port: int
    password: str
    env: dict[str, str]
    auth_file: Path
    password_file: Path

    def client(self, password: str | None = None) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=password, socket_timeout=5)

    def pid(self) -> int:
        assert self.process.proc is not None
        return self.process.proc.pid


def pod_env(**extra: str) -> dict[str, str]:
    return {"PATH": os.environ["PATH"], "POD_IP": "127.0.0.1", **extra}


def mount_password(path: Path, password: str) -> None:
    """Write the Secret's key as the kubelet does: aside, then renamed into place."""
    aside = path.with_name(f".{path.name}.new")
    aside.write_text(password)
    aside.replace(path)


def start(process: Process, cmd: list[str], env: dict[str, str], port: int, password: str) -> None:
    process.spawn(cmd, env=env)

    def up() -> bool:
        if not process.running:
            raise AssertionError(f"{process.name} exited:\n{process.log_tail()}")
        return bool(redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=1).ping())

    wait_for(up, 20, f"{process.name} on :{port}", interval=0.05, ignore=(redis.ConnectionError,))


@pytest.fixture
def pod_dirs(tmp_path: Path) -> tuple[Path, Path, Path]:
    auth, config, data = tmp_path / "auth", tmp_path / "config", tmp_path / "data"
    for d in (auth, config, data, tmp_path / "credentials"):
        d.mkdir()
    return auth, config, data


def password_file(tmp_path: Path) -> Path:
    return tmp_path / "credentials" / "password"


@pytest.fixture
def cache_pod(pod_dirs: tuple[Path, Path, Path], tmp_path: Path) -> Iterator[PodRedis]:
    """The cache container's command: the manifest's script, run with the pod's environment."""
    auth, config, data = pod_dirs
    redis_ctr = container(manifests()[f"Deployment/{C.cache}"])
    assert redis_ctr["command"] == ["sh", "-c", cache.cache_start_script()]  # what runs below, bar the dirs
    port, password = free_port(), secrets.token_hex(24)
    # The ConfigMap's redis.conf with this test's network and directory (`dir` takes effect as it is read).
    local = {"bind": "127.0.0.1", "port": str(port), "dir": str(data)}
    conf = [f"{key} {local[key]}" if (key := line.split(" ")[0]) in local else line
            for line in cache.REDIS_CONF.splitlines()]
    assert len([line for line in conf if line.split(" ")[0] in local]) == len(local)
    (config / "redis.conf").write_text("\n".join(conf) + "\n")
    (config / cache.MAXMEMORY_KEY).write_text(str(32 * 2**20))
    env = pod_env(INITIAL_MAXMEMORY=str(16 * 2**20))
    mount_password(password_file(tmp_path), password)
    process = Process("pod-cache", tmp_path)
    start(process, ["sh", "-c", cache.cache_start_script(str(config), str(auth), str(password_file(tmp_path)))],
          env, port, password)
    yield PodRedis(process, port, password, env, auth / cache.AUTH_FILE, password_file(tmp_path))
    process.signal_stop(signal.SIGTERM, timeout=10)


@pytest.fixture
def queue_pod(pod_dirs: tuple[Path, Path, Path], tmp_path: Path) -> Iterator[PodRedis]:
    """The queue container's command and args, on a free loopback port and a temporary data directory."""
    auth, _config, data = pod_dirs
    redis_ctr = container(manifests()[f"StatefulSet/{C.queue}"])
    sh, dash_c, script, argv0 = redis_ctr["command"]
    assert script == cache.queue_start_script()
    port, password = free_port(), secrets.token_hex(24)
    local = {"--bind": "127.0.0.1", "--port": str(port), "--dir": str(data)}
    args = redis_ctr["args"]
    args = [local.get(args[i - 1], a) if i % 2 else a for i, a in enumerate(args)]
    mount_password(password_file(tmp_path), password)
    process = Process("pod-queue", tmp_path)
    start(process, [sh, dash_c, cache.queue_start_script(str(auth), str(password_file(tmp_path))), argv0, *args],
          pod_env(), port, password)
    yield PodRedis(process, port, password, pod_env(), auth / cache.AUTH_FILE, password_file(tmp_path))
    process.signal_stop(signal.SIGTERM, timeout=10)


@pytest.mark.parametrize("pod", ["cache_pod", "queue_pod"])
def test_without_the_password_redis_answers_noauth(pod: str, request: pytest.FixtureRequest) -> None:
    r: PodRedis = request.getfixturevalue(pod)
    ping, get, keys = raw(r.port, b"PING", b"GET anything", b"KEYS *")
    assert ping.startswith(b"-NOAUTH") and get.startswith(b"-NOAUTH") and keys.startswith(b"-NOAUTH")
    (wrong,) = raw(r.port, b"AUTH " + secrets.token_hex(24).encode())
    assert wrong.startswith(b"-WRONGPASS")
    with pytest.raises(redis.AuthenticationError):
        r.client().set("k", "v")
    client = r.client(r.password)
    assert client.set("k", "v") and client.get("k") == b"v"  # with it, everything


@pytest.mark.parametrize("pod", ["cache_pod", "queue_pod"])
def test_the_password_is_in_no_command_line_or_log_and_its_file_is_private(
    pod: str, request: pytest.FixtureRequest
) -> None:
    r: PodRedis = request.getfixturevalue(pod)
    cmdline = Path(f"/proc/{r.pid()}/cmdline").read_bytes().decode(errors="replace")
    in_cmdline = r.password in cmdline
    in_log = r.password in r.process.log_path.read_text(errors="replace")
    assert not in_cmdline, "the password is on redis-server's command line"
    assert not in_log, "the password is in the container's output"
    assert r.auth_file.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(("workload", "pod"), [(f"Deployment/{C.cache}", "cache_pod"),
                                               (f"StatefulSet/{C.queue}", "queue_pod")])
def test_the_readiness_probe_logs_in_and_fails_without_the_password(
    workload: str, pod: str, request: pytest.FixtureRequest
) -> None:
    r: PodRedis = request.getfixturevalue(pod)
    probe = container(manifests()[workload])["readinessProbe"]["exec"]["command"]
    # The probe talks to port 6379: point redis-cli at this test's port the way REDISCLI_* cannot, and at this
    # test's auth.conf (the password the server takes).
    probe = [*probe[:-1], probe[-1].replace("redis-cli ", f"redis-cli -p {r.port} ")
             .replace(f"{cache.AUTH_DIR}/", f"{r.auth_file.parent}/")]
    ok = subprocess.run(probe, env=r.env, capture_output=True, timeout=10, check=False)
    assert ok.returncode == 0, ok.stderr
    r.auth_file.write_text(f"requirepass {secrets.token_hex(24)}\n")  # a password the server does not take
    refused = subprocess.run(probe, env=r.env, capture_output=True, timeout=10, check=False)
    assert refused.returncode != 0  # WRONGPASS is not PONG: never Ready without the password


def test_the_reloader_logs_in_to_apply_a_new_maxmemory(
    cache_pod: PodRedis, pod_dirs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _auth, config, _data = pod_dirs
    reloader = container(manifests()[f"Deployment/{C.cache}"], "maxmemory-reloader")
    assert reloader["command"] == ["sh", "-c", cache.reloader_script()]
    target = 48 * 2**20
    (config / cache.MAXMEMORY_KEY).write_text(str(target))
    script = cache.reloader_script(str(config), str(cache_pod.auth_file.parent), str(cache_pod.password_file),
                                   port=cache_pod.port, period=0.2)
    process = Process("pod-cache-reloader", tmp_path)
    process.spawn(["sh", "-c", script], env=cache_pod.env)
    try:
        client = cache_pod.client(cache_pod.password)
        wait_for(lambda: client.config_get("maxmemory")["maxmemory"] == str(target), 15,
                 "the reloader to set maxmemory", interval=0.1)
    finally:
        process.signal_stop(signal.SIGTERM, timeout=5)


def test_redis_does_not_start_without_a_password(pod_dirs: tuple[Path, Path, Path], tmp_path: Path) -> None:
    auth, _config, data = pod_dirs
    port = free_port()
    cmd = ["sh", "-c", cache.queue_start_script(str(auth), str(password_file(tmp_path))), "redis-server",
           "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data)]
    for password in (None, ""):  # no file, an empty one
        if password is not None:
            mount_password(password_file(tmp_path), password)
        done = subprocess.run(cmd, env=pod_env(), capture_output=True, text=True, timeout=10, check=False)
        assert done.returncode == 1 and "no Redis password" in done.stderr
    assert not (auth / cache.AUTH_FILE).exists()


def test_the_app_uses_the_queue_and_cache_only_with_the_password(
    dataplane_dir: Path, healthy_dataplane: PostgresCluster, redis_server: RedisServer
) -> None:
    """The session's app and worker (tests/support/dataplane.py) log in through their URLs, as the pods'
    REDIS_URL / QUEUE_URL carry the password; one without it reads through to the database and refuses orders."""
    settings = app_settings(healthy_dataplane, redis_server)
    anonymous = f"redis://{redis_server.host}:{redis_server.port}"
    settings.update({"APP_CACHE_URL": f"{anonymous}/0", "APP_QUEUE_URL": f"{anonymous}/1"})
    app = AppProcess("app-no-redis-password", dataplane_dir / "logs", settings)
    app.start()
    try:
        with httpx.Client(base_url=app.url, timeout=5) as client:
            # The cache refuses it: reads go to the database (a read may time out on a loaded machine: poll).
            wait_for(lambda: client.get("/items/7").status_code == 200, 20, "a read served without the cache",
                     interval=0.2)
            bypassed = [line for line in client.get("/metrics").text.splitlines()
                        if line.startswith('scaledapp_cache_requests_total{result="bypass"}')]
            assert bypassed and float(bypassed[0].split()[-1]) >= 1, bypassed
            hits = [line for line in client.get("/metrics").text.splitlines()
                    if line.startswith('scaledapp_cache_requests_total{result="hit"}')]
            assert not hits or float(hits[0].split()[-1]) == 0, hits
            # The queue refuses it: no order is ever accepted.
            answers = {client.post("/orders", json={"item_id": 7, "quantity": 1}).status_code for _ in range(3)}
            assert answers == {503}, answers
    finally:
        app.stop()
    in_log = redis_server.password in app.log_path.read_text(errors="replace")
    assert not in_log


# ------------------------------------------------------------------ an edited password, taken live

GRACE = 3.0  # seconds the previous password is still taken (the pods': cache.PASSWORD_GRACE_SECONDS)


def sidecar(r: PodRedis, pod: str, tmp_path: Path) -> Process:
    """The pod's password-following sidecar (the cache's reloader, the queue's password-reloader), polling fast."""
    auth = str(r.auth_file.parent)
    if pod == "cache_pod":
        script = cache.reloader_script(str(tmp_path / "config"), auth, str(r.password_file), port=r.port,
                                       grace_seconds=GRACE, period=0.2)
    else:
        script = cache.password_reloader_script(auth, str(r.password_file), port=r.port, grace_seconds=GRACE,
                                                period=0.2)
    process = Process(f"{pod}-sidecar", tmp_path)
    process.spawn(["sh", "-c", script], env=r.env)
    return process


def takes(r: PodRedis, password: str) -> bool:
    """Does a NEW connection log in with `password`?"""
    try:
        return bool(r.client(password).ping())
    except redis.AuthenticationError:
        return False


@pytest.mark.parametrize("pod", ["cache_pod", "queue_pod"])
def test_an_edited_password_is_taken_live_and_the_previous_one_only_for_the_grace(
    pod: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    r: PodRedis = request.getfixturevalue(pod)
    pid, old = r.pid(), r.password
    held = r.client(old)
    held.set("kept", "v")  # data, and a connection that logged in with the old password
    process = sidecar(r, pod, tmp_path)
    try:
        new = secrets.token_hex(24)
        mount_password(r.password_file, new)  # the kubelet updates the pod's file
        wait_for(lambda: takes(r, new), 15, "Redis to take the new password", interval=0.1)
        taken_at = time.monotonic()
        assert takes(r, old), "the previous password was dropped at once: clients not yet updated are refused"
        wait_for(lambda: not takes(r, old), GRACE + 15, "the previous password dropped", interval=0.1)
        assert time.monotonic() - taken_at >= GRACE - 0.5  # kept for the grace, then dropped
        assert takes(r, new)
        assert r.pid() == pid and r.process.running  # no restart
        assert r.client(new).get("kept") == b"v"  # nothing lost
        assert held.get("kept") == b"v"  # a connection logged in before the edit goes on
        assert r.auth_file.read_text() == f"requirepass {new}\n"  # what the probes and a sidecar restart use
        log = process.log_path.read_text(errors="replace")
        in_log = old in log or new in log
        assert not in_log, "a password is in the sidecar's output"
    finally:
        process.signal_stop(signal.SIGTERM, timeout=5)


def test_the_apps_client_reads_the_password_file_at_each_new_connection(
    cache_pod: PodRedis, tmp_path: Path
) -> None:
    """demo_app's Redis client (make_client with REDIS_PASSWORD_FILE): its URL's password is ignored; each new
    connection reads the client pod's own copy of the file, which the kubelet updates later than Redis' own."""
    from demo_app.redispool import make_client

    client_file = tmp_path / "client-password"
    mount_password(client_file, cache_pod.password)
    process = sidecar(cache_pod, "cache_pod", tmp_path)

    async def ping_on_a_new_connection(client: Any) -> bool:
        await client.connection_pool.disconnect()
        return bool(await client.ping())

    async def drill() -> None:
        url = f"redis://:{secrets.token_hex(8)}@127.0.0.1:{cache_pod.port}/0"  # a stale password: not used
        client = make_client("cache", url, 2, 2.0, password_file=str(client_file))
        try:
            assert await ping_on_a_new_connection(client)
            new = secrets.token_hex(24)
            mount_password(cache_pod.password_file, new)  # the Redis pod sees the edit first
            wait_for(lambda: takes(cache_pod, new), 15, "Redis to take the new password", interval=0.1)
            assert await ping_on_a_new_connection(client)  # still on the old file: the grace lets it in
            mount_password(client_file, new)  # then the client's pod
            wait_for(lambda: not takes(cache_pod, cache_pod.password), GRACE + 15, "the old password dropped",
                     interval=0.1)
            assert await ping_on_a_new_connection(client)  # the new file, read by the new connection
        finally:
            await client.aclose()

    try:
        asyncio.run(drill())
    finally:
        process.signal_stop(signal.SIGTERM, timeout=5)


def redis_up(exporter: RedisExporter) -> float:
    return next(float(line.split()[-1]) for line in exporter.metrics_text().splitlines()
                if line.startswith("redis_up "))


def test_the_cache_exporter_follows_an_edit_at_its_next_reload(cache_pod: PodRedis, tmp_path: Path) -> None:
    """redis_exporter as the pod runs it: REDIS_PASSWORD of its start, and the map the reloader writes, read
    again at each /-/reload (what its liveness probe calls)."""
    process = sidecar(cache_pod, "cache_pod", tmp_path)
    passwords = cache_pod.auth_file.parent / cache.EXPORTER_PASSWORDS
    exporter = RedisExporter(f"127.0.0.1:{cache_pod.port}", tmp_path, password=cache_pod.password,
                             password_file=passwords)
    try:
        wait_for(passwords.exists, 10, "the reloader to write the exporter's map", interval=0.1)
        exporter.start()
        reload_url = f"http://{exporter.address}/-/reload"
        mount_password(cache_pod.password_file, secrets.token_hex(24))
        wait_for(lambda: not takes(cache_pod, cache_pod.password), GRACE + 15, "the old password dropped",
                 interval=0.1)
        assert redis_up(exporter) == 0  # its start's password no longer logs in: the liveness reload is needed
        assert httpx.get(reload_url, timeout=5).status_code == 200
        assert redis_up(exporter) == 1
        assert oct(passwords.stat().st_mode & 0o777) == oct(0o600)
    finally:
        exporter.stop()
        process.signal_stop(signal.SIGTERM, timeout=5)
