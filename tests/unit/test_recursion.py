"""Unbounded recursion in a GVThread ends in RecursionError through join, never a crash.

The subprocess tests come first: if the implementation overflows a GVThread's C stack
they fail cleanly instead of taking pytest down with them.
"""

import sys
import traceback

import pytest

from gvthread import Runtime
from gvtest_support import JOIN_TIMEOUT, crashed, describe, run_script

KIB = 1024


_probes = {}


def _probe(case, stack_kib):
    key = (case, stack_kib)
    if key not in _probes:
        _probes[key] = run_script("recursion.py", case, stack_kib, timeout=100)
    return _probes[key]


def _skip_if_it_crashes(case, stack_kib=256):
    """The in-process twin of a case runs only if the subprocess survived it: a crash
    there is already a failure of test_recursion_in_subprocess, and here it would kill
    the whole pytest run."""
    res = _probe(case, stack_kib)
    if crashed(res) or res.timed_out:
        pytest.skip(f"recursion case {case!r} (stack {stack_kib} KiB) crashes or hangs the "
                    "interpreter: see test_recursion_in_subprocess")


@pytest.mark.parametrize("case, stack_kib", [
    ("pure", 256), ("sorted", 256), ("repr", 256),
    ("pure", 64), ("sorted", 64), ("repr", 64),
    ("default-runtime", 256),
])
def test_recursion_in_subprocess(case, stack_kib):
    res = _probe(case, stack_kib)
    assert not crashed(res), "CRASH\n" + describe(res)
    assert not res.timed_out, describe(res)
    assert res.returncode == 0, describe(res)
    assert f"OK {case}" in res.stdout, describe(res)


# --------------------------------------------------------------------------- in-process

def _f():
    return _f()


def _g(n):
    return sorted([1, 2], key=lambda x: _g(n + 1))


def test_pure_python_recursion_error(rt):
    _skip_if_it_crashes("pure")
    limit = sys.getrecursionlimit()
    with pytest.raises(RecursionError) as ei:
        rt.spawn(_f).join(timeout=JOIN_TIMEOUT)
    names = [fs.name for fs in traceback.extract_tb(ei.value.__traceback__)]
    assert "_f" in names
    assert sys.getrecursionlimit() == limit


def test_sorted_key_recursion_error(rt):
    _skip_if_it_crashes("sorted")
    with pytest.raises(RecursionError) as ei:
        rt.spawn(_g, 0).join(timeout=JOIN_TIMEOUT)
    names = [fs.name for fs in traceback.extract_tb(ei.value.__traceback__)]
    assert "_g" in names


def test_sorted_key_recursion_error_small_stack():
    _skip_if_it_crashes("sorted", 64)
    with Runtime(workers=1, stack_size=64 * KIB) as r:
        with pytest.raises(RecursionError):
            r.spawn(_g, 0).join(timeout=JOIN_TIMEOUT)
        assert r.spawn(lambda: "alive").join(timeout=JOIN_TIMEOUT) == "alive"


def _depth(n):
    return 0 if n == 0 else 1 + _depth(n - 1)


def _sorted_depth(n):
    if n == 0:
        return 0
    out = []
    sorted([1], key=lambda x: out.append(_sorted_depth(n - 1)) or 0)
    return out[0] + 1


def test_modest_recursion_still_works(rt):
    # Bounding recursion must not make ordinary code fail: 50 Python levels and 10 levels
    # through sorted(key=...) fit easily in the default 256 KiB stack.
    assert rt.spawn(_depth, 50).join(timeout=JOIN_TIMEOUT) == 50
    assert rt.spawn(_sorted_depth, 10).join(timeout=JOIN_TIMEOUT) == 10


def test_main_thread_recursion_unaffected(rt):
    _skip_if_it_crashes("pure")
    with pytest.raises(RecursionError):
        rt.spawn(_f).join(timeout=JOIN_TIMEOUT)
    # the OS main thread still has the interpreter's own limit
    assert _depth(sys.getrecursionlimit() - 100) == sys.getrecursionlimit() - 100
