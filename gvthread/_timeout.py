"""timeout(): a deadline for a block of code running in a GVThread."""
from __future__ import annotations

import contextlib
import time

from gvthread import _core


@contextlib.contextmanager
def timeout(seconds: float):
    """Raise TimeoutError inside the block at its first blocking point or
    safepoint after `seconds` have passed.  Works in GVThreads only: an OS
    thread has no safepoints, so there it raises RuntimeError at once.

    Nested blocks each keep their own deadline; the innermost expired one
    is the one that raises.  If the block ends before the error was delivered
    (it never blocked after the deadline), nothing is raised.
    """
    if not _core.is_in_gvthread():
        raise RuntimeError("gvthread.timeout() works inside a GVThread only")
    deadline = _core.deadline_push(time.monotonic() + seconds)
    try:
        yield deadline
    except TimeoutError as e:
        if deadline.fired and "timeout() expired" in str(e):
            raise TimeoutError(f"timed out after {seconds} s") from None
        raise
    finally:
        _core.deadline_pop(deadline)
