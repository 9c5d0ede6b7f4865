"""The basics of gvthread: spawn and join, priorities, a scope, sleep.

Four short sections, each printing what it did:

  spawn + join   GVThreads return values and raise exceptions through Handle.join()
  priorities     on one worker, High GVThreads run before Normal and Low ones that were
                 made runnable at the same moment
  scope          structured spawning: the block waits for its GVThreads, and the first
                 failure cancels the others
  sleep          1,000 GVThreads sleep 0.2 s each, at the same time, on 2 OS threads

Run:  python examples/basic/basics.py [--sleepers 1000] [--workers 2]
"""
from __future__ import annotations

import argparse
import time

import gvthread
from gvthread import Priority


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def spawn_and_join(rt: gvthread.Runtime) -> None:
    print("== spawn + join")
    handles = [rt.spawn(fib, n, name=f"fib{n}") for n in range(15, 21)]
    for h in handles:
        print(f"  GVThread {h.id} {h.name}: {h.join()}")

    def fails():
        raise ValueError("raised inside a GVThread")

    try:
        rt.spawn(fails, name="fails").join()
    except ValueError as e:
        print(f"  join() re-raised: ValueError: {e}")


def priorities() -> None:
    print("== priorities (one worker)")
    order = []

    def job(label):
        order.append(label)

    def spawner():
        # Spawned from a GVThread of the single worker: none of them runs until this one
        # parks, so they all become runnable together and the scheduler picks by priority.
        hs = []
        for i in range(3):
            hs.append(gvthread.spawn(job, f"low{i}", priority=Priority.LOW))
            hs.append(gvthread.spawn(job, f"normal{i}", priority=Priority.NORMAL))
            hs.append(gvthread.spawn(job, f"high{i}", priority=Priority.HIGH))
        for h in hs:
            h.join()

    with gvthread.Runtime(workers=1) as rt1:
        rt1.spawn(spawner, name="spawner").join()
    print("  spawned low, normal, high in turn; ran in the order:")
    print("  " + " ".join(order))


def scope_demo(rt: gvthread.Runtime) -> None:
    print("== scope")
    results = {}

    def fetch(key, delay):
        gvthread.sleep(delay)
        results[key] = key.upper()

    with gvthread.scope(runtime=rt) as s:
        for i, key in enumerate(["alpha", "beta", "gamma"]):
            s.spawn(fetch, key, 0.01 * (3 - i), name=f"fetch-{key}")
    # leaving the block joined all three
    print(f"  all joined at the end of the block: {sorted(results.items())}")

    def slow():
        gvthread.sleep(10)                  # cancelled long before that

    def broken():
        gvthread.sleep(0.02)
        raise KeyError("missing")

    t0 = time.monotonic()
    try:
        with gvthread.scope(runtime=rt) as s:
            s.spawn(slow, name="slow")
            s.spawn(broken, name="broken")
    except ExceptionGroup as eg:
        print(f"  a failure cancelled the scope after {time.monotonic() - t0:.2f} s: "
              f"{[type(e).__name__ for e in eg.exceptions]}")


def sleepers(rt: gvthread.Runtime, n: int) -> None:
    print("== sleep")
    t0 = time.monotonic()
    handles = [rt.spawn(gvthread.sleep, 0.2) for _ in range(n)]
    for h in handles:
        h.join()
    elapsed = time.monotonic() - t0
    print(f"  {n:,} GVThreads slept 0.2 s each in {elapsed:.2f} s of wall time "
          f"on {rt.workers} workers")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sleepers", type=int, default=1000, help="GVThreads in the sleep demo")
    ap.add_argument("--workers", type=int, default=2, help="worker OS threads")
    args = ap.parse_args()

    with gvthread.Runtime(workers=args.workers) as rt:
        spawn_and_join(rt)
        priorities()
        scope_demo(rt)
        sleepers(rt, args.sleepers)
        st = rt.stats()
    print(f"== runtime: {st['spawned']:,} spawned, {st['switches']:,} switches")


if __name__ == "__main__":
    main()
