"""Scheduler-aware synchronization primitives (gvthread._sync): Mutex, Condvar, RwLock,
Barrier, Once, Lazy, Semaphore, BoundedSemaphore, WaitGroup, Event.

Each primitive is used from GVThreads and from ordinary threads; blocked GVThreads show
what they wait on in Runtime.snapshot(); interrupts (Handle.cancel) leave objects usable.
Everything waits with a deadline so a broken primitive fails instead of hanging.
"""

import threading
import time

import pytest

import gvthread
from gvthread import (
    Barrier,
    BoundedSemaphore,
    BrokenBarrierError,
    Condvar,
    Event,
    Lazy,
    Mutex,
    Once,
    Runtime,
    RwLock,
    Semaphore,
    State,
    WaitGroup,
    WaitKind,
    current_id,
    yield_now,
)
from gvthread import _core
from gvtest_support import JOIN_TIMEOUT, wait_until

Cancelled = _core.Cancelled
SHORT = 0.05  # a timeout that must expire
SLACK = 0.02  # clock granularity allowed below a timeout


def gsleep(seconds):
    """Park the calling GVThread (or sleep the thread) for `seconds`."""
    _core.sleep(seconds)


class Thread:
    """An ordinary thread whose result (or exception) comes back through join()."""

    def __init__(self, fn, *args):
        self.result = self.error = None

        def body():
            try:
                self.result = fn(*args)
            except BaseException as e:  # noqa: BLE001 - handed to the test
                self.error = e

        self.t = threading.Thread(target=body, daemon=True)
        self.t.start()

    def join(self, timeout=JOIN_TIMEOUT):
        self.t.join(timeout)
        assert not self.t.is_alive(), "thread did not finish"
        if self.error is not None:
            raise self.error
        return self.result


def blocked_on(rt, h, kind, obj_id, timeout=10.0):
    """Wait until h shows BLOCKED on (kind, obj_id) in rt.snapshot()."""
    def pred():
        for info in rt.snapshot():
            if info.id == h.id:
                return (info.state == State.BLOCKED and info.wait_kind == kind
                        and info.wait_obj == obj_id)
        return False
    return wait_until(pred, timeout)


def blocked(rt, h, timeout=10.0):
    return wait_until(lambda: h.state == State.BLOCKED, timeout)


# =========================================================================== Mutex

def test_mutex_basic_from_thread():
    m = Mutex(name="m")
    assert m.name == "m" and isinstance(m.obj_id, int) and m.obj_id > 0
    assert not m.locked()
    assert m.lock() is True
    assert m.locked()
    st = m.statistics()
    assert st["locked"] is True and st["owner"] == -threading.get_ident()
    assert st["waiters"] == 0 and st["obj_id"] == m.obj_id and st["name"] == "m"
    assert m.try_lock() is False  # the owner's try does not raise
    m.unlock()
    assert not m.locked() and m.statistics()["owner"] is None
    with m:
        assert m.locked()
    assert not m.locked()
    assert m.acquire() is True
    m.release()


def test_mutex_object_ids_are_unique():
    ids = {Mutex().obj_id for _ in range(10)} | {Event().obj_id, Semaphore().obj_id}
    assert len(ids) == 12


def test_mutex_acquire_threading_conventions():
    m = Mutex()
    assert m.acquire(False) is True
    with pytest.raises(ValueError):
        m.acquire(False, 1.0)
    with pytest.raises(ValueError):
        m.acquire(True, -2)
    m.release()
    assert m.acquire(True, -1) is True
    m.release()
    assert m.acquire(blocking=True, timeout=0.5) is True
    m.release()


def test_mutex_not_reentrant_raises():
    m = Mutex()
    with m:
        with pytest.raises(RuntimeError, match="reentrant"):
            m.lock()
        with pytest.raises(RuntimeError):
            m.acquire(timeout=1.0)
        assert m.lock(0) is False
    with Runtime(workers=2) as rt:
        def f():
            with m:
                try:
                    m.lock()
                except RuntimeError:
                    return "raised"
            return "no"
        assert rt.spawn(f).join(timeout=JOIN_TIMEOUT) == "raised"


