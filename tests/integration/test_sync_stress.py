"""Synchronization primitives under load: many GVThreads on a 2-worker runtime, mixed with
ordinary threads, with switches inside critical sections, timeouts and cancellations.
Each test checks an exact invariant at the end and that nothing is left waiting."""

import random
import threading
import time

import pytest

from gvthread import (
    Barrier,
    Condvar,
    Event,
    Mutex,
    Once,
    Runtime,
    RwLock,
    Semaphore,
    WaitGroup,
    yield_now,
)
from gvthread import _core
from gvtest_support import JOIN_TIMEOUT, settled_stats, wait_until

Cancelled = _core.Cancelled


def join_all(handles):
    return [h.join(timeout=JOIN_TIMEOUT) for h in handles]


def run_threads(n, fn, *args):
    errors = []

    def body():
        try:
            fn(*args)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    ts = [threading.Thread(target=body, daemon=True) for _ in range(n)]
    for t in ts:
        t.start()
    return ts, errors


def finish_threads(ts, errors):
    for t in ts:
        t.join(JOIN_TIMEOUT)
        assert not t.is_alive()
    if errors:
        raise errors[0]


def test_mutex_exclusion_1000_gvthreads_2_workers():
    """The acceptance test: a counter incremented non-atomically across a yield inside the
    critical section ends exact."""
    m = Mutex(name="counter")
    counter = [0]
    n, per = 1000, 10

    def work():
        for _ in range(per):
            with m:
                v = counter[0]
                yield_now()
                counter[0] = v + 1

    with Runtime(workers=2) as rt:
        join_all([rt.spawn(work) for _ in range(n)])
        assert counter[0] == n * per
        assert settled_stats(rt)["live"] == 0
    st = m.statistics()
    assert st["locked"] is False and st["owner"] is None and st["waiters"] == 0


def test_mutex_gvthreads_and_threads_together():
    m = Mutex()
    counter = [0]

    def work(k):
        for _ in range(k):
            with m:
                v = counter[0]
                yield_now()  # in a thread: sched_yield, the GIL may pass
                counter[0] = v + 1

    with Runtime(workers=2) as rt:
        hs = [rt.spawn(work, 20) for _ in range(200)]
        ts, errors = run_threads(4, work, 100)
        join_all(hs)
        finish_threads(ts, errors)
    assert counter[0] == 200 * 20 + 4 * 100
    assert not m.locked()


def test_mutex_timeouts_and_cancellations_leave_it_clean():
    m = Mutex()
    with Runtime(workers=2) as rt:
        m.lock()
        timed = [rt.spawn(lambda: m.lock(0.01 + random.random() * 0.02)) for _ in range(100)]
        forever = [rt.spawn(lambda: (m.lock(), m.unlock(), "ok")[2]) for _ in range(100)]
        assert wait_until(lambda: m.statistics()["waiters"] >= 100)
        assert join_all(timed) == [False] * 100
        for h in forever[::2]:
            h.cancel()
        m.unlock()
        res = []
        for h in forever:
            try:
                res.append(h.join(timeout=JOIN_TIMEOUT))
            except Cancelled:
                res.append("cancelled")
        assert res.count("ok") >= 50 and set(res) <= {"ok", "cancelled"}
    st = m.statistics()
    assert st["waiters"] == 0 and not st["locked"]
    assert m.lock(0) is True
    m.unlock()


def test_condvar_bounded_queue_many_producers_consumers():
    cv = Condvar()
    buf, cap = [], 16
    n_prod, n_cons, per = 20, 20, 250
    received = []
    state = {"producers_left": n_prod}

    def producer(base):
        for i in range(per):
            with cv:
                cv.wait_for(lambda: len(buf) < cap)
                buf.append(base + i)
                cv.notify_all()
        with cv:
            state["producers_left"] -= 1
            cv.notify_all()

    def consumer():
        while True:
            with cv:
                cv.wait_for(lambda: buf or state["producers_left"] == 0)
                if not buf:
                    return
                received.append(buf.pop(0))
                cv.notify_all()

    with Runtime(workers=2) as rt:
        hs = [rt.spawn(consumer) for _ in range(n_cons)]
        hs += [rt.spawn(producer, k * per) for k in range(n_prod)]
        join_all(hs)
    assert sorted(received) == list(range(n_prod * per))
    assert cv.statistics()["waiters"] == 0


def test_rwlock_consistency_under_load():
    rw = RwLock()
    data = {"a": 0, "b": 0}
    torn = []
    reads = [0]

    def reader():
        for _ in range(30):
            with rw.read():
                a = data["a"]
                yield_now()
                if data["b"] != a:
                    torn.append((a, data["b"]))
                reads[0] += 1

    def writer():
        for _ in range(15):
            with rw.write():
                data["a"] += 1
                yield_now()
                data["b"] += 1

    with Runtime(workers=2) as rt:
        hs = [rt.spawn(reader) for _ in range(150)] + [rt.spawn(writer) for _ in range(20)]
        join_all(hs)
    assert torn == []
    assert data == {"a": 300, "b": 300} and reads[0] == 150 * 30
    st = rw.statistics()
    assert (st["readers"], st["writer"], st["readers_waiting"], st["writers_waiting"]) == \
        (0, None, 0, 0)


