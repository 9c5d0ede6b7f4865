"""Core runtime figures: Python switch, spawn + join, RSS per parked task, worker scaling.

Every function below runs in its own child process (see ``bench._runner``) and imports
its subject lazily. Both sides of a figure do the same work the same way: a local-bound
call in a ``for ... in range`` loop, the same warm-up, the gc off while timing (the
``gc_paused`` block), and the same clock (``time.perf_counter_ns``).

Reference figures (2 cores, CPython 3.11, /work/shared/reference/README.md): greenlet
one-way switch 239 ns; spawn + join of 100K: asyncio 135K/s, greenlet 104K/s; RSS per
parked task: greenlet 6.0 KB, asyncio 1.0 KB. They are not used here: every peer is
measured in the same run.
"""

from __future__ import annotations

from ._runner import Figure, Side, Target
from ._util import gc_paused, now_ns, rss_bytes, settle, switch_count, vm_status, wait_until

__all__ = ["FIGURES"]


# -- 1 and 4: Python yield ping-pong ---------------------------------------------------

def _pingpong_gv(rt, n: int) -> tuple[int, int]:
    """Two GVThreads each yield ``n`` times; returns (elapsed ns, switches).

    The clock runs inside the GVThreads, from the moment both have started (a barrier)
    to the moment the second one finishes, so spawn, join and the main thread's wake-up
    are outside it. Each yield with the other one runnable is one switch: 2n in all.
    """
    import gvthread

    st = {"arrived": 0, "t0": 0, "done": 0, "t1": 0}

    def player():
        yield_now = gvthread.yield_now
        st["arrived"] += 1
        while st["arrived"] < 2:
            yield_now()
        if not st["t0"]:
            st["t0"] = now_ns()
        for _ in range(n):
            yield_now()
        st["done"] += 1
        if st["done"] == 2:
            st["t1"] = now_ns()

    a = rt.spawn(player, name="ping")
    b = rt.spawn(player, name="pong")
    a.join()
    b.join()
    return st["t1"] - st["t0"], 2 * n


def switch_gv(n: int, warmup: int, workers: int = 1):
    """ns per switch of two Python GVThreads calling yield_now() on Runtime(workers)."""
    import gvthread

    rt = gvthread.Runtime(workers=workers)
    try:
        _pingpong_gv(rt, warmup)
        stats0 = switch_count(rt)
        with gc_paused():
            elapsed, switches = _pingpong_gv(rt, n)
        stats1 = switch_count(rt)
        info = {"switches": switches, "elapsed_ns": elapsed}
        if stats0 is not None and stats1 is not None:
            # What the runtime itself counted; a large gap from `switches` means yields
            # returned without switching (e.g. the two ran on different workers).
            info["runtime_switches"] = stats1 - stats0
        yield {"value": elapsed / switches, "info": info}
    finally:
        rt.shutdown()


def switch_greenlet(n: int, warmup: int):
    """ns per switch of two greenlets switching to each other."""
    _greenlet_pair(warmup)
    elapsed, switches = _greenlet_pair(n)
    return {"value": elapsed / switches, "info": {"switches": switches, "elapsed_ns": elapsed}}


def _greenlet_pair(n: int) -> tuple[int, int]:
    """Two greenlets switch to each other n times each; returns (elapsed ns, 2n).

    Timed like the GVThread side: from the moment both have started to the end of the
    loops, so greenlet creation and the switches from and back to main are outside it.
    """
    from greenlet import greenlet, getcurrent

    main = getcurrent()
    st = {"t0": 0, "t1": 0}
    g: list = [None, None]

    def first():
        # Barrier, like the GVThread side: start the second, get control back, then time.
        g[1].switch()
        st["t0"] = now_ns()
        switch = g[1].switch
        for _ in range(n):
            switch()
        st["t1"] = now_ns()

    def second():
        g[0].switch()          # barrier: hand control back to `first` once started
        switch = g[0].switch
        for _ in range(n):
            switch()

    g[0] = greenlet(first, parent=main)
    g[1] = greenlet(second, parent=main)
    with gc_paused():
        g[0].switch()
    # `second` is left suspended in its last switch; kill it now, outside the clock.
    g[1].throw()
    return st["t1"] - st["t0"], 2 * n


