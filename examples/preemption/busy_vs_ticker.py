"""A busy loop beside a 10 ms ticker: the ticker's lateness with and without preemption.

Two GVThreads share one worker (Runtime(workers=1)): one spins in a loop for a second,
the other wants to tick every 10 ms. The ticker's k-th tick is due at start + k * 10 ms;
it sleeps until each one with gvthread.sleep_until and records how late it woke up.

The same run is made four ways:

  gvthread.compile     the busy loop compiled by gvthread.compile, which puts a safepoint
                       check at every loop back-edge: the runtime preempts the loop at the
                       end of its 10 ms time slice, so the ticker is at most ~a slice late
  builtin compile      the same source through the builtin compile(): no safepoint, so
                       the loop never yields. Past its slice and the grace period the
                       runtime hands the worker's run queue to a spare OS thread
                       (handoff); the ticker runs there, beside the loop, and gets the
                       GIL at the interpreter's switch interval (5 ms), like an OS thread
  time_slice=None      compiled with safepoints, but on a runtime without time slices:
                       no monitor, so no preemption and no handoff: the ticker starves
                       until the loop ends
  compile + High       as the first, with a High-priority ticker: its timer readies it,
                       the loop is flagged at once, the tick is well under a ms late

Run:  python examples/preemption/busy_vs_ticker.py [--seconds 1.0] [--period 0.01]
"""
from __future__ import annotations

import argparse
import math
import time

import gvthread

BUSY_SRC = '''
def busy(end):
    n = 0
    while time.monotonic() < end:
        n += 1
    return n
'''


def make_busy(compiler):
    """The busy loop, compiled by `compiler` (gvthread.compile or the builtin compile)."""
    ns = {"time": time}
    exec(compiler(BUSY_SRC, "<busy>", "exec"), ns)
    busy = ns["busy"]

    def busy_side(end):
        busy(end)
        return time.monotonic()         # when the loop really stopped

    return busy_side


def ticker(start, ticks, period, out):
    for k in range(1, ticks + 1):
        due = start + k * period
        gvthread.sleep_until(due)
        out.append((due, time.monotonic()))


def pct(sorted_values, p):
    """Nearest-rank percentile."""
    return sorted_values[max(1, math.ceil(p / 100 * len(sorted_values))) - 1]


def run(compiler, time_slice, priority, seconds, period):
    busy_side = make_busy(compiler)
    ticks = round(seconds / period)
    out = []
    with gvthread.Runtime(workers=1, time_slice=time_slice) as rt:
        start = time.monotonic()
        b = rt.spawn(busy_side, start + seconds, name="busy")
        t = rt.spawn(ticker, start, ticks, period, out, name="ticker", priority=priority)
        t.join()
        busy_end = b.join()
        stats = rt.stats()
    lat = sorted((actual - due) * 1e3 for due, actual in out)
    return {
        "p50": pct(lat, 50), "p99": pct(lat, 99), "max": lat[-1],
        "during": sum(1 for _, actual in out if actual <= busy_end), "ticks": ticks,
        "preempted": stats["coop_preemptions"], "handoffs": stats.get("handoffs", 0),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=1.0, help="length of the busy loop")
    ap.add_argument("--period", type=float, default=0.010, help="the ticker's period")
    args = ap.parse_args()

    modes = [
        ("gvthread.compile", gvthread.compile, 0.010, gvthread.Priority.NORMAL),
        ("builtin compile", compile, 0.010, gvthread.Priority.NORMAL),
        ("time_slice=None", gvthread.compile, None, gvthread.Priority.NORMAL),
        ("compile + High", gvthread.compile, 0.010, gvthread.Priority.HIGH),
    ]
    print(f"a {args.period * 1e3:g} ms ticker beside a {args.seconds:g} s busy loop, "
          f"Runtime(workers=1); lateness of the ticks in ms\n")
    head = (f"{'busy code':<18} {'time_slice':>10} {'ticker':>7} {'p50':>8} {'p99':>8} "
            f"{'max':>8} {'ticks in busy':>14} {'preemptions':>12} {'handoffs':>9}")
    print(head)
    print("-" * len(head))
    for label, compiler, time_slice, priority in modes:
        r = run(compiler, time_slice, priority, args.seconds, args.period)
        ts = "None" if time_slice is None else f"{time_slice * 1e3:g} ms"
        print(f"{label:<18} {ts:>10} {priority.name.lower():>7} {r['p50']:8.2f} "
              f"{r['p99']:8.2f} {r['max']:8.2f} {r['during']:>7} of {r['ticks']:<3} "
              f"{r['preempted']:>12} {r['handoffs']:>9}")


if __name__ == "__main__":
    main()