def test_rwlock_timeouts_under_load():
    rw = RwLock()
    outcomes = []

    def reader():
        for _ in range(20):
            if rw.acquire_read(timeout=random.random() * 0.002):
                yield_now()
                rw.release_read()
                outcomes.append("r")
            else:
                outcomes.append("-")

    def writer():
        for _ in range(20):
            if rw.acquire_write(timeout=random.random() * 0.002):
                yield_now()
                rw.release_write()
                outcomes.append("w")
            else:
                outcomes.append("-")

    with Runtime(workers=2) as rt:
        join_all([rt.spawn(reader) for _ in range(60)] + [rt.spawn(writer) for _ in range(20)])
    assert len(outcomes) == 80 * 20 and "w" in outcomes and "r" in outcomes
    st = rw.statistics()
    assert (st["readers"], st["writer"], st["readers_waiting"], st["writers_waiting"]) == \
        (0, None, 0, 0)
    assert rw.acquire_write(False) is True
    rw.release_write()


def test_barrier_many_rounds():
    n, rounds = 50, 40
    b = Barrier(n)
    phase = [0]
    errors = []

    def party():
        idx = []
        for r in range(rounds):
            if phase[0] != r:
                errors.append((r, phase[0]))
            i = b.wait(JOIN_TIMEOUT)
            if i == n - 1:
                phase[0] += 1  # before anyone passes the next barrier
            idx.append(i)
            b.wait(JOIN_TIMEOUT)
        return idx

    with Runtime(workers=2) as rt:
        hs = [rt.spawn(party) for _ in range(n - 2)]
        out = []
        ts = [threading.Thread(target=lambda: out.append(party()), daemon=True)
              for _ in range(2)]
        for t in ts:
            t.start()
        res = join_all(hs)
        for t in ts:
            t.join(JOIN_TIMEOUT)
        res += out
    assert errors == []
    assert len(res) == n
    for r in range(rounds):
        assert sorted(x[r] for x in res) == list(range(n))


def test_semaphore_and_waitgroup_many():
    sem = Semaphore(8)
    wg = WaitGroup()
    inside = [0, 0]
    n = 500

    def work():
        with sem:
            inside[0] += 1
            inside[1] = max(inside[1], inside[0])
            for _ in range(20):
                yield_now()
            inside[0] -= 1
        wg.done()

    with Runtime(workers=2) as rt:
        wg.add(n)
        waiter = rt.spawn(lambda: wg.wait(JOIN_TIMEOUT))
        for _ in range(n):
            rt.spawn(work)
        assert wg.wait(JOIN_TIMEOUT) is True
        assert waiter.join(timeout=JOIN_TIMEOUT) is True
    assert inside[0] == 0 and 2 <= inside[1] <= 8
    assert sem.value == 8 and wg.count == 0


def test_once_and_event_1000_gvthreads():
    once = Once()
    calls = []
    go = Event()

    def init():
        calls.append(1)
        go.wait(JOIN_TIMEOUT)  # blocks while the others pile up

    def f():
        once.call_once(init)
        return len(calls)

    with Runtime(workers=2) as rt:
        hs = [rt.spawn(f) for _ in range(1000)]
        assert wait_until(lambda: once.statistics()["waiters"] >= 990)
        go.set()
        assert join_all(hs) == [1] * 1000
    assert once.done and len(calls) == 1

    ev = Event()
    with Runtime(workers=2) as rt:
        hs = [rt.spawn(lambda: ev.wait(JOIN_TIMEOUT)) for _ in range(1000)]
        assert wait_until(lambda: ev.statistics()["waiters"] == 1000)
        ev.set()
        assert join_all(hs) == [True] * 1000


@pytest.mark.parametrize("workers", [1, 2])
def test_mutex_pingpong_no_lost_wakeups(workers):
    """Two sides hand a token through a Condvar many times; a lost wakeup hangs (and fails
    on the deadline)."""
    cv = Condvar()
    turn = [0]
    n = 2000

    def side(me):
        for _ in range(n):
            with cv:
                if not cv.wait_for(lambda: turn[0] == me, 10):
                    return "lost wakeup"
                turn[0] = 1 - me
                cv.notify()
        return "ok"

    with Runtime(workers=workers) as rt:
        a = rt.spawn(side, 0)
        b = rt.spawn(side, 1)
        assert a.join(timeout=JOIN_TIMEOUT) == "ok"
        assert b.join(timeout=JOIN_TIMEOUT) == "ok"


def test_event_pingpong_gvthread_and_thread():
    """A GVThread and a thread alternate through two Events: no lost wakeup across the
    GVThread/OS-thread boundary."""
    ping, pong = Event(), Event()
    n = 500

    def gv_side():
        for _ in range(n):
            if not ping.wait(10):
                return "lost"
            ping.clear()
            pong.set()
        return "ok"

    with Runtime(workers=2) as rt:
        h = rt.spawn(gv_side)
        t0 = time.monotonic()
        for _ in range(n):
            ping.set()
            assert pong.wait(10)
            pong.clear()
        assert h.join(timeout=JOIN_TIMEOUT) == "ok"
        assert time.monotonic() - t0 < 30
