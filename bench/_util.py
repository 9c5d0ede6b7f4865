"""Helpers used inside measurement children: clocks, gc, RSS, polling.

Both sides of a figure use these same helpers, so whatever they cost, they cost it equally.
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
from typing import Callable, Iterator

__all__ = ["now_ns", "gc_paused", "rss_bytes", "wait_until", "settle"]

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
