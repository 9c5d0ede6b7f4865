"""CancellationToken and Handle.cancel(): propagation, wakeups, finally blocks, states."""
import gc
import sys
import threading
import time

import pytest

import gvthread
from gvthread import CancellationToken, Runtime, State
from gvthread import _core

from gvtest_support import JOIN_TIMEOUT, wait_until

Cancelled = gvthread.Cancelled


def _blocked(rt, h, timeout=10.0):
    return wait_until(lambda: h.state == State.BLOCKED, timeout)


# ---------------------------------------------------------------- the token tree
def test_cancelled_is_a_base_exception():
    assert issubclass(Cancelled, BaseException)
    assert not issubclass(Cancelled, Exception)


def test_parent_cancels_children_recursively():
    root = CancellationToken()
    a, b = root.child(), root.child()
    a1 = a.child()
    a11 = a1.child()
    assert not any(t.cancelled for t in (root, a, b, a1, a11))
    assert root.cancel() is True
    assert all(t.cancelled for t in (root, a, b, a1, a11))
    assert root.cancel() is False


def test_child_never_cancels_parent():
    root = CancellationToken()
    a = root.child()
    a1 = a.child()
    sibling = root.child()
    assert a1.cancel()
    assert a1.cancelled and not a.cancelled and not root.cancelled
    assert a.cancel()
    assert a.cancelled and not root.cancelled and not sibling.cancelled


def test_child_of_cancelled_token_is_cancelled():
    root = CancellationToken()
    root.cancel()
    assert root.child().cancelled
    assert root.child().child().cancelled


def test_children_are_held_weakly():
    root = CancellationToken()
    kept = root.child()
    for _ in range(100):
        root.child().child()
    gc.collect()
    assert len(root._children) == 1
    root.cancel()
    assert kept.cancelled


def test_deep_chain_cancelled_without_recursion_in_a_gvthread(rt):
    # A GVThread's recursion allowance is small: cancel() must not recurse per level.
    def body():
        root = CancellationToken()
        t = root
        chain = []
        for _ in range(5000):
            t = t.child()
            chain.append(t)
        root.cancel()
        return all(c.cancelled for c in chain)
    assert rt.spawn(body).join(JOIN_TIMEOUT) is True


def test_raise_if_cancelled():
    t = CancellationToken()
    t.raise_if_cancelled()
    t.cancel()
    with pytest.raises(Cancelled):
        t.raise_if_cancelled()


# ---------------------------------------------------------------- callbacks
def test_on_cancel_runs_once_in_order_and_at_once_when_late():
    t = CancellationToken()
    c = t.child()
    seen = []
    t.on_cancel(lambda: seen.append("a"))
    reg = t.on_cancel(lambda: seen.append("gone"))
    c.on_cancel(lambda: seen.append("child"))
    t.on_cancel(lambda: seen.append("b"))
    assert reg.unregister() is True
    assert reg.unregister() is False
    t.cancel()
    t.cancel()
    assert seen == ["a", "b", "child"]
    t.on_cancel(lambda: seen.append("late"))
    assert seen[-1] == "late"


def test_callback_exception_goes_to_unraisablehook(monkeypatch):
    got = []
    monkeypatch.setattr(sys, "unraisablehook", got.append)
    t = CancellationToken()
    c = t.child()

    def bad():
        raise ValueError("boom")
    after = []
    t.on_cancel(bad)
    t.on_cancel(lambda: after.append(1))
    assert t.cancel() is True
    assert after == [1] and c.cancelled
    assert len(got) == 1 and isinstance(got[0].exc_value, ValueError)


def test_on_cancel_rejects_non_callable():
    with pytest.raises(TypeError):
        CancellationToken().on_cancel(42)


# ---------------------------------------------------------------- wait()
def test_wait_times_out_then_returns_true_once_cancelled():
    t = CancellationToken()
    t0 = time.monotonic()
    assert t.wait(0.05) is False
    assert time.monotonic() - t0 >= 0.04
    assert t.wait(0) is False
    t.cancel()
    assert t.wait() is True and t.wait(0) is True


def test_wait_in_gvthreads_woken_by_parent_cancel_from_thread(rt):
    root = CancellationToken()
    kids = [root.child() for _ in range(10)]
    hs = [rt.spawn(k.wait, 30) for k in kids]
    assert wait_until(lambda: all(h.state == State.BLOCKED for h in hs))
    t0 = time.monotonic()
    root.cancel()
    assert [h.join(JOIN_TIMEOUT) for h in hs] == [True] * 10
    assert time.monotonic() - t0 < 2.0


def test_wait_in_thread_woken_by_cancel_from_gvthread(rt):
    t = CancellationToken()
    out = []
    th = threading.Thread(target=lambda: out.append(t.wait(30)))
    th.start()
    time.sleep(0.05)
    rt.spawn(t.cancel).join(JOIN_TIMEOUT)
    th.join(10)
    assert out == [True]


def test_wait_with_timeout_in_gvthread(rt):
    t = CancellationToken()

    def body():
        t0 = time.monotonic()
        r = t.wait(0.05)
        return r, time.monotonic() - t0
    r, dt = rt.spawn(body).join(JOIN_TIMEOUT)
    assert r is False and 0.04 <= dt < 2.0


