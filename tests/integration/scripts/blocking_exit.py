"""Exit while spawn_blocking calls are still running must not hang.

argv[1]: "waiting" -- a GVThread waits in join for a call that blocks for 1000 s;
         "idle"    -- the pool also has idle threads left.
Prints "exiting" last; the test checks the exit is quick and clean.
"""
import sys
import threading
import time

import gvthread

mode = sys.argv[1] if len(sys.argv) > 1 else "waiting"
forever = threading.Event()
started = threading.Event()


def stuck():
    started.set()
    forever.wait()   # a real OS-thread block: never returns


if mode == "idle":
    assert gvthread.spawn_blocking(lambda: 7).join(30) == 7
h = gvthread.spawn_blocking(stuck)
waiter = gvthread.spawn(h.join)
assert started.wait(30)
time.sleep(0.05)
print("exiting", flush=True)
