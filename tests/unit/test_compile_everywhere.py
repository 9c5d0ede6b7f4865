"""gvthread.compile puts a safepoint into every code object: comprehensions, generator
expressions, lambdas, nested functions, class bodies, async functions and comprehensions.

Each endless loop below is written as a user would write it, compiled with
gvthread.compile and run in a GVThread, and must stop on Handle.cancel() and on
gvthread.timeout().  The runtimes run with monitor_safepoints=False and no spare thread:
on 3.12+ sys.monitoring would otherwise bring the same loops to a safepoint without
gvthread.compile's checks (test_monitor.py), and these tests are about the checks.
"""
import ast
import sys
import time
import traceback

import pytest

import gvthread
from gvthread import Runtime

from gvtest_support import JOIN_TIMEOUT

#: Every loop here spins forever unless stopped; this is how long a test lets it run
#: before cancelling (the loop must be well inside its loop by then).
SPIN_FIRST = 0.05
#: How long a stop may take before the test calls it a hang.  Measured: ~1 ms for
#: cancel, ~51 ms for timeout(0.05); wide for a loaded 2-core CI box.
STOP_LIMIT = 5.0

# name -> source of a statement that never ends: each loops only in a comprehension,
# a generator expression, a lambda or a class body, never in a `for`/`while` statement.
ENDLESS = {
    "list comprehension": "[x for x in iter(int, 1)]",
    "set comprehension": "{x for x in iter(int, 1)}",
    "dict comprehension": "{x: x for x in iter(int, 1)}",
    "generator expression": "any(x for x in iter(int, 1))",
    "sum of a generator expression": "sum(x for x in iter(int, 1))",
    "inner clause": "[b for a in [1] for b in iter(int, 1) if b]",
    "comprehension with a condition": "[x for x in iter(int, 1) if x]",
    "lambda": "(lambda: [x for x in iter(int, 1) if x])()",
    "nested function": "def outer():\n    def inner():\n        return any(x for x in iter(int, 1))\n"
                       "    return inner()\nouter()",
    "class body": "class C:\n    y = any(x for x in iter(int, 1))",
    "comprehension in a class body's method":
        "class C:\n    def m(self):\n        return any(x for x in iter(int, 1))\nC().m()",
}

# An async iterator that never suspends, built by the builtin compile (no safepoint of
# its own): the async comprehension's check is the only one in the loop.
ASYNC_ITER_SRC = '''
class Zeros:
    def __aiter__(self):
        return self
    async def __anext__(self):
        return 0
'''

ASYNC_SRC = '''
async def acomp():
    return [x async for x in Zeros() if x]

def drive(coro):
    coro.send(None)  # never suspends: runs until the comprehension is stopped
'''


def _runtime():
    return Runtime(workers=1, max_spare_threads=0, monitor_safepoints=False)


def _compiled(src, ns=None):
    ns = {} if ns is None else ns
    code = gvthread.compile(src, "<cell>", "exec")
    return code, ns


def _async_body():
    ns = {}
    exec(compile(ASYNC_ITER_SRC, "<plain>", "exec"), ns)
    exec(gvthread.compile(ASYNC_SRC, "<cell>", "exec"), ns)
    return ns


@pytest.mark.parametrize("name", sorted(ENDLESS))
def test_cancel_stops_an_endless_loop(name):
    code, ns = _compiled(ENDLESS[name])
    with _runtime() as rt:
        h = rt.spawn(exec, code, ns)
        time.sleep(SPIN_FIRST)
        assert h.state in (gvthread.State.RUNNING, gvthread.State.READY,
                           gvthread.State.PREEMPTED)
        t0 = time.monotonic()
        assert h.cancel()
        with pytest.raises(gvthread.Cancelled):
            h.join(timeout=JOIN_TIMEOUT)
        took = time.monotonic() - t0
    assert h.state == gvthread.State.CANCELLED
    assert took < STOP_LIMIT, took


def _timed(src):
    """Run src compiled, under timeout(0.05), in a GVThread: seconds until TimeoutError."""
    inner = gvthread.compile(src, "<cell>", "exec")

    def body():
        ns = {}
        t0 = time.monotonic()
        try:
            with gvthread.timeout(0.05):
                exec(inner, ns)
        except TimeoutError as e:
            assert str(e) == "timed out after 0.05 s"
            return time.monotonic() - t0
        return None

    with _runtime() as rt:
        return rt.spawn(body).join(timeout=JOIN_TIMEOUT)


@pytest.mark.parametrize("name", sorted(ENDLESS))
def test_timeout_stops_an_endless_loop(name):
    took = _timed(ENDLESS[name])
    assert took is not None and 0.05 <= took < STOP_LIMIT, took


