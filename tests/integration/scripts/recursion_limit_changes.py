"""sys.setrecursionlimit while GVThreads live: each GVThread keeps a bound its stack holds.

usage: recursion_limit_changes.py
Prints one line per case and exits 1 if a case went wrong.  On 3.11, setrecursionlimit
rewrites every thread's recursion counter; before the fix in native/pybridge.c that
undid the GVThreads' stack-sized bounds: after sys.setrecursionlimit(3000) C recursion in
a GVThread ran into SIGSEGV (the caller sees a signal), and after a lower limit every
GVThread hit RecursionError at once.
"""
import sys
import threading
import time

import gvthread
from gvthread import Runtime


class R:
    def __repr__(self):
        return repr(R())


def srt(n=0):
    return sorted([1, 2], key=lambda x: srt(n + 1))


def c_recursion():
    """Unbounded recursion through C frames (repr, then sorted(key=))."""
    out = []
    for f in (lambda: repr(R()), srt):
        try:
            f()
            out.append("returned")
        except RecursionError:
            out.append("RecursionError")
    return out


def nest(n):
    return 0 if n == 0 else 1 + nest(n - 1)


def raise_inside(limit):
    sys.setrecursionlimit(limit)
    return c_recursion()


def lower_inside():
    sys.setrecursionlimit(200)
    return nest(30)  # a lower limit still leaves room for modest recursion


def too_low_inside():
    def at_depth(n):
        if n:
            return at_depth(n - 1)
        try:
            sys.setrecursionlimit(5)  # below the real depth: refused as on any thread
            return "accepted"
        except RecursionError as e:
            return "refused" if "too low" in str(e) else str(e)
    return at_depth(20)


def stuck_victim(result, done):
    """Runs on after its runtime's shutdown gave up on it (a blocking C call)."""
    time.sleep(3.0)
    result.extend(c_recursion())
    done.set()


class TooLowInCompile:
    """An audit hook that tries a limit below the caller's depth while compile() runs,
    i.e. on the borrowed stack inside a GVThread (native/pycompile.c)."""

    def __init__(self):
        self.armed, self.seen = False, []

    def __call__(self, event, args):
        if event == "compile" and self.armed:
            self.armed = False
            try:
                sys.setrecursionlimit(1)
                self.seen.append("accepted")
            except RecursionError as e:
                self.seen.append("refused" if "too low" in str(e) else str(e))

    def run(self):
        self.armed = True
        compile("1", "s", "eval")
        return self.seen.pop()


def parked_then(release, result):
    release.wait()
    result.extend(c_recursion())
    result.append(nest(30))


def main():
    default = sys.getrecursionlimit()
    bad = []

    def check(name, got, want):
        print(f"{name}: {got}", flush=True)
        if got != want:
            bad.append(name)

    both = ["RecursionError", "RecursionError"]
    with Runtime(workers=1) as rt:
        for limit in (3000, 100_000):
            check(f"raise to {limit} inside", rt.spawn(raise_inside, limit).join(), both)
            sys.setrecursionlimit(default)
        check("lower inside", rt.spawn(lower_inside).join(), 30)
        sys.setrecursionlimit(default)
        check("too low inside", rt.spawn(too_low_inside).join(), "refused")
        sys.setrecursionlimit(default)
        for limit in (100_000, 150):
            # changed from the main thread while GVThreads are parked
            ev = threading.Event()
            results = [[] for _ in range(4)]
            hs = [rt.spawn(parked_then, _Waiter(ev), r) for r in results]
            sys.setrecursionlimit(limit)
            ev.set()
            for h in hs:
                h.join()
            sys.setrecursionlimit(default)
            check(f"set to {limit} outside, while parked", results, [both + [30]] * 4)
        hook = TooLowInCompile()
        sys.addaudithook(hook)  # for good: it acts only when armed
        check("too low inside compile, on a thread", hook.run(), "refused")
        sys.setrecursionlimit(default)
        check("too low inside compile, in a GVThread", rt.spawn(hook.run).join(), "refused")
        sys.setrecursionlimit(default)
    # A runtime whose shutdown gave up on a GVThread stuck in a blocking call: the
    # GVThread still runs, and still needs its bound fixed after a new limit.
    rt = Runtime(workers=1)
    result, done = [], threading.Event()
    rt.spawn(stuck_victim, result, done)
    time.sleep(0.2)
    rt.shutdown(wait=False)
    sys.setrecursionlimit(100_000)
    done.wait(30)
    sys.setrecursionlimit(default)
    check("raised to 100000 while stuck in a shut-down runtime", result, both)
    print("builtin:", repr(sys.setrecursionlimit))
    if repr(sys.setrecursionlimit) != "<built-in function setrecursionlimit>":
        bad.append("repr")
    print("bad:", bad)
    sys.exit(1 if bad else 0)


class _Waiter:
    """Park a GVThread until a threading.Event is set (polls with gvthread.sleep)."""

    def __init__(self, ev):
        self.ev = ev

    def wait(self):
        while not self.ev.is_set():
            gvthread.sleep(0.005)


if __name__ == "__main__":
    main()
