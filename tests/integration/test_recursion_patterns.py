"""A dozen recursion shapes (through sorted, map, repr, __getattr__, json, pickle,
deepcopy, lru_cache, generators, cmp_to_key, __eq__) on small and large stacks.

Each runs in a subprocess: a GVThread that overflows its C stack kills the process,
which shows here as a failed test with the signal, not as a dead pytest.  With the
recursion bound set too loosely, half of these crashed on some stack size.
"""
import subprocess
import sys

import pytest

from gvtest_support import SCRIPTS_DIR, describe, run_script


@pytest.mark.parametrize("kib", [128, 256, 1024])
def test_every_shape_raises_recursionerror(kib):
    p = subprocess.run([sys.executable, "-X", "faulthandler",
                        f"{SCRIPTS_DIR}/recursion_patterns.py", str(kib)],
                       capture_output=True, text=True, timeout=170)
    assert p.returncode == 0, (
        f"stack {kib} KiB: exit {p.returncode}\n{p.stdout}\n{p.stderr[-3000:]}")
    assert p.stdout.count("RecursionError") == 13, p.stdout


def test_recursion_limit_changes_keep_gvthreads_bounded():
    """sys.setrecursionlimit raised or lowered, inside a GVThread or outside while
    GVThreads are parked: C recursion still ends in RecursionError, modest recursion
    still works, and a limit below the caller's real depth is refused as on a thread."""
    res = run_script("recursion_limit_changes.py", timeout=170)
    assert res.returncode == 0, describe(res)
    assert "bad: []" in res.stdout, res.stdout
