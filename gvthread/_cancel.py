"""CancellationToken: cooperative cancellation that flows from parent to children.

    token = CancellationToken()
    child = token.child()          # cancelled when token is, never the reverse
    child.attach(handle)           # cancelling child cancels that GVThread
    child.on_cancel(callback)      # callback() runs once, at cancel()
    token.cancel()

Hazards (see docs/HACKING.md):
- A token is used from GVThreads and from OS threads alike.  Its own lock is a raw
  `_thread` lock, taken only for a few pointer updates and never held across a park or
  while Python callbacks run; it is allocated from `_thread` directly so that
  `gvthread.monkey` patches never reach it.
- Cancelling walks the tree of children with an explicit stack, not recursion: a
  GVThread's recursion allowance is small (about 70 levels on 3.11 at the default stack).
- A parent holds its children weakly: a child token nobody references any more is
  collected and drops out of the tree.  A child holds no reference to its parent.
- wait() parks on a native WaitQueue (kind EVENT), created on first use, so a token that
  is never waited on costs no native object.
"""
from __future__ import annotations

import _thread
import sys
import threading
import time
import weakref
from typing import Any, Callable, Optional

from gvthread import _core
from gvthread._types import WaitKind

__all__ = ["CancellationToken"]

_monotonic = time.monotonic
_TIMEOUT_MAX = threading.TIMEOUT_MAX

_EVENT = int(WaitKind.EVENT)


def _report(exc: BaseException, obj: Any) -> None:
    """Hand an exception raised by an on_cancel callback to sys.unraisablehook."""
    hook = sys.unraisablehook
    try:
        hook(_Unraisable(type(exc), exc, exc.__traceback__,
                         "Exception ignored in CancellationToken callback", obj))
    except BaseException:  # pragma: no cover - a broken hook must not break cancel()
        pass


class _Unraisable:
    __slots__ = ("exc_type", "exc_value", "exc_traceback", "err_msg", "object")

    def __init__(self, exc_type, exc_value, exc_traceback, err_msg, obj):
        self.exc_type = exc_type
        self.exc_value = exc_value
        self.exc_traceback = exc_traceback
        self.err_msg = err_msg
        self.object = obj


class CallbackRegistration:
    """What on_cancel() and attach() return: unregister() forgets the callback."""

    __slots__ = ("_token", "callback", "__weakref__")

    def __init__(self, token: "CancellationToken", callback: Callable[[], Any]):
        self._token = token
        self.callback = callback

    def unregister(self) -> bool:
        """Forget the callback.  True if it was still registered (so it will not run)."""
        tok = self._token
        if tok is None:
            return False
        self._token = None
        with tok._lock:
            cbs = tok._callbacks
            if cbs is None:
                return False
            try:
                cbs.remove(self)
            except ValueError:
                return False
            return True

    def __repr__(self) -> str:
        state = "registered" if self._token is not None else "done"
        return f"<CallbackRegistration {state} {self.callback!r}>"


