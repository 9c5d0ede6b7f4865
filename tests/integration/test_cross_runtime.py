"""Runtime lifetimes that once crashed: a wakeup into a runtime shut down without
waiting, and more runtimes than the arena hook could once track (see the script)."""
import subprocess
import sys

import pytest

from gvtest_support import SCRIPTS_DIR


@pytest.mark.parametrize("scenario", ["join-after-shutdown", "many-runtimes"])
def test_scenario(scenario):
    p = subprocess.run([sys.executable, "-X", "faulthandler",
                        f"{SCRIPTS_DIR}/cross_runtime.py", scenario],
                       capture_output=True, text=True, timeout=170)
    assert p.returncode == 0 and "ok" in p.stdout, (
        f"exit {p.returncode}\n{p.stdout}\n{p.stderr[-3000:]}")
