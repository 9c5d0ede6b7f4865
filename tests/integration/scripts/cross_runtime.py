"""Lifetimes across runtimes (each scenario once crashed or corrupted memory).

usage: cross_runtime.py SCENARIO
  join-after-shutdown  a GVThread of r1 parks joining a handle of r2; r1 is shut down
                       without waiting; r2's GVThread then finishes and wakes it
  many-runtimes        300 runtimes alive at once, each running GVThreads whose locals
                       live in their in-slot data-stack chunk, while OS threads churn
                       tstates; every GVThread must get its own locals back
Prints "ok" and exits 0 when the scenario behaved.
"""
import sys
import threading
import time

import gvthread
from gvthread import Runtime


def join_after_shutdown():
    r2 = Runtime(workers=1)
    ev = threading.Event()

    def slow():
        while not ev.is_set():
            gvthread.yield_now()
        return 42

    hy = r2.spawn(slow)
    r1 = Runtime(workers=1)
    hx = r1.spawn(hy.join)
    deadline = time.monotonic() + 10
    while hx.state != gvthread.State.BLOCKED and time.monotonic() < deadline:
        time.sleep(0.01)
    r1.shutdown(wait=False)
    ev.set()
    assert hy.join() == 42
    time.sleep(0.2)  # let the wakeup of the orphaned joiner land
    r2.shutdown()


def many_runtimes():
    rts = [Runtime(workers=1, max_gvthreads=64) for _ in range(300)]
    ev = threading.Event()

    def park(i):
        a, b, c = i, i * 2, "x%d" % i
        while not ev.is_set():
            gvthread.yield_now()
        return (a, b, c)

    def deep(k, *pad):
        return deep(k - 1, *pad) if k else sum(pad)

    def churn():
        for _ in range(100):
            deep(30, *range(50))

    for rt in rts[-5:]:  # warm: finished GVThreads free their chunks first
        assert all(h.join() == (i, i * 2, "x%d" % i)
                   for i, h in enumerate([rt.spawn(lambda i=i: (i, i * 2, "x%d" % i))
                                          for i in range(64)]))
    live = [(i, rt.spawn(park, i)) for rt in rts[-5:] for i in range(64)]
    time.sleep(0.1)
    threads = [threading.Thread(target=churn) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ev.set()
    bad = [(i, r) for i, h in live if (r := h.join()) != (i, i * 2, "x%d" % i)]
    assert not bad, bad[:3]
    for rt in rts:
        rt.shutdown()


if __name__ == "__main__":
    {"join-after-shutdown": join_after_shutdown, "many-runtimes": many_runtimes}[sys.argv[1]]()
    print("ok", flush=True)
