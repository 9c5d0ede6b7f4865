"""Safepoints armed in code that gvthread.compile did not build: an imported module.

On 3.11 the arming thread installs a C trace function on the late GVThread's own tstate
(native/pytrace.c); on 3.12+ sys.monitoring events are armed in its code
(native/pymonitor.c, test_monitor.py).  The loops here live in a module written to a temp
file and imported the ordinary way, as a user's library would be.  The 3.11-only tests
check what is particular to the trace function: a user's trace or profile function is
never replaced, and the loop runs at full speed again once the safepoint has run.
"""
import importlib
import statistics
import sys
import time
import uuid

import pytest

import gvthread
from gvthread import Runtime

from gvtest_support import BUSY_SRC, JOIN_TIMEOUT, crashed, describe, run_script

PY311 = sys.version_info < (3, 12)
only_311 = pytest.mark.skipif(not PY311, reason="3.11's trace safepoints (3.12+: sys.monitoring)")

MOD_SRC = "import time\n" + BUSY_SRC + '''
def spin_forever():
    n = 0
    while True:
        n += 1

def genexpr_forever():
    # sum() is C: only the generator expression's resumes run bytecode
    return sum(1 for _ in iter(int, 1))

def count(iterations):
    n = 0
    while n < iterations:
        n += 1
    return n
'''


@pytest.fixture
def mod(tmp_path, monkeypatch):
    name = f"gv_plain_{uuid.uuid4().hex[:12]}"
    (tmp_path / f"{name}.py").write_text(MOD_SRC)
    monkeypatch.syspath_prepend(str(tmp_path))
    m = importlib.import_module(name)
    yield m
    sys.modules.pop(name, None)


def ticker(lateness, start, ticks=30, period=0.01):
    nxt = start + period
    for _ in range(ticks):
        gvthread.sleep_until(nxt)
        lateness.append(time.monotonic() - nxt)
        nxt += period


def arms(st):
    return st["trace_arms"] if PY311 else None


@pytest.mark.parametrize("fn", ["spin_forever", "genexpr_forever"])
def test_cancel_stops_an_imported_busy_loop(mod, fn):
    with Runtime(workers=1, max_spare_threads=0) as rt:
        h = rt.spawn(getattr(mod, fn))
        time.sleep(0.05)
        t0 = time.monotonic()
        assert h.cancel()
        with pytest.raises(gvthread.Cancelled):
            h.join(timeout=JOIN_TIMEOUT)
        took = time.monotonic() - t0
        st = rt.stats()
    print(f"cancel of {fn}: joined after {took * 1e3:.1f} ms")
    assert h.state == gvthread.State.CANCELLED
    assert took < 2.0
    if PY311:
        assert st["trace_arms"] >= 1 and st["handoffs"] == 0, st


def test_timeout_stops_an_imported_busy_loop(mod):
    def body():
        t0 = time.monotonic()
        try:
            with gvthread.timeout(0.05):
                mod.spin_forever()
        except TimeoutError:
            return time.monotonic() - t0
        return None

    with Runtime(workers=1, max_spare_threads=0) as rt:
        took = [rt.spawn(body).join(timeout=JOIN_TIMEOUT) for _ in range(5)]
    assert None not in took, took
    med = statistics.median(took)
    print(f"timeout(0.05) around an imported loop fired after {med * 1e3:.1f} ms (median of 5)")
    assert 0.05 <= med < 0.5, took


def test_imported_busy_loop_is_preempted_on_one_worker(mod):
    with Runtime(workers=1, max_spare_threads=0) as rt:  # no spare: handoff cannot help
        lat = []
        b = rt.spawn(mod.busy, 0.45)
        t = rt.spawn(ticker, lat, time.monotonic())
        t.join(timeout=JOIN_TIMEOUT)
        b.join(timeout=JOIN_TIMEOUT)
        st = rt.stats()
    assert len(lat) == 30
    # slice 10 ms + grace 10 ms + up to a GIL switch interval (5 ms); without arming the
    # first tick would wait for the whole 0.45 s loop
    assert sorted(lat)[len(lat) // 2] < 0.1, lat
    assert st["coop_preemptions"] >= 3 and st["handoffs"] == 0, st
    if PY311:
        assert st["trace_arms"] >= 3, st


@only_311
@pytest.mark.parametrize("kind", ["settrace", "setprofile"])
def test_user_trace_function_is_left_intact(mod, kind):
    # A debugger's, coverage's or a profiler's hook on the GVThread's tstate: the arming
    # thread refuses, so the loop is only handed off (the ticker moves to a spare thread).
    install = getattr(sys, kind)
    get = sys.gettrace if kind == "settrace" else sys.getprofile

    def traced(seconds):
        calls = [0]

        def hook(frame, event, arg):
            calls[0] += 1
            return hook
        install(hook)
        try:
            mod.busy(seconds)
            still = get() is hook
        finally:
            install(None)
        return still, calls[0]

    with Runtime(workers=1) as rt:
        lat = []
        b = rt.spawn(traced, 0.3)
        t = rt.spawn(ticker, lat, time.monotonic(), ticks=10)
        t.join(timeout=JOIN_TIMEOUT)
        still, calls = b.join(timeout=JOIN_TIMEOUT)
        st = rt.stats()
    assert still, f"{kind}: the user's function was replaced"
    assert calls > 1000, calls
    assert len(lat) == 10
    assert st["trace_arms"] == 0 and st["trace_arm_requests"] >= 1, st
    assert st["handoffs"] >= 1, st


@only_311
def test_loop_runs_at_full_speed_after_the_safepoint(mod):
    # Armed once (a cancel that the loop survives by catching it), then measured: the
    # trace function removed itself at its first call, so no line event is paid.
    n = 3_000_000

    def timed():
        t0 = time.perf_counter()
        mod.count(n)
        return time.perf_counter() - t0

    def body(box):
        base = min(timed(), timed(), timed())
        box.append("spinning")
        try:
            mod.spin_forever()
        except gvthread.Cancelled:
            pass
        after = min(timed(), timed(), timed())
        box.append((base, after, sys.gettrace()))

    with Runtime(workers=1, max_spare_threads=0) as rt:
        box = []
        h = rt.spawn(body, box)
        deadline = time.monotonic() + JOIN_TIMEOUT
        while not box and time.monotonic() < deadline:
            time.sleep(0.005)
        assert h.cancel()
        h.join(timeout=JOIN_TIMEOUT)
        st = rt.stats()
    base, after, tr = box[1]
    print(f"count({n}): {base * 1e3:.1f} ms before arming, {after * 1e3:.1f} ms after")
    assert st["trace_arms"] >= 1, st
    assert tr is None
    assert after < base * 1.25, (base, after)


@only_311
def test_no_arming_thread_without_a_time_slice(mod):
    with Runtime(workers=1, time_slice=None) as rt:
        h = rt.spawn(mod.busy, 0.05)
        h.join(timeout=JOIN_TIMEOUT)
        assert rt.stats()["trace_arm_requests"] == 0


@pytest.mark.parametrize("mode", ["spawns", "shutdowns", "exit"])
def test_arming_under_churn_and_at_shutdown(mode):
    res = run_script("trace_arm_stress.py", mode, timeout=60)
    assert not crashed(res) and res.returncode == 0, describe(res)
    assert res.stdout.startswith("ok"), describe(res)
