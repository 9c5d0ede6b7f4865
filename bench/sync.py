"""Synchronization figures (issue 3): channel throughput, uncontended Mutex, sleep lateness.

Every function below runs in its own child process (see ``bench._runner``) and imports
its subject lazily. Both sides of a figure do the same work the same way: bound methods in
locals, a ``for ... in range`` loop, the same warm-up, the cyclic gc off while timing (the
``gc_paused`` block) and the same clock (``time.perf_counter_ns``).

- Channels: ``k`` producers each send their share of the ints ``0..n-1`` (producer ``j``
  sends ``range(j, n, k)``) into one queue of capacity 128; ``k`` consumers take items
  until they get the sentinel ``None``. A driver task (a GVThread, the main greenlet, the
  main coroutine) starts the clock, spawns the producers and then the consumers, joins the
  producers, puts one sentinel per consumer, joins the consumers and stops the clock; the
  consumers' counts and sums are checked (a wrong total fails the measurement). The
  consumer loop is ``x = recv()`` + a test for the sentinel on every side (``for x in ch``
  over a closed Channel would be the idiomatic GVThread loop; it costs about the same).
- Mutex: ``lock(); unlock()`` on an uncontended ``gvthread.Mutex`` from one GVThread, the
  fastest of its forms (``with m:`` costs a Python ``__enter__``/``__exit__``;
  ``acquire``/``release`` adds the threading-style argument check), vs ``acquire();
  release()`` of a ``threading.Lock`` in a plain thread. The ``with`` form of each side is
  measured too and kept in the JSON ``info``.
- Sleep: one GVThread on ``Runtime(workers=1)`` calls ``gvthread.sleep(0.001)`` ``n``
  times; lateness is (measured - requested) of each call, the p50 or p99 of those (nearest
  rank) is the figure. The timer wheel rounds a deadline up to its 0.52 ms tick, so some
  lateness is by design; the target is p99 <= 1 ms. The peer is ``time.sleep(0.001)`` in
  a plain thread (the kernel's hrtimer; informative).
"""

from __future__ import annotations

from ._runner import Figure, Side, Target
from ._util import gc_paused, now_ns, switch_count

__all__ = ["FIGURES"]

_SENTINEL = None


def _check(n: int, results) -> None:
    """Each consumer returns (count, sum); together they must be n ints 0..n-1."""
    count = sum(c for c, _ in results)
    total = sum(s for _, s in results)
    if count != n or total != n * (n - 1) // 2:
        raise AssertionError(f"consumers got {count} items summing to {total}, "
                             f"expected {n} summing to {n * (n - 1) // 2}")


# -- 1 and 2: channel k -> k -----------------------------------------------------------

def channel_gv(n: int, warmup: int, producers: int, capacity: int = 128, workers: int = 1):
    """Messages per second through a gvthread.Channel(capacity), k producer and k consumer
    GVThreads on Runtime(workers), driven by a GVThread."""
    import gvthread

    def produce(ch, j, count, k):
        send = ch.send
        for i in range(j, count, k):
            send(i)

    def consume(ch):
        recv = ch.recv
        c = s = 0
        while True:
            x = recv()
            if x is _SENTINEL:
                return c, s
            c += 1
            s += x

    def drive(count, k):
        spawn = gvthread.spawn
        ch = gvthread.Channel(capacity)
        t0 = now_ns()
        ps = [spawn(produce, ch, j, count, k) for j in range(k)]
        cs = [spawn(consume, ch) for _ in range(k)]
        for p in ps:
            p.join()
        for _ in range(k):
            ch.send(_SENTINEL)
        results = [c.join() for c in cs]
        t1 = now_ns()
        _check(count, results)
        return t1 - t0

    rt = gvthread.Runtime(workers=workers)
    try:
        rt.spawn(drive, warmup, producers).join()
        switches0 = switch_count(rt)
        with gc_paused():
            elapsed = rt.spawn(drive, n, producers).join()
        switches1 = switch_count(rt)
        info = {"elapsed_ns": elapsed, "messages": n, "producers": producers,
                "consumers": producers, "capacity": capacity, "workers": rt.workers}
        if switches0 is not None and switches1 is not None:
            info["runtime_switches"] = switches1 - switches0
        yield {"value": n * 1e9 / elapsed, "info": info}
    finally:
        rt.shutdown()


def channel_gevent(n: int, warmup: int, producers: int, capacity: int = 128):
    """Messages per second through a gevent.queue.Queue(maxsize=capacity), k producer and
    k consumer greenlets, driven by the main greenlet."""
    import gevent
    import gevent.queue

    def produce(q, j, count, k):
        put = q.put
        for i in range(j, count, k):
            put(i)

    def consume(q):
        get = q.get
        c = s = 0
        while True:
            x = get()
            if x is _SENTINEL:
                return c, s
            c += 1
            s += x

    def drive(count, k):
        spawn = gevent.spawn
        q = gevent.queue.Queue(maxsize=capacity)
        t0 = now_ns()
        ps = [spawn(produce, q, j, count, k) for j in range(k)]
        cs = [spawn(consume, q) for _ in range(k)]
        gevent.joinall(ps, raise_error=True)
        for _ in range(k):
            q.put(_SENTINEL)
        gevent.joinall(cs, raise_error=True)
        t1 = now_ns()
        _check(count, [c.value for c in cs])
        return t1 - t0

    drive(warmup, producers)
    with gc_paused():
        elapsed = drive(n, producers)
    return {"value": n * 1e9 / elapsed,
            "info": {"elapsed_ns": elapsed, "messages": n, "producers": producers,
                     "capacity": capacity, "gevent": gevent.__version__}}


