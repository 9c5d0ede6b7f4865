"""spawn_blocking(): run a blocking function on a pool of OS threads.

    h = gvthread.spawn_blocking(requests.get, url)
    resp = h.join()

The returned Handle is that of a GVThread which hands fn to the pool and parks on a
WaitQueue (kind BLOCKING) until a pool thread has run it; it returns fn's result or
re-raises its exception.  Its worker goes on running other GVThreads meanwhile.

Cancelling the Handle while fn runs raises Cancelled in the waiting GVThread at once;
fn itself cannot be interrupted and runs to completion on its pool thread (its result is
then dropped).  Cancelled before a pool thread has picked it up, fn never runs.

The pool (not concurrent.futures.ThreadPoolExecutor, whose threads the interpreter joins
at exit, so that one stuck call would hang the exit):
- at most `max_workers` threads (default min(32, os.cpu_count() + 4), as
  ThreadPoolExecutor; change it with set_blocking_pool_size(n)); more work waits in FIFO;
- threads are daemon threads, started on demand and ended after 60 s idle; at interpreter
  exit idle ones are told to stop, busy ones are abandoned like any daemon thread;
- everything it uses comes from `_thread`/`_queue` directly, so `gvthread.monkey`
  patches never turn its waits into GVThread waits.
"""
from __future__ import annotations

import _queue
import _thread
import atexit
import os
import threading
from typing import Any, Callable

from gvthread import _core
from gvthread._types import WaitKind

__all__ = ["spawn_blocking", "set_blocking_pool_size", "blocking_pool_size"]

_IDLE_TIMEOUT = 60.0
_STOP = object()

_BLOCKING = int(WaitKind.BLOCKING)


def _default_size() -> int:
    return min(32, (os.cpu_count() or 1) + 4)


class _Pool:
    """Bounded pool of daemon threads.  Every queued item is matched by exactly one
    reservation: an idle thread (`_idle` counts idle threads not yet promised an item),
    a thread being started, or the backlog (items waiting for a busy thread)."""

    def __init__(self, max_workers: int):
        self._q = _queue.SimpleQueue()
        self._lock = _thread.allocate_lock()
        self._max = max_workers
        self._threads = 0
        self._idle = 0
        self._backlog = 0
        self._stopped = False

    def submit(self, job) -> None:
        start = False
        with self._lock:
            if self._stopped:
                raise RuntimeError("spawn_blocking: the pool is shut down (interpreter exit)")
            if self._idle > 0:
                self._idle -= 1
            elif self._threads < self._max:
                self._threads += 1
                start = True
            else:
                self._backlog += 1
            self._q.put(job)
        if start:
            self._start_thread()

    def _start_thread(self) -> None:
        try:
            t = threading.Thread(target=self._worker, name="gvthread-blocking", daemon=True)
            t.start()
        except BaseException:
            with self._lock:
                self._threads -= 1
                self._backlog += 1  # the item reserved for it waits for another thread
            raise

    def _worker(self) -> None:
        q = self._q
        while True:
            try:
                job = q.get(timeout=_IDLE_TIMEOUT)
            except _queue.Empty:
                with self._lock:
                    if self._idle > 0:
                        # Retire: one idle slot less (which one does not matter).
                        self._idle -= 1
                        self._threads -= 1
                        return
                # Every idle slot is promised to an item on its way: take one.
                job = q.get()
            if job is _STOP:
                return
            job.run()
            job = None
            with self._lock:
                if self._threads > self._max or self._stopped:
                    self._threads -= 1
                    return
                if self._backlog > 0:
                    self._backlog -= 1
                else:
                    self._idle += 1

    def resize(self, n: int) -> None:
        starts = 0
        with self._lock:
            self._max = n
            # Grow: serve the backlog with new threads.
            while self._backlog > 0 and self._threads < self._max:
                self._backlog -= 1
                self._threads += 1
                starts += 1
            # Shrink: stop idle threads beyond the limit.
            while self._threads > self._max and self._idle > 0:
                self._idle -= 1
                self._threads -= 1
                self._q.put(_STOP)
        for _ in range(starts):
            self._start_thread()

    def stop(self) -> None:
        """Refuse new work and tell idle threads to end; busy ones end after their call."""
        with self._lock:
            self._stopped = True
            while self._idle > 0:
                self._idle -= 1
                self._threads -= 1
                self._q.put(_STOP)

    def stats(self) -> dict:
        with self._lock:
            return {"max_workers": self._max, "threads": self._threads, "idle": self._idle,
                    "queued": self._backlog}


_pool = _Pool(_default_size())


def set_blocking_pool_size(n: int) -> None:
    """Set the most OS threads spawn_blocking() uses at once (default
    min(32, os.cpu_count() + 4)).  Shrinking never interrupts a running call."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"blocking pool size must be an int >= 1, not {n!r}")
    _pool.resize(n)


def blocking_pool_size() -> int:
    """The current limit set by set_blocking_pool_size()."""
    return _pool._max


class _Job:
    __slots__ = ("fn", "args", "kwargs", "wq", "done", "ok", "value", "abandoned")

    def __init__(self, fn, args, kwargs):
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.wq = _core.WaitQueue(kind=_BLOCKING, obj_id=_core.next_object_id())
        self.done = False
        self.ok = False
        self.value = None
        self.abandoned = False

    def run(self) -> None:  # on a pool thread
        if not self.abandoned:
            try:
                self.value = self.fn(*self.args, **self.kwargs)
                self.ok = True
            except BaseException as e:  # noqa: BLE001 - handed to the GVThread
                self.value = e
        self.fn = self.args = self.kwargs = None
        self.done = True    # published before the notify bumps wq.seq
        self.wq.notify_all()


def _wait_job(job: _Job):
    """Body of the GVThread behind spawn_blocking()."""
    wq = job.wq
    try:
        _pool.submit(job)
        while True:
            seq = wq.seq
            if job.done:
                break
            wq.wait(seq, None)
    except BaseException:
        job.abandoned = True  # cancelled (or timeout()) before it ran: never run fn
        raise
    value = job.value
    job.value = None
    if job.ok:
        return value
    try:
        raise value
    finally:
        value = None


def spawn_blocking(fn: Callable[..., Any], *args: Any, **kwargs: Any):
    """Run fn(*args, **kwargs) on the blocking pool; return the Handle of the GVThread
    that waits for it (join() gives fn's result or raises its exception).

    The GVThread runs on the caller's runtime inside a GVThread, else on the default
    runtime."""
    if not callable(fn):
        raise TypeError(f"spawn_blocking: fn must be callable, not {type(fn).__name__}")
    job = _Job(fn, args, kwargs)
    return _core.spawn(_wait_job, job, name=f"blocking:{getattr(fn, '__qualname__', 'fn')}")


@atexit.register
def _stop_pool_at_exit() -> None:
    _pool.stop()
