"""1,000 GVThreads x 1,000 yields on 2 workers: results correct, switches and migrations
counted."""

import time

import pytest

from gvthread import Runtime, yield_now
from gvtest_support import settled_stats

N = 1000
YIELDS = 1000


@pytest.mark.timeout(300)
def test_thousand_gvthreads_thousand_yields_two_workers():
    go = [False]

    def work(i):
        # start barrier: nobody runs its 1,000 yields alone while the others are spawned
        waited = 0
        deadline = time.monotonic() + 60
        while not go[0]:
            if time.monotonic() > deadline:
                return i, "barrier-timeout"
            yield_now()
            waited += 1
        count = 0
        for _ in range(YIELDS):
            yield_now()
            count += 1
        return i, count

    with Runtime(workers=2) as rt:
        hs = [rt.spawn(work, i) for i in range(N)]
        t0 = time.perf_counter()
        go[0] = True
        results = [h.join(timeout=240) for h in hs]
        dt = time.perf_counter() - t0
        st = settled_stats(rt)

    assert results == [(i, YIELDS) for i in range(N)]
    print(f"\n{N}x{YIELDS} yields on 2 workers: {dt:.2f}s, "
          f"{N * YIELDS / dt / 1e6:.2f} M yields/s; switches={st['switches']} "
          f"migrations={st['migrations']} steals={st['steals']} parks={st['parks']} "
          f"per-worker={st['workers']}")
    assert st["spawned"] == N and st["finished"] == N and st["live"] == 0
    assert st["switches"] >= N * YIELDS, st
    assert isinstance(st["migrations"], int) and st["migrations"] >= 0
    assert len(st["workers"]) == 2
    for k in ("switches", "migrations", "steals", "parks"):
        assert sum(w[k] for w in st["workers"]) == st[k], (k, st)
