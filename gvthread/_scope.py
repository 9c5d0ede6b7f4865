"""scope(): structured spawning.

    with gvthread.scope() as s:
        s.spawn(fetch, url1)
        s.spawn(fetch, url2, name="second")
    # here every GVThread spawned in the scope has finished

Rules:
- Leaving the block joins every GVThread spawned in it, including those spawned by its
  children while the scope was still open.
- The first failure (a GVThread that raises anything but the Cancelled that the scope
  itself caused) cancels the scope: its token is cancelled and every other child gets
  Handle.cancel().  The failure is seen when the child raises, not when it is joined.
- Failures come out as a BaseExceptionGroup (an ExceptionGroup when all are Exceptions),
  in spawn order.  Cancelled raised by children that the scope cancelled is left out.
- If the body raises, the children are cancelled and joined, then the body's exception
  is re-raised as is, or grouped first with the children's failures if there are any.
- The body itself is never cancelled by a child's failure (it may be an OS thread);
  it can look at `s.token.cancelled` or `s.token.wait()`.
- If the thread or GVThread that leaves the block is interrupted while it waits (Ctrl-C
  in the main thread, its own Cancelled, an enclosing gvthread.timeout()), the scope is
  cancelled and the waiting goes on; a second interruption stops the waiting and
  propagates (the children are cancelled but some may still be running).

Hazard: the scope's lock is a raw `_thread` lock held for a few list operations only,
never across a join or a call into user code.
"""
from __future__ import annotations

import _thread
from typing import Any, Callable, Optional

from gvthread import _core
from gvthread._cancel import CancellationToken
from gvthread._types import Priority

__all__ = ["Scope", "scope"]

_NEW, _OPEN, _CLOSED = 0, 1, 2


class Scope:
    """A nursery of GVThreads; see scope()."""

    __slots__ = ("_spawn_fn", "_token", "_lock", "_handles", "_cancelled_by_scope", "_state",
                 "_reg", "runtime")

    def __init__(self, runtime=None, token: Optional[CancellationToken] = None):
        self.runtime = runtime
        self._spawn_fn = runtime.spawn if runtime is not None else _core.spawn
        self._token = token.child() if token is not None else CancellationToken()
        self._lock = _thread.allocate_lock()
        self._handles: list = []
        self._cancelled_by_scope: set[int] = set()  # id() of handles the scope cancelled
        self._state = _NEW
        self._reg = None

    # -- public ------------------------------------------------------------
    @property
    def token(self) -> CancellationToken:
        """Cancelled when the scope is (s.cancel(), a failure, the body raising, or the
        token the scope was made from)."""
        return self._token

    @property
    def cancelled(self) -> bool:
        return self._token.cancelled

    @property
    def handles(self) -> list:
        """The Handles spawned so far, in spawn order (a copy)."""
        with self._lock:
            return list(self._handles)

    def spawn(self, fn: Callable[..., Any], *args: Any, name: Optional[str] = None,
              priority: Any = Priority.NORMAL, stack_size: Optional[int] = None,
              **kwargs: Any):
        """Start fn(*args, **kwargs) as a GVThread of this scope; return its Handle.

        Allowed from the body and from the scope's own GVThreads until the scope has
        joined everything.  Spawning into a cancelled scope cancels the new GVThread
        at once (it never runs fn if it has not started)."""
        if self._state != _OPEN:
            raise RuntimeError("scope is not open" if self._state == _NEW else
                               "scope is closed")
        h = self._spawn_fn(self._child_main, fn, args, kwargs, name=name, priority=priority,
                           stack_size=stack_size)
        with self._lock:
            closed = self._state == _CLOSED
            if not closed:
                self._handles.append(h)
        if closed:
            # The scope finished joining while we were spawning: undo.
            h.cancel()
            raise RuntimeError("scope is closed")
        if self._token.cancelled:
            self._cancel_one(h)
        return h

    def cancel(self) -> None:
        """Cancel every GVThread of the scope (and the scope's token)."""
        self._token.cancel()

    # -- context manager ---------------------------------------------------
    def __enter__(self) -> "Scope":
        if self._state != _NEW:
            raise RuntimeError("a scope can be entered only once")
        self._state = _OPEN
        self._reg = self._token.on_cancel(self._cancel_children)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is not None:
            self._token.cancel()
        interrupted: Optional[BaseException] = None
        failures: list[BaseException] = []
        i = 0
        while True:
            with self._lock:
                if i >= len(self._handles):
                    self._state = _CLOSED
                    break
                h = self._handles[i]
            try:
                h.join()
            except BaseException as e:  # noqa: BLE001 - sorted out below
                if not h.done():
                    # Not the child's exception: the waiter itself was interrupted.
                    if interrupted is not None:
                        self._state = _CLOSED
                        raise
                    interrupted = e
                    self._token.cancel()
                    continue
                if not (isinstance(e, _core.Cancelled) and id(h) in self._cancelled_by_scope):
                    failures.append(e)
            i += 1
        if self._reg is not None:
            self._reg.unregister()
            self._reg = None
        own = [e for e in (exc, interrupted) if e is not None]
        if failures:
            n = len(failures)
            raise BaseExceptionGroup(
                f"{n} GVThread{'s' if n != 1 else ''} of the scope failed", own + failures)
        if interrupted is not None:
            raise interrupted
        return False

    # -- internals ---------------------------------------------------------
    def _child_main(self, fn, args, kwargs):
        try:
            return fn(*args, **kwargs)
        except BaseException as e:
            if not (isinstance(e, _core.Cancelled) and self._token.cancelled):
                self._token.cancel()  # first failure cancels the rest
            raise

    def _cancel_one(self, h) -> None:
        with self._lock:
            self._cancelled_by_scope.add(id(h))
        h.cancel()

    def _cancel_children(self) -> None:
        # A failing child cancels the scope from its own GVThread: not itself (its
        # failure, even a Cancelled from elsewhere, is reported as it is).
        me = _core.current_handle()
        with self._lock:
            pending = [h for h in self._handles if h is not me]
            self._cancelled_by_scope.update(id(h) for h in pending)
        for h in pending:
            h.cancel()

    def __repr__(self) -> str:
        state = ("new", "open", "closed")[self._state]
        c = " cancelled" if self._token.cancelled else ""
        return f"<gvthread.Scope {state}{c} children={len(self._handles)}>"


def scope(runtime=None, *, token: Optional[CancellationToken] = None) -> Scope:
    """A context manager for structured spawning; see the module docstring.

    runtime: spawn on it (default: the caller's runtime inside a GVThread, else the
    default runtime).  token: make the scope's token a child of it, so cancelling that
    token cancels the scope."""
    return Scope(runtime, token)
