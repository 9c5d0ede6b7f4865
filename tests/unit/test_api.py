"""Public API surface: enums, error classes, Runtime attributes, ids, names, argument
validation, current_id()/is_in_gvthread(), default runtime routing."""

import enum
import os
import threading

import pytest

import gvthread
from gvthread import (
    GVThreadInfo,
    Handle,
    Priority,
    Runtime,
    RuntimeShutdownError,
    SchedError,
    SlotsExhausted,
    State,
    current_id,
    is_in_gvthread,
    yield_now,
)
from gvtest_support import JOIN_TIMEOUT, SPIN_TIMEOUT, spin_until, wait_until

KIB = 1024


# --------------------------------------------------------------------------- enums/classes

def test_priority_enum_values():
    assert issubclass(Priority, enum.IntEnum)
    assert (Priority.CRITICAL, Priority.HIGH, Priority.NORMAL, Priority.LOW) == (0, 1, 2, 3)
    assert len(Priority) == 4


def test_state_enum_members():
    assert issubclass(State, enum.IntEnum)
    names = {s.name for s in State}
    assert names == {"CREATED", "READY", "RUNNING", "BLOCKED", "PREEMPTED", "FINISHED",
                     "CANCELLED"}
    assert len({int(s) for s in State}) == len(State)


def test_error_hierarchy():
    assert issubclass(SchedError, RuntimeError)
    assert issubclass(SlotsExhausted, SchedError)
    assert issubclass(RuntimeShutdownError, SchedError)
    assert not issubclass(SlotsExhausted, RuntimeShutdownError)


def test_gvthreadinfo_is_namedtuple_with_contract_fields():
    assert issubclass(GVThreadInfo, tuple)
    # the contract's fields, in this order (extra fields may follow)
    assert GVThreadInfo._fields[:8] == ("id", "name", "state", "priority", "worker",
                                        "created", "started", "switches")


# --------------------------------------------------------------------------- Runtime attrs

def test_runtime_attributes():
    with Runtime(workers=3, stack_size=128 * KIB, max_gvthreads=1000) as r:
        assert r.workers == 3
        assert r.stack_size == 128 * KIB
        assert r.max_gvthreads == 1000
        assert r.spawn(lambda: 7).join(timeout=JOIN_TIMEOUT) == 7
        assert len(r.stats()["workers"]) == 3


def test_runtime_defaults():
    with Runtime() as r:
        assert r.workers == os.cpu_count()
        assert r.stack_size == 8 * 1024 * KIB  # a main thread's
        assert r.max_gvthreads == 1_000_000


def test_default_runtime_is_singleton():
    r = gvthread.runtime()
    assert isinstance(r, Runtime)
    assert gvthread.runtime() is r
    assert r.workers == os.cpu_count()


def test_module_spawn_from_outside_uses_default_runtime():
    r = gvthread.runtime()
    before = r.stats()["spawned"]
    h = gvthread.spawn(lambda x: x * 2, 21)
    assert isinstance(h, Handle)
    assert h.join(timeout=JOIN_TIMEOUT) == 42
    assert r.stats()["spawned"] == before + 1


def test_module_spawn_inside_gvthread_uses_its_runtime(rt):
    default_before = gvthread.runtime().stats()["spawned"]

    def parent():
        child = gvthread.spawn(lambda: current_id())
        return child.id, child.join()

    cid, child_ran_as = rt.spawn(parent).join(timeout=JOIN_TIMEOUT)
    assert child_ran_as == cid
    st = rt.stats()
    assert st["spawned"] == 2, "gvthread.spawn() inside a GVThread must use that GVThread's runtime"
    assert gvthread.runtime().stats()["spawned"] == default_before


# --------------------------------------------------------------------------- ids, names

def test_ids_positive_unique_increasing(rt):
    hs = [rt.spawn(lambda: None) for _ in range(50)]
    ids = [h.id for h in hs]
    assert all(isinstance(i, int) and i > 0 for i in ids)
    assert ids == sorted(ids) and len(set(ids)) == len(ids), ids
    for h in hs:
        h.join(timeout=JOIN_TIMEOUT)
    later = rt.spawn(lambda: None)
    assert later.id > ids[-1]
    later.join(timeout=JOIN_TIMEOUT)


