"""A simulated web server: an acceptor, a pool of handlers, a shared cache, live stats.

No sockets: the acceptor GVThread makes up requests at a steady rate and sends them on a
buffered channel, as a listening socket would hand over connections.

  acceptor    one GVThread: at --rate requests/s, a Request (id, path, arrival time) on
              `requests` (Channel(--queue)); a full queue parks it (backpressure). At the
              end it closes `requests`.
  handlers    --handlers GVThreads, each `for req in requests`: some CPU work (parse,
              render: hashing), a lookup in a shared LRU cache behind a gvthread.Mutex,
              on a miss a simulated database read (gvthread.sleep), then simulated I/O
              (gvthread.sleep) and a Response on `responses`. The last one to finish
              (a WaitGroup) closes `responses`.
  stats       one GVThread receiving responses with select(timeout=...) so that it wakes
              up every --report seconds even when nothing arrives; it prints throughput,
              latency percentiles (arrival to response, queueing included), the depth of
              the request queue and the cache hit rate, then a summary at the end.

Standalone:

    python examples/webserver/server.py --seconds 5 [--rate 2000] [--handlers 32]

Inside gvshell (every cell is a GVThread of the kernel's runtime, so %gvtop sees these):

    import sys; sys.path.insert(0, "examples/webserver"); import server
    %gvspawn --name webserver server.run(seconds=None, report=5)
    %gvtop
    server.stop()          # or %gvcancel on the webserver GVThread
"""
from __future__ import annotations

import argparse
import collections
import hashlib
import math
import random
import time
from dataclasses import dataclass
from typing import Callable, Optional

import gvthread
from gvthread import CLOSED, Channel, Mutex, WaitGroup

__all__ = ["run", "start", "stop", "main"]


@dataclass
class Request:
    id: int
    path: str
    arrived: float           # time.monotonic() when the acceptor made it


@dataclass
class Response:
    id: int
    status: int
    latency: float           # seconds from arrival to response
    cache_hit: bool
    body_digest: str


