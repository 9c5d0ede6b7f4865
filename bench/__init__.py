"""Benchmarks of GVThread against its peers, measured side by side in one run.

Run ``python -m bench <suite>`` from the repository root (``python -m bench`` lists the
suites). Each suite prints one line per figure: our value, the peer's value measured in
the same run, their ratio, and the target it is held to.

How a run is organised (see ``_runner``):

- A suite is a module that defines ``FIGURES``, a list of :class:`bench._runner.Figure`.
  Each figure has two sides, ours and the peer's, each a measurement function of that
  module plus its parameters.
- Every single measurement runs in a fresh child process (``python -m bench._child``) of
  the bench process, so the peers share one process tree but never one interpreter: a
  runtime's worker threads, its allocator caches or a crash cannot touch the other side.
  The two sides alternate, repeat after repeat, and the median of each is reported.
- Suite modules must not import ``gvthread`` (or a peer) at module level: the parent only
  reads the figure definitions, and a broken build must still let the peers run (and be
  reported as a crash of our side, not of the whole suite).

To add a suite, write ``bench/<name>.py`` with ``FIGURES`` and register it in
:data:`SUITES` below.
"""

from __future__ import annotations

__all__ = ["SUITES"]

#: suite name -> (module, one-line description). Modules are imported lazily, so one
#: broken suite does not hide the others.
SUITES: dict[str, tuple[str, str]] = {
    "core": (
        "bench.core",
        "runtime core: Python switch, spawn+join, RSS per parked GVThread "
        "(vs greenlet, asyncio)",
    ),
    "sync": (
        "bench.sync",
        "synchronization: channel 1->1 and 4->4, uncontended Mutex, sleep(0.001) "
        "lateness (vs gevent.queue, asyncio.Queue, threading.Lock, time.sleep)",
    ),
    "preempt": (
        "bench.preempt",
        "preemption: a 10 ms ticker beside a 1 s busy loop, Normal and High priority "
        "(vs threads, asyncio, gevent); gvthread.compile overhead; native C<->C yield and "
        "channel ping-pong (vs Go); forced-preemption round trip (vs a bare signal)",
    ),
    "native": (
        "bench.native",
        "native GVThreads: C<->C yield and int64 channel ping-pong (vs Go Gosched and "
        "unbuffered chan), snapshot latency beside busy GVThreads",
    ),
    "kernel": (
        "bench.kernel",
        "gvkernel vs ipykernel: start to ready, execute `1+1` and kernel_info round "
        "trips, idle RSS, gv_list with 100,000 GVThreads",
    ),
    "shell": (
        "bench.shell",
        "gvshell: spawn to the first prompt in a pty (python -m gvshell and the console "
        "script), Ctrl-D + y until the shell and its kernel are gone",
    ),
}
