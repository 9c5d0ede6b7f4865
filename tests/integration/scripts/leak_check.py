"""No leak: channel messages and timed-out waits leave live objects and RSS where they were.

usage: leak_check.py [SCALE] [WORKERS]

One Runtime(WORKERS, default 2) runs the whole workload twice: once as a warm-up at
SCALE/10 of the iterations but the same concurrency (so the slot pool, the stacks, the
timer wheel's slots, the allocator's arenas and every free list reach their working size),
then for real at SCALE (default 1.0, the issue's figures):

- channel:   1,000,000 ints, 2 producer -> 2 consumer GVThreads over Channel(128), closed
             at the end and drained by iteration; then 100,000 small lists the same way
             (they are gc-tracked, so a leaked message shows in the gc object count; a
             leaked int shows in the allocated blocks and RSS)
- sleep:     100,000 gvthread.sleep(0.0001), 100 each in 1,000 concurrent GVThreads
- waitqueue: 10,000 WaitQueue.wait(seq, timeout=0.0001) that time out
- recv:      10,000 Channel.recv(timeout=0.0001) on an empty channel (TimeoutError)
- send:      10,000 Channel.send(obj, timeout=0.0001) on a full channel (TimeoutError; the
             blocked sender lends `obj` to the channel while it waits)
- select:    10,000 select([(ch, "recv"), (ch2, "send", obj)], timeout=0.0001) timeouts
- mutex:     10,000 Mutex.lock(timeout=0.0001) on a held Mutex (False)

Before and after the measured round it takes, after gc.collect() and once no GVThread is
live: len(gc.get_objects()), sys.getallocatedblocks() and RSS (/proc/self/statm). Prints
one JSON line {"before": {...}, "after": {...}, "phases": {...}, ...}; exits 0 if the
workload itself behaved (every count right), 1 otherwise. The leak verdict is the caller's.
"""

import gc
import json
import os
import sys
import time

import gvthread
from gvthread import Channel, Mutex, Runtime, select
from gvthread import _core
from gvthread._types import WaitKind