class Cache:
    """An LRU cache shared by every handler, behind one gvthread.Mutex.

    The Mutex parks a GVThread that finds it held (it does not block the worker thread);
    the critical sections are a few dict operations, so it is rarely contended."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.lock = Mutex(name="cache")
        self.data: collections.OrderedDict[str, bytes] = collections.OrderedDict()
        self.hits = self.misses = 0

    def get(self, key: str) -> Optional[bytes]:
        with self.lock:
            body = self.data.get(key)
            if body is None:
                self.misses += 1
            else:
                self.hits += 1
                self.data.move_to_end(key)
            return body

    def put(self, key: str, body: bytes) -> None:
        with self.lock:
            self.data[key] = body
            self.data.move_to_end(key)
            while len(self.data) > self.capacity:
                self.data.popitem(last=False)


def pct(sorted_values: list, p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return sorted_values[max(1, math.ceil(p / 100 * len(sorted_values))) - 1]


def cpu_work(data: bytes, rounds: int) -> str:
    """Parse/render stand-in: `rounds` chained sha256 digests (~1 us each)."""
    h = data
    for _ in range(rounds):
        h = hashlib.sha256(h).digest()
    return h.hex()[:16]


def acceptor(requests: Channel, rate: float, seconds: Optional[float], paths: int,
             stop_event: gvthread.Event, rng: random.Random) -> int:
    """Make requests at `rate` per second until `seconds` have passed or stop is set."""
    start = time.monotonic()
    deadline = math.inf if seconds is None else start + seconds
    n = 0
    try:
        while not stop_event.is_set():
            due = start + n / rate
            if due >= deadline or time.monotonic() >= deadline:
                break       # (a full queue can hold the acceptor back past its schedule)
            if due > time.monotonic():
                gvthread.sleep_until(due)
            # Zipf-like popularity: a few paths are hot, a long tail is not.
            path = f"/item/{min(int(rng.paretovariate(0.5)) - 1, paths - 1)}"
            requests.send(Request(n, path, time.monotonic()))
            n += 1
    finally:
        requests.close()     # ends every handler's loop once the queue is drained
    return n


def handler(requests: Channel, responses: Channel, cache: Cache, wg: WaitGroup,
            io_ms: float, db_ms: float, cpu_rounds: int, rng: random.Random) -> int:
    served = 0
    try:
        for req in requests:
            cpu_work(req.path.encode(), cpu_rounds // 2)             # parse the request
            body = cache.get(req.path)
            hit = body is not None
            if not hit:
                gvthread.sleep(db_ms / 1e3 * rng.uniform(0.5, 1.5))  # database read
                body = f"<html>{req.path}</html>".encode()
                cache.put(req.path, body)
            digest = cpu_work(body, cpu_rounds - cpu_rounds // 2)     # render
            gvthread.sleep(io_ms / 1e3 * rng.uniform(0.5, 1.5))      # write to the client
            responses.send(Response(req.id, 200, time.monotonic() - req.arrived, hit, digest))
            served += 1
    finally:
        wg.done()
    return served


def closer(wg: WaitGroup, responses: Channel) -> None:
    wg.wait()
    responses.close()


def stats(responses: Channel, requests: Channel, cache: Cache, report: float,
          out: Callable[[str], None]) -> dict:
    """Receive every response; print a line every `report` seconds and a summary."""
    start = last = time.monotonic()
    window: list[float] = []
    every: list[float] = []
    next_tick = start + report
    while True:
        try:
            _, resp = gvthread.select([(responses, "recv")],
                                      timeout=max(0.0, next_tick - time.monotonic()))
        except TimeoutError:
            resp = None
        if resp is CLOSED:
            break
        if resp is not None:
            window.append(resp.latency)
            every.append(resp.latency)
        now = time.monotonic()
        if now >= next_tick:
            out(_line(now - start, window, now - last, requests, cache))
            window = []
            last = now
            next_tick += report * max(1, math.floor((now - next_tick) / report) + 1)
    elapsed = time.monotonic() - start
    every.sort()
    summary = {"completed": len(every), "seconds": elapsed,
               "rate": len(every) / elapsed if elapsed else 0.0,
               "hit_rate": cache.hits / max(1, cache.hits + cache.misses)}
    if every:
        summary.update({f"p{p}": pct(every, p) * 1e3 for p in (50, 90, 99)},
                       max=every[-1] * 1e3)
        out(f"completed {len(every):,} requests in {elapsed:.2f} s: "
            f"{summary['rate']:,.0f} req/s; cache hit rate {summary['hit_rate']:.0%}")
        out(f"latency ms: p50 {summary['p50']:.2f}  p90 {summary['p90']:.2f}  "
            f"p99 {summary['p99']:.2f}  max {summary['max']:.2f}")
    else:
        out(f"completed 0 requests in {elapsed:.2f} s")
    return summary


def _line(t: float, window: list, span: float, requests: Channel, cache: Cache) -> str:
    queued = requests.statistics()["length"]
    hits = cache.hits / max(1, cache.hits + cache.misses)
    if not window:
        return f"[{t:6.1f} s] {0:>7,} req/s  (no responses)  queue {queued:>4}"
    window.sort()
    return (f"[{t:6.1f} s] {len(window) / span:>7,.0f} req/s  p50 {pct(window, 50) * 1e3:6.2f}"
            f"  p90 {pct(window, 90) * 1e3:6.2f}  p99 {pct(window, 99) * 1e3:6.2f}"
            f"  max {window[-1] * 1e3:6.2f} ms  queue {queued:>4}  hits {hits:.0%}")


_stop_events: list[gvthread.Event] = []


def run(seconds: Optional[float] = 5.0, rate: float = 2000.0, handlers: int = 32,
        queue: int = 256, io_ms: float = 2.0, db_ms: float = 8.0, cpu_rounds: int = 20,
        paths: int = 1000, cache_size: int = 100, report: float = 1.0, seed: int = 1,
        out: Callable[[str], None] = print) -> dict:
    """Serve simulated traffic for `seconds` (None: until stop()); return the summary.

    The GVThreads are spawned on the caller's runtime when it is a GVThread (a gvshell
    cell, %gvspawn), else on the default runtime."""
    rng = random.Random(seed)
    stop_event = gvthread.Event(name="webserver-stop")
    _stop_events.append(stop_event)
    requests = Channel(queue, name="requests")
    responses = Channel(handlers, name="responses")
    cache = Cache(cache_size)
    wg = WaitGroup(name="handlers")
    wg.add(handlers)
    try:
        with gvthread.scope() as s:
            s.spawn(acceptor, requests, rate, seconds, paths, stop_event,
                    random.Random(rng.random()), name="acceptor")
            for i in range(handlers):
                s.spawn(handler, requests, responses, cache, wg, io_ms, db_ms, cpu_rounds,
                        random.Random(rng.random()), name=f"handler-{i}")
            s.spawn(closer, wg, responses, name="closer")
            st = s.spawn(stats, responses, requests, cache, report, out, name="stats")
    finally:
        _stop_events.remove(stop_event)
    return st.join()


def start(**kwargs) -> gvthread.Handle:
    """run(**kwargs) in a new GVThread named "webserver"; returns its Handle."""
    kwargs.setdefault("seconds", None)
    return gvthread.spawn(run, name="webserver", **kwargs)


def stop() -> None:
    """Ask every running server to stop accepting; each drains its queue, prints its
    summary and returns."""
    for ev in list(_stop_events):
        ev.set()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="how long to accept requests")
    ap.add_argument("--rate", type=float, default=2000.0, help="requests per second")
    ap.add_argument("--handlers", type=int, default=32, help="handler GVThreads")
    ap.add_argument("--queue", type=int, default=256, help="capacity of the request channel")
    ap.add_argument("--io-ms", type=float, default=2.0, help="mean simulated I/O per request")
    ap.add_argument("--db-ms", type=float, default=8.0, help="mean database read on a miss")
    ap.add_argument("--cpu-rounds", type=int, default=20, help="sha256 rounds per request")
    ap.add_argument("--cache-size", type=int, default=100, help="entries in the LRU cache")
    ap.add_argument("--report", type=float, default=1.0, help="seconds between stats lines")
    ap.add_argument("--workers", type=int, default=2, help="worker OS threads")
    args = ap.parse_args()

    print(f"serving {args.rate:,.0f} req/s for {args.seconds:g} s: {args.handlers} handlers, "
          f"queue {args.queue}, {args.workers} workers")
    with gvthread.Runtime(workers=args.workers) as rt:
        h = rt.spawn(run, args.seconds, args.rate, args.handlers, args.queue, args.io_ms,
                     args.db_ms, args.cpu_rounds, 1000, args.cache_size, args.report,
                     name="webserver")
        h.join()
        st = rt.stats()
    print(f"runtime: {st['spawned']:,} GVThreads spawned, {st['switches']:,} switches, "
          f"{st['parks']:,} parks")


# As a script only: exec()'d in a gvshell cell, __name__ is "__main__" too, but the code
# runs in a GVThread there, and the cell should only define the functions.
if __name__ == "__main__" and not gvthread.is_in_gvthread():
    main()
