"""Many GVThreads at once: spawn rate, memory per parked GVThread, wake-up and join.

Spawns N GVThreads (default 100,000; --big for 1,000,000) that each do a little work
(a sum over a short range), report in on a WaitGroup and park on one Event. Once all
of them are parked it reads the process's RSS, then sets the Event and joins them all.
It prints one figure per line:

  spawn        N spawns from the main thread, GVThreads/s
  all parked   time until the last one has done its work and parked
  RSS          before, with N parked, and per parked GVThread
  wake + join  time to wake every one of them and join it

Run:  python examples/stress/many.py [--count N | --big] [--workers W]
"""
from __future__ import annotations

import argparse
import gc
import os
import time

import gvthread

_PAGE = os.sysconf("SC_PAGESIZE")


def rss_bytes() -> int:
    """Resident set size of this process (/proc/self/statm, second field, in pages)."""
    with open("/proc/self/statm", "rb") as f:
        return int(f.read().split()[1]) * _PAGE


def task(k: int, ready: gvthread.WaitGroup, go: gvthread.Event) -> int:
    work = sum(range(k % 50))          # a little work
    ready.done()
    go.wait()                          # park until everyone is here
    return work


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--count", type=int, default=100_000, help="GVThreads (default 100,000)")
    size.add_argument("--big", action="store_const", const=1_000_000, dest="count",
                      help="1,000,000 GVThreads (about 5 GB of RSS)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                    help="worker threads (default: one per CPU)")
    args = ap.parse_args()
    n = args.count

    print(f"{n:,} GVThreads on {args.workers} workers")
    gc.collect()
    gc.disable()                       # a collection during the spawn loop would skew the rate
    with gvthread.Runtime(workers=args.workers, max_gvthreads=max(n + 16, 1024)) as rt:
        ready = gvthread.WaitGroup(name="ready")
        go = gvthread.Event(name="go")
        ready.add(n)
        rss0 = rss_bytes()
        t0 = time.perf_counter()
        handles = [rt.spawn(task, k, ready, go) for k in range(n)]
        t1 = time.perf_counter()
        ready.wait()
        t2 = time.perf_counter()
        time.sleep(0.05)               # let the last ones finish parking
        rss1 = rss_bytes()
        live = rt.stats()["live"]

        t_wake = time.perf_counter()
        go.set()
        total = sum(h.join() for h in handles)
        t3 = time.perf_counter()
    gc.enable()
    expected = sum(sum(range(k % 50)) for k in range(n))

    print(f"spawn        {n / (t1 - t0):>14,.0f} GVThreads/s   ({(t1 - t0) * 1e3:.0f} ms)")
    print(f"all parked   {(t2 - t0) * 1e3:>14,.0f} ms from the first spawn ({live:,} live)")
    print(f"RSS          {rss0 / 2**20:>14,.1f} MiB before, {rss1 / 2**20:,.1f} MiB parked, "
          f"{(rss1 - rss0) / n:,.0f} B per GVThread")
    print(f"wake + join  {(t3 - t_wake) * 1e3:>14,.0f} ms ({n / (t3 - t_wake):,.0f} GVThreads/s)")
    print(f"result       {'ok' if total == expected else 'WRONG'} (sum {total:,})")


if __name__ == "__main__":
    main()
