"""scope(): every child joined at exit, first failure cancels the rest, ExceptionGroups."""
import threading
import time

import pytest

import gvthread
from gvthread import CancellationToken, State
from gvthread import _core

from gvtest_support import JOIN_TIMEOUT, wait_until

Cancelled = gvthread.Cancelled
sleep = gvthread.sleep


def _sleeper(seconds, log, tag):
    try:
        sleep(seconds)
        log.append(("done", tag))
        return tag
    finally:
        log.append(("finally", tag))


def _fail_after(seconds, exc):
    sleep(seconds)
    raise exc


def test_all_children_joined_at_exit(rt):
    log = []
    with gvthread.scope(rt) as s:
        hs = [s.spawn(_sleeper, 0.001 * (i % 5), log, i) for i in range(50)]
    assert all(h.done() for h in hs)
    assert sorted(t for k, t in log if k == "done") == list(range(50))
    assert [h.join(0) for h in hs] == list(range(50))
    assert s.handles == hs


def test_spawn_passes_name_priority_and_kwargs(rt):
    def f(a, *, b):
        return a + b, gvthread.current_handle().name
    with gvthread.scope(rt) as s:
        h = s.spawn(f, 1, b=2, name="worker-x", priority="high")
    assert h.join(0) == (3, "worker-x")
    assert h.name == "worker-x"


def test_first_failure_cancels_sleeping_siblings(rt):
    log = []
    err = ValueError("boom")
    t0 = time.monotonic()
    with pytest.raises(ExceptionGroup) as ei:
        with gvthread.scope(rt) as s:
            sibs = [s.spawn(_sleeper, 30, log, i) for i in range(5)]
            bad = s.spawn(_fail_after, 0.02, err)
    assert time.monotonic() - t0 < 5.0
    # Cancelled of the siblings cancelled because of the failure is left out.
    assert ei.value.exceptions == (err,)
    assert all(h.state == State.CANCELLED for h in sibs)
    assert sorted(log) == [("finally", i) for i in range(5)]
    assert bad.state == State.FINISHED
    assert s.token.cancelled


def test_failure_is_seen_before_join_order_reaches_it(rt):
    # The first child sleeps long; the failure of the last one must still cancel it early.
    log = []
    t0 = time.monotonic()
    with pytest.raises(ExceptionGroup):
        with gvthread.scope(rt) as s:
            s.spawn(_sleeper, 30, log, "slow")
            s.spawn(_fail_after, 0.01, KeyError("k"))
    assert time.monotonic() - t0 < 5.0
    assert log == [("finally", "slow")]


def test_group_holds_every_real_failure_in_spawn_order(rt):
    def raises_on_cancel():
        try:
            sleep(30)
        except Cancelled:
            raise RuntimeError("cleanup failed")

    first = ValueError("first")
    with pytest.raises(ExceptionGroup) as ei:
        with gvthread.scope(rt) as s:
            s.spawn(raises_on_cancel)
            s.spawn(_sleeper, 30, [], "quiet")
            s.spawn(_fail_after, 0.02, first)
    excs = ei.value.exceptions
    assert len(excs) == 2
    assert isinstance(excs[0], RuntimeError) and excs[1] is first
    assert type(ei.value) is ExceptionGroup


def test_base_exception_failure_gives_base_exception_group(rt):
    class Stop(BaseException):
        pass
    def value_error_on_cancel():
        try:
            sleep(30)
        except Cancelled:
            raise ValueError("v")
    with pytest.raises(BaseExceptionGroup) as ei:
        with gvthread.scope(rt) as s:
            h = s.spawn(value_error_on_cancel)
            assert wait_until(lambda: h.state == State.BLOCKED)
            s.spawn(_fail_after, 0.0, Stop())
    assert type(ei.value) is BaseExceptionGroup
    assert [type(e).__name__ for e in ei.value.exceptions] == ["ValueError", "Stop"]
    assert ei.value.split(Exception)[0].exceptions[0].args == ("v",)


def test_child_cancelled_from_outside_is_a_failure(rt):
    log = []
    with pytest.raises(BaseExceptionGroup) as ei:
        with gvthread.scope(rt) as s:
            victim = s.spawn(_sleeper, 30, log, "victim")
            other = s.spawn(_sleeper, 30, log, "other")
            assert wait_until(lambda: victim.state == State.BLOCKED)
            victim.cancel()   # not the scope's doing: reported, and cancels the rest
    assert len(ei.value.exceptions) == 1
    assert isinstance(ei.value.exceptions[0], Cancelled)
    assert other.state == State.CANCELLED


def test_body_raising_cancels_children_and_reraises_as_is(rt):
    log = []
    err = LookupError("body")
    t0 = time.monotonic()
    with pytest.raises(LookupError) as ei:
        with gvthread.scope(rt) as s:
            hs = [s.spawn(_sleeper, 30, log, i) for i in range(3)]
            assert wait_until(lambda: all(h.state == State.BLOCKED for h in hs))
            raise err
    assert ei.value is err
    assert time.monotonic() - t0 < 5.0
    assert all(h.state == State.CANCELLED for h in hs)
    assert sorted(log) == [("finally", i) for i in range(3)]


