"""Runtime: the Python face of one native scheduler (workers, slots, timer).

Hazards worth knowing before changing this file (see docs/HACKING.md):
- The default runtime is stopped by an atexit hook, before interpreter
  finalization: workers that are still switching Python tstates while the
  interpreter tears down crash the process now and then.
- shutdown() must not hold the GIL while it waits: the GVThreads it waits
  for need the GIL to finish.  cffi calls release it.
"""
from __future__ import annotations

import atexit
import linecache
import os
import reprlib
import threading
from typing import Any, Callable, Optional

from gvthread._native import ffi, lib
from gvthread import _core, _monitor
from gvthread._types import GVThreadInfo, Priority, State, WaitKind, coerce_priority

_core.set_enums(tuple(State), tuple(Priority))

_PAGE = os.sysconf("SC_PAGE_SIZE")
_MIN_STACK = lib.GV_MIN_STACK
_MAX_STACK = lib.GV_MAX_STACK
# A main thread's 8 MiB: GVThreads run what a thread runs (CPython's default
# recursion limit, imports of large packages).  Only touched pages cost memory.
_DEFAULT_STACK = lib.GV_DEFAULT_STACK
# A worker stuck in a GVThread that never yields is left behind after this.
_STOP_GRACE = 2.0


class Runtime:
    """An M:N scheduler: `workers` OS threads running GVThreads.

    Use as a context manager; leaving the block waits for every GVThread
    spawned on it, then stops the workers.

    Each GVThread gets a stack of `stack_size` bytes (8 MiB, a thread's
    default): address space reserved for all of them at once, of which a
    GVThread uses only the pages it touches, and deep pages go back when it
    parks or ends.  `spawn(fn, stack_size=...)` gives one GVThread another
    size.  The recursion bound follows each GVThread's stack.

    The first Runtime of a process replaces builtins.compile, eval and exec
    and marshal's dumps, loads, dump and load with wrappers that, in a
    GVThread with less than 4 MiB of stack left, parse, compile and
    (un)marshal on a borrowed 8 MiB stack (CPython's parser does not know
    the stack's size); they behave as the originals do, and elsewhere they
    only forward.  On 3.11 it also wraps sys.setrecursionlimit, so that
    GVThreads keep a recursion bound their stacks hold.
    """

    def __init__(self, workers: Optional[int] = None, stack_size: int = _DEFAULT_STACK,
                 max_gvthreads: int = 1_000_000, time_slice: Optional[float] = 0.010,
                 grace_period: float = 0.010, max_spare_threads: int = 4,
                 monitor_safepoints: bool = True):
        if workers is None:
            workers = os.cpu_count() or 1
        if not isinstance(workers, int) or isinstance(workers, bool) or not (
                1 <= workers <= lib.GV_MAX_WORKERS):
            raise ValueError(f"workers must be an int in 1..{lib.GV_MAX_WORKERS}, not {workers!r}")
        if not isinstance(stack_size, int) or isinstance(stack_size, bool):
            raise TypeError(f"stack_size must be an int, not {type(stack_size).__name__}")
        if not _MIN_STACK <= stack_size <= _MAX_STACK:
            raise ValueError(f"stack_size {stack_size} is outside {_MIN_STACK}..{_MAX_STACK} bytes")
        if stack_size % _PAGE:
            raise ValueError(f"stack_size {stack_size} is not a multiple of the page size {_PAGE}")
        if not isinstance(max_gvthreads, int) or isinstance(max_gvthreads, bool) or not (
                1 <= max_gvthreads <= 2**32 - 1):
            raise ValueError(f"max_gvthreads must be an int in 1..2**32-1, not {max_gvthreads!r}")
        if time_slice is not None and not (isinstance(time_slice, (int, float))
                                           and 0 < time_slice <= 3600):
            raise ValueError(f"time_slice must be None or seconds in (0, 3600], not {time_slice!r}")
        if not (isinstance(max_spare_threads, int) and 0 <= max_spare_threads <= 256):
            raise ValueError(f"max_spare_threads must be an int in 0..256, not {max_spare_threads!r}")
        if not (isinstance(grace_period, (int, float)) and 0 <= grace_period <= 3600):
            raise ValueError(f"grace_period must be seconds in [0, 3600], not {grace_period!r}")
        cfg = ffi.new("gv_config *", {"workers": workers, "stack_size": stack_size,
                                      "max_gvthreads": max_gvthreads,
                                      "time_slice": time_slice or 0.0,
                                      "grace_period": grace_period,
                                      "max_spare_threads": max_spare_threads,
                                      "monitor_safepoints": bool(monitor_safepoints)})
        err = ffi.new("int *")
        rt = lib.gv_runtime_new(cfg, err)
        if rt == ffi.NULL:
            if err[0] == lib.GV_E_NOMEM:
                raise MemoryError(f"cannot reserve {max_gvthreads} stacks of {stack_size} bytes "
                                  "of address space: lower max_gvthreads or stack_size")
            raise _core.SchedError(f"cannot start the runtime (error {err[0]})")
        self._rt = rt
        # CPython's parser, compiler and marshal recurse past any slot-sized stack
        # on legal input (eval("[" * 199 + "]" * 199)); inside GVThreads they now
        # run on a borrowed 8 MiB stack (native/pycompile.c).
        _core.install_compile_guard()
        # 3.11's sys.setrecursionlimit rewrites every thread's recursion counter,
        # GVThreads' stack-sized bounds included (native/pybridge.c).
        _core.install_recursion_guard()
        self._core = _core.Core(int(ffi.cast("uintptr_t", rt)))
        self.spawn = self._core.spawn  # the hot path, in C
        self._lock = threading.Lock()
        self._closed = False
        self.workers = workers
        self.stack_size = stack_size
        self.max_gvthreads = max_gvthreads
        self.time_slice = time_slice
        self.grace_period = grace_period
        # A Python GVThread that ignores its flag past the grace period (or is
        # interrupted) gets safepoints armed in its code before its worker is handed
        # off: sys.monitoring on 3.12+ (gvthread/_monitor.py), a C trace function on
        # its own tstate on 3.11 (native/pytrace.c).
        self.monitor_safepoints = bool(monitor_safepoints) and time_slice is not None
        with _open_lock:
            _open.add(self)

    # -- lifecycle -------------------------------------------------------
    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown(wait=True)

    def shutdown(self, wait: bool = True) -> None:
        """Stop the workers.  wait=True first waits for every GVThread to end;
        wait=False leaves parked GVThreads where they are (they never resume).
        Idempotent.  Must not be called from one of this runtime's GVThreads."""
        if _core.current_core() is self._core:
            raise RuntimeError("shutdown() called from a GVThread of the same runtime")
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with _open_lock:
            _open.discard(self)
        if wait:
            # Short waits in a Python loop, so Ctrl-C reaches the caller.
            while not lib.gv_runtime_wait_idle(self._rt, 0.1):
                pass
        stuck = lib.gv_runtime_stop(self._rt, 0, _STOP_GRACE)
        self._core.detach(bool(stuck))
        if not stuck:
            lib.gv_runtime_free(self._rt)
        # else: a worker is still inside a GVThread; rt stays allocated for it.

    @property
    def closed(self) -> bool:
        return self._closed

    # -- spawning --------------------------------------------------------
    def spawn(self, fn: Callable[..., Any], *args: Any, name: Optional[str] = None,
              priority: Any = Priority.NORMAL, stack_size: Optional[int] = None,
              **kwargs: Any):
        """Start fn(*args, **kwargs) as a GVThread on this runtime; return its Handle.

        stack_size (bytes, a page multiple): a stack of that size, mapped for this
        GVThread alone and unmapped when it ends, instead of one of the runtime's
        slots (Runtime(stack_size=...), 8 MiB by default).

        (Each instance replaces this method by the C one, which does the same.)"""
        return self._core.spawn(fn, *args, name=name, priority=priority,
                                stack_size=stack_size, **kwargs)

    def spawn_native(self, fn: Any, arg: Any = None, *, name: Optional[str] = None,
                     priority: Any = Priority.NORMAL):
        """Start the C function `void fn(void *arg)` as a native GVThread: it runs on a
        GVThread stack without the GIL, in parallel with other native GVThreads, and
        reaches the runtime through gvthread.native_api() (gvthread_native.h, in
        gvthread.native_include()).  `fn` is a cffi function pointer (or its address as
        an int), `arg` a cffi pointer, an int address, or None.  Returns a Handle whose
        join() returns None.  The function must not call into Python."""
        prio = priority if type(priority) is int and 0 <= priority <= 3 else coerce_priority(priority)
        if name is not None and not isinstance(name, str):
            raise TypeError("name must be a str")
        return self._core.spawn_native(_address(fn, "fn"), _address(arg, "arg"), prio, name)

    # -- inspection ------------------------------------------------------
    def snapshot(self) -> list[GVThreadInfo]:
        """One record per live GVThread (racy by nature: states may move on)."""
        self._check_open()
        out = []
        for (gid, name, state, prio, worker, created, started, switches,
             wait_kind, wait_obj, cpu, preemptions) in self._core.snapshot()[0]:
            out.append(GVThreadInfo(gid, name, state, prio, worker, created, started, switches,
                                    WaitKind(wait_kind), wait_obj if wait_kind else None,
                                    cpu, preemptions))
        return out

    def handle(self, gvthread_id: int):
        """The Handle of a live GVThread of this runtime, wherever it was spawned
        (to cancel or join it); KeyError if there is no such live GVThread."""
        self._check_open()
        return self._core.handle(gvthread_id)

    def stack(self, gvthread_id: int) -> list[tuple[str, int, str, str]]:
        """Python stack of a live GVThread, outermost frame first, as
        (filename, lineno, function, source line) tuples.  KeyError if the id
        is not a live GVThread of this runtime."""
        self._check_open()
        frames = self._core.stack(gvthread_id)
        frames.reverse()
        return [(fn, ln, func, linecache.getline(fn, ln).strip()) for fn, ln, func in frames]

    def channels(self, preview: int = 10, preview_chars: int = 200) -> list[dict]:
        """Every live channel (channels belong to no runtime: all are listed):
        id, name, capacity, length, closed, a bounded preview of the queued
        items (at most `preview` items and `preview_chars` characters each), and
        the ids of the GVThreads waiting to send and to receive (`senders`,
        `receivers`: at most 64 each; `senders_waiting` and `receivers_waiting`
        count them all).  Threads show as negative ids.

        The preview runs no user code: items of builtin types (None, bool, int,
        float, complex, str, bytes, and tuples, lists, dicts, sets of those, at
        most 3 deep and 100 items each) show through reprlib; any other object
        shows as `<TypeName object>` (its __repr__ could loop, block or raise,
        and this is called from a kernel's control thread)."""
        self._check_open()
        r = reprlib.Repr()
        r.maxstring = r.maxother = preview_chars
        r.maxlist = r.maxtuple = r.maxdict = r.maxset = 10
        out = []
        for info in _core.channels_info(preview):
            items = info.pop("items")
            info["preview"] = [_preview(r, x)[:preview_chars] for x in items]
            out.append(info)
        return out

    def stats(self) -> dict:
        """Counters of the scheduler, in total and per worker."""
        self._check_open()
        rs = ffi.new("gv_runtime_stats *")
        lib.gv_runtime_stats_get(self._rt, rs)
        ws = ffi.new("gv_worker_stats *")
        fields = ("switches", "yields", "migrations", "steals", "parks", "blocks",
                  "preempt_requests", "priority_preempts", "coop_preemptions",
                  "forced_preemptions", "handoffs", "overruns", "direct_yields", "idle_ns")
        per = []
        for i in range(self.workers):
            lib.gv_worker_stats_get(self._rt, i, ws)
            per.append({f: getattr(ws, f) for f in fields})
        total = {f: sum(w[f] for w in per) for f in fields}
        total.update(spawned=rs.spawned, finished=rs.finished, live=rs.live,
                     slots_in_use=rs.slots_in_use, guard_pages=bool(rs.guard_pages),
                     own_stacks=rs.own_stacks, stack_trims=rs.stack_trims,
                     trace_arm_requests=rs.trace_arm_requests, trace_arms=rs.trace_arms,
                     workers=per)
        return total

    def trim(self) -> None:
        """Give the memory of every free stack slot back to the OS now."""
        self._check_open()
        lib.gv_runtime_trim(self._rt)

    def _check_open(self) -> None:
        if self._closed:
            raise _core.RuntimeShutdownError("the runtime is shut down")

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running"
        return (f"<gvthread.Runtime {state} workers={self.workers} "
                f"stack_size={self.stack_size} max_gvthreads={self.max_gvthreads}>")


