"""Handoff: a GVThread stuck in a blocking call loses its worker's queue to a spare
thread, so the others keep running; it rejoins the queues when it switches out."""
import time

import gvthread
from gvthread import Runtime


def test_unpatched_sleep_does_not_stall_the_others():
    with Runtime(workers=1) as rt:
        gaps = []

        def ticker():
            last = time.monotonic()
            for _ in range(150):
                gvthread.sleep(0.01)
                now = time.monotonic()
                gaps.append(now - last)
                last = now

        def stuck():
            time.sleep(2)            # not patched: blocks the thread it runs on
            gvthread.yield_now()     # switches out on the old thread, rejoins the queues
            return gvthread.current_id()

        t = rt.spawn(ticker)
        time.sleep(0.05)
        s = rt.spawn(stuck)
        t.join(timeout=30)
        assert s.join(timeout=30) == s.id
        assert max(gaps) < 0.050, f"max gap {max(gaps) * 1e3:.1f} ms"
        st = rt.stats()
        assert st["handoffs"] >= 1 and st["overruns"] >= 1
        # the runtime still works on the thread it handed the worker to
        assert [rt.spawn(lambda i=i: i * 2).join(timeout=10) for i in range(50)] == \
            [i * 2 for i in range(50)]


def test_no_handoff_without_spares_or_waiting_work():
    with Runtime(workers=1, max_spare_threads=0) as rt:
        rt.spawn(time.sleep, 0.1).join(timeout=10)
        assert rt.stats()["handoffs"] == 0
    with Runtime(workers=1) as rt:
        rt.spawn(time.sleep, 0.1).join(timeout=10)   # nothing else waits: no handoff
        assert rt.stats()["handoffs"] == 0
