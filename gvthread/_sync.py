"""Scheduler-aware synchronization primitives.

Every blocking call here parks the calling GVThread (its worker goes on running other
GVThreads) or, called from an ordinary OS thread, blocks that thread.  They are built on two
native primitives of `gvthread._core` (see docs/ARCHITECTURE.md):

- `Sema(value, kind, obj_id, fair_after)`: a counting semaphore with FIFO waiters and direct
  handoff to a waiter starved for longer than `fair_after` seconds.  Mutex and Semaphore.
- `WaitQueue(kind, obj_id)`: an epoch (`seq`) plus FIFO waiters.  Everything else waits with

      while True:
          s = wq.seq            # 1. read the epoch
          if condition(): ...   # 2. check
          wq.wait(s, remaining) # 3. returns at once if a notify() bumped seq after 1.

  which cannot lose a wakeup even if the GIL passes to another thread between 2 and 3, as
  long as whoever makes the condition true bumps `seq` (notifies) *after* changing the state.

Every object gets a process-unique `obj_id` (`_core.next_object_id()`) and hands the matching
`WaitKind` to its WaitQueue/Sema, so `Runtime.snapshot()` shows what a BLOCKED GVThread waits
on (`wait_kind`, `wait_obj == obj.obj_id`).

Rules and choices:

- Ownership is per GVThread, not per OS thread.  The owner of a Mutex or of a RwLock's write
  side is the calling GVThread (its Handle, from `_core.current_handle()`: GVThread ids are
  only unique per runtime), or for an ordinary thread `-threading.get_ident()`;
  `statistics()` shows the GVThread id (`current_id()`) or that negative int.  Releasing
  what you do not own raises RuntimeError; so does acquiring a Mutex (or a write lock) you
  already hold, instead of deadlocking.  Non-blocking tries by the owner return False.
- `acquire(blocking=True, timeout=None)` follows `threading`: `timeout` None or -1 waits for
  ever, another negative value raises ValueError, `blocking=False` tries once.  The
  gvthread-style calls (`Mutex.lock(timeout)`, `Condvar.wait`, `Event.wait`, `Barrier.wait`,
  `WaitGroup.wait`) take `timeout=None` for ever, and `timeout <= 0` for "do not block".
- Interrupts (`Cancelled`, `TimeoutError` from `gvthread.timeout()`, KeyboardInterrupt in the
  main thread) raised while waiting leave every object consistent: the waiter is forgotten,
  and a wakeup it may have consumed is passed on.  `Condvar.wait` reacquires the mutex before
  the interrupt propagates.
- Short internal state updates (RwLock, Barrier, WaitGroup, Once, BoundedSemaphore) are
  guarded by a raw `_thread` lock that is never held across a switch or a blocking call; a
  GVThread that finds it taken spins with `yield_now()` (it never blocks its worker on it).
"""
from __future__ import annotations

import _thread
from threading import BrokenBarrierError
from time import monotonic as _monotonic
from typing import Any, Callable, Optional

from gvthread import _core
from gvthread._types import WaitKind

__all__ = [
    "Barrier",
    "BoundedSemaphore",
    "BrokenBarrierError",
    "Condvar",
    "Event",
    "Lazy",
    "Mutex",
    "Once",
    "RwLock",
    "Semaphore",
    "WaitGroup",
]

_Sema = _core.Sema
_WaitQueue = _core.WaitQueue
_next_object_id = _core.next_object_id
_current_handle = _core.current_handle
_Handle = _core.Handle
_yield_now = _core.yield_now
_get_ident = _thread.get_ident
_allocate_lock = _thread.allocate_lock

_K_MUTEX = int(WaitKind.MUTEX)
_K_CONDVAR = int(WaitKind.CONDVAR)
_K_RWLOCK = int(WaitKind.RWLOCK)
_K_SEMAPHORE = int(WaitKind.SEMAPHORE)
_K_BARRIER = int(WaitKind.BARRIER)
_K_WAITGROUP = int(WaitKind.WAITGROUP)
_K_ONCE = int(WaitKind.ONCE)
_K_EVENT = int(WaitKind.EVENT)

