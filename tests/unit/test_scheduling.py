"""spawn -> yield -> finish, yield interleaving, strict priorities, join (from threads, from
GVThreads, with timeouts) and exceptions through join."""

import threading
import time
import traceback

import pytest

from gvthread import Priority, State, current_id, yield_now
from gvtest_support import JOIN_TIMEOUT, SPIN_TIMEOUT, settled_stats, spin_until, wait_until


# --------------------------------------------------------------------------- spawn/yield/finish

def test_spawn_yield_finish(rt):
    trace = []

    def f(x):
        trace.append("start")
        for i in range(3):
            yield_now()
            trace.append(i)
        return x + 1

    h = rt.spawn(f, 41)
    assert h.join(timeout=JOIN_TIMEOUT) == 42
    assert trace == ["start", 0, 1, 2]
    assert h.done() and h.state == State.FINISHED
    # join again returns the same result
    assert h.join(timeout=JOIN_TIMEOUT) == 42


def test_many_spawn_yield_finish(rt):
    def f(i):
        for _ in range(i % 7):
            yield_now()
        return i * i

    hs = [rt.spawn(f, i) for i in range(300)]
    assert [h.join(timeout=JOIN_TIMEOUT) for h in hs] == [i * i for i in range(300)]


def test_yield_interleaves_on_one_worker(rt1):
    log = []

    def step(tag, n):
        for i in range(n):
            log.append(tag)
            yield_now()
        return tag

    def parent():
        a = rt1.spawn(step, "a", 20)
        b = rt1.spawn(step, "b", 20)
        return a.join(), b.join()

    assert rt1.spawn(parent).join(timeout=JOIN_TIMEOUT) == ("a", "b")
    assert log.count("a") == 20 and log.count("b") == 20
    changes = sum(1 for x, y in zip(log, log[1:]) if x != y)
    # with a working yield the two alternate (~39 changes); a no-op yield gives 1
    assert changes >= 20, "".join(log)


def test_results_on_two_workers_with_yields(rt):
    def f(i):
        acc = 0
        for k in range(50):
            acc += k
            yield_now()
        return i, acc

    hs = [rt.spawn(f, i) for i in range(100)]
    assert [h.join(timeout=JOIN_TIMEOUT) for h in hs] == [(i, 1225) for i in range(100)]


# --------------------------------------------------------------------------- priorities

def test_critical_before_normal_before_low(rt1):
    order = []

    def rec(tag):
        order.append(tag)

    def parent():
        # spawned lowest first; none can run before the parent parks on the single worker
        hs = [rt1.spawn(rec, "low", priority=Priority.LOW),
              rt1.spawn(rec, "normal", priority=Priority.NORMAL),
              rt1.spawn(rec, "high", priority=Priority.HIGH),
              rt1.spawn(rec, "critical", priority=Priority.CRITICAL)]
        for h in hs:
            h.join()
        return list(order)

    # The parent is CRITICAL so that nothing it spawns outranks it (a scheduler may switch
    # to a newly spawned higher-priority GVThread at once); the order is decided when it parks.
    got = rt1.spawn(parent, priority=Priority.CRITICAL).join(timeout=JOIN_TIMEOUT)
    assert got == ["critical", "high", "normal", "low"]


def test_priority_levels_with_many_each(rt1):
    order = []
    rank = {"critical": 0, "high": 1, "normal": 2, "low": 3}

    def rec(tag):
        order.append(tag)

    def parent():
        hs = []
        for _ in range(5):
            for tag in ("low", "normal", "critical", "high"):
                hs.append(rt1.spawn(rec, tag, priority=tag))
        for h in hs:
            h.join()
        return list(order)

    got = rt1.spawn(parent, priority="critical").join(timeout=JOIN_TIMEOUT)
    assert len(got) == 20
    assert [rank[t] for t in got] == sorted(rank[t] for t in got), got


def test_priority_after_yield(rt1):
    # Yielding GVThreads of different priorities: the CRITICAL one finishes all its steps
    # before the LOW one gets past its first (strict priority among runnable GVThreads).
    log = []

    def stepper(tag, n):
        for _ in range(n):
            log.append(tag)
            yield_now()

    def parent():
        lo = rt1.spawn(stepper, "L", 5, priority=Priority.LOW)
        hi = rt1.spawn(stepper, "C", 5, priority=Priority.CRITICAL)
        lo.join()
        hi.join()
        return "".join(log)

    got = rt1.spawn(parent, priority=Priority.CRITICAL).join(timeout=JOIN_TIMEOUT)
    assert got == "CCCCCLLLLL", got


# --------------------------------------------------------------------------- join

def test_join_from_gvthread_parks_not_blocks(rt1):
    # On one worker, a join that blocked the OS thread would deadlock: the child could
    # never run.
    def child():
        yield_now()
        return "child-result"

    def parent():
        c = rt1.spawn(child)
        return c.join()

    assert rt1.spawn(parent).join(timeout=JOIN_TIMEOUT) == "child-result"