def test_mutex_unlock_not_held_raises(rt):
    m = Mutex()
    with pytest.raises(RuntimeError, match="not held"):
        m.unlock()  # nobody holds it
    # held by a GVThread: neither another GVThread nor a thread may unlock it
    ev = Event()
    locked = Event()

    def holder():
        with m:
            locked.set()
            ev.wait(JOIN_TIMEOUT)
        return current_id()

    def intruder():
        try:
            m.unlock()
        except RuntimeError:
            return "raised"
        return "unlocked"

    h = rt.spawn(holder)
    assert locked.wait(10)
    assert rt.spawn(intruder).join(timeout=JOIN_TIMEOUT) == "raised"
    with pytest.raises(RuntimeError):
        m.unlock()
    assert m.locked() and m.statistics()["owner"] == h.id
    ev.set()
    assert h.join(timeout=JOIN_TIMEOUT) == h.id
    assert not m.locked()
    # held by a thread: a GVThread may not unlock it
    m.lock()
    assert rt.spawn(intruder).join(timeout=JOIN_TIMEOUT) == "raised"
    m.unlock()


def test_mutex_ownership_is_per_runtime():
    # GVThread ids are per runtime: the first GVThread of each has the same id.
    m = Mutex()
    release = Event()
    with Runtime(workers=1) as a, Runtime(workers=1) as b:
        ha = a.spawn(lambda: (m.lock(), release.wait(JOIN_TIMEOUT), m.unlock(), current_id()))
        assert wait_until(m.locked)

        def other():
            out = []
            try:
                m.unlock()
                out.append("unlocked")
            except RuntimeError:
                out.append("raised")
            out.append(m.lock(0.01))  # must not claim "already held by the caller"
            return current_id(), out

        hb = b.spawn(other)
        gid_b, out = hb.join(timeout=JOIN_TIMEOUT)
        release.set()
        gid_a = ha.join(timeout=JOIN_TIMEOUT)[3]
    assert gid_a == gid_b  # the case under test
    assert out == ["raised", False]
    assert not m.locked()


def test_mutex_timeout_gvthread_and_thread(rt):
    m = Mutex()
    m.lock()  # held by the main thread

    def try_it():
        t0 = time.monotonic()
        ok = m.lock(SHORT)
        return ok, time.monotonic() - t0

    ok, dt = rt.spawn(try_it).join(timeout=JOIN_TIMEOUT)
    assert ok is False and dt >= SHORT - SLACK
    ok, dt = Thread(try_it).join()
    assert ok is False and dt >= SHORT - SLACK
    assert rt.spawn(m.try_lock).join(timeout=JOIN_TIMEOUT) is False
    m.unlock()
    assert rt.spawn(lambda: (m.lock(SHORT), m.unlock())[0]).join(timeout=JOIN_TIMEOUT) is True


def test_mutex_handoff_between_gvthreads_and_threads(rt):
    m = Mutex()
    counter = [0]
    n_gv, n_th, per = 20, 3, 50

    def work():
        for _ in range(per):
            with m:
                v = counter[0]
                yield_now()  # a switch inside the critical section
                counter[0] = v + 1

    hs = [rt.spawn(work) for _ in range(n_gv)]
    ts = [Thread(work) for _ in range(n_th)]
    for h in hs:
        h.join(timeout=JOIN_TIMEOUT)
    for t in ts:
        t.join()
    assert counter[0] == (n_gv + n_th) * per
    assert not m.locked()


def _hog(m, started, got, limit=20.0):
    """Re-lock m in a tight loop, yielding while holding it, until `got` is non-empty.
    Returns (iterations, seconds) counted from the first time it saw a waiter."""
    seen_at, n_after = None, 0
    deadline = time.monotonic() + limit
    while not got and time.monotonic() < deadline:
        with m:
            started.set()
            yield_now()  # the waiter runs while we hold it, and finds it taken
            if seen_at is None and m.statistics()["waiters"]:
                seen_at = time.monotonic()
            if seen_at is not None:
                n_after += 1
    return n_after, (None if seen_at is None else time.monotonic() - seen_at)


def test_mutex_fairness_starved_waiter_gets_the_lock(rt1):
    """A GVThread re-locking in a tight loop cannot starve a waiter for long: after 1 ms
    of waiting the lock is handed to the waiter (without handoff it would starve: the hog
    always re-locks before the woken waiter runs)."""
    m = Mutex()
    started = Event()
    got = []

    def waiter():
        started.wait(JOIN_TIMEOUT)
        t0 = time.monotonic()
        with m:
            got.append(time.monotonic() - t0)

    h = rt1.spawn(_hog, m, started, got)
    w = rt1.spawn(waiter)
    w.join(timeout=JOIN_TIMEOUT)
    n_after, dt = h.join(timeout=JOIN_TIMEOUT)
    assert got, "the waiter never got the lock"
    assert got[0] < 0.5, got  # ~1 ms plus scheduling
    assert n_after < 100_000 and dt < 0.5, (n_after, dt)


