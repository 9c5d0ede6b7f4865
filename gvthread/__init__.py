"""GVThread: M:N green threads for Python on a native scheduler.

    import gvthread
    h = gvthread.spawn(sum, [1, 2, 3])
    h.join()   # 6
"""
from gvthread import _native

if _native.lib.gv_pymodule_init() != 0:  # registers gvthread._core
    raise ImportError("gvthread: cannot initialise the native core")

from gvthread import _core  # noqa: E402
from gvthread._core import (  # noqa: E402
    Handle,
    RuntimeShutdownError,
    SchedError,
    SlotsExhausted,
    current_id,
    is_in_gvthread,
    yield_now,
)
from gvthread._runtime import Runtime, runtime, spawn  # noqa: E402
from gvthread._types import GVThreadInfo, Priority, State, WaitKind  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "GVThreadInfo",
    "Handle",
    "Priority",
    "Runtime",
    "RuntimeShutdownError",
    "SchedError",
    "SlotsExhausted",
    "State",
    "WaitKind",
    "current_id",
    "is_in_gvthread",
    "runtime",
    "spawn",
    "yield_now",
]

del _core
