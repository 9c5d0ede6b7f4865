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
from gvthread._compile import compile  # noqa: E402,A001 - gvthread.compile, on purpose
from gvthread._runtime import (  # noqa: E402
    Runtime,
    native_include,
    register_preemptible,
    runtime,
    spawn,
)
from gvthread._core import native_api  # noqa: E402
from gvthread._types import GVThreadInfo, Priority, State, WaitKind  # noqa: E402
from gvthread._sync import (  # noqa: E402
    Barrier,
    BoundedSemaphore,
    BrokenBarrierError,
    Condvar,
    Event,
    Lazy,
    Mutex,
    Once,
    RwLock,
    Semaphore,
    WaitGroup,
)
from gvthread._blocking import set_blocking_pool_size, spawn_blocking  # noqa: E402
from gvthread._cancel import CancellationToken  # noqa: E402
from gvthread._scope import Scope, scope  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "native_api",
    "register_preemptible",
    "native_include",
    "compile",
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
    "Barrier",
    "BoundedSemaphore",
    "BrokenBarrierError",
    "CancellationToken",
    "Condvar",
    "Event",
    "GVThreadInfo",
    "Handle",
    "Lazy",
    "Mutex",
    "Once",
    "Priority",
    "Runtime",
    "RuntimeShutdownError",
    "RwLock",
    "SchedError",
    "Scope",
    "Semaphore",
    "SlotsExhausted",
    "State",
    "WaitGroup",
    "WaitKind",
    "current_id",
    "is_in_gvthread",
    "runtime",
    "scope",
    "set_blocking_pool_size",
    "spawn",
    "spawn_blocking",
    "yield_now",
]

del _core
