"""gvthread.monkey.patch_all() cases, run in a fresh interpreter (the patch is global).

Usage: monkey_cases.py [CASE ...]   (default: every case)
Prints one JSON line per case: {"case": name, "ok": bool, "error": traceback or ""},
then "done".  tests/unit/test_monkey.py runs it once and asserts per case.
"""
import faulthandler
import json
import sys
import time
import traceback

faulthandler.dump_traceback_later(120, exit=True)  # a hang fails, with stacks

_real_sleep = time.sleep

import gvthread  # noqa: E402
import gvthread.monkey  # noqa: E402

gvthread.monkey.patch_all()

import logging  # noqa: E402  (imported after patching: its module lock is ours)
import queue  # noqa: E402
import threading  # noqa: E402

from gvthread import Runtime, State  # noqa: E402

JOIN = 30.0
CASES = {}


def case(fn):
    CASES[fn.__name__] = fn
    return fn


def wait_until(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        _real_sleep(0.001)
    return True


def ticker(stop, gaps):
    """A GVThread that records the gaps between 5 ms sleeps: proves the worker is free."""
    last = time.monotonic()
    deadline = last + JOIN
    while not stop.is_set() and last < deadline:
        time.sleep(0.005)
        now = time.monotonic()
        gaps.append(now - last)
        last = now


# ---------------------------------------------------------------- patch state
@case
def patched_names():
    m = gvthread.monkey
    assert m.is_patched() and m.is_patched("time.sleep") and m.is_patched("threading.Lock")
    assert time.sleep is m.sleep
    assert threading.Lock is m.Lock and threading.RLock is m.RLock
    assert threading.Condition is m.Condition and threading.Event is m.Event
    assert threading.Semaphore is m.Semaphore and threading.BoundedSemaphore is m.BoundedSemaphore
    assert queue.SimpleQueue is queue._PySimpleQueue
    m.patch_all()   # idempotent
    assert m._saved["threading", "Lock"] is not m.Lock


# ---------------------------------------------------------------- time.sleep
@case
def sleep_is_concurrent_on_one_worker():
    with Runtime(workers=1) as rt:
        t0 = time.monotonic()
        hs = [rt.spawn(time.sleep, 0.2) for _ in range(10)]
        for h in hs:
            h.join(JOIN)
        dt = time.monotonic() - t0
    assert dt < 1.0, f"10 x time.sleep(0.2) took {dt:.2f} s"


@case
def sleep_outside_gvthreads_unchanged():
    t0 = time.monotonic()
    time.sleep(0.05)
    assert time.monotonic() - t0 >= 0.045
    for bad in (-1, -0.5):
        try:
            time.sleep(bad)
        except ValueError:
            pass
        else:
            raise AssertionError("negative sleep accepted")
    with Runtime(workers=1) as rt:
        def neg():
            try:
                time.sleep(-1)
            except ValueError:
                return "ValueError"
        assert rt.spawn(neg).join(JOIN) == "ValueError"


@case
def cancel_reaches_patched_sleep():
    with Runtime(workers=1) as rt:
        log = []

        def body():
            try:
                time.sleep(30)
            finally:
                log.append("finally")
        h = rt.spawn(body)
        assert wait_until(lambda: h.state == State.BLOCKED)
        h.cancel()
        try:
            h.join(JOIN)
        except gvthread.Cancelled:
            pass
        assert log == ["finally"] and h.state == State.CANCELLED


# ---------------------------------------------------------------- Lock / RLock
@case
def lock_between_gvthreads():
    lock = threading.Lock()
    with Runtime(workers=1) as rt:
        stop, gaps = threading.Event(), []
        t = rt.spawn(ticker, stop, gaps)
        counter = [0]

        def incr():
            for _ in range(5):
                with lock:
                    v = counter[0]
                    time.sleep(0.001)   # parks while holding the lock
                    counter[0] = v + 1
        hs = [rt.spawn(incr) for _ in range(40)]
        for h in hs:
            h.join(JOIN)
        stop.set()
        t.join(JOIN)
    assert counter[0] == 200, counter
    assert not lock.locked()
    assert gaps and max(gaps) < 0.25, max(gaps)


@case
def lock_between_gvthread_and_thread():
    lock = threading.Lock()
    with Runtime(workers=1) as rt:
        # an OS thread holds it; a GVThread waits (parks) while another keeps ticking
        lock.acquire()
        stop, gaps = threading.Event(), []
        t = rt.spawn(ticker, stop, gaps)

        def take():
            t0 = time.monotonic()
            with lock:
                return time.monotonic() - t0
        h = rt.spawn(take)
        assert wait_until(lambda: h.state == State.BLOCKED)
        _real_sleep(0.1)
        n = len(gaps)
        lock.release()
        waited = h.join(JOIN)
        assert waited >= 0.09 and n >= 5, (waited, n)
        # a GVThread holds it; an OS thread waits
        held = threading.Event()
        release = threading.Event()

        def hold():
            with lock:
                held.set()
                release.wait()
        h2 = rt.spawn(hold)
        assert held.wait(JOIN)
        assert not lock.acquire(timeout=0.05)
        assert not lock.acquire(False)
        threading.Timer(0.05, release.set).start()
        assert lock.acquire(timeout=JOIN)
        lock.release()
        h2.join(JOIN)
        stop.set()
        t.join(JOIN)
    try:
        lock.release()
    except RuntimeError:
        pass
    else:
        raise AssertionError("released an unlocked lock")


@case
def rlock_is_owned_per_gvthread():
    rl = threading.RLock()
    with Runtime(workers=1) as rt:
        order = []

        def a():
            with rl:
                with rl:            # reentrant
                    order.append("a-in")
                    time.sleep(0.05)  # b runs on the same worker meanwhile
                    order.append("a-out")

        def b():
            time.sleep(0.01)
            with rl:                # must wait for a, although on the same OS thread
                order.append("b")

        def stranger():
            try:
                rl.release()
            except RuntimeError:
                return "refused"
        ha, hb = rt.spawn(a), rt.spawn(b)
        time.sleep(0.02)
        assert rt.spawn(stranger).join(JOIN) == "refused"
        ha.join(JOIN)
        hb.join(JOIN)
    assert order == ["a-in", "a-out", "b"], order
    # OS threads: owned per thread, as before
    with rl:
        with rl:
            got = []
            th = threading.Thread(target=lambda: got.append(rl.acquire(timeout=0.05)))
            th.start()
            th.join()
            assert got == [False]


# ---------------------------------------------------------------- Event / Condition
@case
def event_between_gvthreads_and_threads():
    ev = threading.Event()
    with Runtime(workers=1) as rt:
        hs = [rt.spawn(ev.wait, JOIN) for _ in range(20)]
        assert wait_until(lambda: all(h.state == State.BLOCKED for h in hs))
        assert not rt.spawn(threading.Event().wait, 0.02).join(JOIN)
        ev.set()                       # from an OS thread
        assert [h.join(JOIN) for h in hs] == [True] * 20
        ev2 = threading.Event()
        got = []
        th = threading.Thread(target=lambda: got.append(ev2.wait(JOIN)))
        th.start()
        _real_sleep(0.02)
        rt.spawn(ev2.set).join(JOIN)   # from a GVThread
        th.join(JOIN)
        assert got == [True]


@case
def condition_producer_consumer():
    cond = threading.Condition()
    items = []
    with Runtime(workers=1) as rt:
        def consumer(n):
            got = []
            while len(got) < n:
                with cond:
                    while not items:
                        cond.wait()
                    got.append(items.pop(0))
            return got

        def producer(lo, hi):
            for i in range(lo, hi):
                with cond:
                    items.append(i)
                    cond.notify()
                time.sleep(0)
        c = rt.spawn(consumer, 100)
        p = rt.spawn(producer, 0, 50)
        th = threading.Thread(target=producer, args=(50, 100))   # an OS thread too
        th.start()
        th.join(JOIN)
        p.join(JOIN)
        got = c.join(JOIN)
        assert sorted(got) == list(range(100))

        # a thread waits, a GVThread notifies; wait_for with a timeout
        flag = []
        res = []

        def thread_wait():
            with cond:
                res.append(cond.wait_for(lambda: flag, JOIN))
        th = threading.Thread(target=thread_wait)
        th.start()
        _real_sleep(0.02)

        def notify():
            with cond:
                flag.append(1)
                cond.notify_all()
        rt.spawn(notify).join(JOIN)
        th.join(JOIN)
        assert res == [[1]]

        def timed():
            with cond:
                t0 = time.monotonic()
                r = cond.wait(0.05)
                return r, time.monotonic() - t0, cond._is_owned()
        r, dt, owned = rt.spawn(timed).join(JOIN)
        assert r is False and dt >= 0.045 and owned


@case
def condition_wait_cancelled_keeps_lock():
    cond = threading.Condition(threading.Lock())
    with Runtime(workers=1) as rt:
        state = []

        def body():
            with cond:
                try:
                    cond.wait()
                finally:
                    state.append(cond._lock.locked())
        h = rt.spawn(body)
        assert wait_until(lambda: h.state == State.BLOCKED)
        h.cancel()
        try:
            h.join(JOIN)
        except gvthread.Cancelled:
            pass
        assert state == [True]
        assert not cond._lock.locked()


@case
def interrupts_reach_queue_get_and_condition_wait():
    q = queue.Queue()
    cond = threading.Condition()
    with Runtime(workers=1) as rt:
        log = []

        def getter():
            try:
                q.get()
            finally:
                log.append(("getter", q.mutex.locked()))
        h = rt.spawn(getter)
        assert wait_until(lambda: h.state == State.BLOCKED)
        h.cancel()
        try:
            h.join(JOIN)
        except gvthread.Cancelled:
            log.append("cancelled")

        def timed_out():
            with cond:
                try:
                    with gvthread.timeout(0.05):
                        cond.wait()
                except TimeoutError:
                    return "timeout", cond._is_owned()
        assert rt.spawn(timed_out).join(JOIN) == ("timeout", True)
    assert log == [("getter", False), "cancelled"], log
    q.put(1)
    assert q.get_nowait() == 1


@case
def timeouts_like_threading():
    lock, ev, sem = threading.Lock(), threading.Event(), threading.Semaphore(0)
    for call in (lambda: lock.acquire(timeout=float("inf")),
                 lambda: ev.wait(float("inf")),
                 lambda: sem.acquire(timeout=1e300),
                 lambda: time.sleep(float("inf")),
                 _gv_sleep_inf):
        try:
            call()
        except OverflowError:
            pass
        else:
            raise AssertionError("no OverflowError")
    for bad in (lambda: lock.acquire(False, 1), lambda: lock.acquire(timeout=-2),
                lambda: sem.acquire(False, 1)):
        try:
            bad()
        except ValueError:
            pass
        else:
            raise AssertionError("no ValueError")
    assert lock.acquire(timeout=0) and not lock.acquire(timeout=0)
    lock.release()


def _gv_sleep_inf():
    with Runtime(workers=1) as rt:
        def body():
            try:
                time.sleep(float("inf"))
            except OverflowError:
                return "overflow"
        if rt.spawn(body).join(JOIN) == "overflow":
            raise OverflowError


# ---------------------------------------------------------------- semaphores
@case
def semaphore_bounds_concurrency():
    sem = threading.Semaphore(2)
    now, most = [0], [0]
    with Runtime(workers=1) as rt:
        def job():
            with sem:
                now[0] += 1
                most[0] = max(most[0], now[0])
                time.sleep(0.02)
                now[0] -= 1
        t0 = time.monotonic()
        hs = [rt.spawn(job) for _ in range(6)]
        for h in hs:
            h.join(JOIN)
        dt = time.monotonic() - t0
    assert most[0] == 2 and 0.055 <= dt < 1.0, (most, dt)
    assert sem._value == 2
    assert sem.acquire(timeout=0.01) and sem.acquire(False) and not sem.acquire(timeout=0.01)
    sem.release(2)
    bs = threading.BoundedSemaphore(1)
    bs.acquire()
    bs.release()
    try:
        bs.release()
    except ValueError:
        pass
    else:
        raise AssertionError("BoundedSemaphore over-released")


# ---------------------------------------------------------------- queue
@case
def queue_between_gvthreads():
    q = queue.Queue(maxsize=4)
    with Runtime(workers=1) as rt:
        def producer():
            for i in range(200):
                q.put(i)          # parks when full
            q.put(None)

        def consumer():
            out = []
            while (x := q.get()) is not None:   # parks when empty
                out.append(x)
                q.task_done()
            q.task_done()
            return out
        c = rt.spawn(consumer)
        p = rt.spawn(producer)
        p.join(JOIN)
        assert c.join(JOIN) == list(range(200))
        rt.spawn(q.join).join(JOIN)

        def empty_timeout():
            t0 = time.monotonic()
            try:
                queue.Queue().get(timeout=0.05)
            except queue.Empty:
                return time.monotonic() - t0
        assert rt.spawn(empty_timeout).join(JOIN) >= 0.045

        lq, pq, sq = queue.LifoQueue(), queue.PriorityQueue(), queue.SimpleQueue()

        def fill():
            for i in (3, 1, 2):
                lq.put(i)
                pq.put(i)
                sq.put(i)
        rt.spawn(fill).join(JOIN)

        def drain():
            return ([lq.get() for _ in range(3)], [pq.get() for _ in range(3)],
                    [sq.get() for _ in range(3)])
        assert rt.spawn(drain).join(JOIN) == ([2, 1, 3], [1, 2, 3], [3, 1, 2])


@case
def queue_between_gvthread_and_thread():
    to_gv, to_os = queue.Queue(), queue.SimpleQueue()
    with Runtime(workers=1) as rt:
        stop, gaps = threading.Event(), []
        t = rt.spawn(ticker, stop, gaps)

        def echo():
            while (x := to_gv.get()) is not None:
                to_os.put(x * 2)
        h = rt.spawn(echo)
        out = []
        for i in range(50):
            to_gv.put(i)
            out.append(to_os.get(timeout=JOIN))
        _real_sleep(0.05)          # the GVThread parks in get(); the ticker keeps going
        n = len(gaps)
        _real_sleep(0.05)
        assert len(gaps) > n
        to_gv.put(None)
        h.join(JOIN)
        stop.set()
        t.join(JOIN)
    assert out == [2 * i for i in range(50)]


# ---------------------------------------------------------------- outside GVThreads
@case
def threads_only_behave_as_before():
    # Thread.start() waits on an Event, Barrier is built on Condition(Lock()), Timer on
    # Event: all made after the patch, all used by OS threads only.
    q = queue.Queue()
    barrier = threading.Barrier(3)
    results = []
    lock = threading.Lock()

    def worker(i):
        barrier.wait(JOIN)
        with lock:
            results.append(i)
        q.put(i)
    ths = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for th in ths:
        th.start()
    for th in ths:
        th.join(JOIN)
    assert sorted(results) == [0, 1, 2]
    assert sorted(q.get(timeout=1) for _ in range(3)) == [0, 1, 2]
    fired = threading.Event()
    tm = threading.Timer(0.01, fired.set)
    tm.start()
    assert fired.wait(JOIN)
    tm.join(JOIN)
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(4) as ex:
        assert list(ex.map(lambda x: x * x, range(10))) == [x * x for x in range(10)]
    log = logging.getLogger("monkey-case")
    log.addHandler(logging.NullHandler())
    log.warning("from the main thread")
    with Runtime(workers=1) as rt:
        rt.spawn(log.warning, "from a GVThread").join(JOIN)
    t0 = time.monotonic()
    assert not threading.Event().wait(0.03)
    assert time.monotonic() - t0 >= 0.025
    assert threading.current_thread() is threading.main_thread()


# ---------------------------------------------------------------- unpatch
@case
def unpatch_restores():      # keep last: it undoes the patch
    m = gvthread.monkey
    keep_lock = threading.Lock()
    m.unpatch_all()
    assert not m.is_patched() and not m.is_patched("time.sleep")
    assert time.sleep is _real_sleep
    assert type(threading.Lock()).__module__ != "gvthread.monkey"
    assert threading.Event.__module__ == "threading"
    assert queue.SimpleQueue is not queue._PySimpleQueue
    with keep_lock:              # objects made while patched still work
        pass
    m.patch_all()
    assert m.is_patched() and time.sleep is m.sleep
    m.unpatch_all()


def main():
    names = sys.argv[1:] or list(CASES)
    for name in names:
        try:
            CASES[name]()
            rec = {"case": name, "ok": True, "error": ""}
        except BaseException:  # noqa: BLE001
            rec = {"case": name, "ok": False, "error": traceback.format_exc()}
        print(json.dumps(rec), flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    main()