# -- 2: spawn + join -------------------------------------------------------------------

def _tiny():
    return None


def spawn_gv(n: int, warmup: int, workers=1, inside: bool = False):
    """GVThreads spawned + joined per second: spawn n, then join all.

    From the main thread (as a user script would), or with ``inside`` from a driver
    GVThread: that variant leaves out the handoffs of the GIL between the main thread
    and the worker, and so tells how much of the main-thread figure they are.
    """
    import gvthread

    def spawn_join(count):
        spawn = gvthread.spawn if inside else rt.spawn
        t0 = now_ns()
        hs = [spawn(_tiny) for _ in range(count)]
        for h in hs:
            h.join()
        t1 = now_ns()
        return t1 - t0

    def run(count):
        return rt.spawn(spawn_join, count).join() if inside else spawn_join(count)

    rt = gvthread.Runtime(workers=workers)
    try:
        run(warmup)
        with gc_paused():
            elapsed = run(n)
        yield {"value": n * 1e9 / elapsed,
               "info": {"elapsed_ns": elapsed, "workers": rt.workers}}
    finally:
        rt.shutdown()


async def _atiny():
    return None


def spawn_asyncio(n: int, warmup: int):
    """asyncio tasks created + gathered per second (create_task of n coroutines, gather)."""
    import asyncio

    async def main():
        create_task, gather = asyncio.create_task, asyncio.gather
        await gather(*[create_task(_atiny()) for _ in range(warmup)])
        with gc_paused():
            t0 = now_ns()
            tasks = [create_task(_atiny()) for _ in range(n)]
            await gather(*tasks)
            t1 = now_ns()
        return t1 - t0

    elapsed = asyncio.run(main())
    return {"value": n * 1e9 / elapsed, "info": {"elapsed_ns": elapsed}}


# -- 3: RSS per parked task ------------------------------------------------------------

def _rec(k: int) -> int:
    return 0 if k == 0 else _rec(k - 1) + 1


def rss_gv(n: int, warmup: int, wait_s: float = 120.0, depth: int = 0):
    """RSS bytes per parked GVThread with n alive (with ``depth``, each first went that
    many Python frames deep and came back).

    Each task starts, then parks in ``gate.join()``; the gate is a GVThread that yields
    until released, so it never finishes while we measure. The n tasks are spawned by a
    launcher GVThread (not by the main thread, whose spawns would fight the worker for the
    GIL); the main thread polls a counter with time.sleep until all n have started, lets
    the last of them park, and reads RSS. The baseline is read after the runtime, the gate
    and a small warm-up batch exist, so only the per-task cost is counted, handles
    included (the greenlet side keeps its greenlet objects alive the same way).
    """
    import gvthread

    rt = gvthread.Runtime(workers=1, max_gvthreads=max(1_000_000, n + 64))
    released = [False]
    started = [0]

    def gate():
        yield_now = gvthread.yield_now
        while not released[0]:
            yield_now()

    def waiter(g):
        started[0] += 1
        if depth:
            _rec(depth)
        g.join()

    def launcher(g, count):
        spawn = gvthread.spawn
        return [spawn(waiter, g) for _ in range(count)]

    try:
        # Warm-up: the same path on a small batch, released and finished.
        g0 = rt.spawn(gate, name="gate-warmup")
        hs = rt.spawn(launcher, g0, warmup).join()
        wait_until(lambda: started[0] >= warmup, wait_s, "warm-up tasks to start")
        released[0] = True
        for h in hs:
            h.join()
        g0.join()
        del hs
        released[0] = False
        started[0] = 0

        g = rt.spawn(gate, name="gate")
        settle()
        with gc_paused():
            before, pte0 = rss_bytes(), vm_status("VmPTE")
            handles = rt.spawn(launcher, g, n).join()
            wait_until(lambda: started[0] >= n, wait_s, f"{n} tasks to start")
            settle()
            after, pte1 = rss_bytes(), vm_status("VmPTE")
        yield {"value": (after - before) / n,
               "info": {"rss_before": before, "rss_after": after, "tasks": n,
                        "depth": depth, "page_tables_per_task": (pte1 - pte0) / n}}
        released[0] = True
        g.join()
        for h in handles:
            h.join()
    finally:
        released[0] = True
        rt.shutdown()


