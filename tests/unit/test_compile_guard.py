"""compile(), eval() and exec() of source, and marshal, inside GVThreads (native/pycompile.c).

Inside a Python GVThread these parse and compile on a borrowed 8 MiB stack, because
CPython's parser and compiler overflow a slot-sized stack on legal, deeply nested
source.  What the user sees must be CPython's own behaviour: the same results, the same
errors, the caller's locals and __future__ flags, and builtins that still look like
builtins.  Each check runs inside a GVThread and on the main thread, and compares.
"""
import ast
import builtins
import ctypes
import ctypes.util
import inspect
import marshal
import pickle
import platform
import sys

import pytest

from gvtest_support import describe, run_script


def outcome(fn):
    try:
        return ("ok", fn())
    except BaseException as e:  # noqa: BLE001 - compared as data
        return ("raised", type(e).__name__, str(e),
                getattr(e, "lineno", None), getattr(e, "offset", None),
                getattr(e, "filename", None))


def same_inside_and_out(rt, fn):
    inside = rt.spawn(outcome, fn).join()
    assert inside == outcome(fn)
    return inside


def uses_local():
    x = 21
    return eval("x * 2")


def exec_sees_locals():
    y = 5
    ns = {}
    exec("z = y + 1", globals(), {"y": y, **ns})
    return eval("  y\t")  # eval skips leading blanks


def eval_adds_builtins_before_parsing():
    g = {}
    try:
        eval("1 +", g)
    except SyntaxError:
        pass
    return sorted(g)


FUTURE_SRC = '''
from __future__ import annotations

def probe():
    ns = {}
    # with the flag inherited, the annotation stays a string: no NameError
    exec("def h(a: not_defined_anywhere): pass\\nr = h.__annotations__", ns)
    return ns["r"]
'''


@pytest.mark.parametrize("fn", [
    lambda: eval("1 + 1"),
    lambda: eval("  \t 2 * 3"),
    lambda: eval(b"'\\xe9'"),
    lambda: eval(b"# -*- coding: latin-1 -*-\n'\xe9'"),
    lambda: eval("a + b", {"a": 1}, {"b": 2}),
    lambda: eval("1 +"),
    lambda: eval("(1,\n 2"),
    lambda: eval("x\0"),
    lambda: eval(123),
    lambda: eval(compile("40 + 2", "f", "eval")),
    lambda: exec("1 +"),
    lambda: eval("1 +", []),               # globals rejected before parsing
    lambda: eval("1 +", {}, 5),            # so is a locals that is no mapping
    lambda: exec("x = 1", {}, closure=()),  # closure: code objects only
    lambda: exec("x = (", {}, closure=None),
    lambda: exec("import sys; n = len(sys.argv)", {}),
    lambda: exec("raise ValueError('from exec')", {}),
    lambda: compile("x = (", "myfile.py", "exec"),
    lambda: compile("pass", "f", "nonsense"),
    lambda: ast.dump(ast.parse("f(x, *y, **z)")),
    lambda: ast.literal_eval("[1, {'a': (2, 3)}]"),
    lambda: eval("1 +", globals={}),       # 3.11/3.12: no keywords; 3.13: parsed
    lambda: eval("1 +", bogus=1),
    lambda: exec("x = (", {}, {}, None),
    eval_adds_builtins_before_parsing,
    lambda: marshal.loads(marshal.dumps({"a": (1, 2.5, b"x", None)})),
    lambda: marshal.loads(b"\xff garbage"),
    lambda: marshal.dumps(object()),
    uses_local,
    exec_sees_locals,
], ids=lambda f: getattr(f, "__name__", "lambda"))
def test_same_results_and_errors_as_cpython(rt, fn):
    same_inside_and_out(rt, fn)


def test_exec_with_closure_passes_code_through(rt):
    def outer():
        v = 7

        def inner():
            return v
        return inner
    f = outer()
    ns = {}

    def run():
        exec(f.__code__, ns, closure=f.__closure__)  # a code object: straight through
        return "ran"
    if sys.version_info < (3, 11):
        pytest.skip("exec(closure=) is 3.11+")
    assert same_inside_and_out(rt, run) == ("ok", "ran")


def test_future_flags_of_the_caller_are_inherited(rt):
    ns = {}
    exec(compile(FUTURE_SRC, "future_mod", "exec"), ns)
    assert same_inside_and_out(rt, ns["probe"]) == ("ok", {"a": "not_defined_anywhere"})


def test_eval_and_exec_write_where_cpython_does(rt):
    g = {}

    def run():
        exec("made = 1", g)
        return eval("made + 1", g)
    assert rt.spawn(run).join() == 2 and g["made"] == 1


def test_without_a_frame_eval_fails_as_cpython_does(rt):
    """spawn(eval, src): no Python frame to take globals from; CPython's error, whatever
    the source, not a SyntaxError from parsing first."""
    errors = []
    for src in ("1", "1 +"):
        with pytest.raises(BaseException) as ei:
            rt.spawn(eval, src).join()
        errors.append((type(ei.value), str(ei.value)))
    assert errors[0] == errors[1], errors


def test_rounding_mode_holds_on_the_borrowed_stack(rt):
    """compile() folds constants on the borrowed stack: with the caller's rounding mode."""
    try:
        libm = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
    except OSError:
        pytest.skip("no libm to set the rounding mode with")
    fe_upward = 0x800  # x86-64 <fenv.h>

    def probe():
        libm.fesetround(fe_upward)
        try:
            a, b = 1.0, 3.0
            return (a / b).hex(), eval("1.0 / 3.0").hex(), libm.fegetround()
        finally:
            libm.fesetround(0)
    if not sys.platform.startswith("linux") or platform.machine() != "x86_64":
        pytest.skip("the FE_UPWARD value used here is x86-64's")
    at_runtime, folded, mode = rt.spawn(probe).join()
    assert mode == fe_upward and folded == at_runtime, (folded, at_runtime)


def test_builtins_still_look_like_builtins(rt):
    for mod, name in [(builtins, "compile"), (builtins, "eval"), (builtins, "exec"),
                      (marshal, "dumps"), (marshal, "loads"), (marshal, "dump"),
                      (marshal, "load")]:
        f = getattr(mod, name)
        assert repr(f) == f"<built-in function {name}>"
        assert f.__module__ == mod.__name__ and f.__self__ is mod
        assert pickle.loads(pickle.dumps(f)) is f
        assert str(inspect.signature(f)).startswith("(")
        assert f.__doc__ and f.__text_signature__


@pytest.mark.parametrize("kib", [128, 256, 1024])
def test_deep_source_shapes_raise_instead_of_crashing(kib):
    """Every shape in a subprocess: without the borrowed stack most were a SIGSEGV."""
    res = run_script("deep_source.py", kib, timeout=170)
    assert res.returncode == 0, describe(res)
    assert "parked inside compile: ok" in res.stdout, res.stdout