def test_ids_unique_under_concurrent_spawns(rt):
    def spawner():
        hs = [rt.spawn(lambda: None) for _ in range(50)]
        for h in hs:
            h.join()
        return [h.id for h in hs]

    parents = [rt.spawn(spawner) for _ in range(4)]
    ids = [i for p in parents for i in p.join(timeout=JOIN_TIMEOUT)]
    ids += [p.id for p in parents]
    assert len(ids) == 204
    assert len(set(ids)) == 204


def test_default_and_custom_names(rt):
    h = rt.spawn(lambda: None)
    assert h.name == f"gvthread-{h.id}"
    h2 = rt.spawn(lambda: None, name="worker-x")
    assert h2.name == "worker-x"
    h.join(timeout=JOIN_TIMEOUT)
    h2.join(timeout=JOIN_TIMEOUT)


def test_args_and_kwargs_are_passed(rt):
    def f(a, b=0, *rest, c, **kw):
        return a, b, rest, c, kw

    h = rt.spawn(f, 1, 2, 3, 4, c=5, d=6, name="args", priority=Priority.HIGH)
    assert h.join(timeout=JOIN_TIMEOUT) == (1, 2, (3, 4), 5, {"d": 6})
    assert h.name == "args"
    assert h.priority == Priority.HIGH


# --------------------------------------------------------------------------- current_id

def test_current_id_none_outside():
    assert current_id() is None
    assert is_in_gvthread() is False


def test_current_id_none_in_plain_thread():
    out = []
    t = threading.Thread(target=lambda: out.append((current_id(), is_in_gvthread())))
    t.start()
    t.join()
    assert out == [(None, False)]


def test_current_id_inside(rt):
    h = rt.spawn(lambda: (current_id(), is_in_gvthread()))
    assert h.join(timeout=JOIN_TIMEOUT) == (h.id, True)


def test_current_id_follows_nested_gvthreads(rt):
    def child():
        yield_now()
        return current_id()

    def parent():
        me = current_id()
        c = rt.spawn(child)
        got = c.join()
        return me, c.id, got, current_id()

    h = rt.spawn(parent)
    me, cid, got, me_after = h.join(timeout=JOIN_TIMEOUT)
    assert me == h.id == me_after
    assert got == cid != me


def test_yield_now_outside_gvthread_is_harmless():
    assert yield_now() is None


def test_yield_now_inside_returns_none(rt):
    assert rt.spawn(yield_now).join(timeout=JOIN_TIMEOUT) is None


# --------------------------------------------------------------------------- validation

@pytest.mark.parametrize("bad", [42, None, "not callable", object()])
def test_spawn_non_callable_type_error(rt, bad):
    with pytest.raises(TypeError):
        rt.spawn(bad)
    st = rt.stats()
    assert st["live"] == 0
    assert st["spawned"] == 0


def test_module_spawn_non_callable_type_error():
    with pytest.raises(TypeError):
        gvthread.spawn(12345)


@pytest.mark.parametrize("bad", [4, -1, 99, "bogus", "", 1.5])
def test_spawn_bad_priority_value_error(rt, bad):
    with pytest.raises(ValueError):
        rt.spawn(lambda: None, priority=bad)
    st = rt.stats()
    assert st["live"] == 0
    assert st["spawned"] == 0


@pytest.mark.parametrize("given, expected", [
    ("critical", Priority.CRITICAL), ("high", Priority.HIGH), ("normal", Priority.NORMAL),
    ("low", Priority.LOW), (0, Priority.CRITICAL), (1, Priority.HIGH), (2, Priority.NORMAL),
    (3, Priority.LOW), (Priority.LOW, Priority.LOW),
])
def test_spawn_accepted_priorities(rt, given, expected):
    h = rt.spawn(lambda: "ok", priority=given)
    assert h.priority == expected
    assert isinstance(h.priority, Priority)
    assert h.join(timeout=JOIN_TIMEOUT) == "ok"


def test_default_priority_is_normal(rt):
    h = rt.spawn(lambda: None)
    assert h.priority == Priority.NORMAL
    h.join(timeout=JOIN_TIMEOUT)


