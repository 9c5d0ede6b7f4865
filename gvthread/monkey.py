"""gvthread.monkey: make blocking stdlib calls park the GVThread instead of its worker.

    import gvthread.monkey
    gvthread.monkey.patch_all()      # opt-in, like gevent.monkey; undo with unpatch_all()

What patch_all() replaces (module attributes only; no existing object is touched):

    time.sleep                         gvthread.sleep inside a GVThread, else time.sleep
    threading.Lock, RLock, Condition,  classes of this module: one object works from
    Event, Semaphore, BoundedSemaphore GVThreads (which park) and OS threads (which block)
    queue.SimpleQueue                  queue's pure-Python SimpleQueue (built on Semaphore)

queue.Queue, LifoQueue and PriorityQueue need no patch of their own: Queue.__init__ calls
`threading.Lock()` and `threading.Condition(...)` through the threading module, so a queue
made after patch_all() is built on the classes here.  For the same reason threading's own
Thread, Timer and Barrier made after patch_all() use them (Thread.start() waits on an
Event): every class here must keep working from any OS thread, with no runtime at all.

Hazards -- read these before changing anything here:
- Only objects made *after* patch_all() are GVThread-aware.  A lock made before (at the
  import of some module), or a name bound by `from time import sleep` / `from threading
  import Lock` before patching, still blocks the worker.  Patch first thing.
- threading's internals that use `_thread` locks directly (Thread.join's tstate lock,
  interpreter shutdown, the import lock) are left alone: Thread.join() from a GVThread
  still blocks its worker.  `_thread` itself is never patched.
- Ownership: RLock is owned per GVThread inside a GVThread (its Handle) and per OS
  thread outside; Lock has no owner (any caller may release it), as threading.Lock.
- Condition.wait() may wake up spuriously (notify(1) can wake more than one waiter that
  is just about to park); use it in a `while not predicate:` loop or wait_for().
- Interrupts: inside a GVThread, Cancelled or TimeoutError (from gvthread.timeout()) can
  come out of any acquire()/wait()/get().  Condition.wait() always reacquires its lock
  before raising, as threading's does.
- Everything here is built on the native WaitQueue and Sema (gvthread._core), whose OS
  thread path releases the GIL and lets Ctrl-C through in the main thread.
"""
from __future__ import annotations

import _thread
import queue as _queue_mod
import threading as _threading_mod
import time as _time_mod
from time import monotonic as _monotonic
from typing import Any, Callable, Optional

from gvthread import _core
from gvthread._types import WaitKind

__all__ = ["patch_all", "unpatch_all", "is_patched", "Lock", "RLock", "Condition", "Event",
           "Semaphore", "BoundedSemaphore", "sleep"]

_is_in_gvthread = _core.is_in_gvthread
_current_handle = _core.current_handle
_get_ident = _thread.get_ident
_orig_sleep = _time_mod.sleep
_TIMEOUT_MAX = _threading_mod.TIMEOUT_MAX
# Serializes check-then-release in BoundedSemaphore.release; held for two C calls,
# never across a park.  Reentrant because a garbage collection inside the
# guarded calls may run a finalizer that releases another lock on the same thread.
_guard = _thread.RLock()

_MUTEX = int(WaitKind.MUTEX)
_CONDVAR = int(WaitKind.CONDVAR)
_SEMAPHORE = int(WaitKind.SEMAPHORE)
_EVENT = int(WaitKind.EVENT)


def _oid() -> int:
    return _core.next_object_id()


def _interrupts() -> tuple:
    return (_core.Cancelled, TimeoutError)


# ---------------------------------------------------------------- time.sleep
def sleep(secs: float) -> None:
    """time.sleep for GVThreads: parks the GVThread; in an OS thread, time.sleep."""
    if not _is_in_gvthread():
        return _orig_sleep(secs)
    if secs < 0:
        raise ValueError("sleep length must be non-negative")
    if secs > _TIMEOUT_MAX:
        raise OverflowError("sleep length is too large")
    _core.sleep(secs)