def rss_greenlet(n: int, warmup: int, depth: int = 0):
    """RSS bytes per parked greenlet with n alive: each switched into once, and switched
    back out to the main greenlet from inside its function (with ``depth``, after going
    that many Python frames deep and back)."""
    from greenlet import greenlet, getcurrent

    main = getcurrent()
    started = [0]

    def waiter():
        started[0] += 1
        if depth:
            _rec(depth)
        main.switch()

    def make(count):
        gs = []
        for _ in range(count):
            gl = greenlet(waiter)
            gl.switch()
            gs.append(gl)
        return gs

    gs = make(warmup)
    for gl in gs:
        gl.switch()     # let them finish
    del gs
    started[0] = 0

    settle()
    with gc_paused():
        before, pte0 = rss_bytes(), vm_status("VmPTE")
        gs = make(n)
        assert started[0] == n
        settle()
        after, pte1 = rss_bytes(), vm_status("VmPTE")
    yield {"value": (after - before) / n,
           "info": {"rss_before": before, "rss_after": after, "tasks": n,
                    "depth": depth, "page_tables_per_task": (pte1 - pte0) / n}}
    for gl in gs:
        gl.switch()
    del gs


# -- a million parked, then joined ------------------------------------------------------

def million_gv(n: int, wait_s: float = 600.0):
    """Peak RSS bytes per task with n GVThreads alive and parked at once, then all
    released and joined (the joins timed)."""
    import gvthread

    rt = gvthread.Runtime(workers=1, max_gvthreads=n + 64)
    started = [0]
    try:
        gate = gvthread.Event()

        def waiter():
            started[0] += 1
            gate.wait()

        def launcher(count):
            spawn = gvthread.spawn
            return [spawn(waiter) for _ in range(count)]

        settle()
        with gc_paused():
            before = rss_bytes()
            t0 = now_ns()
            handles = rt.spawn(launcher, n).join()
            wait_until(lambda: started[0] >= n, wait_s, f"{n} tasks to start")
            t1 = now_ns()
            settle()
            parked, pte = rss_bytes(), vm_status("VmPTE")
            gate.set()
            for h in handles:
                h.join()
            t2 = now_ns()
            peak = vm_status("VmHWM")
        del handles
        yield {"value": (peak - before) / n,
               "info": {"tasks": n, "rss_before": before, "rss_parked": parked,
                        "peak_rss": peak, "rss_joined": rss_bytes(), "page_tables": pte,
                        "spawn_s": (t1 - t0) / 1e9, "join_s": (t2 - t1) / 1e9}}
    finally:
        rt.shutdown()


def million_greenlet(n: int):
    """Peak RSS bytes per task with n greenlets parked at once, then all finished."""
    from greenlet import greenlet, getcurrent

    main = getcurrent()

    def waiter():
        main.switch()

    settle()
    with gc_paused():
        before = rss_bytes()
        t0 = now_ns()
        gs = []
        for _ in range(n):
            gl = greenlet(waiter)
            gl.switch()
            gs.append(gl)
        t1 = now_ns()
        settle()
        parked, pte = rss_bytes(), vm_status("VmPTE")
        for gl in gs:
            gl.switch()
        t2 = now_ns()
        peak = vm_status("VmHWM")
    del gs
    return {"value": (peak - before) / n,
            "info": {"tasks": n, "rss_before": before, "rss_parked": parked,
                     "peak_rss": peak, "rss_joined": rss_bytes(), "page_tables": pte,
                     "spawn_s": (t1 - t0) / 1e9, "join_s": (t2 - t1) / 1e9}}


# -- the figures -----------------------------------------------------------------------

