"""States and their transitions, snapshot(), stats() and stack() of live GVThreads."""

import inspect
import os
import time

import pytest

from gvthread import GVThreadInfo, Priority, Runtime, State, yield_now
from gvtest_support import JOIN_TIMEOUT, SPIN_TIMEOUT, settled_stats, spin_until, wait_until

CLOCK_SLACK = 0.05
NOT_STARTED_OR_RUNNING = {State.CREATED, State.READY, State.RUNNING}


def _info(rt, gid):
    for info in rt.snapshot():
        if info.id == gid:
            return info
    return None


# --------------------------------------------------------------------------- states

def test_spawn_returns_before_the_gvthread_finishes(rt, flag):
    t0 = time.monotonic()
    h = rt.spawn(spin_until, flag)
    spawn_time = time.monotonic() - t0
    # spawn must not run the function to completion (it cannot finish before flag is set)
    assert not h.done()
    assert h.state in NOT_STARTED_OR_RUNNING, h.state
    assert spawn_time < 1.0
    flag.set()
    assert h.join(timeout=JOIN_TIMEOUT) != SPIN_TIMEOUT
    assert h.state == State.FINISHED
    assert h.done()


def test_running_gvthread_sees_itself_running(rt):
    holder = []

    def f():
        deadline = time.monotonic() + 10
        while not holder and time.monotonic() < deadline:
            yield_now()
        me = holder[0]
        info = [i for i in rt.snapshot() if i.id == me.id]
        return me.state, info[0].state if info else None, info[0].worker if info else "missing"

    h = rt.spawn(f)
    holder.append(h)
    state, snap_state, worker = h.join(timeout=JOIN_TIMEOUT)
    assert state == State.RUNNING
    assert snap_state == State.RUNNING
    assert isinstance(worker, int) and 0 <= worker < rt.workers


def test_yielding_gvthread_is_ready_or_running(rt, flag):
    counter = [0]
    h = rt.spawn(spin_until, flag, counter=counter)
    assert wait_until(lambda: counter[0] >= 10)
    seen = {h.state for _ in range(50)}
    assert seen <= {State.READY, State.RUNNING}, seen
    flag.set()
    h.join(timeout=JOIN_TIMEOUT)


def test_blocked_in_join_then_finished(rt, flag):
    spinner = rt.spawn(spin_until, flag)
    joiner = rt.spawn(lambda: spinner.join())
    assert wait_until(lambda: joiner.state == State.BLOCKED), joiner.state
    info = _info(rt, joiner.id)
    assert info is not None and info.state == State.BLOCKED
    assert not joiner.done()
    assert spinner.state in {State.READY, State.RUNNING}
    flag.set()
    result = joiner.join(timeout=JOIN_TIMEOUT)
    assert result != SPIN_TIMEOUT and isinstance(result, int)
    assert spinner.state == State.FINISHED
    assert joiner.state == State.FINISHED
    assert spinner.done() and joiner.done()
    settled_stats(rt)
    assert _info(rt, joiner.id) is None
    assert _info(rt, spinner.id) is None


def test_failed_gvthread_is_finished(rt):
    def boom():
        raise KeyError("x")

    h = rt.spawn(boom)
    with pytest.raises(KeyError):
        h.join(timeout=JOIN_TIMEOUT)
    assert h.done()
    assert h.state == State.FINISHED


# --------------------------------------------------------------------------- snapshot