def test_mutex_fairness_thread_waiter(rt1):
    """The same with the waiter an ordinary thread.  The bound is loose: on 3.11 a
    GVThread that keeps yielding keeps the GIL from other threads for up to ~1 s at a time,
    and the thread needs the GIL to retry; without handoff it would starve for good."""
    m = Mutex()
    started = threading.Event()
    got = []
    h = rt1.spawn(_hog, m, started, got)
    assert started.wait(10)
    with m:
        got.append(1)
    n_after, dt = h.join(timeout=JOIN_TIMEOUT)
    # dt is None if the thread never had to queue (it came in while the hog was outside)
    assert dt is None or dt < 10.0, (n_after, dt)


def test_mutex_cancel_while_waiting(rt):
    m = Mutex()
    m.lock()

    def f():
        try:
            m.lock()
        except Cancelled:
            return "cancelled"
        m.unlock()
        return "locked"

    h = rt.spawn(f)
    assert blocked(rt, h)
    assert h.cancel()
    assert h.join(timeout=JOIN_TIMEOUT) == "cancelled"
    assert m.statistics()["waiters"] == 0
    m.unlock()
    assert rt.spawn(lambda: (m.lock(1.0), m.unlock())[0]).join(timeout=JOIN_TIMEOUT)


# =========================================================================== Condvar

def test_condvar_wait_requires_the_mutex():
    cv = Condvar()
    with pytest.raises(RuntimeError):
        cv.wait(0)
    assert isinstance(cv.mutex, Mutex)
    with pytest.raises(TypeError):
        Condvar(threading.Lock())


def test_condvar_wait_timeout_reacquires(rt):
    cv = Condvar()

    def f():
        with cv:
            t0 = time.monotonic()
            r = cv.wait(SHORT)
            dt = time.monotonic() - t0
            owner = cv.mutex.statistics()["owner"]
        return r, dt, owner == current_id()

    r, dt, owned = rt.spawn(f).join(timeout=JOIN_TIMEOUT)
    assert r is False and dt >= SHORT - SLACK and owned
    with cv:
        assert cv.wait(SHORT) is False
        assert cv.mutex.locked()
        assert cv.wait(0) is False
    assert not cv.mutex.locked()


def test_condvar_producer_consumer(rt):
    cv = Condvar(Mutex(name="q"))
    items, got = [], []
    n_prod, per, cap = 4, 100, 5
    done = [0]

    def producer(base):
        for i in range(per):
            with cv:
                assert cv.wait_for(lambda: len(items) < cap, JOIN_TIMEOUT)
                items.append(base + i)
                cv.notify_all()

    def consumer():
        while True:
            with cv:
                assert cv.wait_for(lambda: items or done[0] == n_prod, JOIN_TIMEOUT)
                if not items:
                    return
                got.append(items.pop(0))
                cv.notify_all()

    cons = [rt.spawn(consumer) for _ in range(3)] + [Thread(consumer)]
    prods = [rt.spawn(producer, k * 1000) for k in range(n_prod - 1)]
    prods.append(Thread(producer, (n_prod - 1) * 1000))
    for p in prods:
        p.join(timeout=JOIN_TIMEOUT)
        with cv:
            done[0] += 1
            cv.notify_all()
    for c in cons:
        c.join(timeout=JOIN_TIMEOUT)
    assert sorted(got) == sorted(k * 1000 + i for k in range(n_prod) for i in range(per))


def test_condvar_notify_counts_and_notify_all(rt):
    cv = Condvar()
    woke = []

    def waiter(i):
        with cv:
            r = cv.wait(JOIN_TIMEOUT)
            woke.append(i)
        return r

    hs = [rt.spawn(waiter, i) for i in range(5)]
    assert wait_until(lambda: cv.statistics()["waiters"] == 5)
    assert cv.notify(2) == 2
    assert wait_until(lambda: len(woke) == 2)
    assert cv.notify_all() == 3
    assert [h.join(timeout=JOIN_TIMEOUT) for h in hs] == [True] * 5
    assert sorted(woke) == list(range(5))
    assert cv.notify() == 0


def test_condvar_thread_waits_gvthread_notifies(rt):
    cv = Condvar()
    state = []

    def waiter():
        with cv:
            return cv.wait_for(lambda: state, 10)

    t = Thread(waiter)
    assert wait_until(lambda: cv.statistics()["waiters"] == 1)

    def notifier():
        with cv:
            state.append(1)
            cv.notify()

    rt.spawn(notifier).join(timeout=JOIN_TIMEOUT)
    assert t.join() == [1]


def test_condvar_wait_for_timeout():
    cv = Condvar()
    with cv:
        t0 = time.monotonic()
        assert cv.wait_for(lambda: 0, SHORT) == 0
        assert time.monotonic() - t0 >= SHORT - SLACK
        assert cv.wait_for(lambda: "yes", 0) == "yes"