PAGE = os.sysconf("SC_PAGE_SIZE")
T = 0.0001          # every timed-out wait asks for 0.1 ms


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def fail(msg):
    print(f"FAIL: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def join_all(handles):
    return [h.join(timeout=120) for h in handles]


# -- workloads (each returns a count that main() checks) ---------------------------------

def channel_phase(rt, n_ints, n_lists, k=2):
    def produce(ch, items):
        send = ch.send
        for x in items:
            send(x)

    def consume(ch, as_list):
        c = s = 0
        for x in ch:
            c += 1
            s += x[0] if as_list else x
        return c, s

    def run(make, n, as_list):
        ch = Channel(128, name="leak-check")
        ps = [rt.spawn(produce, ch, make(j, n)) for j in range(k)]
        cs = [rt.spawn(consume, ch, as_list) for _ in range(k)]
        join_all(ps)
        ch.close()
        res = join_all(cs)
        count, total = sum(c for c, _ in res), sum(s for _, s in res)
        if count != n or total != n * (n - 1) // 2:
            fail(f"channel: {count} items summing to {total}, expected {n}")
        return count

    # ints are made by range() in the producer; lists are made there too (one per send)
    got = run(lambda j, n: range(j, n, k), n_ints, False)
    got += run(lambda j, n: ([i] for i in range(j, n, k)), n_lists, True)
    return got


def sleep_phase(rt, tasks, each):
    def sleeper():
        for _ in range(each):
            gvthread.sleep(T)
        return each

    return sum(join_all([rt.spawn(sleeper) for _ in range(tasks)]))


def waitqueue_phase(rt, tasks, each):
    wq = _core.WaitQueue(kind=int(WaitKind.EVENT), obj_id=_core.next_object_id())

    def waiter():
        timed_out = 0
        for _ in range(each):
            if not wq.wait(wq.seq, timeout=T):
                timed_out += 1
        return timed_out

    return sum(join_all([rt.spawn(waiter) for _ in range(tasks)]))


def recv_phase(rt, tasks, each):
    ch = Channel(4, name="leak-recv")

    def receiver():
        timed_out = 0
        for _ in range(each):
            try:
                ch.recv(timeout=T)
            except TimeoutError:
                timed_out += 1
        return timed_out

    return sum(join_all([rt.spawn(receiver) for _ in range(tasks)]))


def send_phase(rt, tasks, each):
    ch = Channel(1, name="leak-send")
    ch.send(["filler"])

    def sender():
        timed_out = 0
        for i in range(each):
            try:
                ch.send([i], timeout=T)
            except TimeoutError:
                timed_out += 1
        return timed_out

    got = sum(join_all([rt.spawn(sender) for _ in range(tasks)]))
    if len(ch) != 1 or ch.recv() != ["filler"]:
        fail("send: the full channel's content changed")
    return got


def select_phase(rt, tasks, each):
    empty = Channel(4, name="leak-select-empty")
    full = Channel(1, name="leak-select-full")
    full.send(["filler"])

    def selector():
        timed_out = 0
        for i in range(each):
            try:
                select([(empty, "recv"), (full, "send", [i])], timeout=T)
            except TimeoutError:
                timed_out += 1
        return timed_out

    got = sum(join_all([rt.spawn(selector) for _ in range(tasks)]))
    if len(empty) != 0 or len(full) != 1 or full.recv() != ["filler"]:
        fail("select: a channel's content changed")
    return got


def mutex_phase(rt, tasks, each):
    m = Mutex(name="leak-mutex")
    m.lock()      # held by the main thread for the whole phase

    def locker():
        timed_out = 0
        for _ in range(each):
            if not m.lock(timeout=T):
                timed_out += 1
        return timed_out

    got = sum(join_all([rt.spawn(locker) for _ in range(tasks)]))
    m.unlock()
    return got


def workload(rt, scale):
    """(phase name, expected count, seconds) for each phase; fails on a wrong count."""
    def n(x):
        return max(1, int(x * scale))

    phases = [
        ("channel", lambda: channel_phase(rt, n(1_000_000), n(100_000)),
         n(1_000_000) + n(100_000)),
        ("sleep", lambda: sleep_phase(rt, 1_000, n(100)), 1_000 * n(100)),
        ("waitqueue", lambda: waitqueue_phase(rt, 100, n(100)), 100 * n(100)),
        ("recv", lambda: recv_phase(rt, 100, n(100)), 100 * n(100)),
        ("send", lambda: send_phase(rt, 100, n(100)), 100 * n(100)),
        ("select", lambda: select_phase(rt, 100, n(100)), 100 * n(100)),
        ("mutex", lambda: mutex_phase(rt, 100, n(100)), 100 * n(100)),
    ]
    out = {}
    for name, fn, expected in phases:
        t0 = time.monotonic()
        got = fn()
        if got != expected:
            fail(f"{name}: {got} completed, expected {expected}")
        out[name] = {"count": got, "seconds": round(time.monotonic() - t0, 2)}
    return out


def reading(rt):
    """Live objects, allocated blocks and RSS once no GVThread is live and gc has run."""
    deadline = time.monotonic() + 30
    while rt.stats()["live"] and time.monotonic() < deadline:
        time.sleep(0.01)
    if rt.stats()["live"]:
        fail(f"{rt.stats()['live']} GVThreads still live")
    for _ in range(3):
        gc.collect()
    time.sleep(0.05)
    gc.collect()
    return {"objects": len(gc.get_objects()), "blocks": sys.getallocatedblocks(),
            "rss": rss()}


def main():
    scale = float(sys.argv[1]) if len(sys.argv) > 1 else 1.0
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    t0 = time.monotonic()
    out = {"scale": scale, "workers": workers}
    with Runtime(workers=workers) as rt:
        out["warmup"] = workload(rt, scale / 10)
        out["before"] = reading(rt)
        out["phases"] = workload(rt, scale)
        out["after"] = reading(rt)
        st = rt.stats()
        out["spawned"], out["finished"], out["live"] = st["spawned"], st["finished"], st["live"]
    out["seconds"] = round(time.monotonic() - t0, 2)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
