"""Real code in a GVThread with the default stack gives what it gives on an ordinary
thread: imports of numpy, pandas and matplotlib, deep data through the C-heavy stdlib,
recursion to the default limit, and two modules of CPython's own test suite.

Each case runs in a fresh interpreter, so that its imports happen inside the GVThread
(an import done earlier in the test process would hide a too-shallow stack)."""
import pytest

from gvtest_support import describe, run_script


def _result(case, where):
    res = run_script("real_code.py", case, where, timeout=280)
    assert res.returncode == 0, describe(res)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
    assert len(lines) == 1, describe(res)
    return lines[0][len("RESULT "):]


@pytest.mark.parametrize("case, expect", [
    ("imports", "66 21 1 3.30"),
    ("recursion", "950"),
    ("deep_data", "deepcopy500:ok"),
    ("stdlib_suite", "failures=0 errors=0"),
])
def test_same_result_as_on_a_thread(case, expect):
    gv = _result(case, "gv")
    assert expect in gv
    assert "RecursionError" not in gv
    assert gv == _result(case, "thread")