def test_cancel_and_timeout_stop_an_endless_async_comprehension():
    ns = _async_body()
    with _runtime() as rt:
        h = rt.spawn(ns["drive"], ns["acomp"]())
        time.sleep(SPIN_FIRST)
        assert h.cancel()
        with pytest.raises(gvthread.Cancelled):
            h.join(timeout=JOIN_TIMEOUT)

        def timed():
            try:
                with gvthread.timeout(0.05):
                    ns["drive"](ns["acomp"]())
            except TimeoutError:
                return "timed out"
        assert rt.spawn(timed).join(timeout=JOIN_TIMEOUT) == "timed out"


def test_endless_comprehension_is_preempted():
    # one worker, no spare, no sys.monitoring: only the comprehension's own check lets
    # the ticker run while it spins
    code, ns = _compiled("any(x for x in iter(int, 1))")
    with _runtime() as rt:
        h = rt.spawn(exec, code, ns)
        ticks = []

        def ticker():
            for _ in range(5):
                gvthread.sleep(0.01)
                ticks.append(time.monotonic())
        rt.spawn(ticker).join(timeout=JOIN_TIMEOUT)
        h.cancel()
        with pytest.raises(gvthread.Cancelled):
            h.join(timeout=JOIN_TIMEOUT)
        assert rt.stats()["coop_preemptions"] >= 5
    assert len(ticks) == 5


def test_uninstrumented_comprehension_has_no_safepoint():
    # the control: built by the builtin compile, the same kind of loop never sees the
    # deadline (it ends on its own, and the expired scope then raises nothing)
    code = compile("n = len([x for x in range(3_000_000)])", "<plain>", "exec")

    def body():
        ns = {}
        t0 = time.monotonic()
        with gvthread.timeout(0.001):
            exec(code, ns)
        return ns["n"], time.monotonic() - t0

    with _runtime() as rt:
        n, took = rt.spawn(body).join(timeout=JOIN_TIMEOUT)
    assert n == 3_000_000
    assert took > 0.001


INLINE_SRC = """
t0 = time.monotonic()
try:
    with gvthread.timeout(0.05):
        while True: pass
except TimeoutError as e:
    out.append((time.monotonic() - t0, str(e)))
"""


@pytest.mark.parametrize("monitor", [False, True], ids=["no-monitor", "monitor"])
def test_inline_timeout_at_module_level(monitor):
    # the case: the loop written inline at a module's (a cell's) top level,
    # compiled by gvthread.compile, exec'd in a GVThread
    out = []
    code = gvthread.compile(INLINE_SRC, "<inline>", "exec")
    with Runtime(monitor_safepoints=monitor) as rt:
        rt.spawn(exec, code, {"gvthread": gvthread, "time": time, "out": out}).join(
            timeout=JOIN_TIMEOUT)
    assert len(out) == 1, out
    took, msg = out[0]
    print(f"inline timeout(0.05) at module level: fired after {took * 1e3:.1f} ms")
    assert msg == "timed out after 0.05 s"
    assert 0.05 <= took < STOP_LIMIT, took  # ~51 ms measured


# -- the checks change nothing else ---------------------------------------------------------

SEMANTICS_SRC = '''
import asyncio

def comps(xs):
    return ([x * 2 for x in xs if x % 2],
            {x % 3 for x in xs},
            {x: [y for y in range(x)] for x in xs if x < 4},
            list(x for x in xs for y in range(2) if y),
            [(a, b) for a in range(3) for b in range(a) if b],
            [y for x in xs if (y := x * 10) > 20],
            sum(x for x in xs))

falsy = lambda: 0
none = lambda: None
empty = lambda: []
truthy = lambda x=5: x
default_kw = lambda *a, k=3, **kw: (a, k, kw)
gen_lambda = lambda: (yield 7)

class K:
    """class doc"""
    x = 1
    doubled = [v * 2 for v in range(3)]
    def method(self):
        """method doc"""
        return self.x

async def agen():
    for i in range(4):
        yield i

async def acomps():
    return ([x async for x in agen() if x],
            [await asyncio.sleep(0, x) for x in range(3)],
            {x: x async for x in agen()})
'''


def test_results_are_unchanged():
    ns_plain, ns_gv = {}, {}
    exec(compile(SEMANTICS_SRC, "<s>", "exec"), ns_plain)
    exec(gvthread.compile(SEMANTICS_SRC, "<s>", "exec"), ns_gv)
    xs = list(range(7))
    assert ns_gv["comps"](xs) == ns_plain["comps"](xs)
    for name in ("falsy", "none", "empty", "truthy"):
        assert ns_gv[name]() == ns_plain[name](), name
    assert ns_gv["empty"]() == [] and ns_gv["falsy"]() == 0 and ns_gv["none"]() is None
    assert ns_gv["default_kw"](1, 2, k=4, z=5) == ((1, 2), 4, {"z": 5})
    assert next(ns_gv["gen_lambda"]()) == 7
    assert ns_gv["K"].__doc__ == "class doc" and ns_gv["K"].method.__doc__ == "method doc"
    assert ns_gv["K"].doubled == [0, 2, 4] and ns_gv["K"]().method() == 1
    assert set(vars(ns_gv["K"])) == set(vars(ns_plain["K"]))
    import asyncio
    assert asyncio.run(ns_gv["acomps"]()) == asyncio.run(ns_plain["acomps"]())


