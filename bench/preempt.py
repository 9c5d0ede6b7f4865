"""Preemption figures: a 10 ms ticker beside a 1 s busy loop, and the cost of safepoints.

**Fairness** (the test of /work/shared/reference/README.md, issue 4's acceptance). One
busy loop (``while time.monotonic() < end: n += 1``, 1 s) and one ticker run side by side
on one CPU's worth of scheduling: the ticker's k-th tick is due at ``start + k * 10 ms``
(k = 1..100, so the schedule spans exactly the busy second) and it sleeps until each one,
whatever happened before; ``lateness = actual - due``. Reported: the p50 and p99 lateness
(nearest rank over the 100 ticks, ms) and the ticks that fired while the busy loop was
still running, per 100 due (``ticks/100``; with ``--quick`` the run lasts 0.5 s and the
count is scaled to 100). The last tick is due the instant the loop ends, so 99 is the
usual best. Rows:

- ``gvthread normal``: ``Runtime(workers=1)`` (time slice 10 ms), the busy loop compiled
  with ``gvthread.compile`` (so it has safepoints), the ticker a Normal-priority GVThread
  using ``gvthread.sleep_until``. It waits for what is left of the loop's slice, plus
  up to one monitor period (2 ms at a 10 ms slice) and a timer tick (0.52 ms): its
  lateness climbs by that much from tick to tick and wraps past a slice, so p50 sits
  near half a slice and p99 near a slice. Target: p99 <= time slice + 2 ms.
- ``gvthread high``: the same with a High-priority ticker, which preempts the busy loop
  as soon as its timer readies it. Target: p99 <= 2 ms.
- ``threads``: the busy loop in one ``threading.Thread``, the ticker in another with
  ``time.sleep`` (the GIL's switch interval, 5 ms, bounds its lateness).
- ``asyncio``: the busy loop is a coroutine that never awaits, the ticker uses
  ``asyncio.sleep``; ``gevent``: a busy greenlet and ``gevent.sleep``. Both starve the
  ticker: its ticks all fire after the busy loop, back to back.

The GVThread rows are the "ours" side of the figures; threads is the peer of the Normal
and High rows, and the Normal row is also set against asyncio and gevent.

**Sharing one run between three lines.** p50, p99 and the tick count are three figures
but one measurement: each fairness child runs the whole test once, and the figures of
the same side read the same runs. The first child that needs a side's n-th run makes it
and stores the whole sample in a scratch directory private to the ``python -m bench``
process (its parent); the children that later need that run for another metric, or for
another figure with the same side, read it back instead of running the test again. So
every run is still made in a fresh child process and the sides still alternate, the
three lines of a row describe the same runs, and the suite costs one run per side and
repeat instead of one per figure. Only children whose parent is ``python -m bench
preempt`` share; the directory is removed by a later run once its owner has exited.

**Safepoint overhead** (``preempt.compile_loop``): ``for i in range(n): x += i`` in a
function, run inside a GVThread on ``Runtime(workers=1)`` with the default 10 ms time
slice, compiled with ``gvthread.compile`` (a flag test at the loop's back edge) vs the
builtin ``compile``; ns per iteration, the best of a few rounds in each child. Target:
compiled / builtin <= 1.30.

**Native figures** (issue 4's acceptance asks for them in this suite's run):

- ``preempt.native_yield`` and ``preempt.native_chan``: the C<->C yield and int64
  channel ping-pong of ``bench.native`` (the same functions and parameters, see there),
  each beside Go's ``runtime.Gosched`` / unbuffered channel measured in the same run; when
  ``go`` is not on PATH the peer is labelled ``go:absent`` and reports 0.
- ``preempt.forced_rt_p50`` / ``preempt.forced_count``: the forced-preemption round
  trip. One native GVThread (``forced_spin`` in bench.native's C module, registered as
  preemptible) reads the TSC in a tight loop for ``duration`` seconds on
  ``Runtime(workers=1, time_slice=0.001, grace_period=0)``, so the monitor forces it off
  by SIGURG about once per slice; with nothing else to run, the worker puts it straight
  back. Every gap between two TSC reads longer than ``thresh_ns`` is recorded, and the
  ones that contain a forced preemption are known exactly (the handler's store below the
  red zone overwrites a mark the loop keeps there, see the C source). p50 (ns) of those
  gaps: signal delivery + handler + ``gv_async_preempt`` (registers, xsave) + switch to
  the scheduler + requeue + pick + switch back + xrstor. Count: forced gaps per run
  (``info.forced_stat`` is the runtime's own ``forced_preemptions``). Peer (``signal``):
  the same loop (``signal_spin``) on an ordinary thread, sent a signal whose handler only
  counts (on an alternate stack, like SIGURG's) by another thread every ``time_slice``:
  the share of the kernel and the machine (the cross-CPU interrupt, signal frame,
  sigreturn), which any signal-based preemption pays; the difference is the runtime's.
  Target: p50 <= 500 ns.
  The two lines read the same runs (``shared_sample``, as the fairness lines do).
"""

