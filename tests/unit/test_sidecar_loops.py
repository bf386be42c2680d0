"""A sidecar's shell loop ends at once on SIGTERM. Its sh is the container's PID 1, which acted on the signal only
after its foreground `sleep`: a deleted pod waited a loop period per sidecar before its replacement could start
(the primary's: writes down 6.8 s -> 11.6 s median in bench.failover)."""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

from scaledapp import api
from scaledapp.resources import build_children, cache, pg_sidecars
from scaledapp.resources.common import SIDECAR_TRAP
from tests.support.wait import wait_for


def loop_scripts() -> dict[str, str]:
    """Every container of every child that runs a shell loop: name -> its script."""
    out: dict[str, str] = {}
    for child in build_children("shop", "ns", api.parse_spec({})):
        template = ((child.get("spec") or {}).get("template") or {}).get("spec") or {}
        for container in template.get("containers") or []:
            command = container.get("command") or []
            if command[:2] == ["sh", "-c"] and "while true" in command[2]:
                out[f"{child['metadata']['name']}/{container['name']}"] = command[2]
    return out


def test_every_sidecar_loop_traps_term_and_waits_interruptibly() -> None:
    scripts = loop_scripts()
    assert len(scripts) >= 4, scripts.keys()  # the cache's and queue's reloaders, pgpass-writer, password-sync
    for name, script in scripts.items():
        assert SIDECAR_TRAP in script, name
        assert "& wait $!" in script, name
        assert not re.search(r"^\s*sleep \S+\s*$", script, flags=re.MULTILINE), name  # no foreground sleep


def test_a_sidecar_loop_exits_on_term_before_its_period_ends(tmp_path: Path) -> None:
    """Run with a one-hour period: only the trap can end it within the deadline."""
    for script in (cache.password_reloader_script(auth_dir=str(tmp_path), password_file=str(tmp_path / "none"),
                                                  period=3600),
                   pg_sidecars.pgpass_script(password_file=str(tmp_path / "none"), pgpass_dir=str(tmp_path),
                                          period=3600)):
        proc = subprocess.Popen(["sh", "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            # Once its `sleep 3600` runs, the loop is in its wait (the trap is set before the loop starts).
            waiting = ["pgrep", "-P", str(proc.pid), "sleep"]
            wait_for(lambda cmd=waiting: subprocess.run(cmd, capture_output=True, check=False).returncode == 0, 10,
                     "the loop waiting", interval=0.05)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        finally:
            proc.kill()
