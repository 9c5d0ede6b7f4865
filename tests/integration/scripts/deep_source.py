"""Deeply nested but legal source, parsed and compiled inside GVThreads; marshal too.

usage: deep_source.py STACK_KIB
Prints one line per shape and exits 1 if any shape ended otherwise than expected.
CPython's parser and compiler bound their recursion by limits of their own (6,000
parser levels; sys.getrecursionlimit() x 3 compiler levels) that do not know the
stack: on a GVThread's slot these overflowed into SIGSEGV (the caller sees a
signal), until compile(), eval() and exec() of source moved to a borrowed stack
(native/pycompile.c).  marshal, whose own depth limit (2,000) is sized for a main
thread's stack, likewise.
"""
import ast
import io
import marshal
import sys
import threading

import gvthread
from gvthread import Runtime, _core

DEEP = 20_000
# Each: (name, callable, the outcomes allowed).  "ok" = returned.
RAISES = {"RecursionError", "MemoryError", "SyntaxError"}
TREE = ast.parse("+".join(["1"] * 2000), mode="eval")  # built here, compiled in a GVThread


def nested(n):
    x = []
    for _ in range(n):
        x = [x]
    return x


NESTED, TOO_DEEP = nested(1900), nested(5000)
MARSHALLED = marshal.dumps(NESTED)


def marshal_file_round_trip():
    f = io.BytesIO()
    marshal.dump(NESTED, f)
    f.seek(0)
    marshal.load(f)
SHAPES = [
    ("eval brackets 199", lambda: len(eval("[" * 199 + "]" * 199)), {"ok"}),
    ("eval parens 199", lambda: eval("(" * 199 + ")" * 199), {"ok"}),
    ("exec dict 199", lambda: exec("x = " + "{1: " * 199 + "1" + "}" * 199, {}), {"ok"}),
    ("ast.parse calls 199", lambda: ast.parse("f" + "(" * 199 + ")" * 199), {"ok"}),
    ("literal_eval 199", lambda: len(ast.literal_eval("[" * 199 + "]" * 199)),
     {"ok", "RecursionError"}),
    ("eval unary minus", lambda: eval("-" * DEEP + "1"), RAISES),
    ("exec not chain", lambda: exec("x = " + "not " * DEEP + "1", {}), RAISES),
    ("compile lambda chain", lambda: compile("lambda: " * DEEP + "1", "s", "eval"), RAISES),
    ("ast.parse ternary chain", lambda: ast.parse("1 if 1 else " * DEEP + "1"), RAISES),
    ("compile power chain", lambda: compile("2 ** " * DEEP + "1", "s", "eval"), RAISES),
    ("exec sum chain", lambda: exec("x = " + "+".join(["1"] * 200_000), {}), RAISES),
    ("eval attribute chain", lambda: eval("x" + ".a" * 200_000, {"x": None}),
     RAISES | {"AttributeError"}),
    ("compile deep AST", lambda: eval(compile(TREE, "s", "eval")), {"ok", "RecursionError"}),
    # marshal bounds its own depth at 2,000 levels, sized for a main thread's stack
    ("marshal.dumps 1,900 deep", lambda: marshal.dumps(NESTED), {"ok"}),
    ("marshal.loads 1,900 deep", lambda: marshal.loads(MARSHALLED), {"ok"}),
    ("marshal.dump/load 1,900 deep", lambda: marshal_file_round_trip(), {"ok"}),
    ("marshal.dumps too deep", lambda: marshal.dumps(TOO_DEEP), {"ValueError"}),
]


def run(fn):
    try:
        fn()
        return "ok"
    except BaseException as e:  # noqa: BLE001 - judged by the caller
        return type(e).__name__


def parked_inside_compile(rt):
    """A GVThread that parks while compiling (an audit hook sleeps on the "compile"
    event) keeps its borrowed stack; another compiles meanwhile on the same worker."""
    sleeping = threading.local()

    def hook(event, args):
        if event == "compile" and gvthread.current_id() is not None and not sleeping.__dict__:
            sleeping.on = True
            try:
                gvthread.sleep(0.02)
            finally:
                del sleeping.on

    sys.addaudithook(hook)  # for good: these are the script's last shapes
    src = "[" * 150 + "]" * 150
    hs = [rt.spawn(lambda: len(eval(src))) for _ in range(8)]
    return [h.join() for h in hs] == [1] * 8


def many_parked_inside_compile(rt, n=4200):
    """More GVThreads parked inside compile at once than borrowed stacks may exist
    (4,096): the rest compile on their own slot (so the source is shallow), and
    afterwards at most 16 stay mapped."""
    src = "[[1]]"
    hs = [rt.spawn(lambda: len(eval(src))) for _ in range(n)]
    ok = [h.join() for h in hs] == [1] * n
    counts = _core.borrowed_stacks()
    print(f"borrowed stacks after {n} parked: {counts}", flush=True)
    return ok and counts["mapped"] <= 16 and counts["pooled"] == counts["mapped"]


def main():
    kib = int(sys.argv[1])
    bad = []
    with Runtime(workers=1, stack_size=kib * 1024) as rt:
        for name, fn, allowed in SHAPES:
            outcome = rt.spawn(run, fn).join()
            print(f"{name}: {outcome}", flush=True)
            if outcome not in allowed:
                bad.append(name)
        ok = parked_inside_compile(rt)
        print(f"parked inside compile: {'ok' if ok else 'wrong results'}", flush=True)
        if not ok:
            bad.append("parked")
    with Runtime(workers=2, stack_size=kib * 1024, max_gvthreads=10_000) as rt:
        ok = many_parked_inside_compile(rt)
        print(f"many parked inside compile: {'ok' if ok else 'wrong'}", flush=True)
        if not ok:
            bad.append("many parked")
    print("bad:", bad)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
