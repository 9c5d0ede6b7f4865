"""sys.monitoring safepoints, armed on demand in code gvthread.compile did not build.

CPython 3.12+ only; on 3.11 `AVAILABLE` is False and nothing here runs (3.11 arms a C
trace function instead: native/pytrace.c).

How it fits (native/pymonitor.c has the design): when a Python GVThread is still
flagged past its grace period and others wait, the monitor posts a CPython pending
call; the thread that holds the GIL runs it at its next eval-breaker check.  If that
thread is running the late GVThread, `arm()` is called on top of its frames and arms
`JUMP | PY_START | PY_RESUME` on the code of each (innermost first, at most
MAX_FRAMES), under a tool id of our own.  The next call or resume of that code calls
`_hit`, which disarms the code (set_local_events(tool, code, 0), so it runs at full
speed again) and runs the safepoint: it yields, or raises a pending Cancelled /
TimeoutError into the interrupted code.  A loop back-edge (JUMP) does not run the
safepoint itself: it re-arms its code for INSTRUCTION only, and the jump target's
INSTRUCTION event calls `_hit` (why: below).

Facts about sys.monitoring that shape this module:
- Local events are per code object and per tool, not per thread: every thread that
  runs an armed code object calls `_hit`.  A GVThread that is not flagged (or an
  ordinary thread) just disarms the code; if the late GVThread still needs it, the
  monitor asks again next period.
- `DISABLE` is not used: undoing it takes `restart_events()`, which re-enables the
  events other tools disabled too.  Neither `set_events` (global) nor trace hooks are
  used: they cost 35-90 ms to toggle with 100K GVThreads (DESIGN.md).
- Tool ids are shared with user code.  Ours is claimed at the first arm, not at
  import, from _CANDIDATES in order (DEBUGGER_ID and COVERAGE_ID are left to debuggers
  and coverage.py); one taken already is skipped.  If none is free the hook is
  removed and late GVThreads are only handed off.  Other tools' events and
  callbacks are never touched.
- The callbacks run with the GVThread's tstate marked as tracing, so no event fires
  inside them; that mark is per tstate, hence per GVThread, and travels with it
  across the switch.
- An exception raised by a JUMP callback skips every handler of the frame that
  jumped, on 3.12.1 and 3.13.0 alike: `try/except`, `finally` and `with` around the
  loop are not run, and the exception leaves the frame as if raised by its caller.
  So `with gvthread.timeout(0.05): while True: pass`, written in one frame (a
  module's top level, or one function), lost its TimeoutError: the scope's exit
  never ran and the error escaped the frame raw, while the same loop in a function
  called inside the scope worked (its own frame had no handler to skip).  Raised by
  an INSTRUCTION, PY_START or PY_RESUME callback, the same exception is handled as
  usual (measured on both versions).  Hence the detour through INSTRUCTION: it
  fires at the jump target, the place where gvthread.compile puts its safepoint.
"""
from __future__ import annotations

import sys
from types import CodeType
from typing import Dict, Optional

from gvthread import _core

_mon = getattr(sys, "monitoring", None)
AVAILABLE = _mon is not None
TOOL_NAME = "gvthread"
# OPTIMIZER_ID, the two unnamed ids, PROFILER_ID.
_CANDIDATES = (5, 4, 3, 2)
MAX_FRAMES = 32

_tool: Optional[int] = None
_armed: Dict[CodeType, int] = {}  # armed code -> id of the GVThread it was armed for
_flag = _core.preempt_flag        # truth: the calling GVThread is flagged or interrupted
_current_id = _core.current_id
_safepoint = _core.safepoint

if AVAILABLE:
    _EVENTS = _mon.events.JUMP | _mon.events.PY_START | _mon.events.PY_RESUME


def tool_id() -> Optional[int]:
    """The sys.monitoring tool id in use, or None (not claimed yet, or none free)."""
    return _tool


def armed_codes() -> list:
    """Code objects armed now (for tests and inspection)."""
    return list(_armed)


def _claim() -> Optional[int]:
    global _tool
    for tid in _CANDIDATES:
        if _mon.get_tool(tid) is not None:
            continue
        try:
            _mon.use_tool_id(tid, TOOL_NAME)
        except ValueError:  # taken between the check and the claim
            continue
        _mon.register_callback(tid, _mon.events.JUMP, _on_jump)
        _mon.register_callback(tid, _mon.events.PY_START, _on_start)
        _mon.register_callback(tid, _mon.events.PY_RESUME, _on_start)
        _mon.register_callback(tid, _mon.events.INSTRUCTION, _on_instruction)
        _tool = tid
        return tid
    return None


def arm() -> bool:
    """Arm the code of the caller's frames.  Called only by the pending call
    (pymonitor.c), in the late GVThread, which is known to be flagged."""
    global _tool
    tool = _tool
    if tool is None or _mon.get_tool(tool) != TOOL_NAME:  # never claimed, or freed
        _tool = None
        _armed.clear()
        tool = _claim()
        if tool is None:
            _core.set_monitor_hook(None)  # no free tool id: handoff only from now on
            return False
    gid = _current_id()
    own = globals()
    f = sys._getframe(1)
    n = 0
    while f is not None and n < MAX_FRAMES:
        if f.f_globals is not own:
            code = f.f_code
            if code not in _armed:
                _mon.set_local_events(tool, code, _EVENTS)
            _armed[code] = gid
        f = f.f_back
        n += 1
    return True


def _disarm(code: CodeType) -> None:
    _armed.pop(code, None)
    tool = _tool
    if tool is None:
        return
    try:
        _mon.set_local_events(tool, code, 0)
    except ValueError:  # our tool id was freed by someone else
        pass


def _hit(code: CodeType) -> None:
    if _flag:
        gid = _current_id()
        for c, owner in list(_armed.items()):
            if owner == gid:
                _disarm(c)
        _disarm(code)
        _safepoint()  # yields; or raises Cancelled / TimeoutError into the monitored code
    else:
        _disarm(code)  # not late (or not a GVThread): nobody here needs it armed


def _on_jump(code: CodeType, offset: int, dest: int) -> None:
    # Never raise here (module docstring): let the jump target's INSTRUCTION
    # event run the safepoint, inside the frame's handlers.
    tool = _tool
    if _flag and tool is not None:
        try:
            _mon.set_local_events(tool, code, _mon.events.INSTRUCTION)
            return
        except ValueError:  # our tool id was freed by someone else
            pass
    _disarm(code)


def _on_start(code: CodeType, offset: int) -> None:
    _hit(code)


def _on_instruction(code: CodeType, offset: int) -> None:
    _hit(code)


if AVAILABLE:
    _core.set_monitor_hook(arm)
