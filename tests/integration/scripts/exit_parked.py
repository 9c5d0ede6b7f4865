"""Interpreter exit with GVThreads still parked must never crash.

usage: exit_parked.py VARIANT [default|own|shutdown-nowait]

Spawns GVThreads that never finish (yield forever), GVThreads blocked in join on those,
GVThreads blocked in join on blocked ones, and some that finished unjoined; then the main
script simply ends (or calls sys.exit(0)).  Prints "exiting" just before.
  default          on the default runtime (gvthread.spawn)
  own              on a Runtime(workers=2) that is never shut down
  shutdown-nowait  on a Runtime(workers=2) closed with shutdown(wait=False)
"""

import sys
import threading
import time

import gvthread
from gvthread import Runtime, RuntimeShutdownError, State, yield_now

variant = int(sys.argv[1])
where = sys.argv[2] if len(sys.argv) > 2 else "default"

rt = gvthread.runtime() if where == "default" else Runtime(workers=2)


def spin_forever(k):
    x = 0
    while True:
        x += sum(range(k % 50))  # a little Python work between yields
        yield_now()


def joiner(h):
    return h.join()


def quick(i):
    return i


spawn = gvthread.spawn if where == "default" else rt.spawn
spinners = [spawn(spin_forever, k) for k in range(8)]
joiners = [spawn(joiner, spinners[k % 8]) for k in range(16)]
joiners2 = [spawn(joiner, joiners[k]) for k in range(4)]
finished = [spawn(quick, k) for k in range(20)]

mode = variant % 5
if mode == 1:
    time.sleep(0.05)
elif mode == 2:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if all(j.state == State.BLOCKED for j in joiners + joiners2):
            break
        time.sleep(0.005)
    else:
        sys.exit("FAIL: joiners never parked")
elif mode == 3:
    # an OS thread blocked in join on a GVThread that never ends
    def os_join():
        try:
            spinners[0].join()
        except BaseException:  # noqa: BLE001 - woken by shutdown at exit: fine
            pass

    threading.Thread(target=os_join, daemon=True).start()
    time.sleep(0.02)
elif mode == 4:
    for h in finished:
        h.join(timeout=10)

if where == "shutdown-nowait":
    t0 = time.monotonic()
    rt.shutdown(wait=False)
    if time.monotonic() - t0 > 10:
        sys.exit("FAIL: shutdown(wait=False) took more than 10s")
    try:
        rt.spawn(quick, 0)
    except RuntimeShutdownError:
        pass
    else:
        sys.exit("FAIL: spawn after shutdown(wait=False) did not raise")

print("exiting", flush=True)
if variant % 2:
    sys.exit(0)