def test_condvar_cancel_reacquires_mutex(rt):
    cv = Condvar()
    entered = Event()

    def f():
        with cv:
            entered.set()
            try:
                cv.wait()
            except Cancelled:
                return cv.mutex.statistics()["owner"] == current_id()
        return "not cancelled"

    h = rt.spawn(f)
    assert entered.wait(10)
    assert blocked(rt, h)
    h.cancel()
    assert h.join(timeout=JOIN_TIMEOUT) is True
    assert not cv.mutex.locked()


# =========================================================================== RwLock

def test_rwlock_readers_share_writer_excludes(rt):
    rw = RwLock()
    inside = {"r": 0, "w": 0, "max_r": 0, "bad": 0}
    lk = threading.Lock()  # the bookkeeping, shared with an OS thread; never held across a switch
    gate = Event()

    def reader():
        gate.wait(10)
        for _ in range(20):
            with rw.read():
                with lk:
                    inside["r"] += 1
                    inside["max_r"] = max(inside["max_r"], inside["r"])
                    if inside["w"]:
                        inside["bad"] += 1
                yield_now()
                with lk:
                    inside["r"] -= 1

    def writer():
        gate.wait(10)
        for _ in range(10):
            with rw.write():
                with lk:
                    inside["w"] += 1
                    if inside["w"] != 1 or inside["r"]:
                        inside["bad"] += 1
                yield_now()
                with lk:
                    inside["w"] -= 1
            yield_now()

    hs = [rt.spawn(reader) for _ in range(8)] + [rt.spawn(writer) for _ in range(2)]
    ts = [Thread(reader), Thread(writer)]
    gate.set()
    for h in hs:
        h.join(timeout=JOIN_TIMEOUT)
    for t in ts:
        t.join()
    assert inside["bad"] == 0
    assert inside["max_r"] > 1  # readers did overlap
    st = rw.statistics()
    assert st["readers"] == 0 and st["writer"] is None
    assert st["readers_waiting"] == 0 and st["writers_waiting"] == 0


def test_rwlock_timeouts_and_errors():
    rw = RwLock()
    rw.acquire_write()
    assert rw.statistics()["writer"] == -threading.get_ident()
    with pytest.raises(RuntimeError):
        rw.acquire_write()
    with pytest.raises(RuntimeError):
        rw.acquire_read()
    assert rw.acquire_write(False) is False
    r = Thread(lambda: rw.acquire_read(timeout=SHORT))
    w = Thread(lambda: rw.acquire_write(timeout=SHORT))
    assert r.join() is False and w.join() is False
    with pytest.raises(RuntimeError):
        Thread(rw.release_write).join()
    rw.release_write()
    with pytest.raises(RuntimeError):
        rw.release_write()
    with pytest.raises(RuntimeError):
        rw.release_read()
    with rw.read():
        assert rw.acquire_write(timeout=SHORT) is False
        assert Thread(lambda: rw.acquire_read(timeout=SHORT)).join() is True
        rw.release_read()  # the thread's read lock (read locks are not owned)
    with rw.read(timeout=1), rw.read(timeout=1):
        assert rw.statistics()["readers"] == 2
    rw.acquire_read()
    with pytest.raises(TimeoutError):
        with rw.write(timeout=SHORT):
            pass
    rw.release_read()
    st = rw.statistics()
    assert st == {"name": None, "obj_id": rw.obj_id, "readers": 0, "writer": None,
                  "readers_waiting": 0, "writers_waiting": 0}


def test_rwlock_writer_preference(rt):
    """A waiting writer keeps new readers out; readers queued behind it go in together
    when it releases."""
    rw = RwLock()
    order = []
    rw.acquire_read()  # the main thread reads

    def writer():
        with rw.write():
            order.append("w")

    def reader(i):
        with rw.read():
            order.append(f"r{i}")

    hw = rt.spawn(writer)
    assert wait_until(lambda: rw.statistics()["writers_waiting"] == 1)
    # a new reader must queue behind the writer
    assert Thread(lambda: rw.acquire_read(False)).join() is False
    hrs = [rt.spawn(reader, i) for i in range(3)]
    assert wait_until(lambda: rw.statistics()["readers_waiting"] == 3)
    assert order == []
    rw.release_read()
    hw.join(timeout=JOIN_TIMEOUT)
    for h in hrs:
        h.join(timeout=JOIN_TIMEOUT)
    assert order[0] == "w" and sorted(order[1:]) == ["r0", "r1", "r2"]


