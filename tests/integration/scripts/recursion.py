"""Unbounded recursion inside a GVThread must end in RecursionError, never a crash.

usage: recursion.py CASE [STACK_KIB]
  CASE: pure | sorted | repr | default-runtime
Prints "OK <case>" and exits 0 on success; any crash shows as a signal/non-zero exit.
"""

import sys
import time

import gvthread
from gvthread import Runtime


def f():
    return f()


def g(n):
    return sorted([1, 2], key=lambda x: g(n + 1))


def nested_repr():
    x = []
    for _ in range(100_000):
        x = [x]
    return repr(x)


CASES = {"pure": f, "sorted": lambda: g(0), "repr": nested_repr}


def expect_recursion_error(handle, what):
    try:
        handle.join(timeout=120)
    except RecursionError:
        return
    except BaseException as e:  # noqa: BLE001
        sys.exit(f"FAIL {what}: join raised {type(e).__name__}: {e!r}")
    sys.exit(f"FAIL {what}: join returned normally")


def main():
    case = sys.argv[1]
    stack_kib = int(sys.argv[2]) if len(sys.argv) > 2 else 256
    limit_before = sys.getrecursionlimit()
    if case == "default-runtime":
        for name, fn in CASES.items():
            expect_recursion_error(gvthread.spawn(fn), name)
        assert gvthread.spawn(lambda: "alive").join(timeout=60) == "alive"
    else:
        fn = CASES[case]
        with Runtime(workers=2, stack_size=stack_kib * 1024) as rt:
            # several times, concurrently, to cover recursion on both workers
            hs = [rt.spawn(fn) for _ in range(4)]
            for h in hs:
                expect_recursion_error(h, case)
            # the runtime keeps working afterwards
            assert rt.spawn(lambda: "alive").join(timeout=60) == "alive"
            deadline = time.monotonic() + 5
            while rt.stats()["live"] and time.monotonic() < deadline:
                time.sleep(0.001)
            assert rt.stats()["live"] == 0
    assert sys.getrecursionlimit() == limit_before, "recursion limit of the interpreter changed"
    print(f"OK {case}", flush=True)


if __name__ == "__main__":
    main()
