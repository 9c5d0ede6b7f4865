"""contextvars and threading.local are per GVThread."""

import contextvars
import threading

from gvthread import current_id, yield_now
from gvtest_support import JOIN_TIMEOUT, SPIN_TIMEOUT, spin_until, wait_until

VAR = contextvars.ContextVar("gvtest_var", default="default")


def _in_fresh_context(fn, *args):
    """Run fn in a copy of the current context so the test's set() calls do not leak."""
    return contextvars.copy_context().run(fn, *args)


# --------------------------------------------------------------------------- contextvars

def test_child_sees_spawners_value_from_main_thread(rt):
    def body():
        VAR.set("main-value")

        def child():
            seen = VAR.get()
            VAR.set("child-value")
            return seen, VAR.get()

        res = rt.spawn(child).join(timeout=JOIN_TIMEOUT)
        return res, VAR.get()

    (seen, after_set), main_after = _in_fresh_context(body)
    assert seen == "main-value"
    assert after_set == "child-value"
    assert main_after == "main-value"


def test_child_sees_parent_gvthread_value_and_does_not_leak_back(rt):
    def child():
        seen = VAR.get()
        VAR.set("child")
        return seen

    def parent():
        VAR.set("parent")
        seen = rt.spawn(child).join()
        return seen, VAR.get()

    assert rt.spawn(parent).join(timeout=JOIN_TIMEOUT) == ("parent", "parent")
    assert VAR.get() == "default"


def test_context_copied_at_spawn_time(rt, flag):
    def child():
        spun = spin_until(flag)
        return spun, VAR.get()

    def body():
        VAR.set("at-spawn")
        h = rt.spawn(child)
        VAR.set("after-spawn")
        flag.set()
        return h.join(timeout=JOIN_TIMEOUT)

    spun, seen = _in_fresh_context(body)
    assert spun != SPIN_TIMEOUT
    assert seen == "at-spawn"


def test_gvthread_without_set_sees_default(rt):
    assert rt.spawn(VAR.get).join(timeout=JOIN_TIMEOUT) == "default"


def test_siblings_isolated_on_one_worker(rt1):
    # Both run on the same OS thread and interleave at every yield.
    def sib(tag):
        VAR.set(tag)
        seen = []
        for _ in range(20):
            yield_now()
            seen.append(VAR.get())
        return seen

    def parent():
        a = rt1.spawn(sib, "A")
        b = rt1.spawn(sib, "B")
        return a.join(), b.join(), VAR.get()

    a, b, parent_val = rt1.spawn(parent).join(timeout=JOIN_TIMEOUT)
    assert a == ["A"] * 20
    assert b == ["B"] * 20
    assert parent_val == "default"


def test_context_survives_yields_across_workers(rt):
    def f(i):
        VAR.set(f"v{i}")
        for _ in range(200):
            yield_now()
            if VAR.get() != f"v{i}":
                return "lost", VAR.get()
        return "ok", VAR.get()

    hs = [rt.spawn(f, i) for i in range(20)]
    assert [h.join(timeout=JOIN_TIMEOUT) for h in hs] == [("ok", f"v{i}") for i in range(20)]


def test_context_run_inside_gvthread(rt):
    def f():
        ctx = contextvars.copy_context()
        ctx.run(VAR.set, "inner")
        return VAR.get(), ctx[VAR]

    assert rt.spawn(f).join(timeout=JOIN_TIMEOUT) == ("default", "inner")


# --------------------------------------------------------------------------- threading.local

def test_threading_local_not_shared_with_main(rt):
    local = threading.local()
    local.x = "main"

    def f():
        had = hasattr(local, "x")
        local.x = "gv"
        return had, local.x

    assert rt.spawn(f).join(timeout=JOIN_TIMEOUT) == (False, "gv")
    assert local.x == "main"


def test_threading_local_siblings_on_one_worker(rt1):
    local = threading.local()

    def sib():
        me = current_id()
        local.x = me
        seen = set()
        for _ in range(20):
            yield_now()
            seen.add(local.x)
        return me, seen

    def parent():
        hs = [rt1.spawn(sib) for _ in range(3)]
        return [h.join() for h in hs]

    for me, seen in rt1.spawn(parent).join(timeout=JOIN_TIMEOUT):
        assert seen == {me}


def test_threading_local_survives_yields_across_workers(rt):
    local = threading.local()

    def f(i):
        local.v = i
        for _ in range(200):
            yield_now()
            if local.v != i:
                return "lost"
        return local.v

    hs = [rt.spawn(f, i) for i in range(20)]
    assert [h.join(timeout=JOIN_TIMEOUT) for h in hs] == list(range(20))


def test_threading_local_fresh_per_gvthread_on_same_worker(rt1):
    local = threading.local()

    def first():
        local.x = "first"
        return "set"

    def second():
        return getattr(local, "x", "unset")

    def parent():
        rt1.spawn(first).join()
        return rt1.spawn(second).join()

    assert rt1.spawn(parent).join(timeout=JOIN_TIMEOUT) == "unset"


def test_threading_local_parent_and_child(rt, flag):
    local = threading.local()

    def child():
        had = hasattr(local, "x")
        local.x = "child"
        spin_until(flag, limit=10.0)
        return had, local.x

    def parent():
        local.x = "parent"
        c = rt.spawn(child)
        for _ in range(10):
            yield_now()
        mine = local.x
        return mine, c

    mine, c = rt.spawn(parent).join(timeout=JOIN_TIMEOUT)
    assert mine == "parent"
    flag.set()
    assert c.join(timeout=JOIN_TIMEOUT) == (False, "child")
    assert wait_until(lambda: c.done())