@pytest.mark.parametrize("size", [
    0, -4096, 4096, 32 * KIB, 64 * KIB - 4096,      # too small (< 64 KiB)
    64 * KIB + 1, 100_000, 256 * KIB + 100,         # not a multiple of the page size
    16 * 1024 * 1024 * KIB + 4096,                  # above the 16 GiB maximum
])
def test_runtime_bad_stack_size(size):
    with pytest.raises(ValueError):
        with Runtime(workers=1, stack_size=size):
            pass


def test_runtime_min_stack_size_works():
    with Runtime(workers=1, stack_size=64 * KIB) as r:
        assert r.spawn(lambda: sum(range(100))).join(timeout=JOIN_TIMEOUT) == 4950


# --------------------------------------------------------------------------- exhaustion

def test_slots_exhausted_then_recovers(flag):
    with Runtime(workers=2, max_gvthreads=4) as r:
        try:
            parked = [r.spawn(spin_until, flag) for _ in range(4)]
            assert r.stats()["live"] == 4
            with pytest.raises(SlotsExhausted) as ei:
                r.spawn(lambda: None)
            assert isinstance(ei.value, SchedError)
            assert isinstance(ei.value, RuntimeError)
            # exhaustion must not have disturbed the parked ones
            assert not any(h.done() for h in parked)
        finally:
            flag.set()
        results = [h.join(timeout=JOIN_TIMEOUT) for h in parked]
        assert SPIN_TIMEOUT not in results
        # Slots come back once they finish.  A slot may be recycled a moment after join()
        # returns (the worker must first leave the dead stack), so allow a short grace.
        got = []

        def try_spawn():
            try:
                got.append(r.spawn(lambda: "again"))
                return True
            except SlotsExhausted:
                return False

        assert wait_until(try_spawn, timeout=5.0), "spawn still SlotsExhausted after all finished"
        assert got[0].join(timeout=JOIN_TIMEOUT) == "again"
        # and the full capacity is usable again
        more = [r.spawn(lambda i=i: i) for i in range(3)]
        assert [h.join(timeout=JOIN_TIMEOUT) for h in more] == [0, 1, 2]


def test_slots_exhausted_inside_gvthread(flag):
    with Runtime(workers=1, max_gvthreads=4) as r:
        def parent():
            kids = []
            try:
                while True:
                    kids.append(r.spawn(spin_until, flag))
                    if len(kids) > 10:
                        return "never exhausted"
            except SlotsExhausted:
                n = len(kids)
            flag.set()
            for k in kids:
                k.join()
            return n

        try:
            assert r.spawn(parent).join(timeout=JOIN_TIMEOUT) == 3  # parent + 3 children = 4
        finally:
            flag.set()


# --------------------------------------------------------------------------- shutdown

def test_spawn_after_shutdown_raises():
    r = Runtime(workers=1)
    try:
        assert r.spawn(lambda: 1).join(timeout=JOIN_TIMEOUT) == 1
    finally:
        r.shutdown()
    with pytest.raises(RuntimeShutdownError) as ei:
        r.spawn(lambda: None)
    assert isinstance(ei.value, SchedError)
    r.shutdown()  # idempotent
    r.shutdown(wait=False)


def test_spawn_after_with_block_raises():
    with Runtime(workers=1) as r:
        pass
    with pytest.raises(RuntimeShutdownError):
        r.spawn(lambda: None)


def test_with_block_waits_for_gvthreads():
    done = []

    def slow(i):
        for _ in range(200):
            yield_now()
        done.append(i)
        return i

    with Runtime(workers=2) as r:
        hs = [r.spawn(slow, i) for i in range(20)]
    # leaving the block is shutdown(wait=True)
    assert sorted(done) == list(range(20))
    assert all(h.done() for h in hs)
    assert all(h.state == State.FINISHED for h in hs)
    assert [h.join(timeout=1) for h in hs] == list(range(20))


def test_explicit_shutdown_wait_true_waits(flag):
    r = Runtime(workers=2)
    try:
        hs = [r.spawn(spin_until, flag, 10.0) for _ in range(3)]
        t = threading.Timer(0.2, flag.set)
        t.start()
        r.shutdown(wait=True)
        t.join()
        assert all(h.done() for h in hs)
        assert SPIN_TIMEOUT not in [h.join(timeout=1) for h in hs]
    finally:
        flag.set()
        r.shutdown()
