"""Thread-deep stacks: the default slot, stacks of their own (spawn(stack_size=)), and
deep pages given back at a park and at the exit."""

import gc
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import gvthread
from gvthread import Runtime, _core
from gvtest_support import JOIN_TIMEOUT, rss_bytes, wait_until

KIB = 1024
MIB = 1024 * KIB


def _rec(n):
    return 0 if n == 0 else 1 + _rec(n - 1)


def _c_deep(n):
    """C recursion: each level is a sorted() call (~5 KB of C stack here)."""
    return 0 if n == 0 else sorted([n], key=lambda v: _c_deep(n - 1))[0] and n


def test_default_stack_holds_the_default_recursion_limit(rt):
    assert rt.stack_size == 8 * MIB
    assert rt.spawn(_rec, 950).join(timeout=JOIN_TIMEOUT) == 950


def test_raised_recursion_limit_on_a_large_stack(rt):
    def body():
        old = sys.getrecursionlimit()
        sys.setrecursionlimit(5000)
        try:
            return _rec(4000)
        finally:
            sys.setrecursionlimit(old)
    assert rt.spawn(body, stack_size=64 * MIB).join(timeout=JOIN_TIMEOUT) == 4000
    # Unmapped once the worker has switched off it, which may be just after the joiner woke.
    assert gvthread_wait_own(rt, 0)


def test_own_stack_runs_and_is_unmapped(rt):
    ev = threading.Event()
    hs = [rt.spawn(ev.wait, 30, stack_size=s) for s in (64 * KIB, 1 * MIB, 32 * MIB)]
    assert gvthread_wait_own(rt, 3)
    ev.set()
    assert [h.join(timeout=JOIN_TIMEOUT) for h in hs] == [True] * 3
    assert gvthread_wait_own(rt, 0)


def gvthread_wait_own(rt, n):
    return wait_until(lambda: rt.stats()["own_stacks"] == n)


@pytest.mark.parametrize("size, exc", [
    (4096, ValueError), (64 * KIB + 1, ValueError), (-1, ValueError),
    (2 ** 40, ValueError), ("8M", TypeError), (True, TypeError), (1.5, TypeError),
])
def test_bad_stack_size(rt, size, exc):
    before = rt.stats()["spawned"]
    with pytest.raises(exc, match="stack_size"):
        rt.spawn(_rec, 1, stack_size=size)
    assert rt.stats()["spawned"] == before  # nothing was started


def test_stack_size_none_and_the_default_use_a_slot(rt):
    assert rt.spawn(_rec, 10, stack_size=None).join(timeout=JOIN_TIMEOUT) == 10
    assert rt.spawn(_rec, 10, stack_size=rt.stack_size).join(timeout=JOIN_TIMEOUT) == 10
    assert rt.stats()["own_stacks"] == 0


def test_module_spawn_and_scope_take_stack_size():
    assert gvthread.spawn(_rec, 20, stack_size=1 * MIB).join(timeout=JOIN_TIMEOUT) == 20
    with gvthread.scope() as s:
        h = s.spawn(_rec, 30, stack_size=1 * MIB)
    assert h.join() == 30


def test_deep_pages_go_back_at_park_and_exit(rt):
    """A GVThread that went ~2 MB deep in C and came back gives those pages back when it
    parks, and again at the exit."""
    ev = threading.Event()
    gate = gvthread.Event()

    def body():
        _c_deep(300)
        ev.set()
        gate.wait()
        _c_deep(300)
        return True

    trims = rt.stats()["stack_trims"]
    h = rt.spawn(body)
    try:
        assert ev.wait(JOIN_TIMEOUT)
        wait_until(lambda: rt.stats()["stack_trims"] != trims)
        assert rt.stats()["stack_trims"] == trims + 1  # at the park
    finally:
        gate.set()  # a failed check must not leave the fixture waiting on body
    assert h.join(timeout=JOIN_TIMEOUT) is True
    wait_until(lambda: rt.stats()["stack_trims"] != trims + 1)
    assert rt.stats()["stack_trims"] == trims + 2  # at the exit


def test_deep_python_frames_go_back_at_park(rt):
    """900 plain Python frames fill the in-slot data-stack chunk, not the C stack; a
    GVThread parked after such a call keeps about what a shallow one does (4-5 KB here,
    21 KB before the chunk's pages went back).  RSS, not time: the bound is wide."""
    n = 2000
    gate = gvthread.Event()
    started = [0]

    def body():
        _rec(900)
        started[0] += 1
        gate.wait()

    gc.collect()
    trims, before = rt.stats()["stack_trims"], rss_bytes()
    hs = [rt.spawn(body) for _ in range(n)]
    try:
        assert wait_until(lambda: started[0] == n, timeout=30)
        time.sleep(0.05)  # the last park's give-back runs on the worker
        per_task = (rss_bytes() - before) / n
        assert rt.stats()["stack_trims"] - trims >= n - 1
        if not _core.ASAN:  # ASan's shadow and quarantine are RSS too
            assert per_task < 12 * KIB, per_task
    finally:
        gate.set()
    for h in hs:
        h.join(timeout=JOIN_TIMEOUT)


def test_shallow_gvthreads_give_nothing_back(rt):
    trims = rt.stats()["stack_trims"]
    ev = gvthread.Event()
    hs = [rt.spawn(ev.wait) for _ in range(200)]
    rt.spawn(ev.set).join(timeout=JOIN_TIMEOUT)
    for h in hs:
        h.join(timeout=JOIN_TIMEOUT)
    assert rt.stats()["stack_trims"] == trims


def _child(code, timeout=120):
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("how", ["spawn", "runtime"])
def test_64k_stack_recursing_forever_gets_recursion_error(how):
    """C recursion (sorted with a key) on the smallest stack: RecursionError, the process
    lives.  In a child process, so that a crash fails this test alone."""
    r = _child(f"""
        import gvthread
        def f(n):
            return sorted([1, 2], key=lambda x: f(n + 1))
        def g():
            return g()
        how = {how!r}
        with gvthread.Runtime(workers=1, **({{"stack_size": 65536}} if how == "runtime" else {{}})) as rt:
            kw = {{"stack_size": 65536}} if how == "spawn" else {{}}
            for fn in (f, g, f):
                try:
                    rt.spawn(fn, *([0] if fn is f else []), **kw).join(timeout=60)
                except RecursionError:
                    print("RecursionError")
            print("alive", rt.spawn(sum, [1, 2]).join(timeout=60))
        """)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == ["RecursionError"] * 3 + ["alive", "3"]