def test_snapshot_fields(rt, flag):
    t0 = time.monotonic()
    counter = [0]
    # the spinner is LOW so it cannot starve the joiner under strict priorities
    spinner = rt.spawn(spin_until, flag, counter=counter, name="snap-spin",
                       priority=Priority.LOW)
    joiner = rt.spawn(lambda: spinner.join(), name="snap-join", priority="high")
    t1 = time.monotonic()
    assert wait_until(lambda: joiner.state == State.BLOCKED and counter[0] >= 5)
    snap = rt.snapshot()
    assert isinstance(snap, list)
    assert all(isinstance(i, GVThreadInfo) for i in snap)
    by_id = {i.id: i for i in snap}
    assert set(by_id) == {spinner.id, joiner.id}

    s, j = by_id[spinner.id], by_id[joiner.id]
    assert (s.name, s.priority) == ("snap-spin", Priority.LOW)
    assert (j.name, j.priority) == ("snap-join", Priority.HIGH)
    assert isinstance(s.state, State) and isinstance(s.priority, Priority)
    assert s.state in {State.READY, State.RUNNING}
    assert j.state == State.BLOCKED
    for i in (s, j):
        assert i.worker is None or (isinstance(i.worker, int) and 0 <= i.worker < rt.workers)
        # time.monotonic() seconds; a coarse clock (a few ms stale) is allowed
        assert isinstance(i.created, float) and t0 - CLOCK_SLACK <= i.created <= t1 + CLOCK_SLACK
        assert i.started is not None
        assert i.created <= i.started <= time.monotonic() + CLOCK_SLACK
        assert isinstance(i.switches, int) and i.switches >= 1
    flag.set()
    joiner.join(timeout=JOIN_TIMEOUT)
    settled_stats(rt)
    assert rt.snapshot() == []


def test_snapshot_switch_counts_grow(rt1, make_flag):
    # two spinners on one worker: every yield switches to the other one
    f = make_flag()
    ca, cb = [0], [0]
    a = rt1.spawn(spin_until, f, counter=ca)
    b = rt1.spawn(spin_until, f, counter=cb)
    assert wait_until(lambda: ca[0] >= 20 and cb[0] >= 20)
    snap = {i.id: i for i in rt1.snapshot()}
    assert snap[a.id].switches >= 10, snap[a.id]
    assert snap[b.id].switches >= 10, snap[b.id]
    f.set()
    a.join(timeout=JOIN_TIMEOUT)
    b.join(timeout=JOIN_TIMEOUT)


def test_snapshot_excludes_finished(rt):
    hs = [rt.spawn(lambda: None) for _ in range(5)]
    for h in hs:
        h.join(timeout=JOIN_TIMEOUT)
    settled_stats(rt)
    ids = {h.id for h in hs}
    assert not ids & {i.id for i in rt.snapshot()}


# --------------------------------------------------------------------------- stats

def _check_stats_shape(st, workers):
    for k in ("spawned", "finished", "switches", "migrations", "steals", "parks", "live"):
        assert isinstance(st[k], int) and st[k] >= 0, (k, st.get(k))
    assert isinstance(st["workers"], list) and len(st["workers"]) == workers
    for w in st["workers"]:
        for k in ("switches", "migrations", "steals", "parks"):
            assert isinstance(w[k], int) and w[k] >= 0, (k, w)


def test_stats_fresh_runtime(rt):
    st = rt.stats()
    _check_stats_shape(st, 2)
    assert (st["spawned"], st["finished"], st["live"]) == (0, 0, 0)


def _yielder(n):
    for _ in range(n):
        yield_now()
    return n


def test_stats_counters_one_worker(rt1):
    def parent():
        hs = [rt1.spawn(_yielder, 5) for _ in range(10)]
        return [h.join() for h in hs]  # parks: hs[0] cannot have run yet

    assert rt1.spawn(parent).join(timeout=JOIN_TIMEOUT) == [5] * 10
    st = settled_stats(rt1)
    _check_stats_shape(st, 1)
    assert st["spawned"] == 11
    assert st["finished"] == 11
    assert st["live"] == 0
    # the idle worker goes to sleep once it finds nothing to run: eventually, not at once
    assert wait_until(lambda: rt1.stats()["parks"] >= 1, timeout=10)
    st = settled_stats(rt1)
    # 11 GVThreads each switched in at least once; 10 x 5 yields, nearly all with another
    # GVThread runnable on the single worker
    assert st["switches"] >= 50, st
    # a single worker has nothing to steal from and nowhere to migrate to
    assert st["migrations"] == 0
    assert st["steals"] == 0
    for k in ("switches", "migrations", "steals", "parks"):
        assert sum(w[k] for w in st["workers"]) == st[k], (k, st)