def channel_asyncio(n: int, warmup: int, producers: int, capacity: int = 128):
    """Messages per second through an asyncio.Queue(maxsize=capacity), k producer and k
    consumer tasks, driven by the main coroutine."""
    import asyncio

    async def produce(q, j, count, k):
        put = q.put
        for i in range(j, count, k):
            await put(i)

    async def consume(q):
        get = q.get
        c = s = 0
        while True:
            x = await get()
            if x is _SENTINEL:
                return c, s
            c += 1
            s += x

    async def drive(count, k):
        create_task = asyncio.create_task
        q = asyncio.Queue(maxsize=capacity)
        t0 = now_ns()
        ps = [create_task(produce(q, j, count, k)) for j in range(k)]
        cs = [create_task(consume(q)) for _ in range(k)]
        await asyncio.gather(*ps)
        for _ in range(k):
            await q.put(_SENTINEL)
        results = await asyncio.gather(*cs)
        t1 = now_ns()
        _check(count, results)
        return t1 - t0

    async def main():
        await drive(warmup, producers)
        with gc_paused():
            return await drive(n, producers)

    elapsed = asyncio.run(main())
    return {"value": n * 1e9 / elapsed,
            "info": {"elapsed_ns": elapsed, "messages": n, "producers": producers,
                     "capacity": capacity}}


# -- 3: uncontended Mutex ----------------------------------------------------------------

def mutex_gv(n: int, warmup: int):
    """lock() + unlock() pairs per second on an uncontended gvthread.Mutex, from one
    GVThread on Runtime(workers=1). The `with m:` form is measured too (info)."""
    import gvthread

    def pairs(count):
        m = gvthread.Mutex()
        lock, unlock = m.lock, m.unlock
        t0 = now_ns()
        for _ in range(count):
            lock()
            unlock()
        t1 = now_ns()
        return t1 - t0

    def with_pairs(count):
        m = gvthread.Mutex()
        t0 = now_ns()
        for _ in range(count):
            with m:
                pass
        t1 = now_ns()
        return t1 - t0

    rt = gvthread.Runtime(workers=1)
    try:
        rt.spawn(pairs, warmup).join()
        rt.spawn(with_pairs, warmup).join()
        with gc_paused():
            elapsed = rt.spawn(pairs, n).join()
            elapsed_with = rt.spawn(with_pairs, n).join()
        yield {"value": n * 1e9 / elapsed,
               "info": {"form": "lock(); unlock()", "elapsed_ns": elapsed,
                        "with_pairs_per_s": n * 1e9 / elapsed_with,
                        "ns_per_pair": elapsed / n, "ns_per_with": elapsed_with / n}}
    finally:
        rt.shutdown()


def _in_thread(fn, *args):
    """Run fn(*args) in a fresh threading.Thread and return its result (or raise)."""
    import threading

    out: list = []

    def body():
        try:
            out.append((True, fn(*args)))
        except BaseException as e:  # pragma: no cover - re-raised below
            out.append((False, e))

    t = threading.Thread(target=body, name="bench-peer")
    t.start()
    t.join()
    ok, value = out[0]
    if not ok:
        raise value
    return value


def mutex_threading(n: int, warmup: int):
    """acquire() + release() pairs per second on an uncontended threading.Lock, from a
    plain thread. The `with lock:` form is measured too (info)."""
    import threading

    def pairs(count):
        m = threading.Lock()
        acquire, release = m.acquire, m.release
        t0 = now_ns()
        for _ in range(count):
            acquire()
            release()
        t1 = now_ns()
        return t1 - t0

    def with_pairs(count):
        m = threading.Lock()
        t0 = now_ns()
        for _ in range(count):
            with m:
                pass
        t1 = now_ns()
        return t1 - t0

    _in_thread(pairs, warmup)
    _in_thread(with_pairs, warmup)
    with gc_paused():
        elapsed = _in_thread(pairs, n)
        elapsed_with = _in_thread(with_pairs, n)
    return {"value": n * 1e9 / elapsed,
            "info": {"form": "acquire(); release()", "elapsed_ns": elapsed,
                     "with_pairs_per_s": n * 1e9 / elapsed_with,
                     "ns_per_pair": elapsed / n, "ns_per_with": elapsed_with / n}}


# -- 4: sleep(0.001) lateness ----------------------------------------------------------