_SWITCH = {"n": 500_000, "warmup": 20_000}
_SWITCH_Q = {"n": 100_000, "warmup": 5_000}
_SPAWN = {"n": 100_000, "warmup": 2_000}
_SPAWN_Q = {"n": 20_000, "warmup": 1_000}
_RSS = {"n": 100_000, "warmup": 64}
_RSS_Q = {"n": 20_000, "warmup": 64}
_DEEP = {"n": 20_000, "warmup": 64, "depth": 900}
_DEEP_Q = {"n": 5_000, "warmup": 64, "depth": 900}
_MILLION = {"n": 1_000_000}
_MILLION_Q = {"n": 200_000}

FIGURES = [
    Figure(
        "core.switch_py", "ns/switch",
        ours=Side("gvthread", "switch_gv", {**_SWITCH, "workers": 1}, _SWITCH_Q),
        peer=Side("greenlet", "switch_greenlet", _SWITCH, _SWITCH_Q),
        targets=(Target("ratio", "<=", 0.50),),
        doc="two Python GVThreads yield_now() to each other on Runtime(workers=1), "
            "vs two greenlets switching back and forth",
    ),
    Figure(
        "core.spawn_join", "spawns/s",
        ours=Side("gvthread", "spawn_gv", {**_SPAWN, "workers": 1}, _SPAWN_Q),
        peer=Side("asyncio", "spawn_asyncio", _SPAWN, _SPAWN_Q),
        targets=(Target("ratio", ">=", 5.00),),
        doc="spawn 100K tiny callables from the main thread on Runtime(workers=1), then "
            "join all; vs asyncio create_task of 100K coroutines + gather",
    ),
    Figure(
        "core.spawn_join_default", "spawns/s",
        ours=Side("gvthread", "spawn_gv", {**_SPAWN, "workers": None}, _SPAWN_Q),
        peer=Side("asyncio", "spawn_asyncio", _SPAWN, _SPAWN_Q),
        doc="as core.spawn_join, on Runtime() with the default worker count (informative)",
    ),
    Figure(
        "core.spawn_join_in_gv", "spawns/s",
        ours=Side("gvthread", "spawn_gv", {**_SPAWN, "workers": 1, "inside": True},
                  _SPAWN_Q),
        peer=Side("asyncio", "spawn_asyncio", _SPAWN, _SPAWN_Q),
        doc="as core.spawn_join, spawning and joining from inside a GVThread: no GIL "
            "handoffs with the main thread (informative)",
    ),
    Figure(
        "core.rss_parked", "B/task",
        ours=Side("gvthread", "rss_gv", _RSS, _RSS_Q),
        peer=Side("greenlet", "rss_greenlet", _RSS, _RSS_Q),
        targets=(Target("value", "<=", 6144), Target("value", "<=", 4096, ideal=True)),
        doc="RSS per parked task with 100K alive (GVThreads parked in join() on a gate; "
            "greenlets switched out mid-function), each side in a fresh process",
    ),
    Figure(
        "core.rss_deep_parked", "B/task",
        ours=Side("gvthread", "rss_gv", _DEEP, _DEEP_Q),
        peer=Side("greenlet", "rss_greenlet", _DEEP, _DEEP_Q),
        targets=(Target("value", "<=", 16384),),
        doc="as core.rss_parked with 20K alive, each having gone 900 Python frames deep "
            "and back before it parked",
    ),
    Figure(
        "core.million_parked", "B/task",
        ours=Side("gvthread", "million_gv", _MILLION, _MILLION_Q),
        peer=Side("greenlet", "million_greenlet", _MILLION, _MILLION_Q),
        targets=(Target("value", "<=", 6144),),
        doc="peak RSS per task with 1,000,000 alive and parked at once (GVThreads on an "
            "Event), then all released and joined",
    ),
    Figure(
        "core.switch_py_w2", "ns/switch",
        ours=Side("gvthread", "switch_gv", {**_SWITCH, "workers": 2}, _SWITCH_Q),
        peer=Side("workers=1", "switch_gv", {**_SWITCH, "workers": 1}, _SWITCH_Q),
        targets=(Target("ratio", "<=", 1.10),),
        doc="core.switch_py on Runtime(workers=2) vs Runtime(workers=1)",
    ),
]