# ---------------------------------------------------------------- attach()
def test_attach_cancels_the_gvthread(rt):
    tok = CancellationToken()
    child = tok.child()
    ran_finally = []

    def body():
        try:
            gvthread.sleep(30)
        finally:
            ran_finally.append(True)
    h = rt.spawn(body)
    reg = child.attach(h)
    assert _blocked(rt, h)
    tok.cancel()
    with pytest.raises(Cancelled):
        h.join(JOIN_TIMEOUT)
    assert ran_finally == [True]
    assert h.state == State.CANCELLED
    assert reg.unregister() is False  # already ran


def test_attach_after_cancel_cancels_at_once(rt):
    tok = CancellationToken()
    tok.cancel()
    h = rt.spawn(gvthread.sleep, 30)
    tok.attach(h)
    with pytest.raises(Cancelled):
        h.join(JOIN_TIMEOUT)


def test_attach_prunes_finished_handles(rt):
    tok = CancellationToken()
    for _ in range(300):
        h = rt.spawn(int)
        h.join(JOIN_TIMEOUT)
        tok.attach(h)
    assert len(tok._callbacks) < 200
    tok.cancel()


# ---------------------------------------------------------------- Handle.cancel()
def test_cancel_parked_in_sleep_runs_finally(rt):
    log = []

    def body():
        try:
            log.append("start")
            gvthread.sleep(30)
            log.append("woke")
        finally:
            log.append("finally")
    h = rt.spawn(body)
    assert _blocked(rt, h)
    t0 = time.monotonic()
    assert h.cancel() is True
    with pytest.raises(Cancelled):
        h.join(JOIN_TIMEOUT)
    assert time.monotonic() - t0 < 2.0
    assert log == ["start", "finally"]
    assert h.state == State.CANCELLED
    assert h.cancel() is False


def test_cancel_parked_in_join(rt):
    tok = CancellationToken()
    inner = rt.spawn(tok.wait, 30)
    log = []

    def body():
        try:
            inner.join()
        except Cancelled:
            log.append("cancelled")
            raise
    h = rt.spawn(body)
    assert _blocked(rt, h) and _blocked(rt, inner)
    h.cancel()
    with pytest.raises(Cancelled):
        h.join(JOIN_TIMEOUT)
    assert log == ["cancelled"]
    assert not inner.done()
    tok.cancel()
    assert inner.join(JOIN_TIMEOUT) is True


def test_cancel_parked_in_waitqueue_wait(rt):
    wq = _core.WaitQueue(kind=int(gvthread.WaitKind.OTHER), obj_id=_core.next_object_id())
    log = []

    def body():
        try:
            wq.wait(wq.seq, None)
        finally:
            log.append("finally")
    h = rt.spawn(body)
    assert wait_until(lambda: len(wq) == 1)
    h.cancel()
    with pytest.raises(Cancelled):
        h.join(JOIN_TIMEOUT)
    assert log == ["finally"] and len(wq) == 0
    assert h.state == State.CANCELLED


def test_cancel_before_first_run_never_runs(rt1, flag):
    from gvtest_support import spin_until
    ran = []
    blocker = rt1.spawn(spin_until, flag)  # keeps the only worker busy
    h = rt1.spawn(ran.append, 1)
    assert h.cancel() is True
    flag.set()
    blocker.join(JOIN_TIMEOUT)
    with pytest.raises(Cancelled):
        h.join(JOIN_TIMEOUT)
    assert ran == []
    assert h.state == State.CANCELLED


def test_cancelled_gvthread_may_catch_and_finish():
    with Runtime(workers=2) as rt:
        def body():
            try:
                gvthread.sleep(30)
            except Cancelled:
                return "caught"
        h = rt.spawn(body)
        assert _blocked(rt, h)
        h.cancel()
        assert h.join(JOIN_TIMEOUT) == "caught"
        assert h.state == State.FINISHED


def test_cancel_finished_returns_false(rt):
    h = rt.spawn(int)
    h.join(JOIN_TIMEOUT)
    assert h.cancel() is False
    assert h.state == State.FINISHED


def test_wait_with_an_infinite_timeout_waits(rt):
    t = CancellationToken()
    h = rt.spawn(t.wait, float("inf"))
    assert _blocked(rt, h)
    time.sleep(0.02)
    assert not h.done()
    t.cancel()
    assert h.join(JOIN_TIMEOUT) is True


def test_cancel_waits_for_a_blocking_point_in_a_short_run():
    """A cancel that finds a GVThread running plain code (no safepoints built in) lands
    at its next blocking call, not between a lock() and the unlock() after it: only a
    GVThread that ran past slice + grace without a safepoint gets safepoints armed for it
    (as on a Go goroutine or a Trio task, a short run between checkpoints is never cut)."""
    m = gvthread.Mutex()
    inside = threading.Event()
    gate = gvthread.Event()

    def body():
        m.lock()
        inside.set()
        t = time.monotonic() + 0.010  # inside slice + grace (20 ms)
        while time.monotonic() < t:
            pass
        m.unlock()
        gate.wait()  # the cancel lands here

    with Runtime(workers=1) as rt:
        h = rt.spawn(body)
        assert inside.wait(JOIN_TIMEOUT)
        h.cancel()
        with pytest.raises(gvthread.Cancelled):
            h.join(timeout=JOIN_TIMEOUT)
        assert m.try_lock(), "the cancel landed between lock() and unlock()"
        m.unlock()