def test_rwlock_writer_gives_up_admits_readers(rt):
    rw = RwLock()
    rw.acquire_read()
    w = Thread(lambda: rw.acquire_write(timeout=0.2))
    assert wait_until(lambda: rw.statistics()["writers_waiting"] == 1)
    r = rt.spawn(lambda: rw.acquire_read(timeout=5))
    assert wait_until(lambda: rw.statistics()["readers_waiting"] == 1)
    assert w.join() is False  # the writer timed out...
    assert r.join(timeout=JOIN_TIMEOUT) is True  # ...so the queued reader went in
    assert rw.statistics()["readers"] == 2
    rw.release_read()
    rw.release_read()


def test_rwlock_cancelled_writer_passes_the_wakeup(rt):
    rw = RwLock()
    rw.acquire_read()
    w1 = rt.spawn(lambda: rw.acquire_write())
    assert wait_until(lambda: rw.statistics()["writers_waiting"] == 1)
    assert blocked(rt, w1)

    def second():
        ok = rw.acquire_write(timeout=10)
        if ok:
            rw.release_write()
        return ok

    w2 = rt.spawn(second)
    assert wait_until(lambda: rw.statistics()["writers_waiting"] == 2)
    w1.cancel()
    with pytest.raises(Cancelled):
        w1.join(timeout=JOIN_TIMEOUT)
    rw.release_read()
    assert w2.join(timeout=JOIN_TIMEOUT) is True
    assert rw.statistics()["writers_waiting"] == 0


# =========================================================================== Barrier

def test_barrier_indices_and_reuse(rt):
    n, rounds = 4, 5
    actions = []
    b = Barrier(n, action=lambda: actions.append(1))

    def party():
        out = []
        for _ in range(rounds):
            out.append(b.wait(10))
        return out

    hs = [rt.spawn(party) for _ in range(n - 1)] + [Thread(party)]
    res = [h.join(timeout=JOIN_TIMEOUT) for h in hs]
    for r in range(rounds):
        seen = sorted(x[r] for x in res)
        assert seen == list(range(n)), (r, seen)
    assert len(actions) == rounds
    assert b.n_waiting == 0 and not b.broken and b.parties == n


def test_barrier_timeout_breaks(rt):
    b = Barrier(3)
    res = []

    def party(t):
        try:
            b.wait(t)
            return "passed"
        except BrokenBarrierError:
            return "broken"

    h = rt.spawn(party, 10)
    assert wait_until(lambda: b.n_waiting == 1)
    t0 = time.monotonic()
    res.append(party(SHORT))  # times out: breaks the barrier
    assert time.monotonic() - t0 >= SHORT - SLACK
    res.append(h.join(timeout=JOIN_TIMEOUT))
    assert res == ["broken", "broken"]
    assert b.broken
    with pytest.raises(BrokenBarrierError):
        b.wait()
    b.reset()
    assert not b.broken
    hs = [rt.spawn(party, 10) for _ in range(3)]
    assert [h.join(timeout=JOIN_TIMEOUT) for h in hs] == ["passed"] * 3


def test_barrier_abort_and_reset_wake_waiters(rt):
    b = Barrier(3)

    def party():
        try:
            b.wait()
        except BrokenBarrierError:
            return "broken"
        return "passed"

    hs = [rt.spawn(party) for _ in range(2)]
    assert wait_until(lambda: b.statistics()["waiters"] == 2)
    b.abort()
    assert [h.join(timeout=JOIN_TIMEOUT) for h in hs] == ["broken"] * 2
    b.reset()
    hs = [rt.spawn(party) for _ in range(2)]
    assert wait_until(lambda: b.statistics()["waiters"] == 2)
    b.reset()
    assert [h.join(timeout=JOIN_TIMEOUT) for h in hs] == ["broken"] * 2
    assert not b.broken
    with pytest.raises(ValueError):
        Barrier(0)


def test_barrier_action_error_breaks(rt):
    def boom():
        raise KeyError("x")

    b = Barrier(2, action=boom)
    h = rt.spawn(lambda: b.wait(10))
    assert wait_until(lambda: b.n_waiting == 1)
    with pytest.raises(KeyError):
        b.wait()
    with pytest.raises(BrokenBarrierError):
        h.join(timeout=JOIN_TIMEOUT)


# =========================================================================== Once, Lazy