def test_join_from_ordinary_threads(rt, flag):
    h = rt.spawn(spin_until, flag)
    results, errors = [], []

    def t_join():
        try:
            results.append(h.join(timeout=JOIN_TIMEOUT))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=t_join) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.05)
    assert not h.done()
    flag.set()
    for t in threads:
        t.join(JOIN_TIMEOUT)
    assert not errors
    assert len(results) == 3 and len(set(results)) == 1 and results[0] != SPIN_TIMEOUT


def test_join_from_many_gvthreads_and_threads(rt, flag):
    target = rt.spawn(spin_until, flag)
    joiners = [rt.spawn(lambda: target.join()) for _ in range(5)]
    assert wait_until(lambda: all(j.state == State.BLOCKED for j in joiners))
    out = []
    t = threading.Thread(target=lambda: out.append(target.join(timeout=JOIN_TIMEOUT)))
    t.start()
    flag.set()
    res = target.join(timeout=JOIN_TIMEOUT)
    t.join(JOIN_TIMEOUT)
    assert res != SPIN_TIMEOUT
    assert [j.join(timeout=JOIN_TIMEOUT) for j in joiners] == [res] * 5
    assert out == [res]


def test_join_timeout_from_thread(rt, flag):
    h = rt.spawn(spin_until, flag)
    t0 = time.monotonic()
    with pytest.raises(TimeoutError):
        h.join(timeout=0.2)
    dt = time.monotonic() - t0
    assert 0.15 <= dt < 10.0, dt
    assert not h.done()
    flag.set()
    assert h.join(timeout=JOIN_TIMEOUT) != SPIN_TIMEOUT


def test_join_timeout_zero_on_finished(rt):
    h = rt.spawn(lambda: "x")
    assert h.join(timeout=JOIN_TIMEOUT) == "x"
    assert h.join(timeout=0) == "x"


def test_join_timeout_from_gvthread(rt, flag):
    target = rt.spawn(spin_until, flag)

    def waiter():
        t0 = time.monotonic()
        try:
            target.join(timeout=0.2)
        except TimeoutError:
            return "timeout", time.monotonic() - t0
        return "returned", time.monotonic() - t0

    what, dt = rt.spawn(waiter).join(timeout=JOIN_TIMEOUT)
    assert what == "timeout"
    assert 0.15 <= dt < 10.0, dt
    assert not target.done()
    flag.set()
    assert target.join(timeout=JOIN_TIMEOUT) != SPIN_TIMEOUT


# --------------------------------------------------------------------------- exceptions

class CustomError(Exception):
    def __init__(self, msg, code):
        super().__init__(msg)
        self.code = code


def _raise_value_error(msg):
    yield_now()
    raise ValueError(msg)


def test_exception_through_join(rt):
    h = rt.spawn(_raise_value_error, "boom-123")
    with pytest.raises(ValueError, match="^boom-123$") as ei:
        h.join(timeout=JOIN_TIMEOUT)
    names = [fs.name for fs in traceback.extract_tb(ei.value.__traceback__)]
    assert "_raise_value_error" in names, names


def test_exception_is_the_same_object(rt):
    box = []

    def f():
        e = CustomError("custom", 7)
        box.append(e)
        raise e

    with pytest.raises(CustomError) as ei:
        rt.spawn(f).join(timeout=JOIN_TIMEOUT)
    assert ei.value is box[0]
    assert ei.value.code == 7 and str(ei.value) == "custom"


def test_exception_chain_preserved(rt):
    def f():
        try:
            {}["missing"]
        except KeyError as e:
            raise RuntimeError("wrapped") from e

    with pytest.raises(RuntimeError, match="wrapped") as ei:
        rt.spawn(f).join(timeout=JOIN_TIMEOUT)
    assert isinstance(ei.value.__cause__, KeyError)


def test_exception_through_join_in_gvthread(rt):
    def parent():
        c = rt.spawn(_raise_value_error, "inner")
        try:
            c.join()
        except ValueError as e:
            names = [fs.name for fs in traceback.extract_tb(e.__traceback__)]
            return str(e), "_raise_value_error" in names
        return "no exception", False

    assert rt.spawn(parent).join(timeout=JOIN_TIMEOUT) == ("inner", True)


def test_exception_joined_twice_and_runtime_keeps_working(rt):
    h = rt.spawn(_raise_value_error, "again")
    for _ in range(2):
        with pytest.raises(ValueError, match="again"):
            h.join(timeout=JOIN_TIMEOUT)
    hs = [rt.spawn(lambda i=i: i) for i in range(10)]
    assert [x.join(timeout=JOIN_TIMEOUT) for x in hs] == list(range(10))


def test_many_failures_do_not_leak_live(rt):
    hs = [rt.spawn(_raise_value_error, str(i)) for i in range(50)]
    for i, h in enumerate(hs):
        with pytest.raises(ValueError, match=f"^{i}$"):
            h.join(timeout=JOIN_TIMEOUT)
    st = settled_stats(rt)
    assert st["live"] == 0 and st["finished"] == 50


def test_current_id_in_exception_gvthread(rt):
    def f():
        raise LookupError(current_id())

    h = rt.spawn(f)
    with pytest.raises(LookupError) as ei:
        h.join(timeout=JOIN_TIMEOUT)
    assert ei.value.args == (h.id,)
