"""Native GVThreads: C functions on GVThread stacks, without the GIL, in parallel,
next to Python GVThreads, reaching the runtime through gvthread.native_api()."""
import importlib.util
import os
import sys
import time

import pytest

import gvthread
from gvthread import Runtime, State

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def nat(tmp_path_factory):
    sys.path.insert(0, os.path.join(HERE, "native"))
    import natdemo
    path = natdemo.build(tmp_path_factory.mktemp("natdemo"))
    spec = importlib.util.spec_from_file_location("_gvnatdemo", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def job(nat, **kw):
    return nat.ffi.new("job *", dict(api=gvthread.native_api(), **kw))


def test_native_gvthreads_run_in_parallel_without_the_gil(nat):
    nat.lib.arrived = 0
    with Runtime(workers=2) as rt:
        jobs = [job(nat, n=2) for _ in range(2)]
        hs = [rt.spawn_native(nat.lib.rendezvous, j, name=f"rv{i}") for i, j in enumerate(jobs)]
        assert [h.join(timeout=30) for h in hs] == [None, None]
        assert [j.timed_out for j in jobs] == [0, 0]      # both ran at the same time
        assert all(h.state == State.FINISHED for h in hs)


def test_python_keeps_running_beside_busy_natives(nat):
    with Runtime(workers=2) as rt:
        jobs = [job(nat, n=300_000_000) for _ in range(2)]
        hs = [rt.spawn_native(nat.lib.spin_safepoints, j) for j in jobs]
        gaps = []

        def ticker():
            last = time.monotonic()
            for _ in range(20):
                gvthread.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        rt.spawn(ticker).join(timeout=30)
        for h in hs:
            h.join(timeout=60)
        assert max(gaps) < 0.1, max(gaps)
        assert all(j.out != 0 for j in jobs)
        st = rt.stats()
        assert st["coop_preemptions"] >= 1             # natives yield at their safepoints


def test_snapshot_cancel_sleep_spawn(nat):
    with Runtime(workers=2) as rt:
        j = job(nat, n=10**12)                          # would spin for ever
        h = rt.spawn_native(nat.lib.spin_safepoints, j, name="forever")
        deadline = time.monotonic() + 10
        while h.state != State.RUNNING and time.monotonic() < deadline:
            time.sleep(0.001)
        rows = {r.id: r for r in rt.snapshot()}
        assert rows[h.id].name == "forever"
        assert rt.stack(h.id) == []                     # no Python frames in a native
        assert h.cancel() is True
        assert h.join(timeout=10) is None and j.cancelled == 1

        s = job(nat, n=30_000_000)                      # 30 ms
        rt.spawn_native(nat.lib.sleeper, s).join(timeout=10)
        assert s.out >= 30_000_000

        sp = job(nat, n=50)
        rt.spawn_native(nat.lib.spawner, sp).join(timeout=10)
        assert sp.out == 50                             # 50 detached native children ran

        k = job(nat, n=1000)
        hk = rt.spawn_native(nat.lib.spin, k)
        hk.join(timeout=10)
        assert k.id == hk.id


def test_spawn_native_bad_input(nat):
    with Runtime(workers=1) as rt:
        with pytest.raises(ValueError):
            rt.spawn_native(0)
        with pytest.raises(TypeError):
            rt.spawn_native("not a pointer")
        with pytest.raises(ValueError):
            rt.spawn_native(nat.lib.spin, job(nat, n=1), priority="urgent")


def test_int64_channel_between_native_and_python(nat):
    with Runtime(workers=2) as rt:
        n = 100_000
        # native producers -> Python consumer
        ch = gvthread.Channel(16, kind="int64")
        pj = [job(nat, n=n, chan=ch.native_handle) for _ in range(2)]
        ps = [rt.spawn_native(nat.lib.producer, j) for j in pj]
        got = rt.spawn(lambda: [ch.recv() for _ in range(2 * n)])
        for p in ps:
            p.join(timeout=60)
        vals = got.join(timeout=60)
        assert len(vals) == 2 * n and sum(vals) == sum(j.sum for j in pj)
        assert all(j.rc == 0 for j in pj)
        # Python producer -> native consumers, then close: each sees -1 at the end
        cj = [job(nat, chan=ch.native_handle) for _ in range(2)]
        cs = [rt.spawn_native(nat.lib.consumer, j) for j in cj]
        big = [2**63 - 1, -2**63, 0, 7] * 1000
        for v in big:
            ch.send(v)
        ch.close()
        for c in cs:
            c.join(timeout=60)
        assert sum(j.out for j in cj) == len(big)
        # each consumer sums in wrapping int64 arithmetic
        assert sum(j.sum for j in cj) % 2**64 == sum(big) % 2**64
        assert all(j.rc == -1 for j in cj)
        # a native sender on a closed channel, and a native on an object channel
        late = job(nat, n=1, chan=ch.native_handle)
        rt.spawn_native(nat.lib.producer, late).join(timeout=10)
        assert late.rc == -1
        with pytest.raises(TypeError):
            gvthread.Channel(1).native_handle


def test_native_to_native_rendezvous(nat):
    with Runtime(workers=2) as rt:
        ch = gvthread.Channel(0, kind="int64")
        p = job(nat, n=50_000, chan=ch.native_handle)
        c = job(nat, chan=ch.native_handle)
        hc = rt.spawn_native(nat.lib.consumer, c)
        rt.spawn_native(nat.lib.producer, p).join(timeout=60)
        ch.close()
        hc.join(timeout=60)
        assert c.out == 50_000 and c.sum == p.sum and c.rc == -1


def test_yielding_native_does_not_starve_others(nat):
    # A yields until B has run, both spawned from the main thread onto one worker: a
    # native requeued locally used to be picked again before the global queue forever.
    with Runtime(workers=1) as rt:
        j = job(nat)
        ha = rt.spawn_native(nat.lib.yield_until_flag, j)
        hb = rt.spawn_native(nat.lib.set_flag, j)
        assert hb.join(timeout=10) is None and ha.join(timeout=10) is None
        assert j.peers_seen == 1


def test_busy_natives_all_progress_beside_python(nat):
    with Runtime(workers=2) as rt:
        ns = {}
        src = ("import time\n"
               "def busy(t):\n"
               "    end = time.monotonic() + t\n"
               "    while time.monotonic() < end:\n"
               "        pass\n")
        exec(gvthread.compile(src, "<busy>", "exec"), ns)
        py = rt.spawn(ns["busy"], 1.0)
        jobs = [job(nat, n=10**12) for _ in range(4)]
        hs = [rt.spawn_native(nat.lib.spin_safepoints, j) for j in jobs]
        time.sleep(0.6)
        rows = {r.id: r for r in rt.snapshot()}
        for h in hs:
            h.cancel()
        for h in hs:
            h.join(timeout=10)
        py.join(timeout=10)
        assert all(rows[h.id].switches >= 2 for h in hs), [rows[h.id].switches for h in hs]
        assert all(j.cancelled == 1 for j in jobs)


# -- the direct native yield (sched.c): a native yielding while its worker's local native
# queue holds another switches straight to it; everything the scheduler loop would do must
# still happen.

def launch(nat, rt, specs, prio=None):
    """Spawn one launcher native that spawns len(specs) peers with api->spawn (so they
    share its worker's local native queue); specs: ("n", k) yields k times, ("flag",)
    yields until its peers_seen is set. Returns the job array (entry 0: the launcher)."""
    arr = nat.ffi.new("job[]", len(specs) + 1)
    arr[0].api, arr[0].n = gvthread.native_api(), len(specs)
    for i, spec in enumerate(specs, 1):
        arr[i].api = gvthread.native_api()
        if spec[0] == "n":
            arr[i].n = spec[1]
        else:
            arr[i].sum = 1
    rt.spawn_native(nat.lib.launch, arr).join(timeout=30)
    assert arr[0].rc == 0
    return arr


def wait_for(pred, timeout=30):
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.002)