def _address(obj: Any, what: str) -> int:
    """An int address from an int, None, or a cffi pointer of any FFI instance."""
    if obj is None:
        return 0
    if isinstance(obj, int) and not isinstance(obj, bool):
        if obj < 0:
            raise ValueError(f"{what}: negative address")
        return obj
    try:
        return int(ffi.cast("uintptr_t", obj))
    except TypeError:
        raise TypeError(f"{what} must be a cffi pointer or an int address, "
                        f"not {type(obj).__name__}") from None


def register_preemptible(lo: Any, hi: Any) -> bool:
    """Declare [lo, hi) (addresses: ints or cffi pointers) as code in which a native
    GVThread may be forced off its worker by SIGURG at any instruction
    (see GV_PREEMPTIBLE in gvthread_native.h).  Returns False if forced preemption is
    not available on this platform."""
    lo_a, hi_a = _address(lo, "lo"), _address(hi, "hi")
    if hi_a <= lo_a:
        raise ValueError("register_preemptible: empty or inverted range")
    if lib.gv_register_preemptible(lo_a, hi_a) != 0:
        raise SchedError_("register_preemptible: too many ranges (64 at most)")
    return bool(lib.gv_forced_preempt_available())


def native_include() -> str:
    """The directory holding gvthread_native.h, for cffi's include_dirs."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "include")


SchedError_ = _core.SchedError

_default: Optional[Runtime] = None
_default_lock = threading.Lock()
# Every runtime not yet shut down, held strongly (as threading holds its
# threads): its workers must be stopped before finalization even if the
# program dropped its last reference or never shut it down.
_open: "set[Runtime]" = set()
_open_lock = threading.Lock()


def runtime() -> Runtime:
    """The default runtime, started on first use and stopped at interpreter exit."""
    global _default
    rt = _default
    if rt is not None and not rt.closed:
        return rt
    with _default_lock:
        if _default is None or _default.closed:
            _default = Runtime()
        return _default


def _stop_all_at_exit() -> None:
    # Daemon semantics: GVThreads still alive are not waited for.  Runs
    # before interpreter finalization, which must not meet a running worker.
    with _open_lock:
        pending = list(_open)
    for rt in pending:
        if _core.current_core() is not rt._core:
            rt.shutdown(wait=False)


atexit.register(_stop_all_at_exit)


def _default_core():
    return runtime()._core


_core.set_hooks(coerce_priority, _default_core)
spawn = _core.spawn


_SCALARS = (type(None), bool, int, float, complex, str, bytes)
_CONTAINERS = (tuple, list, dict, set, frozenset)


def _plain(x: Any, depth: int = 0) -> bool:
    """True if x is made only of builtin scalars and containers (exact types: a
    subclass may override __repr__), bounded in depth and size."""
    t = type(x)
    if t in _SCALARS:
        return True
    if t not in _CONTAINERS or depth >= 3 or len(x) > 100:
        return False
    if t is dict:
        return all(_plain(k, depth + 1) and _plain(v, depth + 1) for k, v in x.items())
    return all(_plain(v, depth + 1) for v in x)


def _preview(r: reprlib.Repr, x: Any) -> str:
    """Channels' preview of one queued item (see Runtime.channels)."""
    try:
        if _plain(x):
            return r.repr(x)
    except Exception:  # a container changed size under us; int too long for str()
        pass
    try:
        name = type.__dict__["__name__"].__get__(type(x))
    except Exception:
        name = "object"
    return f"<{name} object>"
