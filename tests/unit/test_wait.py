"""The native blocking layer: timer wheel (sleep), WaitQueue, Sema, interrupts."""
import threading
import time

import pytest

import gvthread
from gvthread import Cancelled, State, WaitKind, _core


def test_sleep_wakes_in_deadline_order_across_wheel_levels(rt):
    # 0.52 ms ticks: 5 ms is level 0, 50 ms level 1, 2.5 s level 2 (cascades twice)
    order = []

    def sleeper(d):
        t0 = time.monotonic()
        gvthread.sleep(d)
        order.append(d)
        return time.monotonic() - t0

    delays = [2.5, 0.05, 0.005, 0.3, 0.0, 1.0]
    hs = [rt.spawn(sleeper, d) for d in delays]
    took = [h.join(timeout=10) for h in hs]
    assert order == sorted(delays)
    for d, t in zip(delays, took):
        assert t >= d, (d, t)          # never early
        assert t < d + 0.25, (d, t)    # and not lost (generous for a loaded CI box)


def test_many_sleepers_do_not_block_the_worker(rt1):
    hs = [rt1.spawn(gvthread.sleep, 0.2) for _ in range(2000)]
    t0 = time.monotonic()
    for h in hs:
        h.join(timeout=10)
    assert time.monotonic() - t0 < 2.0


def test_sleep_until_and_os_thread_sleep():
    t0 = time.monotonic()
    gvthread.sleep_until(t0 + 0.02)   # from the main thread: a plain sleep
    assert time.monotonic() - t0 >= 0.02
    with pytest.raises(ValueError):
        gvthread.sleep(float("nan"))


def test_waitqueue_stale_seq_notify_and_timeout(rt):
    wq = _core.WaitQueue(kind=WaitKind.EVENT)
    s = wq.seq
    assert wq.notify() == 0 and wq.seq == s + 1
    assert wq.wait(s) is True                     # stale: returns at once
    assert wq.wait(wq.seq, timeout=0.01) is False  # timed out

    def waiter():
        return wq.wait(wq.seq, timeout=5)

    hs = [rt.spawn(waiter) for _ in range(3)]
    deadline = time.monotonic() + 5
    while len(wq) < 3 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert sorted(wq.waiters()) == sorted(h.id for h in hs)
    snap = {r.id: r for r in rt.snapshot()}
    assert all(snap[h.id].state == State.BLOCKED and snap[h.id].wait_kind == WaitKind.EVENT
               and snap[h.id].wait_obj == wq.obj_id for h in hs)
    assert wq.notify(2) == 2
    assert wq.notify_all() == 1
    assert [h.join(timeout=5) for h in hs] == [True, True, True]


def test_waitqueue_from_os_threads():
    wq = _core.WaitQueue()
    res = []
    s = wq.seq
    ts = [threading.Thread(target=lambda: res.append(wq.wait(s, 5))) for _ in range(3)]
    for t in ts:
        t.start()
    deadline = time.monotonic() + 5
    while len(wq) < 3 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert all(w < 0 for w in wq.waiters())
    wq.notify_all()
    for t in ts:
        t.join(5)
    assert res == [True, True, True]


def test_sema_counts_fifo_and_timeout(rt1):
    sm = _core.Sema(2)
    assert sm.try_acquire() and sm.try_acquire() and not sm.try_acquire()
    assert sm.acquire(timeout=0.01) is False
    order = []

    def user(i):
        assert sm.acquire(timeout=5)
        order.append(i)

    hs = [rt1.spawn(user, i) for i in range(5)]
    deadline = time.monotonic() + 5
    while len(sm) < 5 and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(0.005)   # every waiter now starved past fair_after: handed over in order
    sm.release(5)
    for h in hs:
        h.join(timeout=5)
    assert order == [0, 1, 2, 3, 4]
    assert sm.value == 0
    with pytest.raises(ValueError):
        _core.Sema(-1)


def test_cancel_parked_in_waitqueue_runs_finally(rt):
    wq = _core.WaitQueue()
    log = []

    def body():
        try:
            wq.wait(wq.seq)
        finally:
            log.append("finally")

    h = rt.spawn(body)
    deadline = time.monotonic() + 5
    while len(wq) < 1 and time.monotonic() < deadline:
        time.sleep(0.001)
    assert h.cancel() is True
    with pytest.raises(Cancelled):
        h.join(timeout=5)
    assert log == ["finally"] and h.state == State.CANCELLED and h.cancelled()
    assert len(wq) == 0
    assert h.cancel() is False


def test_cancel_before_first_run_never_runs_the_function(rt1):
    ran = []

    def parent():
        # on one worker the child cannot start before the parent switches
        h = gvthread.spawn(ran.append, 1)
        assert h.cancel() is True
        return h

    h = rt1.spawn(parent).join(timeout=5)
    with pytest.raises(Cancelled):
        h.join(timeout=5)
    assert ran == [] and h.state == State.CANCELLED


def test_cancel_running_gvthread_at_safepoint(rt):
    stop = threading.Event()

    def spin():
        n = 0
        while not stop.is_set():
            n += 1
            gvthread.safepoint()
        return n

    h = rt.spawn(spin)
    time.sleep(0.02)
    h.cancel()
    try:
        with pytest.raises(Cancelled):
            h.join(timeout=5)
    finally:
        stop.set()


def test_timeout_scope(rt):
    def body():
        out = []
        try:
            with gvthread.timeout(0.02):
                gvthread.sleep(5)
        except TimeoutError as e:
            out.append(str(e))
        with gvthread.timeout(5):        # not expired: nothing raised, nothing left pending
            gvthread.sleep(0.001)
        gvthread.sleep(0.001)
        try:
            with gvthread.timeout(5):
                with gvthread.timeout(0.01):
                    gvthread.sleep(5)
        except TimeoutError:
            out.append("inner")
        return out

    assert rt.spawn(body).join(timeout=10) == ["timed out after 0.02 s", "inner"]
    with pytest.raises(RuntimeError):
        with gvthread.timeout(1):
            pass


def test_join_is_interruptible_by_cancel(rt):
    gate = _core.WaitQueue()
    inner = rt.spawn(lambda: gate.wait(gate.seq, 10))
    outer = rt.spawn(inner.join)
    deadline = time.monotonic() + 5
    while outer.state != State.BLOCKED and time.monotonic() < deadline:
        time.sleep(0.001)
    outer.cancel()
    with pytest.raises(Cancelled):
        outer.join(timeout=5)
    gate.notify_all()
    assert inner.join(timeout=5) is True
