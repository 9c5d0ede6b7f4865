"""Helpers used inside measurement children: clocks, gc, RSS, polling.

Both sides of a figure use these same helpers, so whatever they cost, they cost it equally.
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
from typing import Callable, Iterator

__all__ = ["now_ns", "gc_paused", "rss_bytes", "vm_status", "wait_until", "settle"]

now_ns = time.perf_counter_ns

_PAGE = os.sysconf("SC_PAGESIZE")


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Collect once, then keep the cyclic gc off for the block (restored afterwards).

    gc state is per interpreter, so this also covers code running in GVThreads and
    greenlets of the process.
    """
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def rss_bytes() -> int:
    """Resident set size of this process, from /proc/self/statm (second field, pages)."""
    with open("/proc/self/statm", "rb") as f:
        fields = f.read().split()
    return int(fields[1]) * _PAGE


def vm_status(field: str) -> int:
    """A byte count from /proc/self/status: ``VmHWM`` (peak RSS), ``VmPTE`` (page tables,
    which RSS does not count)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def wait_until(pred: Callable[[], bool], timeout: float, what: str,
               interval: float = 0.002) -> None:
    """Poll ``pred`` from the calling OS thread, sleeping between polls.

    Raises TimeoutError (which fails the measurement) after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def settle(seconds: float = 0.1) -> None:
    """Let the last tasks reach their parked state before a reading."""
    time.sleep(seconds)


def switch_count(rt):
    """Switches the runtime counted, or None: stats() is informative only."""
    try:
        return int(rt.stats()["switches"])
    except Exception:  # noqa: BLE001 - never let bookkeeping fail a measurement
        return None


# -- runs shared by the children of one bench process ---------------------------------
#
# Some suites print several figures from one run (p50, p99 and tick count of the same
# ticker): the n-th child asked for a (side, key) pair uses the side's n-th run, made by
# whichever child needed it first, stored in a directory private to the parent bench
# process and removed by a later run once that process has exited.

def _proc_start(pid: int):
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[19].decode()  # field 22: starttime
    except (OSError, IndexError):
        return None


def scratch_dir(suite: str, root: str):
    """The directory shared by the children of this ``python -m bench <suite>`` process,
    under root, or None when our parent is something else (then every child measures)."""
    import shutil

    ppid = os.getppid()
    try:
        with open(f"/proc/{ppid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return None
    if b"bench" not in argv or suite.encode() not in argv:
        return None
    started = _proc_start(ppid)
    if started is None:
        return None
    os.makedirs(root, mode=0o700, exist_ok=True)
    mine = f"{ppid}-{started}"
    for entry in os.listdir(root):          # runs whose bench process has exited
        pid, _, st = entry.partition("-")
        if entry != mine and (not pid.isdigit() or _proc_start(int(pid)) != st):
            shutil.rmtree(os.path.join(root, entry), ignore_errors=True)
    path = os.path.join(root, mine)
    os.makedirs(path, exist_ok=True)
    return path


def shared_sample(scratch, params: dict, key: str, measure: Callable[[], dict]) -> dict:
    """The sample for (params, key) in scratch (see above), measured if none exists yet;
    sample["reused"] says which."""
    import hashlib
    import json

    side = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]
    sample = path = None
    if scratch is not None:
        counter = os.path.join(scratch, f"{side}.{key}.n")
        try:
            with open(counter) as f:
                n = int(f.read())
        except (OSError, ValueError):
            n = 0
        with open(counter, "w") as f:
            f.write(str(n + 1))
        path = os.path.join(scratch, f"{side}.{n}.json")
        try:
            with open(path) as f:
                sample = json.load(f)
            sample["reused"] = True
        except (OSError, ValueError):
            sample = None
    if sample is None:
        sample = measure()
        if path is not None:
            with open(path + ".tmp", "w") as f:
                json.dump(sample, f)
            os.replace(path + ".tmp", path)
        sample["reused"] = False
    return sample


def shared_figure(suite: str, params: dict, key: str, metric: str,
                  measure: Callable[[], dict]) -> dict:
    """{"value": sample[metric], "info": sample} of the shared sample (params, key) of
    `python -m bench SUITE` (scratch under the temp dir, per suite and user): how a
    suite's figures that read the same runs get them."""
    import tempfile

    root = os.path.join(tempfile.gettempdir(), f"gvthread-bench-{suite}-{os.getuid()}")
    sample = shared_sample(scratch_dir(suite, root), params, key, measure)
    return {"value": sample[metric], "info": sample}