# ---------------------------------------------------------------- locks
def _timeout(timeout: Optional[float]) -> Optional[float]:
    """As threading: None waits for ever; more than TIMEOUT_MAX raises OverflowError."""
    if timeout is not None and timeout > _TIMEOUT_MAX:
        raise OverflowError("timeout value is too large")
    return timeout


def _lock_timeout(blocking: bool, timeout: float) -> Optional[float]:
    """threading.Lock.acquire arguments -> a Sema timeout (None = forever, 0 = try)."""
    if not blocking:
        if timeout != -1:
            raise ValueError("can't specify a timeout for a non-blocking call")
        return 0
    if timeout == -1:
        return None
    if timeout < 0:
        raise ValueError("timeout value must be a non-negative number")
    return _timeout(timeout)


class Lock:
    """threading.Lock that parks a GVThread and blocks an OS thread.  No owner."""

    __slots__ = ("_sm", "__weakref__")

    def __init__(self) -> None:
        self._sm = _core.Sema(1, kind=_MUTEX, obj_id=_oid())

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        if blocking is True and timeout == -1:
            sm = self._sm
            return sm.try_acquire() or sm.acquire(None)   # try first: the cheap C path
        t = _lock_timeout(blocking, timeout)
        if t == 0:
            return self._sm.try_acquire()
        return self._sm.acquire(t)

    def release(self) -> None:
        # Check, then release: no guard, since only a second, concurrent release of the
        # same acquisition (a bug) can slip in between; a plain release of an unlocked
        # lock is always refused.  A guard doubled the cost of `with lock:`.
        sm = self._sm
        if sm.value > 0:
            raise RuntimeError("release unlocked lock")
        sm.release()

    def locked(self) -> bool:
        return self._sm.value == 0

    def __enter__(self) -> bool:
        sm = self._sm
        return sm.try_acquire() or sm.acquire(None)

    def __exit__(self, *exc) -> None:
        sm = self._sm
        if sm.value > 0:
            raise RuntimeError("release unlocked lock")
        sm.release()

    def _is_owned(self) -> bool:  # what threading.Condition guesses for a plain lock
        return self._sm.value == 0

    def _at_fork_reinit(self) -> None:
        self._sm = _core.Sema(1, kind=_MUTEX, obj_id=_oid())

    acquire_lock = acquire
    release_lock = release
    locked_lock = locked

    def __repr__(self) -> str:
        state = "locked" if self.locked() else "unlocked"
        return f"<{state} {type(self).__module__}.{type(self).__qualname__} object at {id(self):#x}>"


def _me():
    """Owner key: the calling GVThread's Handle, else the OS thread's ident."""
    return _current_handle() or _get_ident()


class RLock:
    """threading.RLock, owned per GVThread inside GVThreads and per OS thread outside."""

    __slots__ = ("_sm", "_owner", "_count", "__weakref__")

    def __init__(self) -> None:
        self._sm = _core.Sema(1, kind=_MUTEX, obj_id=_oid())
        self._owner = None
        self._count = 0

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        me = _current_handle() or _get_ident()
        owner = self._owner
        if owner is not None and owner == me:
            self._count += 1
            return True
        sm = self._sm
        if blocking is True and timeout == -1:
            ok = sm.try_acquire() or sm.acquire(None)
        else:
            t = _lock_timeout(blocking, timeout)
            ok = sm.try_acquire() if t == 0 else sm.acquire(t)
        if ok:
            self._owner = me
            self._count = 1
        return ok

    def __enter__(self) -> bool:
        return self.acquire()

    def release(self) -> None:
        owner = self._owner
        if owner is None or owner != (_current_handle() or _get_ident()):
            raise RuntimeError("cannot release un-acquired lock")
        self._count -= 1
        if not self._count:
            self._owner = None
            self._sm.release()

    def __exit__(self, *exc) -> None:
        self.release()

    def locked(self) -> bool:
        return self._sm.value == 0

    # For Condition (same protocol as threading's _PyRLock).
    def _is_owned(self) -> bool:
        return self._owner is not None and self._owner == _me()

    def _release_save(self):
        if not self._is_owned():
            raise RuntimeError("cannot release un-acquired lock")
        state = (self._count, self._owner)
        self._count = 0
        self._owner = None
        self._sm.release()
        return state

    def _acquire_restore(self, state) -> None:
        self._sm.acquire(None)
        self._count, self._owner = state

    def _recursion_count(self) -> int:
        return self._count if self._is_owned() else 0

    def _at_fork_reinit(self) -> None:
        self._sm = _core.Sema(1, kind=_MUTEX, obj_id=_oid())
        self._owner = None
        self._count = 0

    def __repr__(self) -> str:
        owner = self._owner
        if owner is not None and not isinstance(owner, int):
            owner = f"gvthread-{owner.id}"
        state = "locked" if self._owner is not None else "unlocked"
        return (f"<{state} {type(self).__module__}.{type(self).__qualname__} object "
                f"owner={owner!r} count={self._count} at {id(self):#x}>")


