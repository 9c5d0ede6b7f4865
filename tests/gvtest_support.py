"""Shared helpers for the GVThread test suite (imported by tests; not a test module).

Everything that loops inside a GVThread has a deadline, so a broken scheduler makes a
test fail instead of hanging the whole run.
"""

import os
import subprocess
import sys
import time
from types import SimpleNamespace

from gvthread import yield_now

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(TESTS_DIR)
SCRIPTS_DIR = os.path.join(TESTS_DIR, "integration", "scripts")

#: Longest time a helper GVThread keeps spinning before giving up (below pytest's timeout).
SPIN_LIMIT = 30.0
#: What spin_until returns when it gave up waiting.
SPIN_TIMEOUT = "spin-timeout"
#: Generous join timeout used from the main thread, so a lost wake-up fails, not hangs.
JOIN_TIMEOUT = 60.0


def spin_until(flag, limit=SPIN_LIMIT, counter=None):
    """Run inside a GVThread: yield_now() in a loop until flag.is_set().

    Returns the number of yields made, or SPIN_TIMEOUT after `limit` seconds.
    If `counter` (a list) is given, counter[0] is incremented at every yield.
    """
    deadline = time.monotonic() + limit
    n = 0
    while not flag.is_set():
        if time.monotonic() > deadline:
            return SPIN_TIMEOUT
        yield_now()
        n += 1
        if counter is not None:
            counter[0] += 1
    return n


def wait_until(pred, timeout=10.0, interval=0.001):
    """Poll pred() from an ordinary thread until true; False after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def rss_bytes():
    """This process's resident set, from /proc/self/statm."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


#: A loop that only checks the clock, for the preemption and safepoint tests: each
#: compiles or imports it as the case needs (`time` must be in its globals).
BUSY_SRC = '''
def busy(seconds):
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
    return n
'''


def script_path(name):
    return os.path.join(SCRIPTS_DIR, name)


def run_script(name, *args, timeout=60.0, env=None):
    """Run tests/integration/scripts/<name> in a fresh interpreter.

    Returns a namespace with returncode (None if it timed out and was killed),
    stdout, stderr, timed_out, cmd.  faulthandler is on so a crash dumps stacks.
    """
    cmd = [sys.executable, script_path(name), *[str(a) for a in args]]
    e = dict(os.environ)
    e["PYTHONFAULTHANDLER"] = "1"
    e.pop("PYTHONWARNINGS", None)
    if env:
        e.update(env)
    try:
        p = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=e, cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
        )
        return SimpleNamespace(returncode=p.returncode, stdout=p.stdout, stderr=p.stderr,
                               timed_out=False, cmd=cmd)
    except subprocess.TimeoutExpired as exc:
        def _s(b):
            if b is None:
                return ""
            return b.decode("utf-8", "replace") if isinstance(b, bytes) else b
        return SimpleNamespace(returncode=None, stdout=_s(exc.stdout), stderr=_s(exc.stderr),
                               timed_out=True, cmd=cmd)


def describe(res, tail=4000):
    """Human-readable summary of a run_script result for assertion messages."""
    return (
        f"cmd={' '.join(res.cmd)}\nreturncode={res.returncode} timed_out={res.timed_out}\n"
        f"--- stdout (tail) ---\n{res.stdout[-tail:]}\n--- stderr (tail) ---\n{res.stderr[-tail:]}"
    )


def crashed(res):
    """True if the child died in a way that is a crash, not a Python-level failure."""
    if res.timed_out:
        return False
    if res.returncode is not None and res.returncode < 0:
        return True  # killed by a signal (SIGSEGV, SIGABRT, ...)
    return "Fatal Python error" in res.stderr


def settled_stats(rt, timeout=5.0):
    """rt.stats() once no GVThread of rt is live any more.

    A GVThread's bookkeeping (live/finished counters, its slot, its snapshot row) may be
    completed by its worker a moment after join() has returned; wait briefly for that.
    A leak still fails: the caller asserts on what comes back.
    """
    wait_until(lambda: rt.stats()["live"] == 0, timeout)
    return rt.stats()