class CancellationToken:
    """A one-shot cancellation flag shared by cooperating code.

    cancel() sets it (once), wakes every wait(), runs the on_cancel callbacks in
    registration order, cancels the attached GVThreads (Handle.cancel()) and then every
    child token, depth-first.  Cancelling a child never touches its parent.
    """

    __slots__ = ("_lock", "_cancelled", "_children", "_callbacks", "_prune_at",
                 "_wq", "__weakref__")

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._cancelled = False
        self._children: Optional[weakref.WeakSet] = None
        # None once cancelled: later registrations run at once.
        self._callbacks: Optional[list] = []
        self._prune_at = 64  # attach() drops finished GVThreads past this many callbacks
        self._wq = None

    # -- the tree ----------------------------------------------------------
    def child(self) -> "CancellationToken":
        """A new token that is cancelled when this one is (at once if it already is)."""
        c = CancellationToken()
        with self._lock:
            if not self._cancelled:
                if self._children is None:
                    self._children = weakref.WeakSet()
                self._children.add(c)
                return c
        c.cancel()
        return c

    # -- state -------------------------------------------------------------
    @property
    def cancelled(self) -> bool:
        """True once cancel() was called on this token or on one of its ancestors."""
        return self._cancelled

    def raise_if_cancelled(self) -> None:
        """Raise gvthread.Cancelled if the token is cancelled."""
        if self._cancelled:
            raise _core.Cancelled("cancellation token cancelled")

    def cancel(self) -> bool:
        """Cancel this token and, recursively, its children.  Returns False if it was
        already cancelled.  Safe from GVThreads, OS threads and callbacks.

        Exceptions raised by on_cancel callbacks go to sys.unraisablehook; they never
        stop the rest of the cancellation."""
        first = True
        stack = [self]
        while stack:
            tok = stack.pop()
            with tok._lock:
                if tok._cancelled:
                    if first:
                        return False
                    continue
                tok._cancelled = True
                callbacks = tok._callbacks or ()
                tok._callbacks = None
                children = list(tok._children) if tok._children is not None else ()
                tok._children = None
                wq = tok._wq
            first = False
            if wq is not None:
                wq.notify_all()
            for reg in callbacks:
                cb = reg.callback
                reg._token = None
                try:
                    cb()
                except BaseException as exc:  # noqa: BLE001 - reported, never propagated
                    _report(exc, cb)
            # Reversed so that children are cancelled in the order they were made.
            stack.extend(reversed(children))
        return True

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until the token is cancelled: True, or False after `timeout` seconds.

        Parks the calling GVThread (its worker runs others), or blocks an OS thread.
        Inside a GVThread it raises Cancelled if that GVThread is itself cancelled, and
        TimeoutError when an enclosing gvthread.timeout() expires."""
        if self._cancelled:
            return True
        wq = self._wq
        if wq is None:
            with self._lock:
                if self._cancelled:
                    return True
                wq = self._wq
                if wq is None:
                    wq = self._wq = _core.WaitQueue(kind=_EVENT,
                                                    obj_id=_core.next_object_id())
        # A timeout past threading.TIMEOUT_MAX (inf included) waits for ever.
        deadline = None if timeout is None or timeout > _TIMEOUT_MAX else _monotonic() + timeout
        while True:
            seq = wq.seq
            if self._cancelled:
                return True
            if deadline is None:
                wq.wait(seq, None)
            else:
                remaining = deadline - _monotonic()
                if remaining <= 0:
                    return self._cancelled
                wq.wait(seq, remaining)

    # -- callbacks ---------------------------------------------------------
    def on_cancel(self, callback: Callable[[], Any]) -> CallbackRegistration:
        """Run callback() when the token is cancelled (at once, here, if it already is).

        Callbacks run in the thread or GVThread that calls cancel(), in registration
        order, before child tokens are cancelled; they should be short and must not
        block.  Returns a registration whose unregister() forgets the callback."""
        if not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        reg = CallbackRegistration(self, callback)
        with self._lock:
            if self._callbacks is not None:
                self._callbacks.append(reg)
                return reg
        reg._token = None
        try:
            callback()
        except BaseException as exc:  # noqa: BLE001
            _report(exc, callback)
        return reg

    def attach(self, handle) -> CallbackRegistration:
        """Cancel the GVThread of `handle` (Handle.cancel()) when this token is cancelled.

        Registrations of attached GVThreads that have finished are dropped from time to
        time, so a long-lived token may have many GVThreads attached over its life."""
        cancel = handle.cancel
        with self._lock:
            if self._callbacks is not None and len(self._callbacks) >= self._prune_at:
                keep = []
                for r in self._callbacks:
                    if isinstance(r.callback, _HandleCanceller) and r.callback.handle.done():
                        r._token = None
                    else:
                        keep.append(r)
                self._callbacks = keep
                self._prune_at = max(64, 2 * len(keep))  # amortized O(1) per attach
        return self.on_cancel(_HandleCanceller(handle, cancel))

    def __repr__(self) -> str:
        state = "cancelled" if self._cancelled else "active"
        return f"<gvthread.CancellationToken {state} at {id(self):#x}>"


class _HandleCanceller:
    __slots__ = ("handle", "_cancel")

    def __init__(self, handle, cancel):
        self.handle = handle
        self._cancel = cancel

    def __call__(self) -> None:
        self._cancel()

    def __repr__(self) -> str:
        return f"<cancel {self.handle!r}>"