# ---------------------------------------------------------------- Condition
class Condition:
    """threading.Condition on a native WaitQueue; wait() may wake spuriously."""

    def __init__(self, lock=None) -> None:
        if lock is None:
            lock = RLock()
        self._lock = lock
        self.acquire = lock.acquire
        self.release = lock.release
        for name in ("_release_save", "_acquire_restore", "_is_owned"):
            try:
                setattr(self, name, getattr(lock, name))
            except AttributeError:
                pass
        self._wq = _core.WaitQueue(kind=_CONDVAR, obj_id=_oid())

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *args):
        return self._lock.__exit__(*args)

    def __repr__(self) -> str:
        return f"<Condition({self._lock}, {len(self._wq)})>"

    def _release_save(self):
        self._lock.release()

    def _acquire_restore(self, x) -> None:
        self._lock.acquire()

    def _is_owned(self) -> bool:
        if self._lock.acquire(False):
            self._lock.release()
            return False
        return True

    def _at_fork_reinit(self) -> None:
        self._lock._at_fork_reinit()
        self._wq = _core.WaitQueue(kind=_CONDVAR, obj_id=_oid())

    def wait(self, timeout: Optional[float] = None) -> bool:
        if not self._is_owned():
            raise RuntimeError("cannot wait on un-acquired lock")
        wq = self._wq
        seq = wq.seq          # under the lock: any notify after this bumps it
        saved = self._release_save()
        try:
            return wq.wait(seq, _timeout(timeout))
        finally:
            self._restore(saved)

    def _restore(self, saved) -> None:
        # Interrupts are one-shot: one that hits the reacquire is kept, the lock is
        # taken anyway, then it is raised (the caller's `with` must own the lock).
        pending = None
        while True:
            try:
                self._acquire_restore(saved)
                break
            except _interrupts() as e:
                if pending is None:
                    pending = e
        if pending is not None:
            raise pending

    def wait_for(self, predicate: Callable[[], Any], timeout: Optional[float] = None):
        endtime = None
        waittime = timeout
        result = predicate()
        while not result:
            if waittime is not None:
                if endtime is None:
                    endtime = _monotonic() + waittime
                else:
                    waittime = endtime - _monotonic()
                    if waittime <= 0:
                        break
            self.wait(waittime)
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        if not self._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        self._wq.notify(n)

    def notify_all(self) -> None:
        if not self._is_owned():
            raise RuntimeError("cannot notify on un-acquired lock")
        self._wq.notify_all()

    notifyAll = notify_all


# ---------------------------------------------------------------- Event
class Event:
    """threading.Event on a native WaitQueue: a waiter woken by set() returns True even
    if clear() came before it ran."""

    __slots__ = ("_flag", "_wq", "__weakref__")

    def __init__(self) -> None:
        self._flag = False
        self._wq = _core.WaitQueue(kind=_EVENT, obj_id=_oid())

    def __repr__(self) -> str:
        state = "set" if self._flag else "unset"
        return f"<{type(self).__module__}.{type(self).__qualname__} at {id(self):#x}: {state}>"

    def _at_fork_reinit(self) -> None:
        self._wq = _core.WaitQueue(kind=_EVENT, obj_id=_oid())

    def is_set(self) -> bool:
        return self._flag

    isSet = is_set

    def set(self) -> None:
        self._flag = True       # before the notify bumps the epoch a waiter reads
        self._wq.notify_all()

    def clear(self) -> None:
        self._flag = False

    def wait(self, timeout: Optional[float] = None) -> bool:
        wq = self._wq
        seq = wq.seq
        if self._flag:
            return True
        # Only set() bumps the epoch, so a True from wq.wait means "was set".
        return wq.wait(seq, _timeout(timeout)) or self._flag


