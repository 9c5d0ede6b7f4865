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
    CLOSED,
    Cancelled,
    Channel,
    ChannelClosed,
    Handle,
    RuntimeShutdownError,
    SchedError,
    SlotsExhausted,
    current_handle,
    current_id,
    is_in_gvthread,
    safepoint,
    sleep,
    select,
    sleep_until,
    yield_now,
)
from gvthread._timeout import timeout  # noqa: E402
from gvthread._runtime import Runtime, runtime, spawn  # noqa: E402
from gvthread._types import GVThreadInfo, Priority, State, WaitKind  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "CLOSED",
    "Cancelled",
    "Channel",
    "ChannelClosed",
    "select",
    "current_handle",
    "safepoint",
    "sleep",
    "sleep_until",
    "timeout",
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
