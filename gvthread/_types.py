"""Enums and records of the public API.  No dependency on the native core."""
from __future__ import annotations

import enum
from typing import NamedTuple, Optional


class State(enum.IntEnum):
    """Lifecycle of a GVThread.  Values match `enum gv_state` in native/gv_internal.h."""

    CREATED = 0
    READY = 1
    RUNNING = 2
    BLOCKED = 3
    PREEMPTED = 4
    FINISHED = 5
    CANCELLED = 6


class Priority(enum.IntEnum):
    """Scheduling priority; lower value runs first."""

    CRITICAL = 0
    HIGH = 1
    NORMAL = 2
    LOW = 3


class WaitKind(enum.IntEnum):
    """What a BLOCKED GVThread waits on.  Values match `enum gv_wait_kind`."""

    NONE = 0
    JOIN = 1
    CHANNEL_SEND = 2
    CHANNEL_RECV = 3
    SELECT = 4
    MUTEX = 5
    CONDVAR = 6
    RWLOCK = 7
    SEMAPHORE = 8
    BARRIER = 9
    WAITGROUP = 10
    ONCE = 11
    EVENT = 12
    SLEEP = 13
    BLOCKING = 14
    OTHER = 15


class GVThreadInfo(NamedTuple):
    """One row of Runtime.snapshot().  Times are time.monotonic() seconds."""

    id: int
    name: str
    state: State
    priority: Priority
    worker: Optional[int]
    created: float
    started: Optional[float]
    switches: int
    wait_kind: WaitKind = WaitKind.NONE
    wait_obj: Optional[int] = None
    cpu_time: float = 0.0       # seconds spent switched in
    preemptions: int = 0        # times it yielded because its slice ran out


def coerce_priority(value) -> int:
    """Accept a Priority, its int value, or its name (any case)."""
    if isinstance(value, Priority):
        return int(value)
    if isinstance(value, str):
        try:
            return int(Priority[value.upper()])
        except KeyError:
            pass
    elif isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value <= 3:
            return value
    raise ValueError(f"unknown priority {value!r}; expected one of "
                     f"{', '.join(p.name for p in Priority)}")