# ---------------------------------------------------------------- Semaphores
class Semaphore:
    """threading.Semaphore on a native Sema (FIFO waiters)."""

    __slots__ = ("_sm", "__weakref__")

    def __init__(self, value: int = 1) -> None:
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        self._sm = _core.Sema(value, kind=_SEMAPHORE, obj_id=_oid())

    def __repr__(self) -> str:
        return (f"<{type(self).__module__}.{type(self).__qualname__} at {id(self):#x}: "
                f"value={self._sm.value}>")

    @property
    def _value(self) -> int:
        return self._sm.value

    def acquire(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        if not blocking:
            if timeout is not None:
                raise ValueError("can't specify timeout for non-blocking acquire")
            return self._sm.try_acquire()
        return self._sm.acquire(_timeout(timeout))

    __enter__ = acquire

    def release(self, n: int = 1) -> None:
        if n < 1:
            raise ValueError("n must be one or more")
        self._sm.release(n)

    def __exit__(self, *exc) -> None:
        self.release()


class BoundedSemaphore(Semaphore):
    """threading.BoundedSemaphore: releasing above the initial value raises ValueError."""

    __slots__ = ("_initial_value",)

    def __init__(self, value: int = 1) -> None:
        super().__init__(value)
        self._initial_value = value

    def __repr__(self) -> str:
        return (f"<{type(self).__module__}.{type(self).__qualname__} at {id(self):#x}: "
                f"value={self._sm.value}/{self._initial_value}>")

    def release(self, n: int = 1) -> None:
        if n < 1:
            raise ValueError("n must be one or more")
        with _guard:
            if self._sm.value + n > self._initial_value:
                raise ValueError("Semaphore released too many times")
            self._sm.release(n)


# ---------------------------------------------------------------- patching
def _targets(time: bool, threading: bool, queue: bool) -> list:
    out = []
    if time:
        out.append((_time_mod, "sleep", sleep))
    if threading:
        for name, repl in (("Lock", Lock), ("RLock", RLock), ("Condition", Condition),
                           ("Event", Event), ("Semaphore", Semaphore),
                           ("BoundedSemaphore", BoundedSemaphore)):
            out.append((_threading_mod, name, repl))
    if queue and threading:
        # Queue, LifoQueue, PriorityQueue follow threading.Lock/Condition by themselves.
        out.append((_queue_mod, "SimpleQueue", _queue_mod._PySimpleQueue))
    return out


# (module name, attribute) -> original object, for what is patched now
_saved: dict = {}
_patch_lock = _thread.allocate_lock()


def patch_all(time: bool = True, threading: bool = True, queue: bool = True) -> None:
    """Patch the stdlib (see the module docstring).  Idempotent; unpatch_all() undoes it.

    queue=True needs threading=True (queue's classes are built on threading's)."""
    with _patch_lock:
        for mod, name, repl in _targets(time, threading, queue):
            key = (mod.__name__, name)
            if key in _saved:
                continue
            _saved[key] = getattr(mod, name)
            setattr(mod, name, repl)


def unpatch_all() -> None:
    """Put every patched attribute back.  Objects made while patched keep working."""
    mods = {"time": _time_mod, "threading": _threading_mod, "queue": _queue_mod}
    with _patch_lock:
        for (modname, name), orig in _saved.items():
            setattr(mods[modname], name, orig)
        _saved.clear()


def is_patched(name: Optional[str] = None) -> bool:
    """Whether patch_all() is in effect; with name ("time.sleep", "threading.Lock",
    "queue.SimpleQueue", ...), whether that attribute is patched."""
    if name is None:
        return bool(_saved)
    modname, _, attr = name.rpartition(".")
    return (modname, attr) in _saved