def _percentile(sorted_values: list, q: float):
    """Nearest-rank percentile of an ascending list (q in 0..100)."""
    import math

    rank = max(1, math.ceil(q / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def _lateness_result(late_ns: list, q: float, seconds: float) -> dict:
    late = sorted(late_ns)
    ms = 1e-6
    return {"value": _percentile(late, q) * ms,
            "info": {"sleeps": len(late), "requested_ms": seconds * 1e3,
                     "p50_ms": _percentile(late, 50) * ms,
                     "p90_ms": _percentile(late, 90) * ms,
                     "p99_ms": _percentile(late, 99) * ms,
                     "max_ms": late[-1] * ms, "min_ms": late[0] * ms,
                     "mean_ms": sum(late) / len(late) * ms}}


def _sleeper(sleep, count: int, seconds: float) -> list:
    """Call sleep(seconds) count times; lateness of each call in ns."""
    req = int(seconds * 1e9)
    out = []
    append = out.append
    for _ in range(count):
        t0 = now_ns()
        sleep(seconds)
        t1 = now_ns()
        append(t1 - t0 - req)
    return out


def sleep_gv(n: int, warmup: int, q: float, seconds: float = 0.001):
    """Lateness percentile q (ms) of gvthread.sleep(seconds), one GVThread on
    Runtime(workers=1)."""
    import gvthread

    rt = gvthread.Runtime(workers=1)
    try:
        rt.spawn(_sleeper, gvthread.sleep, warmup, seconds).join()
        with gc_paused():
            late = rt.spawn(_sleeper, gvthread.sleep, n, seconds).join()
        yield _lateness_result(late, q, seconds)
    finally:
        rt.shutdown()


def sleep_thread(n: int, warmup: int, q: float, seconds: float = 0.001):
    """Lateness percentile q (ms) of time.sleep(seconds) in a plain thread."""
    import time

    _in_thread(_sleeper, time.sleep, warmup, seconds)
    with gc_paused():
        late = _in_thread(_sleeper, time.sleep, n, seconds)
    return _lateness_result(late, q, seconds)


# -- the figures -----------------------------------------------------------------------

_CHAN = {"n": 1_000_000, "warmup": 20_000, "capacity": 128}
_CHAN_Q = {"n": 200_000, "warmup": 5_000}
_MUTEX = {"n": 1_000_000, "warmup": 20_000}
_MUTEX_Q = {"n": 200_000, "warmup": 5_000}
_SLEEP = {"n": 1_000, "warmup": 20, "seconds": 0.001}
_SLEEP_Q = {"n": 200, "warmup": 10}

_CHAN_TARGET = {"gevent": Target("ratio", ">=", 1.2), "asyncio": Target("ratio", ">=", 4.0)}
_CHAN_PEER = {"gevent": ("gevent", "channel_gevent", "gevent.queue.Queue(maxsize=128) "
                         "between greenlets"),
              "asyncio": ("asyncio", "channel_asyncio", "asyncio.Queue(maxsize=128) "
                          "between tasks")}


def _channel_figure(k: int, peer: str) -> Figure:
    label, func, what = _CHAN_PEER[peer]
    params = {**_CHAN, "producers": k}
    return Figure(
        f"sync.chan_{k}to{k}_{peer}", "msgs/s",
        ours=Side("gvthread", "channel_gv", {**params, "workers": 1}, _CHAN_Q),
        peer=Side(label, func, params, _CHAN_Q),
        targets=(_CHAN_TARGET[peer],),
        doc=f"1M ints, {k} producer(s) -> {k} consumer(s), gvthread.Channel(128) on "
            f"Runtime(workers=1), vs {what}",
    )


FIGURES = [
    _channel_figure(1, "gevent"),
    _channel_figure(1, "asyncio"),
    _channel_figure(4, "gevent"),
    _channel_figure(4, "asyncio"),
    Figure(
        "sync.mutex_uncontended", "pairs/s",
        ours=Side("gvthread", "mutex_gv", _MUTEX, _MUTEX_Q),
        peer=Side("threading", "mutex_threading", _MUTEX, _MUTEX_Q),
        doc="uncontended gvthread.Mutex lock(); unlock() from one GVThread, vs "
            "threading.Lock acquire(); release() in a plain thread (informative)",
    ),
    Figure(
        "sync.sleep_1ms_p50", "ms late",
        ours=Side("gvthread", "sleep_gv", {**_SLEEP, "q": 50}, _SLEEP_Q),
        peer=Side("time.sleep", "sleep_thread", {**_SLEEP, "q": 50}, _SLEEP_Q),
        doc="median lateness of gvthread.sleep(0.001), 1,000 calls from one GVThread on "
            "Runtime(workers=1), vs time.sleep(0.001) in a plain thread (informative)",
    ),
    Figure(
        "sync.sleep_1ms_p99", "ms late",
        ours=Side("gvthread", "sleep_gv", {**_SLEEP, "q": 99}, _SLEEP_Q),
        peer=Side("time.sleep", "sleep_thread", {**_SLEEP, "q": 99}, _SLEEP_Q),
        targets=(Target("value", "<=", 1.0),),
        doc="99th percentile of the same lateness; target <= 1 ms (the ratio to "
            "time.sleep is informative)",
    ),
]