from __future__ import annotations


from ._runner import Figure, Side, Target
from ._util import gc_paused, now_ns, shared_figure
# The native pair figures run these in this suite's children (looked up here by name).
from .native import _load_native, chan_native, go_pingpong, pair_figures, yield_native  # noqa: F401

__all__ = ["FIGURES"]

_SLICE = 0.010          # Runtime's default time slice, which the Normal target is built on

# The busy loop, the same source on every side: ours compiles it with gvthread.compile,
# the peers with the builtin compile.
BUSY_SRC = '''
def busy(end):
    n = 0
    while time.monotonic() < end:
        n += 1
    return n
'''

LOOP_SRC = '''
def loop(n):
    x = 0
    for i in range(n):
        x += i
    return x
'''


def _load(src: str, name: str, compiled: bool):
    """Function ``name`` of ``src``, compiled by gvthread.compile or by the builtin."""
    import time

    if compiled:
        import gvthread
        code = gvthread.compile(src, f"<bench-{name}>", "exec")
    else:
        code = compile(src, f"<bench-{name}>", "exec")
    ns = {"time": time}
    exec(code, ns)
    return ns[name]


# -- fairness: one run of each side ----------------------------------------------------
#
# Each returns (start, busy_end, [(due, actual), ...]) in time.monotonic() seconds.

def _run_gv(busy_s: float, ticks: int, period: float, priority: str,
            time_slice: float | None = _SLICE):
    import time

    import gvthread

    busy = _load(BUSY_SRC, "busy", compiled=True)
    sleep_until, monotonic = gvthread.sleep_until, time.monotonic
    ended = [0.0]
    out: list = []

    def busy_side(end):
        busy(end)
        ended[0] = monotonic()

    def ticker(start):
        append = out.append
        for k in range(1, ticks + 1):
            due = start + k * period
            sleep_until(due)
            append((due, monotonic()))

    prio = gvthread.Priority[priority.upper()]
    with gvthread.Runtime(workers=1, time_slice=time_slice) as rt:
        rt.spawn(busy_side, 0.0).join()      # warm-up: first spawn, first run
        start = monotonic()
        b = rt.spawn(busy_side, start + busy_s, name="busy")
        t = rt.spawn(ticker, start, name="ticker", priority=prio)
        t.join()
        b.join()
        stats = rt.stats()
    keep = ("preempt_requests", "priority_preempts", "coop_preemptions", "overruns",
            "handoffs", "switches")
    return start, ended[0], out, {k: stats[k] for k in keep if k in stats}


def _run_threads(busy_s: float, ticks: int, period: float):
    import threading
    import time

    busy = _load(BUSY_SRC, "busy", compiled=False)
    sleep, monotonic = time.sleep, time.monotonic
    ended = [0.0]
    out: list = []

    def busy_side(end):
        busy(end)
        ended[0] = monotonic()

    def ticker(start):
        append = out.append
        for k in range(1, ticks + 1):
            due = start + k * period
            d = due - monotonic()
            if d > 0:
                sleep(d)
            append((due, monotonic()))

    start = monotonic()
    b = threading.Thread(target=busy_side, args=(start + busy_s,), name="busy")
    t = threading.Thread(target=ticker, args=(start,), name="ticker")
    b.start()
    t.start()
    t.join()
    b.join()
    return start, ended[0], out, {"switch_interval": __import__("sys").getswitchinterval()}