def test_stats_live_counts_parked(rt, flag):
    hs = [rt.spawn(spin_until, flag) for _ in range(3)]
    st = rt.stats()
    assert st["spawned"] == 3 and st["live"] == 3 and st["finished"] == 0
    flag.set()
    for h in hs:
        h.join(timeout=JOIN_TIMEOUT)
    st = settled_stats(rt)
    assert st["spawned"] == 3 and st["finished"] == 3 and st["live"] == 0


def test_stats_two_workers_sum(rt):
    hs = [rt.spawn(_yielder, 20) for _ in range(40)]
    assert [h.join(timeout=JOIN_TIMEOUT) for h in hs] == [20] * 40
    st = settled_stats(rt)
    _check_stats_shape(st, 2)
    assert st["spawned"] == st["finished"] == 40
    assert st["live"] == 0
    assert st["switches"] >= 40
    for k in ("switches", "migrations", "steals", "parks"):
        assert sum(w[k] for w in st["workers"]) == st[k], (k, st)


def test_stats_idle_time_grows_while_parked_not_while_busy(rt1):
    import time
    assert wait_until(lambda: rt1.stats()["parks"] >= 1, timeout=10)
    a = rt1.stats()["workers"][0]["idle_ns"]
    time.sleep(0.2)
    b = rt1.stats()["workers"][0]["idle_ns"]
    assert b - a >= 100_000_000, (a, b)  # parked the whole time, counted while parked

    def busy():
        t = time.monotonic()
        while time.monotonic() - t < 0.3:
            pass

    c = rt1.stats()["workers"][0]["idle_ns"]
    rt1.spawn(busy).join(timeout=JOIN_TIMEOUT)
    d = rt1.stats()["workers"][0]["idle_ns"]
    # the worker ran the loop for 0.3 s: it was not idle for most of that
    assert d - c < 200_000_000, (c, d)


# --------------------------------------------------------------------------- stack()

def _stack_middle(target):
    return target.join()


def _stack_outer(target):
    return _stack_middle(target)


def _park_line():
    lines, start = inspect.getsourcelines(_stack_middle)
    for off, text in enumerate(lines):
        if "target.join()" in text:
            return start + off
    raise AssertionError("marker line not found")


def test_stack_of_parked_gvthread(rt, flag):
    spinner = rt.spawn(spin_until, flag)
    parked = rt.spawn(_stack_outer, spinner)
    assert wait_until(lambda: parked.state == State.BLOCKED)
    frames = rt.stack(parked.id)
    assert isinstance(frames, list) and frames
    for fr in frames:
        assert len(fr) == 4, fr
        filename, lineno, function, source_line = fr
        assert isinstance(filename, str) and isinstance(lineno, int)
        assert isinstance(function, str) and isinstance(source_line, str)
    funcs = [fr[2] for fr in frames]
    assert "_stack_outer" in funcs and "_stack_middle" in funcs, funcs
    # outermost first
    assert funcs.index("_stack_outer") < funcs.index("_stack_middle"), funcs
    filename, lineno, function, source_line = frames[funcs.index("_stack_middle")]
    assert os.path.basename(filename) == os.path.basename(__file__)
    assert lineno == _park_line()
    assert "target.join()" in source_line
    outer = frames[funcs.index("_stack_outer")]
    assert "_stack_middle(target)" in outer[3]
    flag.set()
    assert parked.join(timeout=JOIN_TIMEOUT) != SPIN_TIMEOUT


def test_stack_of_yielding_gvthread(rt, flag):
    counter = [0]
    h = rt.spawn(spin_until, flag, counter=counter)
    assert wait_until(lambda: counter[0] >= 3)
    funcs = [fr[2] for fr in rt.stack(h.id)]
    assert "spin_until" in funcs, funcs
    flag.set()
    h.join(timeout=JOIN_TIMEOUT)


def test_stack_unknown_or_finished_id(rt):
    h = rt.spawn(lambda: None)
    h.join(timeout=JOIN_TIMEOUT)
    with pytest.raises(KeyError):
        rt.stack(h.id)
    with pytest.raises(KeyError):
        rt.stack(10 ** 12)
