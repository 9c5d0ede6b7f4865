"""Cooperative preemption: time slices, safepoints, gvthread.compile, priorities."""
import threading
import time
import traceback

import pytest

import gvthread
from gvthread import Runtime, State

from gvtest_support import BUSY_SRC


def compiled_busy():
    ns = {"time": time}
    exec(gvthread.compile(BUSY_SRC, "<busy>", "exec"), ns)
    return ns["busy"]


def plain_busy():
    ns = {"time": time}
    exec(compile(BUSY_SRC, "<busy>", "exec"), ns)
    return ns["busy"]


def ticker(lateness, start, ticks=30, period=0.01):
    nxt = start + period  # the schedule starts at spawn, not when the ticker first runs
    for _ in range(ticks):
        gvthread.sleep_until(nxt)
        lateness.append(time.monotonic() - nxt)
        nxt += period


def run_pair(busy, busy_seconds=0.45, ticker_prio="normal", **rt_kw):
    with Runtime(workers=1, **rt_kw) as rt:
        lat = []
        b = rt.spawn(busy, busy_seconds)
        t = rt.spawn(ticker, lat, time.monotonic(), priority=ticker_prio)
        t.join(timeout=30)
        b.join(timeout=30)
        return sorted(lat), rt.stats()


def test_compiled_busy_loop_is_preempted_without_explicit_safepoints():
    lat, st = run_pair(compiled_busy())
    assert len(lat) == 30
    assert lat[-1] < 0.05, lat[-5:]          # time slice 10 ms + slack for a loaded box
    assert st["preempt_requests"] >= 1 and st["coop_preemptions"] >= 1


def test_uninstrumented_busy_loop_starves_the_ticker_without_spares():
    # the control: the same loop compiled normally has no safepoint, and with no spare
    # thread to hand the worker to, the ticker waits for the whole loop
    # (monitor_safepoints=False: on 3.12+ the loop would get sys.monitoring safepoints)
    lat, st = run_pair(plain_busy(), busy_seconds=0.3, max_spare_threads=0,
                       monitor_safepoints=False)
    assert lat[-1] >= 0.2                    # the first tick waited for the whole loop
    assert st["coop_preemptions"] == 0 and st["preempt_requests"] >= 1
    assert st["handoffs"] == 0


def test_uninstrumented_busy_loop_is_handed_off():
    # with a spare thread, the worker's queue moves to it after slice + grace; the loop
    # and the ticker then share the GIL (the loop's eval loop drops it every 5 ms)
    lat, st = run_pair(plain_busy(), busy_seconds=0.4, monitor_safepoints=False)
    assert st["handoffs"] >= 1 and st["overruns"] >= 1
    assert len(lat) == 30 and lat[-1] < 0.1, lat[-5:]


def test_explicit_safepoints_preempt():
    def busy(seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            gvthread.safepoint()

    lat, st = run_pair(busy)
    assert len(lat) == 30 and lat[-1] < 0.05
    assert st["coop_preemptions"] >= 1


def test_high_priority_ticker_preempts_at_once():
    lat, st = run_pair(compiled_busy(), ticker_prio="high")
    assert len(lat) == 30
    assert lat[len(lat) // 2] < 0.005        # median well under a time slice
    assert st["priority_preempts"] >= 1


def test_no_preemption_when_time_slice_is_none():
    lat, st = run_pair(compiled_busy(), busy_seconds=0.2, time_slice=None)
    assert st["preempt_requests"] == 0 and st["coop_preemptions"] == 0
    assert lat[-1] >= 0.1


def test_grace_period_flag_first_force_after():
    # A GVThread blocked in an unpatched time.sleep reaches no safepoint: it is flagged
    # after its slice, and counted as an overrun only once the grace period passed too.
    def stuck(seconds):
        time.sleep(seconds)

    with Runtime(workers=1, time_slice=0.01, grace_period=0.2) as rt:
        rt.spawn(stuck, 0.1).join(timeout=10)        # 10 ms slice + 200 ms grace > 100 ms
        st = rt.stats()
        assert st["preempt_requests"] >= 1 and st["overruns"] == 0
        rt.spawn(stuck, 0.4).join(timeout=10)
        assert rt.stats()["overruns"] >= 1


def test_snapshot_reports_cpu_time_and_preemptions():
    with Runtime(workers=1) as rt:
        busy = compiled_busy()
        h = rt.spawn(busy, 0.1)
        other = rt.spawn(busy, 0.1)
        time.sleep(0.05)
        rows = {r.id: r for r in rt.snapshot()}
        h.join(timeout=10)
        other.join(timeout=10)
        assert rows[h.id].cpu_time > 0.0
        assert rows[h.id].state in (State.RUNNING, State.PREEMPTED, State.READY)
        assert rt.stats()["coop_preemptions"] >= 2


def test_cpu_time_grows_for_a_gvthread_that_never_yields():
    """No safepoint anywhere (plain code, monitor safepoints off): the GVThread is only
    handed off, never switched out, and its running slice is what snapshot() shows."""
    stop = threading.Event()

    def spin():
        n = 0
        while not stop.is_set():
            n += 1
        return n

    with Runtime(workers=1, monitor_safepoints=False) as rt:
        h = rt.spawn(spin)
        try:
            seen = []
            for _ in range(3):
                time.sleep(0.3)
                (row,) = [r for r in rt.snapshot() if r.id == h.id]
                seen.append((row.state, row.switches, row.cpu_time))
        finally:
            stop.set()
        assert h.join(timeout=10) > 0
    assert {st for st, _, _ in seen} == {State.RUNNING}, seen
    assert len({sw for _, sw, _ in seen}) == 1, seen  # never switched out meanwhile
    cpus = [c for _, _, c in seen]
    assert cpus[0] > 0.1 and cpus[0] < cpus[1] < cpus[2], seen


def test_compile_keeps_line_numbers_and_docstrings():
    src = 'def f():\n    """doc"""\n    for i in range(3):\n        x = i\n    raise ValueError("boom")\n'
    ns = {}
    exec(gvthread.compile(src, "<tb>", "exec"), ns)
    assert ns["f"].__doc__ == "doc"
    with pytest.raises(ValueError) as ei:
        ns["f"]()
    assert traceback.extract_tb(ei.tb)[-1].lineno == 5
    # eval and single modes, and an AST input
    assert eval(gvthread.compile("sum(i for i in range(4))", "<e>", "eval")) == 6
    import ast
    code = gvthread.compile(ast.parse("y = [i for i in range(3)]"), "<a>", "exec")
    g = {}
    exec(code, g)
    assert g["y"] == [0, 1, 2]
    with pytest.raises(SyntaxError):
        gvthread.compile("def (:", "<bad>", "exec")


def test_bad_time_slice():
    with pytest.raises(ValueError):
        Runtime(time_slice=0)
    with pytest.raises(ValueError):
        Runtime(grace_period=-1)