#: Mutex waiters starved longer than this get the lock handed to them (Go: 1 ms).
MUTEX_FAIR_AFTER = 0.001


# --------------------------------------------------------------------------- helpers

def _me():
    """The caller as an owner token: its GVThread's Handle (compared by identity: GVThread
    ids are per runtime, Handles are unique), or -threading.get_ident() in an ordinary
    thread."""
    me = _current_handle()
    return -_get_ident() if me is None else me


def _owner_id(owner):
    """What statistics() show for an owner token: a GVThread id or a negative thread id."""
    return owner.id if isinstance(owner, _Handle) else owner


def _acquire_timeout(blocking, timeout):
    """threading's acquire(blocking, timeout) convention -> seconds, 0 (try) or None."""
    if not blocking:
        if timeout is not None and timeout != -1:
            raise ValueError("can't specify a timeout for a non-blocking call")
        return 0
    if timeout is None or timeout == -1:
        return None
    if timeout < 0:
        raise ValueError("timeout value must be a non-negative number")
    return timeout


def _deadline(timeout):
    return None if timeout is None else _monotonic() + timeout


def _guard(lock):
    """Take an internal state lock.  It is held for a few bytecodes only and never across a
    switch, so spinning is short; spinning with yield_now() (instead of blocking) lets a
    holder that is a GVThread on this very worker run, and cannot be interrupted."""
    if not lock.acquire(False):
        while not lock.acquire(False):
            _yield_now()


def _new_name(name):
    if name is not None and not isinstance(name, str):
        raise TypeError(f"name must be a str or None, not {type(name).__name__}")
    return name


# --------------------------------------------------------------------------- Mutex

