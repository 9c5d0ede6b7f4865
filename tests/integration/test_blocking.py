"""spawn_blocking(): the caller parks, its worker keeps running GVThreads; the pool is bounded."""
import threading
import time

import pytest

import gvthread
from gvthread import Runtime, State, WaitKind, spawn_blocking, set_blocking_pool_size
from gvthread import _blocking, _core

from gvtest_support import JOIN_TIMEOUT, describe, run_script, wait_until

Cancelled = gvthread.Cancelled
_real_sleep = time.sleep   # captured: never a patched one


@pytest.fixture
def pool_size():
    """Restore the pool size after a test that changes it."""
    old = _blocking.blocking_pool_size()
    yield
    set_blocking_pool_size(old)


def test_worker_keeps_ticking_while_four_calls_sleep(pool_size):
    set_blocking_pool_size(max(4, _blocking.blocking_pool_size()))
    with Runtime(workers=2) as rt:
        stop = threading.Event()

        def ticker():
            gaps = []
            last = time.monotonic()
            deadline = last + 30
            while not stop.is_set() and last < deadline:
                gvthread.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now
            return gaps

        def main():
            t = rt.spawn(ticker)
            gvthread.sleep(0.05)
            t0 = time.monotonic()
            hs = [spawn_blocking(_real_sleep, 1) for _ in range(4)]
            res = [h.join() for h in hs]
            elapsed = time.monotonic() - t0
            gvthread.sleep(0.05)
            stop.set()
            return res, elapsed, t.join()

        res, elapsed, gaps = rt.spawn(main).join(JOIN_TIMEOUT)
    assert res == [None] * 4
    assert elapsed < 1.8, f"the 4 calls did not run in parallel: {elapsed:.2f} s"
    assert len(gaps) >= 50
    assert max(gaps) < 0.05, f"worst tick gap {max(gaps) * 1000:.1f} ms"


def test_result_and_exceptions_come_back_through_join(rt):
    class Custom(BaseException):
        pass

    def body():
        ok = spawn_blocking(lambda a, b=0: a * 10 + b, 4, b=2)
        err = spawn_blocking(int, "not a number")
        base = spawn_blocking(_raise, Custom("base"))
        out = [ok.join()]
        for h in (err, base):
            try:
                h.join()
            except BaseException as e:  # noqa: BLE001
                out.append(type(e).__name__)
        return out
    assert rt.spawn(body).join(JOIN_TIMEOUT) == [42, "ValueError", "Custom"]


def _raise(e):
    raise e


def test_from_an_ordinary_thread():
    h = spawn_blocking(threading.get_ident)
    assert h.join(JOIN_TIMEOUT) not in (threading.get_ident(), None)


def test_runs_on_the_callers_runtime(rt):
    def body():
        return spawn_blocking(int).join(), _core.current_core() is rt._core

    def inner():
        h = spawn_blocking(int)
        h.join()
        return h
    h = rt.spawn(inner).join(JOIN_TIMEOUT)
    assert h.done()
    assert rt.spawn(body).join(JOIN_TIMEOUT) == (0, True)


def test_waiting_gvthread_shows_blocking_in_snapshot(rt):
    go = threading.Event()
    h = rt.spawn(lambda: spawn_blocking(go.wait, 30).join())
    try:
        assert wait_until(lambda: any(r.wait_kind == WaitKind.BLOCKING for r in rt.snapshot()))
        waiting = [r for r in rt.snapshot() if r.wait_kind == WaitKind.BLOCKING]
        assert waiting[0].wait_kind.name == "BLOCKING"
    finally:
        go.set()
    assert h.join(JOIN_TIMEOUT) is True


def test_cancel_while_fn_runs(rt):
    go = threading.Event()
    finished = threading.Event()

    def slow():
        go.wait(30)
        finished.set()
        return "late"
    h = spawn_blocking(slow)
    assert wait_until(lambda: h.state == State.BLOCKED)
    t0 = time.monotonic()
    assert h.cancel()
    with pytest.raises(Cancelled):
        h.join(JOIN_TIMEOUT)
    assert time.monotonic() - t0 < 2.0
    assert h.state == State.CANCELLED
    assert not finished.is_set()     # fn keeps running on its thread...
    go.set()
    assert finished.wait(10)         # ...to completion; its result is dropped


def test_cancel_before_fn_starts_skips_it(rt, pool_size):
    set_blocking_pool_size(1)
    go = threading.Event()
    ran = []
    first = spawn_blocking(go.wait, 30)
    assert wait_until(lambda: first.state == State.BLOCKED)
    second = spawn_blocking(ran.append, 1)
    assert wait_until(lambda: second.state == State.BLOCKED)
    second.cancel()
    with pytest.raises(Cancelled):
        second.join(JOIN_TIMEOUT)
    go.set()
    assert first.join(JOIN_TIMEOUT) is True
    assert spawn_blocking(int).join(JOIN_TIMEOUT) == 0  # the pool is still healthy
    assert ran == []


def test_pool_is_bounded(rt, pool_size):
    set_blocking_pool_size(2)
    lock = threading.Lock()
    running = [0, 0]   # now, most seen

    def job():
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        _real_sleep(0.05)
        with lock:
            running[0] -= 1
        return threading.get_ident()

    def body():
        hs = [spawn_blocking(job) for _ in range(8)]
        return [h.join() for h in hs]
    t0 = time.monotonic()
    idents = rt.spawn(body).join(JOIN_TIMEOUT)
    assert time.monotonic() - t0 >= 0.19
    assert running[1] == 2
    assert len(set(idents)) <= 2
    # growing the pool serves the backlog at once
    set_blocking_pool_size(8)
    t0 = time.monotonic()
    rt.spawn(body).join(JOIN_TIMEOUT)
    assert time.monotonic() - t0 < 0.19
    assert _blocking._pool.stats()["threads"] <= 8


def test_set_blocking_pool_size_validates():
    for bad in (0, -1, 1.5, True, "4"):
        with pytest.raises(ValueError):
            set_blocking_pool_size(bad)


def test_spawn_blocking_rejects_non_callable():
    with pytest.raises(TypeError):
        spawn_blocking(42)


@pytest.mark.parametrize("mode", ["waiting", "idle"])
def test_exit_with_a_call_still_running_does_not_hang(mode):
    t0 = time.monotonic()
    res = run_script("blocking_exit.py", mode, timeout=60)
    assert not res.timed_out, describe(res)
    assert res.returncode == 0, describe(res)
    assert "exiting" in res.stdout, describe(res)
    assert "Fatal Python error" not in res.stderr and "Traceback" not in res.stderr, describe(res)
    assert time.monotonic() - t0 < 20