def test_once_racing_callers(rt):
    once = Once()
    calls = []
    gate = threading.Event()

    def init(x):
        calls.append(x)
        deadline = time.monotonic() + 10
        while not gate.is_set() and time.monotonic() < deadline:
            gsleep(0.001)  # others arrive while it runs

    def caller(i):
        ran = once.call_once(init, i)
        return ran, len(calls)  # done when call_once returns

    hs = [rt.spawn(caller, i) for i in range(20)]
    ts = [Thread(caller, 100 + i) for i in range(3)]
    assert wait_until(lambda: calls)
    assert wait_until(lambda: once.statistics()["waiters"] >= 15)
    gate.set()
    res = [h.join(timeout=JOIN_TIMEOUT) for h in hs] + [t.join() for t in ts]
    assert len(calls) == 1
    assert sum(r for r, _ in res) == 1
    assert all(n == 1 for _, n in res)
    assert once.done and once.call_once(init, 0) is False


def test_once_exception_propagates_and_retries(rt):
    once = Once()
    attempts = []

    def flaky():
        attempts.append(1)
        if len(attempts) < 3:
            raise ValueError("not yet")

    with pytest.raises(ValueError):
        once.call_once(flaky)
    assert not once.done
    h = rt.spawn(lambda: once.call_once(flaky))
    with pytest.raises(ValueError):
        h.join(timeout=JOIN_TIMEOUT)
    assert rt.spawn(lambda: once.call_once(flaky)).join(timeout=JOIN_TIMEOUT) is True
    assert once.done and len(attempts) == 3
    assert once.call_once(flaky) is False


def test_once_recursive_call_raises():
    once = Once()
    with pytest.raises(RuntimeError, match="recursive"):
        once.call_once(lambda: once.call_once(lambda: None))
    assert not once.done
    assert once.call_once(lambda: None) is True