def test_body_raising_is_grouped_with_child_failures(rt):
    def fails_on_cancel():
        try:
            sleep(30)
        finally:
            raise OSError("child")
    err = LookupError("body")
    with pytest.raises(ExceptionGroup) as ei:
        with gvthread.scope(rt) as s:
            s.spawn(fails_on_cancel)
            assert wait_until(lambda: s.handles[0].state == State.BLOCKED)
            raise err
    excs = ei.value.exceptions
    assert excs[0] is err and isinstance(excs[1], OSError)


def test_scope_cancel_is_not_a_failure(rt):
    log = []
    with gvthread.scope(rt) as s:
        hs = [s.spawn(_sleeper, 30, log, i) for i in range(4)]
        assert wait_until(lambda: all(h.state == State.BLOCKED for h in hs))
        s.cancel()
        late = s.spawn(_sleeper, 30, log, "late")   # spawning into a cancelled scope
    assert all(h.state == State.CANCELLED for h in hs + [late])
    assert s.cancelled


def test_parent_token_cancels_the_scope(rt):
    parent = CancellationToken()
    log = []

    def canceller():
        sleep(0.02)
        parent.cancel()
    rt.spawn(canceller)
    with gvthread.scope(rt, token=parent) as s:
        h = s.spawn(_sleeper, 30, log, 0)
    assert h.state == State.CANCELLED
    assert s.token.cancelled and parent.cancelled
    # never the reverse
    p2 = CancellationToken()
    with gvthread.scope(rt, token=p2) as s2:
        s2.cancel()
    assert not p2.cancelled


def test_scope_inside_a_gvthread_uses_its_runtime(rt):
    def body():
        me = _core.current_core()
        with gvthread.scope() as s:
            hs = [s.spawn(_core.current_core) for _ in range(5)]
        return all(h.join(0) is me for h in hs)
    assert rt.spawn(body).join(JOIN_TIMEOUT) is True


def test_scope_inside_a_gvthread_propagates_failures(rt):
    def body():
        got = []
        try:
            with gvthread.scope() as s:
                s.spawn(_sleeper, 30, [], 0)
                s.spawn(_fail_after, 0.01, ValueError("x"))
        except* ValueError as eg:
            got = [type(e).__name__ for e in eg.exceptions]
        return got
    assert rt.spawn(body).join(JOIN_TIMEOUT) == ["ValueError"]


def test_cancelling_the_gvthread_that_runs_the_scope(rt):
    log = []

    def body():
        with gvthread.scope() as s:
            s.spawn(_sleeper, 30, log, "a")
            s.spawn(_sleeper, 30, log, "b")
        log.append("after scope")   # never reached: Cancelled comes out of the scope
    h = rt.spawn(body)
    assert wait_until(lambda: h.state == State.BLOCKED and len(log) == 0
                      and rt.stats()["live"] == 3)
    h.cancel()
    with pytest.raises(Cancelled):
        h.join(JOIN_TIMEOUT)
    assert sorted(log) == [("finally", "a"), ("finally", "b")]


def test_children_may_spawn_into_the_scope(rt):
    out = []

    def parent(s, depth):
        out.append(depth)
        sleep(0.005)
        if depth < 5:
            s.spawn(parent, s, depth + 1)
            s.spawn(parent, s, depth + 1)
    with gvthread.scope(rt) as s:
        s.spawn(parent, s, 0)
    assert len(out) == 2 ** 6 - 1
    assert all(h.done() for h in s.handles)


def test_scope_from_an_ordinary_thread_on_the_default_runtime():
    res = []

    def thread_main():
        with gvthread.scope() as s:
            hs = [s.spawn(pow, 2, i) for i in range(8)]
        res.extend(h.join(0) for h in hs)
    th = threading.Thread(target=thread_main)
    th.start()
    th.join(JOIN_TIMEOUT)
    assert res == [2 ** i for i in range(8)]


def test_spawn_outside_the_block_raises(rt):
    s = gvthread.scope(rt)
    with pytest.raises(RuntimeError):
        s.spawn(int)
    with s:
        pass
    with pytest.raises(RuntimeError):
        s.spawn(int)
    with pytest.raises(RuntimeError):
        with s:
            pass


def test_enclosing_timeout_cancels_and_joins_the_children(rt):
    log = []

    def body():
        t0 = time.monotonic()
        try:
            with gvthread.timeout(0.05):
                with gvthread.scope() as s:
                    s.spawn(_sleeper, 30, log, "a")
                    s.spawn(_sleeper, 30, log, "b")
        except TimeoutError:
            return "timeout", time.monotonic() - t0, [h.state for h in s.handles]
    what, dt, states = rt.spawn(body).join(JOIN_TIMEOUT)
    assert what == "timeout" and dt < 5.0
    assert states == [State.CANCELLED, State.CANCELLED]
    assert sorted(log) == [("finally", "a"), ("finally", "b")]
