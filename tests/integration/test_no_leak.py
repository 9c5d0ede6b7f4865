"""No leak (issue 3): after 1,000,000 channel messages and 100,000 timed-out sleeps (plus
10,000 timed-out WaitQueue waits, Channel recv and send, select and Mutex lock), live
objects and RSS grow by no more than 5%.

Runs in a subprocess (tests/integration/scripts/leak_check.py, which describes the
workload) so that nothing else of the suite shares its heap, and a crash fails the test
instead of pytest. The baseline is taken after a warm-up round with the same concurrency,
so pools and caches already have their working size.

"Live objects" is read two ways: len(gc.get_objects()) (gc-tracked objects: a leaked list
message, exception or traceback) and sys.getallocatedblocks() (every pymalloc block, so
also a leaked int message, which the gc does not track).
"""

import json

import pytest

from gvtest_support import crashed, describe, run_script

MIB = 1024 * 1024
#: allowed growth of each reading over the measured round (the issue's figure)
GROWTH = 0.05
#: absolute slack on RSS only: the allocator's page-level noise (a malloc arena trimmed or
#: not, a page of a free list touched) is a few hundred KiB here, whatever the workload
RSS_SLACK = 2 * MIB


def run_leak_check(workers):
    res = run_script("leak_check.py", 1.0, workers, timeout=150)
    assert not crashed(res), "CRASH\n" + describe(res)
    assert not res.timed_out, describe(res)
    assert res.returncode == 0, describe(res)
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    assert lines, describe(res)
    return json.loads(lines[-1])


@pytest.mark.timeout(200)
@pytest.mark.parametrize("workers", [1, 2])
def test_no_leak_after_messages_and_timeouts(workers):
    out = run_leak_check(workers)
    before, after = out["before"], out["after"]
    print(f"\nworkers={workers}: objects {before['objects']} -> {after['objects']}, "
          f"blocks {before['blocks']} -> {after['blocks']}, "
          f"RSS {before['rss'] / MIB:.1f} -> {after['rss'] / MIB:.1f} MiB, "
          f"phases {out['phases']}, {out['seconds']}s")
    assert out["phases"]["channel"]["count"] == 1_100_000
    assert out["phases"]["sleep"]["count"] == 100_000
    assert out["live"] == 0
    assert out["spawned"] == out["finished"]

    for key in ("objects", "blocks"):
        limit = before[key] * (1 + GROWTH)
        assert after[key] <= limit, (
            f"{key}: {before[key]} before, {after[key]} after the measured round "
            f"(limit {limit:.0f}): something is leaked per message or per timeout")
    limit = before["rss"] * (1 + GROWTH) + RSS_SLACK
    assert after["rss"] <= limit, (
        f"RSS {before['rss'] / MIB:.1f} MiB before, {after['rss'] / MIB:.1f} MiB after "
        f"(limit {limit / MIB:.1f} MiB)")
