"""`python -m scaledapp` start-up pieces that do not need a cluster."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UID_WITHOUT_PASSWD_ENTRY = 54321


def test_a_uid_without_passwd_entry_still_gets_a_user_name() -> None:
    """Runs the check as another uid (root and util-linux's setpriv, as `make test` has)."""
    # The image runs as 10001 with no passwd entry; kopf asks getpass for a user name to build its identity.
    code = ("import getpass, scaledapp.__main__ as m; m.ensure_user_name(); print(getpass.getuser())")
    env = {"PATH": os.environ["PATH"]}  # scaledapp is installed into the venv (`make venv`): no PYTHONPATH
    proc = subprocess.run(["setpriv", f"--reuid={UID_WITHOUT_PASSWD_ENTRY}", f"--regid={UID_WITHOUT_PASSWD_ENTRY}",
                           "--clear-groups", sys.executable, "-c", code],
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"uid-{UID_WITHOUT_PASSWD_ENTRY}"