def _run_asyncio(busy_s: float, ticks: int, period: float):
    import asyncio
    import time

    busy = _load(BUSY_SRC, "busy", compiled=False)
    monotonic = time.monotonic
    ended = [0.0]
    out: list = []

    async def busy_side(end):          # a coroutine that never awaits
        busy(end)
        ended[0] = monotonic()

    async def ticker(start):
        append = out.append
        for k in range(1, ticks + 1):
            due = start + k * period
            d = due - monotonic()
            await asyncio.sleep(d if d > 0 else 0)
            append((due, monotonic()))

    async def main():
        start = monotonic()
        b = asyncio.create_task(busy_side(start + busy_s))
        t = asyncio.create_task(ticker(start))
        await asyncio.gather(b, t)
        return start

    start = asyncio.run(main())
    return start, ended[0], out, {}


def _run_gevent(busy_s: float, ticks: int, period: float):
    import time

    import gevent

    busy = _load(BUSY_SRC, "busy", compiled=False)
    monotonic = time.monotonic
    ended = [0.0]
    out: list = []

    def busy_side(end):
        busy(end)
        ended[0] = monotonic()

    def ticker(start):
        append = out.append
        for k in range(1, ticks + 1):
            due = start + k * period
            d = due - monotonic()
            gevent.sleep(d if d > 0 else 0)
            append((due, monotonic()))

    gevent.sleep(0)                    # start the hub outside the measured second
    start = monotonic()
    b = gevent.spawn(busy_side, start + busy_s)
    t = gevent.spawn(ticker, start)
    gevent.joinall([b, t], raise_error=True)
    return start, ended[0], out, {"gevent": gevent.__version__}


_IMPLS = {"gvthread": _run_gv, "threads": _run_threads, "asyncio": _run_asyncio,
          "gevent": _run_gevent}


def _pct(sorted_ms: list, p: float) -> float:
    """Nearest-rank percentile: the smallest value with at least p% of them at or below."""
    import math
    k = max(1, math.ceil(p / 100.0 * len(sorted_ms)))
    return sorted_ms[k - 1]


def _measure(impl: str, busy_s: float, ticks: int, period: float, **kw) -> dict:
    with gc_paused():
        start, busy_end, out, extra = _IMPLS[impl](busy_s, ticks, period, **kw)
    if len(out) != ticks:
        raise RuntimeError(f"{impl}: the ticker fired {len(out)} of {ticks} ticks")
    lat = sorted((actual - due) * 1e3 for due, actual in out)
    during = sum(1 for _, actual in out if actual <= busy_end)
    return {
        "p50": _pct(lat, 50), "p99": _pct(lat, 99),
        "ticks": during * 100.0 / ticks,
        "max_ms": lat[-1], "min_ms": lat[0], "ticks_during": during, "ticks_due": ticks,
        "busy_s": busy_end - start, **extra,
    }


# -- sharing a run between the p50, p99 and ticks figures ------------------------------

def fairness(impl: str, metric: str, group: str, busy_s: float, ticks: int,
             period: float, **kw):
    """``metric`` (p50, p99 or ticks) of one run of the fairness test on ``impl``.

    ``group`` names the figures that share runs: the n-th child asked for a given
    (side, metric, group) uses the side's n-th run, made by whichever child of the suite
    needed it first.
    """
    params = {"impl": impl, "busy_s": busy_s, "ticks": ticks, "period": period, **kw}
    return shared_figure("preempt", params, f"{group}.{metric}", metric,
                         lambda: _measure(impl, busy_s, ticks, period, **kw))


# -- safepoint overhead ----------------------------------------------------------------