def test_inside_a_gvthread_with_the_flag_set_results_are_unchanged():
    # preempted at every check (time slice of 1 ms, a loop long enough to be flagged
    # many times): the checks then call the safepoint and yield, results stay the same
    ns = {}
    exec(gvthread.compile(SEMANTICS_SRC, "<s>", "exec"), ns)
    xs = list(range(200_000))

    def body():
        return ns["comps"](xs), [ns["falsy"]() for _ in range(100_000)]

    with Runtime(workers=1, time_slice=0.001) as rt:
        h = rt.spawn(body)
        other = rt.spawn(lambda: [gvthread.sleep(0.001) for _ in range(20)])
        res, falsies = h.join(timeout=JOIN_TIMEOUT)
        other.join(timeout=JOIN_TIMEOUT)
        assert rt.stats()["coop_preemptions"] >= 1
    plain = {}
    exec(compile(SEMANTICS_SRC, "<s>", "exec"), plain)
    assert res == plain["comps"](xs)
    assert falsies == [0] * 100_000


def test_every_code_object_gets_a_check():
    code = gvthread.compile(SEMANTICS_SRC, "<s>", "exec")

    def codes(c):
        yield c
        for k in c.co_consts:
            if hasattr(k, "co_code"):
                yield from codes(k)

    unchecked = [c.co_name for c in codes(code)
                 if c.co_name != "<module>" and "__gvpreempt__" not in c.co_names]
    assert unchecked == []
    # on 3.12+ list/set/dict comprehensions are inlined (PEP 709): then the check sits
    # in the enclosing function's code
    comps = next(c for c in codes(code) if c.co_name == "comps")
    assert "__gvsafepoint__" in comps.co_names


def test_line_numbers_and_tracebacks_are_unchanged():
    src = ("def f(xs):\n"
           "    return [1 // x\n"
           "            for x in xs]\n"
           "g = lambda x: 1 // x\n"
           "class C:\n"
           "    bad = [1 // x for x in [0]]\n")
    def where(code, call):
        """(line, end line, column, end column) of each frame of call's traceback."""
        ns = {}
        try:
            exec(code, ns)
            call(ns)
        except ZeroDivisionError as e:
            return [(f.lineno, f.end_lineno, f.colno, f.end_colno)
                    for f in traceback.extract_tb(e.__traceback__)[1:]]
        raise AssertionError("no error")

    gv, plain = gvthread.compile(src, "<tb>", "exec"), compile(src, "<tb>", "exec")
    no_class = src.split("class C")[0]
    gv_nc, plain_nc = gvthread.compile(no_class, "<tb>", "exec"), compile(no_class, "<tb>", "exec")
    for code, pcode, call, line in ((gv, plain, lambda ns: None, 6),
                                    (gv_nc, plain_nc, lambda ns: ns["f"]([1, 0]), 2),
                                    (gv_nc, plain_nc, lambda ns: ns["g"](0), 4)):
        got = where(code, call)
        assert got[-1][0] == line, got
        assert got == where(pcode, call)

    def lines(c):
        out = {ln for _, _, ln in c.co_lines() if ln is not None}
        for k in c.co_consts:
            if hasattr(k, "co_code"):
                out |= lines(k)
        return out
    assert lines(gvthread.compile(src, "<tb>", "exec")) == lines(compile(src, "<tb>", "exec"))


def test_the_tree_stays_valid_python():
    tree = gvthread._compile.instrument(ast.parse(SEMANTICS_SRC))
    again = ast.unparse(tree)
    compile(again, "<again>", "exec")  # parses and compiles as plain source
    assert again.count("__gvsafepoint__()") >= 20


if sys.version_info >= (3, 12):
    def test_comprehension_check_compiles_to_one_load_and_one_jump():
        import dis
        code = gvthread.compile("def f(xs):\n    return [x for x in xs]\n", "<d>", "exec")
        f = next(c for c in code.co_consts if hasattr(c, "co_code"))
        ops = [i.opname for i in dis.get_instructions(f)]
        assert ops.count("LOAD_GLOBAL") == 2 * 2  # the entry check and the clause check
        assert "UNARY_NOT" not in ops  # `not flag or ...` folded into the jump
