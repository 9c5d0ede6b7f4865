"""gvthread.monkey: patch_all() in a subprocess (the patch is process-wide), then per case.

The cases live in tests/integration/scripts/monkey_cases.py; the interpreter is started
once for all of them, and each test here reports one case.
"""
import json

import pytest

import gvthread.monkey
from gvtest_support import crashed, describe, run_script

CASES = [
    "patched_names",
    "sleep_is_concurrent_on_one_worker",
    "sleep_outside_gvthreads_unchanged",
    "cancel_reaches_patched_sleep",
    "lock_between_gvthreads",
    "lock_between_gvthread_and_thread",
    "rlock_is_owned_per_gvthread",
    "event_between_gvthreads_and_threads",
    "condition_producer_consumer",
    "condition_wait_cancelled_keeps_lock",
    "interrupts_reach_queue_get_and_condition_wait",
    "timeouts_like_threading",
    "semaphore_bounds_concurrency",
    "queue_between_gvthreads",
    "queue_between_gvthread_and_thread",
    "threads_only_behave_as_before",
    "unpatch_restores",
]


@pytest.fixture(scope="module")
def results():
    res = run_script("monkey_cases.py", timeout=150)
    recs = {}
    for line in res.stdout.splitlines():
        if line.startswith("{"):
            rec = json.loads(line)
            recs[rec["case"]] = rec
    return res, recs


def test_every_case_is_listed(results):
    res, recs = results
    assert not crashed(res) and not res.timed_out, describe(res)
    assert res.returncode == 0 and res.stdout.rstrip().endswith("done"), describe(res)
    assert list(recs) == CASES


@pytest.mark.parametrize("name", CASES)
def test_case(results, name):
    res, recs = results
    rec = recs.get(name)
    assert rec is not None, f"case {name} did not report\n{describe(res)}"
    assert rec["ok"], rec["error"]


def test_not_patched_in_this_process():
    import queue
    import threading
    import time
    assert not gvthread.monkey.is_patched()
    assert time.sleep is gvthread.monkey._orig_sleep
    assert threading.Lock is not gvthread.monkey.Lock
    assert queue.SimpleQueue is not queue._PySimpleQueue


def test_patched_classes_work_without_patching(rt):
    # The classes are usable directly, from GVThreads and threads, with nothing patched.
    m = gvthread.monkey
    lock, ev, sem = m.Lock(), m.Event(), m.BoundedSemaphore(2)
    cond = m.Condition(m.RLock())

    def body():
        with lock, sem:
            with cond:
                cond.notify_all()
            ev.set()
        return lock.locked(), sem._value
    assert rt.spawn(body).join(30) == (False, 2)
    assert ev.wait(0) and not lock.locked()
    assert "unlocked" in repr(lock) and "set" in repr(ev)
