"""Many concurrent parked GVThreads, then RSS after they finish.

usage: rss_parked.py N WARMUP_WAVES WAVES [WORKERS]

Each wave spawns N GVThreads that all park in join() on one "gate" GVThread (which
yields until released), checks that all N are parked at once, releases them, joins them
and measures RSS.  The baseline is taken after WARMUP_WAVES waves (allocator arenas,
caches and the runtime's own structures are warm by then).  Prints one JSON line:
  {"n":..., "baseline":..., "peaks":[...], "afters":[...], "final":..., ...}  (bytes)
Exits 0 if the waves themselves behaved; the RSS verdict is the caller's.
"""

import gc
import json
import os
import sys
import time

from gvthread import Runtime, State, yield_now

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def gate_fn(release):
    deadline = time.monotonic() + 300
    n = 0
    while not release[0]:
        if time.monotonic() > deadline:
            return "gate-timeout"
        yield_now()
        n += 1
    return "gate-open"


def parked(gate, i):
    r = gate.join()
    if r != "gate-open":
        return ("bad-gate", r)
    return i


def settle(rt):
    deadline = time.monotonic() + 30
    while rt.stats()["live"] and time.monotonic() < deadline:
        time.sleep(0.01)
    gc.collect()
    time.sleep(0.2)
    gc.collect()


def wave(rt, n, check):
    release = [False]
    gate = rt.spawn(gate_fn, release)
    hs = [rt.spawn(parked, gate, i) for i in range(n)]
    # all n must be parked (BLOCKED in join) at the same time
    deadline = time.monotonic() + 120
    while True:
        blocked = sum(1 for h in hs if h.state == State.BLOCKED)
        if blocked == n:
            break
        if time.monotonic() > deadline:
            sys.exit(f"FAIL: only {blocked}/{n} parked after 120s")
        time.sleep(0.05)
    st = rt.stats()
    if check and st["live"] != n + 1:
        sys.exit(f"FAIL: live={st['live']} expected {n + 1}")
    if check and len(rt.snapshot()) != n + 1:
        sys.exit("FAIL: snapshot size mismatch")
    peak = rss()
    release[0] = True
    results = [h.join(timeout=120) for h in hs]
    if results != list(range(n)):
        bad = [r for i, r in enumerate(results) if r != i][:5]
        sys.exit(f"FAIL: wrong results, e.g. {bad}")
    if gate.join(timeout=60) != "gate-open":
        sys.exit("FAIL: gate")
    del hs, results, gate
    settle(rt)
    return peak


def main():
    n = int(sys.argv[1])
    warmup = int(sys.argv[2])
    waves = int(sys.argv[3])
    workers = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    t0 = time.monotonic()
    out = {"n": n, "warmup": warmup, "waves": waves, "start": rss()}
    with Runtime(workers=workers) as rt:
        for _ in range(warmup):
            wave(rt, n, check=True)  # same work as the measured waves
        out["baseline"] = rss()
        out["peaks"], out["afters"] = [], []
        for _ in range(waves):
            out["peaks"].append(wave(rt, n, check=True))
            out["afters"].append(rss())
        st = rt.stats()
        out["final"] = rss()
        out["spawned"] = st["spawned"]
        out["finished"] = st["finished"]
        out["live"] = st["live"]
    out["seconds"] = round(time.monotonic() - t0, 2)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
