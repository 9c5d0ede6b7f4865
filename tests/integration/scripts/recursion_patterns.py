"""Unbounded recursion of many shapes inside GVThreads: each must raise RecursionError.

usage: recursion_patterns.py STACK_KIB
Prints one line per pattern and exits 1 if any pattern did not end in RecursionError.
A C-stack overflow kills the process instead (the caller sees a signal).
These shapes recurse through C frames of different sizes, which is what the per-GVThread
recursion bound must cover on a small stack.
"""
import copy
import functools
import json
import pickle
import sys

from gvthread import Runtime


def py(n=0):
    return py(n + 1)


def srt(n=0):
    return sorted([1, 2], key=lambda x: srt(n + 1))


def mp(n=0):
    return list(map(mp, [n + 1]))


class R:
    def __repr__(self):
        return repr(R())


def rp():
    return repr(R())


class G:
    def __getattr__(self, k):
        return getattr(G(), k)


def ga():
    return G().x


def nested(make):
    root = cur = make()
    for _ in range(100_000):
        nxt = make()
        if isinstance(cur, dict):
            cur["a"] = nxt
        else:
            cur.append(nxt)
        cur = nxt
    return root


def rep():
    return repr(nested(list))


def jsn():
    return json.dumps(nested(dict))


def pk():
    return pickle.dumps(nested(list))


def dc():
    return copy.deepcopy(nested(list))


@functools.lru_cache(None)
def lru(n=0):
    return lru(n + 1)


def gen(n=0):
    yield from gen(n + 1)


def g2():
    return list(gen())


def cmpk():
    return sorted([1, 2, 3], key=functools.cmp_to_key(lambda a, b: cmpk() or 0))


class E:
    def __eq__(self, other):
        return E() == E()


def eq():
    return E() == E()


PATTERNS = (py, srt, mp, rp, ga, rep, jsn, pk, dc, lru, g2, cmpk, eq)


def main():
    kib = int(sys.argv[1])
    bad = []
    with Runtime(workers=1, stack_size=kib * 1024) as rt:
        for f in PATTERNS:
            try:
                rt.spawn(f).join()
                outcome = "returned"
            except RecursionError:
                outcome = "RecursionError"
            except Exception as e:  # noqa: BLE001 - reported, then judged below
                outcome = type(e).__name__
            print(f"{f.__name__}: {outcome}", flush=True)
            if outcome != "RecursionError":
                bad.append(f.__name__)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