def compile_loop(compiled: bool, n: int, rounds: int):
    """ns per iteration of LOOP_SRC inside a GVThread, the best of ``rounds`` runs."""
    import gvthread

    loop = _load(LOOP_SRC, "loop", compiled=compiled)

    def body():
        loop(n // 10)                       # warm-up
        best = None
        for _ in range(rounds):
            t0 = now_ns()
            loop(n)
            dt = now_ns() - t0
            best = dt if best is None or dt < best else best
        return best

    with gvthread.Runtime(workers=1) as rt:
        with gc_paused():
            best = rt.spawn(body).join()
        stats = rt.stats()
    return {"value": best / n,
            "info": {"n": n, "rounds": rounds, "best_ns": best,
                     "coop_preemptions": stats.get("coop_preemptions")}}


# -- forced-preemption round trip ------------------------------------------------------

def _forced_run(side: str, duration: float, time_slice: float, thresh_ns: float,
                cap: int) -> dict:
    """One run of forced_spin (side "forced") or of signal_spin beside signal_sender
    (side "signal"); see the module doc. Times in ns."""
    import statistics
    import threading
    import time

    import gvthread

    nat = _load_native()
    ffi, lib = nat.ffi, nat.lib
    # TSC ticks per ns, against perf_counter over 50 ms.
    a0, n0 = lib.tsc_now(), time.perf_counter_ns()
    time.sleep(0.05)
    a1, n1 = lib.tsc_now(), time.perf_counter_ns()
    tpn = (a1 - a0) / (n1 - n0)
    gap, fl = ffi.new("uint64_t[]", cap), ffi.new("uint8_t[]", cap)
    f = ffi.new("fspin *", {"thresh": int(thresh_ns * tpn), "cap": cap, "gap": gap,
                            "forced": fl, "period_ns": int(time_slice * 1e9)})
    extra = {}
    if side == "forced":
        lo, hi = ffi.new("uint64_t *"), ffi.new("uint64_t *")
        lib.fspin_range(lo, hi)
        if not gvthread.register_preemptible(lo[0], hi[0]):
            raise RuntimeError("forced preemption is not available in this build or platform")
        with gvthread.Runtime(workers=1, time_slice=time_slice, grace_period=0.0) as rt:
            with gc_paused():
                f.end_tsc = lib.tsc_now() + int(duration * 1e9 * tpn)
                rt.spawn_native(lib.forced_spin, f, name="forced_spin").join()
            st = rt.stats()
        extra = {"forced_stat": st["forced_preemptions"], "overruns": st["overruns"]}
    else:
        with gc_paused():
            f.end_tsc = lib.tsc_now() + int(duration * 1e9 * tpn)
            ts = [threading.Thread(target=lib.signal_spin, args=(f,)),
                  threading.Thread(target=lib.signal_sender, args=(f,))]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
        extra = {"sent": f.sent}
    if not f.supported:
        raise RuntimeError("forced_spin needs x86_64 (rdtsc)")
    n = min(f.ngaps, cap)
    mine = sorted(gap[i] / tpn for i in range(n) if fl[i])
    other = sorted(gap[i] / tpn for i in range(n) if not fl[i])

    def pct(xs, p):
        return xs[min(len(xs) - 1, int(p / 100.0 * len(xs)))] if xs else 0.0

    return {
        "p50": statistics.median(mine) if mine else 0.0, "count": len(mine),
        "p10": pct(mine, 10), "p90": pct(mine, 90), "min": mine[0] if mine else 0.0,
        "max": mine[-1] if mine else 0.0, **extra,
        "other_gaps": len(other), "other_p50": statistics.median(other) if other else 0.0,
        "iters": f.iters, "ns_per_iter": duration * 1e9 / max(1, f.iters),
        "tsc_per_ns": tpn, "dropped": max(0, f.ngaps - cap),
    }


def forced_roundtrip(metric: str, side: str, **params):
    """``metric`` (p50 in ns, or count) of one forced_spin / signal_spin run; the p50
    and count lines of a side read the same runs."""
    return shared_figure("preempt", {"what": "forced", "side": side, **params},
                         f"forced.{metric}", metric, lambda: _forced_run(side, **params))


# -- the figures -----------------------------------------------------------------------

_FORCED = {"duration": 1.0, "time_slice": 0.001, "thresh_ns": 200.0, "cap": 1 << 20}
_FORCED_Q = {"duration": 0.3}


def _forced_side(label: str, metric: str) -> Side:
    return Side(label, "forced_roundtrip", {"metric": metric, "side": label, **_FORCED},
                _FORCED_Q)


_FORCED_FIGURES = [
    Figure(
        "preempt.forced_rt_p50", "ns",
        ours=_forced_side("forced", "p50"),
        peer=_forced_side("signal", "p50"),
        targets=(Target("value", "<=", 500),),
        doc="forced-preemption round trip of a native GVThread spinning on the TSC "
            "(SIGURG, async-preempt stub, xsave, switch, pick, restore), p50 of the gaps "
            "that hold a forced preemption, Runtime(workers=1, time_slice=0.001, "
            "grace_period=0); vs the same loop on an OS thread interrupted by a no-op "
            "signal handler (the kernel's and the machine's share)",
    ),
    Figure(
        "preempt.forced_count", "gaps/run",
        ours=_forced_side("forced", "count"),
        peer=_forced_side("signal", "count"),
        doc="forced preemptions counted by the spinning native in one run (the gaps "
            "behind forced_rt_p50), vs signals counted by the OS-thread loop",
    ),
]

_FAIR = {"busy_s": 1.0, "ticks": 100, "period": 0.010}
_FAIR_Q = {"busy_s": 0.5, "ticks": 50}
_LOOP = {"n": 5_000_000, "rounds": 5}
_LOOP_Q = {"n": 2_000_000, "rounds": 3}

_UNITS = {"p50": "ms", "p99": "ms", "ticks": "ticks/100"}


def _side(label: str, impl: str, metric: str, group: str, **kw) -> Side:
    return Side(label, "fairness", {"impl": impl, "metric": metric, "group": group,
                                    **_FAIR, **kw}, _FAIR_Q)


def _fair_figures() -> list:
    figs = []
    rows = [
        # name, ours, its label, peer, targets per metric
        ("normal", {"priority": "normal"}, "gvthread normal", "threads",
         {"p99": (Target("value", "<=", round((_SLICE + 0.002) * 1e3, 3)),),
          "ticks": (Target("value", ">=", 95),)}),
        ("high", {"priority": "high"}, "gvthread high", "threads",
         {"p99": (Target("value", "<=", 2.0),), "ticks": (Target("value", ">=", 95),)}),
        ("asyncio", {"priority": "normal"}, "gvthread normal", "asyncio", {}),
        ("gevent", {"priority": "normal"}, "gvthread normal", "gevent", {}),
    ]
    for name, ours_kw, ours_label, peer, targets in rows:
        for metric in ("p50", "p99", "ticks"):
            what = {"p50": "p50 lateness", "p99": "p99 lateness",
                    "ticks": "ticks during the busy second (per 100)"}[metric]
            figs.append(Figure(
                f"preempt.{name}_{metric}", _UNITS[metric],
                ours=_side("gvthread", "gvthread", metric, name, **ours_kw),
                peer=_side(peer, peer, metric, name),
                targets=targets.get(metric, ()),
                doc=f"{what} of a 10 ms ticker beside a 1 s busy loop: {ours_label} "
                    f"(Runtime(workers=1), loop built by gvthread.compile) vs {peer}",
            ))
    return figs


FIGURES = _fair_figures() + [
    Figure(
        "preempt.compile_loop", "ns/iter",
        ours=Side("gvthread", "compile_loop", {"compiled": True, **_LOOP}, _LOOP_Q),
        peer=Side("builtin", "compile_loop", {"compiled": False, **_LOOP}, _LOOP_Q),
        targets=(Target("ratio", "<=", 1.30),),
        doc="`for i in range(n): x += i` inside a GVThread, compiled by gvthread.compile "
            "vs the builtin compile (safepoint overhead)",
    ),
] + pair_figures("preempt.native_yield", "preempt.native_chan") + _FORCED_FIGURES
