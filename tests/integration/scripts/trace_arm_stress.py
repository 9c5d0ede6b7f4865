"""Arming safepoints in uncompiled code while GVThreads come and go (run in a subprocess).

Usage: trace_arm_stress.py MODE
  spawns     100,000 tiny GVThreads spawned and joined while two plain busy loops on the
             same worker are armed over and over (1 ms slices and grace periods), some of them cancelled
  shutdowns  30 runtimes, each shut down while plain loops are being armed and cancelled
  exit       the interpreter exits with plain busy loops still running and being armed
             (the atexit stop meets the arming thread mid-request)
Prints "ok ..." and exits 0; a crash or a hang is the failure.
"""
import sys
import time

import gvthread
from gvthread import Runtime

SRC = '''
import time

def busy(seconds):
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return n

def spin_forever():
    n = 0
    while True:
        n += 1
'''
ns = {"time": time}
exec(compile(SRC, "<plain-stress>", "exec"), ns)  # the builtin compile: no safepoints
busy, spin_forever = ns["busy"], ns["spin_forever"]


def join_quietly(h):
    try:
        h.join(timeout=30)
    except gvthread.Cancelled:
        pass


def spawns():
    t0 = time.monotonic()
    with Runtime(workers=1, max_spare_threads=0, time_slice=0.001, grace_period=0.001) as rt:
        loops = [rt.spawn(busy, 0.5), rt.spawn(busy, 0.5)]
        victims = [rt.spawn(spin_forever) for _ in range(50)]
        hs = []
        for i in range(100_000):
            hs.append(rt.spawn(int))
            if i % 2000 == 0 and victims:
                victims.pop().cancel()
        for h in hs:
            h.join(timeout=30)
        for v in victims:
            v.cancel()
        for h in loops + victims:
            join_quietly(h)
        st = rt.stats()
    assert st["trace_arms"] >= 1 or sys.version_info >= (3, 12), st
    print(f"ok spawns {time.monotonic() - t0:.2f}s", {k: st[k] for k in (
        "trace_arm_requests", "trace_arms", "coop_preemptions", "preempt_requests",
        "overruns", "handoffs")})


def shutdowns():
    t0 = time.monotonic()
    arms = 0
    for i in range(30):
        rt = Runtime(workers=1, max_spare_threads=0, time_slice=0.001, grace_period=0.001)
        hs = [rt.spawn(busy, 0.002 * (i % 5)) for _ in range(3)]
        hs += [rt.spawn(spin_forever) for _ in range(2)]
        time.sleep(0.001 * (i % 4))
        for h in hs[3:]:
            h.cancel()
        arms += rt.stats()["trace_arms"]
        rt.shutdown(wait=True)  # ends while the last loops are being armed
    print(f"ok shutdowns {time.monotonic() - t0:.2f}s arms={arms}")


def exit_running():
    rt = Runtime(workers=1, max_spare_threads=0, time_slice=0.001, grace_period=0.001)
    rt.spawn(busy, 3600)
    rt.spawn(busy, 3600)
    time.sleep(0.1)
    print(f"ok exit arms={rt.stats()['trace_arms']}", flush=True)
    # no shutdown: the atexit hook stops the runtime


if __name__ == "__main__":
    {"spawns": spawns, "shutdowns": shutdowns, "exit": exit_running}[sys.argv[1]]()