def test_lazy(rt):
    made = []

    def factory():
        made.append(1)
        gsleep(0.01)
        return {"v": 42}

    lazy = Lazy(factory, name="cfg")
    assert not lazy.initialized and lazy.name == "cfg"
    hs = [rt.spawn(lambda: lazy.value) for _ in range(10)]
    vals = [h.join(timeout=JOIN_TIMEOUT) for h in hs] + [lazy.get()]
    assert len(made) == 1 and all(v is vals[0] for v in vals) and vals[0] == {"v": 42}
    assert lazy.initialized and lazy.statistics()["initialized"]

    bad = Lazy(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        bad.get()
    with pytest.raises(TypeError):
        Lazy(42)


# =========================================================================== Semaphore

def test_semaphore_limits_concurrency(rt):
    sem = Semaphore(3)
    # three holders at once; a fourth caller has to wait
    b, release = Barrier(3), Event()

    def holder():
        with sem:
            b.wait(10)
            release.wait(10)

    hs = [rt.spawn(holder) for _ in range(3)]
    assert wait_until(lambda: b.n_waiting == 0 and sem.value == 0 and
                      release.statistics()["waiters"] == 3)
    assert sem.acquire(timeout=SHORT) is False
    release.set()
    for h in hs:
        h.join(timeout=JOIN_TIMEOUT)
    # never more than three inside, under contention from GVThreads and a thread
    inside = [0, 0]
    lk = threading.Lock()  # the bookkeeping, shared with an OS thread

    def f():
        for _ in range(20):
            with sem:
                with lk:
                    inside[0] += 1
                    inside[1] = max(inside[1], inside[0])
                yield_now()
                with lk:
                    inside[0] -= 1

    hs = [rt.spawn(f) for _ in range(10)]
    t = Thread(f)
    for h in hs:
        h.join(timeout=JOIN_TIMEOUT)
    t.join()
    assert inside[0] == 0 and 1 <= inside[1] <= 3
    assert sem.value == 3


def test_semaphore_timeout_and_release_n(rt):
    sem = Semaphore(0)
    assert sem.acquire(False) is False
    assert sem.acquire(timeout=0) is False
    t0 = time.monotonic()
    assert rt.spawn(lambda: sem.acquire(timeout=SHORT)).join(timeout=JOIN_TIMEOUT) is False
    assert time.monotonic() - t0 >= SHORT - SLACK
    hs = [rt.spawn(lambda: sem.acquire(timeout=10)) for _ in range(3)]
    assert wait_until(lambda: sem.statistics()["waiters"] == 3)
    sem.release(3)
    assert [h.join(timeout=JOIN_TIMEOUT) for h in hs] == [True] * 3
    assert sem.value == 0
    sem.release()
    assert Thread(sem.acquire).join() is True
    with pytest.raises(ValueError):
        Semaphore(-1)
    with pytest.raises(ValueError):
        sem.release(0)


def test_bounded_semaphore(rt):
    sem = BoundedSemaphore(2)
    with pytest.raises(ValueError):
        sem.release()
    assert sem.acquire() and sem.acquire()
    assert rt.spawn(lambda: sem.acquire(timeout=SHORT)).join(timeout=JOIN_TIMEOUT) is False
    rt.spawn(sem.release).join(timeout=JOIN_TIMEOUT)
    with pytest.raises(ValueError):
        sem.release(2)
    sem.release()
    assert sem.value == 2
    assert sem.statistics()["initial"] == 2


# =========================================================================== WaitGroup

def test_waitgroup(rt):
    wg = WaitGroup()
    assert wg.wait(0) is True
    results = []

    def worker(i):
        gsleep(0.001 * (i % 5))
        results.append(i)
        wg.done()

    wg.add(10)
    for i in range(8):
        rt.spawn(worker, i)
    ts = [Thread(worker, 8), Thread(worker, 9)]
    waiter = rt.spawn(lambda: wg.wait(JOIN_TIMEOUT))
    thread_waiter = Thread(lambda: wg.wait(JOIN_TIMEOUT))
    assert wg.wait(JOIN_TIMEOUT) is True
    assert sorted(results) == list(range(10))
    assert waiter.join(timeout=JOIN_TIMEOUT) is True and thread_waiter.join() is True
    for t in ts:
        t.join()
    assert wg.count == 0


def test_waitgroup_negative_and_timeout(rt):
    wg = WaitGroup()
    with pytest.raises(ValueError):
        wg.done()
    assert wg.count == 0
    wg.add(2)
    with pytest.raises(ValueError):
        wg.add(-3)
    assert wg.count == 2
    t0 = time.monotonic()
    assert rt.spawn(lambda: wg.wait(SHORT)).join(timeout=JOIN_TIMEOUT) is False
    assert time.monotonic() - t0 >= SHORT - SLACK
    wg.add(-2)
    assert wg.wait(0) is True
    assert wg.statistics() == {"name": None, "obj_id": wg.obj_id, "count": 0, "waiters": 0}


# =========================================================================== Event

def test_event(rt):
    ev = Event()
    assert not ev.is_set() and ev.wait(0) is False
    t0 = time.monotonic()
    assert rt.spawn(lambda: ev.wait(SHORT)).join(timeout=JOIN_TIMEOUT) is False
    assert time.monotonic() - t0 >= SHORT - SLACK
    hs = [rt.spawn(lambda: ev.wait(JOIN_TIMEOUT)) for _ in range(5)]
    t = Thread(lambda: ev.wait(JOIN_TIMEOUT))
    assert wait_until(lambda: ev.statistics()["waiters"] == 6)
    rt.spawn(ev.set).join(timeout=JOIN_TIMEOUT)
    assert [h.join(timeout=JOIN_TIMEOUT) for h in hs] == [True] * 5 and t.join() is True
    assert ev.is_set() and ev.wait() is True
    ev.clear()
    assert not ev.is_set() and ev.wait(0) is False


def test_event_set_then_clear_still_wakes(rt):
    ev = Event()
    hs = [rt.spawn(lambda: ev.wait(JOIN_TIMEOUT)) for _ in range(3)]
    assert wait_until(lambda: ev.statistics()["waiters"] == 3)
    ev.set()
    ev.clear()
    assert [h.join(timeout=JOIN_TIMEOUT) for h in hs] == [True] * 3


# =========================================================================== interrupts

def test_rwlock_cancelled_reader_is_forgotten(rt):
    rw = RwLock()
    rw.acquire_write()
    h = rt.spawn(rw.acquire_read)
    assert wait_until(lambda: rw.statistics()["readers_waiting"] == 1)
    assert blocked(rt, h)
    h.cancel()
    with pytest.raises(Cancelled):
        h.join(timeout=JOIN_TIMEOUT)
    assert rw.statistics()["readers_waiting"] == 0
    rw.release_write()
    assert rw.statistics()["readers"] == 0
    assert rw.acquire_write(False) is True
    rw.release_write()


def test_barrier_cancelled_waiter_breaks_it(rt):
    b = Barrier(3)

    def other():
        try:
            b.wait()
        except BrokenBarrierError:
            return "broken"

    h1 = rt.spawn(b.wait)
    h2 = rt.spawn(other)
    assert wait_until(lambda: b.statistics()["waiters"] == 2)
    h1.cancel()
    with pytest.raises(Cancelled):
        h1.join(timeout=JOIN_TIMEOUT)
    assert h2.join(timeout=JOIN_TIMEOUT) == "broken"
    assert b.broken


def test_once_cancelled_runner_lets_a_waiter_retry(rt):
    once = Once()
    never = Event()
    entered = Event()

    def stuck():
        entered.set()
        never.wait()

    runner = rt.spawn(once.call_once, stuck)
    assert entered.wait(10)
    waiter = rt.spawn(once.call_once, lambda: None)
    assert wait_until(lambda: once.statistics()["waiters"] == 1)
    runner.cancel()
    with pytest.raises(Cancelled):
        runner.join(timeout=JOIN_TIMEOUT)
    assert waiter.join(timeout=JOIN_TIMEOUT) is True  # it ran its own fn
    assert once.done


def test_waitgroup_and_event_wait_cancelled(rt):
    wg, ev = WaitGroup(), Event()
    wg.add()
    hs = [rt.spawn(wg.wait), rt.spawn(ev.wait)]
    assert wait_until(lambda: all(h.state == State.BLOCKED for h in hs))
    for h in hs:
        h.cancel()
        with pytest.raises(Cancelled):
            h.join(timeout=JOIN_TIMEOUT)
    assert wg.statistics()["waiters"] == 0 and ev.statistics()["waiters"] == 0
    wg.done()
    ev.set()


# =========================================================================== snapshot

def _mutex_case():
    m = Mutex()
    m.lock()
    return m, WaitKind.MUTEX, lambda: (m.lock(), m.unlock()), m.unlock


def _condvar_case():
    cv = Condvar()
    flag = []

    def block():
        with cv:
            cv.wait_for(lambda: flag)

    def release():
        with cv:
            flag.append(1)
            cv.notify_all()
    return cv, WaitKind.CONDVAR, block, release


def _rwlock_case():
    rw = RwLock()
    rw.acquire_write()
    return rw, WaitKind.RWLOCK, lambda: (rw.acquire_read(), rw.release_read()), rw.release_write


def _rwlock_write_case():
    rw = RwLock()
    rw.acquire_read()
    return rw, WaitKind.RWLOCK, lambda: (rw.acquire_write(), rw.release_write()), rw.release_read


def _semaphore_case():
    s = Semaphore(0)
    return s, WaitKind.SEMAPHORE, s.acquire, s.release


def _bounded_semaphore_case():
    s = BoundedSemaphore(1)
    s.acquire()
    return s, WaitKind.SEMAPHORE, lambda: (s.acquire(), s.release()), s.release


def _barrier_case():
    b = Barrier(2)
    return b, WaitKind.BARRIER, b.wait, b.wait


def _waitgroup_case():
    wg = WaitGroup()
    wg.add()
    return wg, WaitKind.WAITGROUP, wg.wait, wg.done


def _once_case():
    once = Once()
    go, entered = threading.Event(), threading.Event()
    t = Thread(once.call_once, lambda: (entered.set(), go.wait(JOIN_TIMEOUT)))
    assert entered.wait(10)
    return once, WaitKind.ONCE, lambda: once.call_once(lambda: None), lambda: (go.set(), t.join())


def _lazy_case():
    go, entered = threading.Event(), threading.Event()
    lazy = Lazy(lambda: (entered.set(), go.wait(JOIN_TIMEOUT)))
    t = Thread(lazy.get)
    assert entered.wait(10)
    return lazy, WaitKind.ONCE, lazy.get, lambda: (go.set(), t.join())


def _event_case():
    ev = Event()
    return ev, WaitKind.EVENT, ev.wait, ev.set


CASES = [_mutex_case, _condvar_case, _rwlock_case, _rwlock_write_case, _semaphore_case,
         _bounded_semaphore_case, _barrier_case, _waitgroup_case, _once_case, _lazy_case,
         _event_case]


@pytest.mark.parametrize("case", CASES, ids=[c.__name__.strip("_")[:-5] for c in CASES])
def test_snapshot_shows_what_a_blocked_gvthread_waits_on(rt, case):
    obj, kind, block, release = case()
    h = rt.spawn(block, name="blocker")
    try:
        assert blocked_on(rt, h, kind, obj.obj_id), [i for i in rt.snapshot() if i.id == h.id]
        st = obj.statistics()
        assert st["obj_id"] == obj.obj_id
    finally:
        release()
    h.join(timeout=JOIN_TIMEOUT)


# =========================================================================== misc

def test_names_must_be_strings():
    with pytest.raises(TypeError):
        Mutex(name=3)
    assert Event(name="e").name == "e"
    assert "e" in repr(Event(name="e"))
    for cls in (Mutex, Condvar, RwLock, Once, Semaphore, BoundedSemaphore, WaitGroup, Event):
        obj = cls()
        assert isinstance(obj.statistics(), dict)
        assert repr(obj).startswith("<gvthread.")
    assert repr(Barrier(2)).startswith("<gvthread.Barrier")
    assert gvthread.BrokenBarrierError is threading.BrokenBarrierError