class Mutex:
    """A fair, non-reentrant mutual-exclusion lock owned by a GVThread (or OS thread).

    A waiter starved for more than 1 ms gets the lock handed to it directly (Go's
    starvation mode), so a GVThread re-locking in a loop cannot starve the others.
    Unlocking a Mutex you do not hold raises RuntimeError; locking it twice from the same
    owner raises RuntimeError instead of deadlocking (a non-blocking try returns False).
    """

    __slots__ = ("name", "obj_id", "_sema", "_owner", "__weakref__")

    def __init__(self, *, name: Optional[str] = None):
        self.name = _new_name(name)
        self.obj_id = _next_object_id()
        self._sema = _Sema(1, kind=_K_MUTEX, obj_id=self.obj_id, fair_after=MUTEX_FAIR_AFTER)
        self._owner = None  # owner token (see _me), None when unlocked

    def lock(self, timeout: Optional[float] = None) -> bool:
        """Lock, waiting at most `timeout` seconds (None: for ever; <= 0: do not wait).
        Returns False on timeout."""
        me = _current_handle()
        if me is None:
            me = -_get_ident()
        if self._owner == me:
            if timeout is not None and timeout <= 0:
                return False
            raise RuntimeError(f"{self!r} is already held by the caller (Mutex is not reentrant)")
        if timeout is None:
            ok = self._sema.acquire()
        elif timeout <= 0:
            ok = self._sema.try_acquire()
        else:
            ok = self._sema.acquire(timeout)
        if ok:
            self._owner = me
        return ok

    def acquire(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        """threading-style: timeout None or -1 waits for ever; blocking=False tries once."""
        return self.lock(_acquire_timeout(blocking, timeout))

    def try_lock(self) -> bool:
        """Lock if free, never wait."""
        return self.lock(0)

    def unlock(self) -> None:
        """Unlock; RuntimeError if the caller does not hold the lock."""
        me = _current_handle()
        if me is None:
            me = -_get_ident()
        if self._owner != me:
            raise RuntimeError(f"cannot unlock {self!r}: not held by the caller")
        self._owner = None
        self._sema.release()

    release = unlock

    def locked(self) -> bool:
        return self._sema.value == 0

    def _relock(self, me) -> None:
        """Take the lock back for a Condvar waiter, even if interrupted: the interrupt is
        re-raised once the lock is held again (the caller's `with` must find it held)."""
        try:
            self._sema.acquire()
        except BaseException:
            while not self._sema.try_acquire():
                _yield_now()
            self._owner = me
            raise
        self._owner = me

    def statistics(self) -> dict:
        return {"name": self.name, "obj_id": self.obj_id, "locked": self.locked(),
                "owner": _owner_id(self._owner), "waiters": len(self._sema)}

    def __enter__(self) -> "Mutex":
        # lock(), inlined: this is the hot path
        me = _current_handle()
        if me is None:
            me = -_get_ident()
        if self._owner == me:
            raise RuntimeError(f"{self!r} is already held by the caller (Mutex is not reentrant)")
        self._sema.acquire()
        self._owner = me
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        me = _current_handle()
        if me is None:
            me = -_get_ident()
        if self._owner != me:
            raise RuntimeError(f"cannot unlock {self!r}: not held by the caller")
        self._owner = None
        self._sema.release()

    def __repr__(self) -> str:
        owner = self._owner
        state = ("unlocked" if owner is None and not self.locked()
                 else f"locked owner={_owner_id(owner)}")
        return f"<gvthread.Mutex name={self.name!r} obj_id={self.obj_id} {state}>"


# --------------------------------------------------------------------------- Condvar

class Condvar:
    """A condition variable bound to a Mutex (a new one if none is given).

    `wait()` must be called with the mutex held; it releases it, waits for a notify (or the
    timeout), and reacquires it before returning, also when interrupted.  Wakeups may be
    spurious (a waiter that was about to park when notify() ran also returns), so wait in a
    loop or use `wait_for`.  notify()/notify_all() do not require the mutex (as in Go and
    Rust); notifying under it is what makes "change state, then notify" race-free.
    """

    __slots__ = ("name", "obj_id", "_mutex", "_wq", "__weakref__")

    def __init__(self, mutex: Optional[Mutex] = None, *, name: Optional[str] = None):
        if mutex is None:
            mutex = Mutex(name=None if name is None else f"{name}.mutex")
        elif not isinstance(mutex, Mutex):
            raise TypeError(f"Condvar needs a gvthread.Mutex, not {type(mutex).__name__}")
        self.name = _new_name(name)
        self.obj_id = _next_object_id()
        self._mutex = mutex
        self._wq = _WaitQueue(kind=_K_CONDVAR, obj_id=self.obj_id)

    @property
    def mutex(self) -> Mutex:
        return self._mutex

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Release the mutex, wait for a notify, reacquire.  False if `timeout` expired."""
        m = self._mutex
        me = _me()
        if m._owner != me:
            raise RuntimeError(f"cannot wait on {self!r}: its mutex is not held by the caller")
        s = self._wq.seq  # under the mutex: a notify after any later state change bumps it
        m._owner = None
        m._sema.release()
        try:
            return self._wq.wait(s, timeout)
        finally:
            m._relock(me)

    def wait_for(self, predicate: Callable[[], Any], timeout: Optional[float] = None):
        """Wait until predicate() is true (checked with the mutex held); return its last
        value, which is falsy only if the timeout expired."""
        deadline = _deadline(timeout)
        result = predicate()
        while not result:
            if deadline is None:
                self.wait()
            else:
                remaining = deadline - _monotonic()
                if remaining <= 0:
                    break
                self.wait(remaining)
            result = predicate()
        return result

    def notify(self, n: int = 1) -> int:
        """Wake up to n waiters, oldest first; returns how many were woken."""
        return self._wq.notify(n)

    def notify_all(self) -> int:
        return self._wq.notify_all()

    def statistics(self) -> dict:
        return {"name": self.name, "obj_id": self.obj_id, "waiters": len(self._wq),
                "mutex": self._mutex.statistics()}

    def __enter__(self) -> "Condvar":
        self._mutex.lock()
        return self

    def __exit__(self, *exc) -> None:
        self._mutex.unlock()

    def __repr__(self) -> str:
        return (f"<gvthread.Condvar name={self.name!r} obj_id={self.obj_id} "
                f"waiters={len(self._wq)}>")


# --------------------------------------------------------------------------- RwLock

class _ReadCtx:
    __slots__ = ("_rw", "_timeout")

    def __init__(self, rw, timeout):
        self._rw = rw
        self._timeout = timeout

    def __enter__(self):
        if not self._rw.acquire_read(timeout=self._timeout):
            raise TimeoutError(f"timed out acquiring the read side of {self._rw!r}")
        return self._rw

    def __exit__(self, *exc):
        self._rw.release_read()


class _WriteCtx(_ReadCtx):
    __slots__ = ()

    def __enter__(self):
        if not self._rw.acquire_write(timeout=self._timeout):
            raise TimeoutError(f"timed out acquiring the write side of {self._rw!r}")
        return self._rw

    def __exit__(self, *exc):
        self._rw.release_write()


class RwLock:
    """A readers-writer lock: many readers or one writer.

    Writer preference, phase-fair like Go's RWMutex: once a writer waits, new readers queue
    behind it; when a writer releases, every reader queued at that moment is admitted
    together before the next writer.  So neither side starves.  The write side is owned
    (release by another raises RuntimeError; re-acquiring it, or acquiring the read side
    while holding the write side, raises RuntimeError).  Read locks are not owned and not
    reentrant-safe: a reader that read-locks again while a writer waits deadlocks, as in Go.

        with rw.read(): ...          with rw.write(timeout=1.0): ...   # TimeoutError
    """

    __slots__ = ("name", "obj_id", "_g", "_readers", "_writer",
                 "_writers_waiting", "_readers_waiting", "_rticket", "_radmit",
                 "_rq", "_wq", "__weakref__")

    def __init__(self, *, name: Optional[str] = None):
        self.name = _new_name(name)
        self.obj_id = _next_object_id()
        self._g = _allocate_lock()
        self._readers = 0          # holding readers, including admitted ones not yet resumed
        self._writer = None        # owner token of the writer
        self._writers_waiting = 0
        self._readers_waiting = 0  # queued readers not yet admitted
        self._rticket = 0          # next reader ticket
        self._radmit = 0           # every ticket below this has been admitted
        self._rq = _WaitQueue(kind=_K_RWLOCK, obj_id=self.obj_id)
        self._wq = _WaitQueue(kind=_K_RWLOCK, obj_id=self.obj_id)

    # -- read side ---------------------------------------------------------
    def acquire_read(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        timeout = _acquire_timeout(blocking, timeout)
        me = _me()
        if self._writer == me:
            if timeout == 0:
                return False
            raise RuntimeError(f"{self!r}: the caller holds the write lock")
        g = self._g
        _guard(g)
        try:
            if self._writer is None and self._writers_waiting == 0:
                self._readers += 1
                return True
            if timeout == 0:
                return False
            ticket = self._rticket
            self._rticket = ticket + 1
            self._readers_waiting += 1
        finally:
            g.release()
        return self._wait_read(ticket, _deadline(timeout))

    def _wait_read(self, ticket, deadline) -> bool:
        rq = self._rq
        try:
            while True:
                s = rq.seq
                if ticket < self._radmit:
                    return True
                if deadline is None:
                    rq.wait(s)
                else:
                    remaining = deadline - _monotonic()
                    if remaining <= 0:
                        break
                    rq.wait(s, remaining)
        except BaseException:
            if self._forget_reader(ticket):
                self.release_read()  # admitted just as the interrupt came: give it back
            raise
        return self._forget_reader(ticket)

    def _forget_reader(self, ticket) -> bool:
        """A queued reader stops waiting: True if it was admitted meanwhile (it holds the
        read lock), else it is dequeued."""
        g = self._g
        _guard(g)
        try:
            if ticket < self._radmit:
                return True
            self._readers_waiting -= 1
            return False
        finally:
            g.release()

    def release_read(self) -> None:
        g = self._g
        _guard(g)
        try:
            if self._readers <= 0:
                raise RuntimeError(f"cannot release_read {self!r}: no read lock is held")
            self._readers -= 1
            wake_writer = (self._readers == 0 and self._writer is None
                           and self._writers_waiting > 0)
        finally:
            g.release()
        if wake_writer:
            self._wq.notify(1)

    # -- write side --------------------------------------------------------
    def acquire_write(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        timeout = _acquire_timeout(blocking, timeout)
        me = _me()
        if self._writer == me:
            if timeout == 0:
                return False
            raise RuntimeError(f"{self!r} is already write-locked by the caller")
        g = self._g
        _guard(g)
        try:
            if self._writer is None and self._readers == 0:
                self._writer = me
                return True
            if timeout == 0:
                return False
            self._writers_waiting += 1
        finally:
            g.release()
        deadline = _deadline(timeout)
        wq = self._wq
        got = False
        try:
            while True:
                s = wq.seq
                _guard(g)
                if self._writer is None and self._readers == 0:
                    self._writer = me
                    self._writers_waiting -= 1
                    got = True
                g.release()
                if got:
                    return True
                if deadline is None:
                    wq.wait(s)
                else:
                    remaining = deadline - _monotonic()
                    if remaining <= 0:
                        return False
                    wq.wait(s, remaining)
        finally:
            if not got:
                self._writer_gives_up()

    def _writer_gives_up(self) -> None:
        g = self._g
        _guard(g)
        try:
            self._writers_waiting -= 1
            free = self._writer is None
            # it may have consumed the notify meant for the next writer: pass it on
            wake_writer = free and self._readers == 0 and self._writers_waiting > 0
            # readers queued only because writers were waiting may go in now
            admitted = 0
            if free and self._writers_waiting == 0 and self._readers_waiting:
                admitted = self._admit_readers()
        finally:
            g.release()
        if admitted:
            self._rq.notify_all()
        if wake_writer:
            self._wq.notify(1)

    def _admit_readers(self) -> int:
        n = self._readers_waiting
        self._readers += n
        self._readers_waiting = 0
        self._radmit = self._rticket
        return n

    def release_write(self) -> None:
        me = _me()
        g = self._g
        _guard(g)
        try:
            if self._writer != me:
                raise RuntimeError(f"cannot release_write {self!r}: not held by the caller")
            self._writer = None
            admitted = self._admit_readers() if self._readers_waiting else 0
            wake_writer = not admitted and self._writers_waiting > 0
        finally:
            g.release()
        if admitted:
            self._rq.notify_all()
        if wake_writer:
            self._wq.notify(1)

    # -- context managers and inspection -----------------------------------
    def read(self, timeout: Optional[float] = None) -> _ReadCtx:
        """`with rw.read():` holds the read side; TimeoutError if `timeout` expires."""
        return _ReadCtx(self, timeout)

    def write(self, timeout: Optional[float] = None) -> _WriteCtx:
        """`with rw.write():` holds the write side; TimeoutError if `timeout` expires."""
        return _WriteCtx(self, timeout)

    def statistics(self) -> dict:
        return {"name": self.name, "obj_id": self.obj_id, "readers": self._readers,
                "writer": _owner_id(self._writer), "readers_waiting": self._readers_waiting,
                "writers_waiting": self._writers_waiting}

    def __repr__(self) -> str:
        return (f"<gvthread.RwLock name={self.name!r} obj_id={self.obj_id} "
                f"readers={self._readers} writer={_owner_id(self._writer)}>")


# --------------------------------------------------------------------------- Barrier

class _Generation:
    __slots__ = ("done", "broken")

    def __init__(self):
        self.done = False
        self.broken = False


class Barrier:
    """Like threading.Barrier, for GVThreads and threads: `wait()` returns an index in
    0..parties-1 (the last to arrive gets parties-1) once `parties` callers have arrived; the
    barrier is then reused for the next round.  `action`, if given, is run by the last to
    arrive before the others are released.  A timeout, `abort()`, an exception in `action`,
    or an interrupt (Cancelled, ...) of a waiter breaks the barrier: the waiters of that round
    and every later `wait()` get BrokenBarrierError until `reset()`.
    """

    __slots__ = ("name", "obj_id", "_parties", "_action", "_timeout", "_g", "_count",
                 "_gen", "_wq", "__weakref__")

    def __init__(self, parties: int, action: Optional[Callable[[], Any]] = None,
                 timeout: Optional[float] = None, *, name: Optional[str] = None):
        if not isinstance(parties, int) or isinstance(parties, bool) or parties < 1:
            raise ValueError(f"parties must be an int >= 1, not {parties!r}")
        self.name = _new_name(name)
        self.obj_id = _next_object_id()
        self._parties = parties
        self._action = action
        self._timeout = timeout
        self._g = _allocate_lock()
        self._count = 0
        self._gen = _Generation()
        self._wq = _WaitQueue(kind=_K_BARRIER, obj_id=self.obj_id)

    def wait(self, timeout: Optional[float] = None) -> int:
        if timeout is None:
            timeout = self._timeout
        g = self._g
        _guard(g)
        try:
            gen = self._gen
            if gen.broken:
                raise BrokenBarrierError
            index = self._count
            self._count = index + 1
            last = index + 1 == self._parties
        finally:
            g.release()
        if last:
            if self._action is not None:
                try:
                    self._action()
                except BaseException:
                    self._break(gen)
                    raise
            _guard(g)
            try:
                if gen.broken:  # aborted/reset while the action ran
                    raise BrokenBarrierError
                gen.done = True
                self._gen = _Generation()
                self._count = 0
            finally:
                g.release()
            self._wq.notify_all()
            return index
        deadline = _deadline(timeout)
        wq = self._wq
        try:
            while True:
                s = wq.seq
                if gen.done:
                    return index
                if gen.broken:
                    raise BrokenBarrierError
                if deadline is None:
                    wq.wait(s)
                else:
                    remaining = deadline - _monotonic()
                    if remaining <= 0:
                        break
                    wq.wait(s, remaining)
        except BrokenBarrierError:
            raise
        except BaseException:
            if not self._break(gen):
                return index  # the round completed just as the interrupt came
            raise
        if not self._break(gen):
            return index
        raise BrokenBarrierError

    def _break(self, gen) -> bool:
        """Break round `gen` unless it completed; False if it did."""
        g = self._g
        _guard(g)
        try:
            if gen.done:
                return False
            gen.broken = True
        finally:
            g.release()
        self._wq.notify_all()
        return True

    def abort(self) -> None:
        """Break the barrier: current and future waiters get BrokenBarrierError."""
        self._break(self._gen)

    def reset(self) -> None:
        """Back to the initial state; callers waiting now get BrokenBarrierError."""
        g = self._g
        _guard(g)
        try:
            old = self._gen
            if self._count:
                old.broken = True
            self._gen = _Generation()
            self._count = 0
        finally:
            g.release()
        self._wq.notify_all()

    @property
    def parties(self) -> int:
        return self._parties

    @property
    def n_waiting(self) -> int:
        return 0 if self._gen.broken else self._count

    @property
    def broken(self) -> bool:
        return self._gen.broken

    def statistics(self) -> dict:
        return {"name": self.name, "obj_id": self.obj_id, "parties": self._parties,
                "n_waiting": self.n_waiting, "broken": self.broken,
                "waiters": len(self._wq)}

    def __repr__(self) -> str:
        return (f"<gvthread.Barrier name={self.name!r} obj_id={self.obj_id} "
                f"waiters={self.n_waiting}/{self._parties}{' broken' if self.broken else ''}>")


# --------------------------------------------------------------------------- Once, Lazy

class Once:
    """Run a function exactly once across GVThreads and threads.

    `call_once(fn, *args, **kwargs)`: the first caller runs fn; callers arriving meanwhile
    wait until it is done.  Returns True to the caller that ran fn successfully, False to the
    others.  If fn raises, the exception propagates to that caller only, the Once stays not
    done, and the next caller (one already waiting, or a later one) runs fn again: a failed
    initialization is retried rather than poisoning the Once.  Calling call_once from inside
    fn (same GVThread) raises RuntimeError instead of deadlocking.
    """

    __slots__ = ("name", "obj_id", "_done", "_running", "_g", "_wq",
                 "__weakref__")

    def __init__(self, *, name: Optional[str] = None):
        self.name = _new_name(name)
        self.obj_id = _next_object_id()
        self._done = False
        self._running = None  # owner token of the caller running fn
        self._g = _allocate_lock()
        self._wq = _WaitQueue(kind=_K_ONCE, obj_id=self.obj_id)

    def call_once(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> bool:
        if self._done:
            return False
        me = _me()
        g = self._g
        wq = self._wq
        while True:
            s = wq.seq
            _guard(g)
            try:
                if self._done:
                    return False
                if self._running is None:
                    self._running = me
                    break
                if self._running == me:
                    raise RuntimeError(f"{self!r}: call_once called recursively from its fn")
            finally:
                g.release()
            wq.wait(s)
        ok = False
        try:
            fn(*args, **kwargs)
            ok = True
        finally:
            _guard(g)
            self._done = ok
            self._running = None
            g.release()
            wq.notify_all()  # done: everybody returns; failed: the waiters retry
        return True

    @property
    def done(self) -> bool:
        return self._done

    def statistics(self) -> dict:
        return {"name": self.name, "obj_id": self.obj_id, "done": self._done,
                "running": _owner_id(self._running), "waiters": len(self._wq)}

    def __repr__(self) -> str:
        state = "done" if self._done else ("running" if self._running is not None else "new")
        return f"<gvthread.Once name={self.name!r} obj_id={self.obj_id} {state}>"


class Lazy:
    """A value computed on first use by `factory()`, exactly once (through a Once):
    `lazy.get()` or `lazy.value`.  If factory raises, the exception propagates and the next
    access tries again."""

    __slots__ = ("_factory", "_once", "_value", "_ready", "__weakref__")

    def __init__(self, factory: Callable[[], Any], *, name: Optional[str] = None):
        if not callable(factory):
            raise TypeError("Lazy needs a callable factory")
        self._factory = factory
        self._once = Once(name=name)
        self._value = None
        self._ready = False

    def _init(self) -> None:
        self._value = self._factory()
        self._ready = True
        self._factory = None  # drop what the factory holds on to

    def get(self):
        if self._ready:
            return self._value
        self._once.call_once(self._init)
        return self._value

    value = property(get)

    @property
    def name(self):
        return self._once.name

    @property
    def obj_id(self) -> int:
        return self._once.obj_id

    @property
    def initialized(self) -> bool:
        return self._ready

    def statistics(self) -> dict:
        st = self._once.statistics()
        st["initialized"] = self._ready
        return st

    def __repr__(self) -> str:
        value = repr(self._value) if self._ready else "<uninitialized>"
        return f"<gvthread.Lazy name={self.name!r} obj_id={self.obj_id} {value}>"


# --------------------------------------------------------------------------- Semaphore

class Semaphore:
    """A counting semaphore with FIFO waiters; not owned (any caller may release).

    `acquire(blocking=True, timeout=None)` as in threading; usable as a context manager.
    """

    __slots__ = ("name", "obj_id", "_sema", "__weakref__")

    _KIND = _K_SEMAPHORE

    def __init__(self, value: int = 1, *, name: Optional[str] = None):
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"semaphore value must be an int, not {type(value).__name__}")
        if value < 0:
            raise ValueError("semaphore initial value must be >= 0")
        self.name = _new_name(name)
        self.obj_id = _next_object_id()
        self._sema = _Sema(value, kind=self._KIND, obj_id=self.obj_id)

    def acquire(self, blocking: bool = True, timeout: Optional[float] = None) -> bool:
        timeout = _acquire_timeout(blocking, timeout)
        if timeout is None:
            return self._sema.acquire()
        if timeout <= 0:
            return self._sema.try_acquire()
        return self._sema.acquire(timeout)

    def try_acquire(self) -> bool:
        return self._sema.try_acquire()

    def release(self, n: int = 1) -> None:
        if n < 1:
            raise ValueError("n must be one or more")
        self._sema.release(n)

    @property
    def value(self) -> int:
        return self._sema.value

    def statistics(self) -> dict:
        return {"name": self.name, "obj_id": self.obj_id, "value": self._sema.value,
                "waiters": len(self._sema)}

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __repr__(self) -> str:
        return (f"<gvthread.{type(self).__name__} name={self.name!r} obj_id={self.obj_id} "
                f"value={self._sema.value} waiters={len(self._sema)}>")


class BoundedSemaphore(Semaphore):
    """A Semaphore whose release() raises ValueError if it would exceed the initial value."""

    __slots__ = ("_initial", "_g")

    def __init__(self, value: int = 1, *, name: Optional[str] = None):
        super().__init__(value, name=name)
        self._initial = value
        self._g = _allocate_lock()

    def release(self, n: int = 1) -> None:
        if n < 1:
            raise ValueError("n must be one or more")
        g = self._g
        _guard(g)
        try:
            # value only grows through here (under the guard); acquirers only lower it
            if self._sema.value + n > self._initial:
                raise ValueError("Semaphore released too many times")
            self._sema.release(n)
        finally:
            g.release()

    def statistics(self) -> dict:
        st = super().statistics()
        st["initial"] = self._initial
        return st


# --------------------------------------------------------------------------- WaitGroup

class WaitGroup:
    """Go's sync.WaitGroup: add(n) before starting work, done() when each piece ends,
    wait() until the counter is zero.  A negative counter raises ValueError (and the
    counter is left unchanged)."""

    __slots__ = ("name", "obj_id", "_count", "_g", "_wq", "__weakref__")

    def __init__(self, *, name: Optional[str] = None):
        self.name = _new_name(name)
        self.obj_id = _next_object_id()
        self._count = 0
        self._g = _allocate_lock()
        self._wq = _WaitQueue(kind=_K_WAITGROUP, obj_id=self.obj_id)

    def add(self, n: int = 1) -> None:
        g = self._g
        _guard(g)
        try:
            new = self._count + n
            if new < 0:
                raise ValueError(f"WaitGroup counter would go negative ({new})")
            self._count = new
        finally:
            g.release()
        if new == 0:
            self._wq.notify_all()

    def done(self) -> None:
        self.add(-1)

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait until the counter is zero; False if `timeout` expired first."""
        wq = self._wq
        deadline = _deadline(timeout)
        while True:
            s = wq.seq
            if self._count == 0:
                return True
            if deadline is None:
                wq.wait(s)
            else:
                remaining = deadline - _monotonic()
                if remaining <= 0:
                    return False
                wq.wait(s, remaining)

    @property
    def count(self) -> int:
        return self._count

    def statistics(self) -> dict:
        return {"name": self.name, "obj_id": self.obj_id, "count": self._count,
                "waiters": len(self._wq)}

    def __repr__(self) -> str:
        return f"<gvthread.WaitGroup name={self.name!r} obj_id={self.obj_id} count={self._count}>"


# --------------------------------------------------------------------------- Event

class Event:
    """Like threading.Event, parking GVThreads: set(), clear(), is_set(), wait(timeout).

    wait() returns True if the flag was set at any moment while it waited (even if cleared
    again before the waiter ran), False on timeout.
    """

    __slots__ = ("name", "obj_id", "_flag", "_sets", "_wq", "__weakref__")

    def __init__(self, *, name: Optional[str] = None):
        self.name = _new_name(name)
        self.obj_id = _next_object_id()
        self._flag = False
        self._sets = 0  # bumped by every set(): a waiter that misses a set+clear sees it
        self._wq = _WaitQueue(kind=_K_EVENT, obj_id=self.obj_id)

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        self._flag = True
        self._sets += 1
        self._wq.notify_all()

    def clear(self) -> None:
        self._flag = False

    def wait(self, timeout: Optional[float] = None) -> bool:
        if self._flag:
            return True
        sets = self._sets
        wq = self._wq
        deadline = _deadline(timeout)
        while True:
            s = wq.seq
            if self._flag or self._sets != sets:
                return True
            if deadline is None:
                wq.wait(s)
            else:
                remaining = deadline - _monotonic()
                if remaining <= 0:
                    return False
                wq.wait(s, remaining)

    def statistics(self) -> dict:
        return {"name": self.name, "obj_id": self.obj_id, "set": self._flag,
                "waiters": len(self._wq)}

    def __repr__(self) -> str:
        return (f"<gvthread.Event name={self.name!r} obj_id={self.obj_id} "
                f"{'set' if self._flag else 'unset'}>")