@pytest.mark.parametrize("workers", [1, 2])
def test_direct_yield_counts_every_switch_and_yield(nat, workers):
    k, n = 6, 20_000
    with Runtime(workers=workers) as rt:
        s0 = rt.stats()
        arr = launch(nat, rt, [("n", n)] * k)
        wait_for(lambda: all(arr[i].out == n for i in range(1, k + 1)))
        st = rt.stats()
    assert st["yields"] - s0["yields"] >= k * n
    assert st["switches"] - s0["switches"] >= k * n
    assert st["direct_yields"] - s0["direct_yields"] > 0
    assert st["direct_yields"] <= st["yields"]


def test_direct_yield_charges_cpu_time_to_each(nat):
    with Runtime(workers=1) as rt:
        arr = launch(nat, rt, [("flag",), ("flag",)])
        wait_for(lambda: arr[1].out > 1000 and arr[2].out > 1000)
        time.sleep(0.3)
        rows = {r.id: r for r in rt.snapshot()}
        a, b = rows[arr[1].id], rows[arr[2].id]
        arr[1].peers_seen = arr[2].peers_seen = 1
        wait_for(lambda: not rt.snapshot())
    # one worker shared by two yielders that take strict turns: each was charged about
    # half of what the worker ran (TSC time, so a loaded machine only shrinks the sum)
    ca, cb = a.cpu_time, b.cpu_time
    assert ca + cb > 0.01 and min(ca, cb) >= 0.5 * max(ca, cb), (ca, cb)
    assert a.switches > 1000 and b.switches > 1000


def test_python_gvthread_runs_beside_direct_yielders(nat):
    with Runtime(workers=1) as rt:
        arr = launch(nat, rt, [("flag",), ("flag",)])
        wait_for(lambda: arr[1].out > 100 and arr[2].out > 100)

        def stop():
            arr[1].peers_seen = arr[2].peers_seen = 1
            return "ran"

        assert rt.spawn(stop).join(timeout=10) == "ran"
        wait_for(lambda: not rt.snapshot())


def test_global_native_runs_beside_direct_yielders(nat):
    # spawned from the main thread, set_flag waits in the global native queue while two
    # natives yield to each other in the local one
    with Runtime(workers=1) as rt:
        arr = launch(nat, rt, [("flag",), ("flag",)])
        wait_for(lambda: arr[1].out > 100 and arr[2].out > 100)
        hs = [rt.spawn_native(nat.lib.set_flag, arr + i) for i in (1, 2)]
        assert [h.join(timeout=10) for h in hs] == [None, None]
        wait_for(lambda: not rt.snapshot())
