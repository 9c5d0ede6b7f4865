"""Opt-in scale tests (pytest --run-stress, or -m stress).

Acceptance of issue 2: 1,000,000 GVThreads spawned over one runtime's life (here in ten
waves of 100,000 concurrently parked ones) with RSS back within 10% of where it started.
"""

import json
import time

import pytest

from gvthread import Runtime, yield_now
from gvtest_support import crashed, describe, run_script, settled_stats

MIB = 1024 * 1024
RSS_TOLERANCE = 0.10
RSS_SLACK = 8 * MIB

pytestmark = pytest.mark.stress


@pytest.mark.timeout(1800)
def test_million_spawned_over_runtime_life_rss_back():
    n, waves = 100_000, 10
    res = run_script("rss_parked.py", n, 1, waves, timeout=1700)
    assert not crashed(res), "CRASH\n" + describe(res)
    assert res.returncode == 0 and not res.timed_out, describe(res)
    out = json.loads([ln for ln in res.stdout.splitlines() if ln.startswith("{")][-1])
    assert out["spawned"] == (waves + 1) * (n + 1)
    assert out["finished"] == out["spawned"]
    assert out["live"] == 0
    base = out["baseline"]
    limit = base * (1 + RSS_TOLERANCE) + RSS_SLACK
    print(f"\nbaseline={base / MIB:.1f} MiB peaks={[round(p / MIB) for p in out['peaks']]} "
          f"afters={[round(a / MIB, 1) for a in out['afters']]} final={out['final'] / MIB:.1f} "
          f"MiB in {out['seconds']}s")
    for i, after in enumerate(out["afters"]):
        assert after <= limit, f"wave {i}: {after / MIB:.1f} MiB > {limit / MIB:.1f} MiB"


@pytest.mark.timeout(1800)
def test_million_sequential_spawns_in_process():
    # 1,000,000 short GVThreads through one runtime, at most 10,000 alive at a time
    total, batch = 1_000_000, 10_000

    def f(i):
        yield_now()
        return i

    t0 = time.perf_counter()
    with Runtime(workers=2) as rt:
        for start in range(0, total, batch):
            hs = [rt.spawn(f, i) for i in range(start, start + batch)]
            for i, h in zip(range(start, start + batch), hs):
                assert h.join(timeout=120) == i
        st = settled_stats(rt)
    dt = time.perf_counter() - t0
    print(f"\n{total} spawn+join in {dt:.1f}s ({total / dt:.0f}/s); {st}")
    assert st["spawned"] == st["finished"] == total
    assert st["live"] == 0


@pytest.mark.timeout(1800)
def test_exit_with_parked_gvthreads_200_runs():
    from concurrent.futures import ThreadPoolExecutor

    def one(v):
        return run_script("exit_parked.py", v, "default", timeout=60)

    with ThreadPoolExecutor(4) as ex:
        results = list(ex.map(one, range(200)))
    bad = [(v, r) for v, r in enumerate(results)
           if r.timed_out or r.returncode != 0 or "Fatal Python error" in r.stderr]
    assert not bad, f"{len(bad)}/200 failed; first:\n" + describe(bad[0][1])
