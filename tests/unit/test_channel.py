"""Channel and select: semantics, close, timeouts, cancellation, references."""
import gc
import sys
import threading
import time

import pytest

import gvthread
from gvthread import CLOSED, Cancelled, Channel, ChannelClosed, State, WaitKind, select


def wait_for(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def test_buffered_full_and_empty(rt):
    ch = Channel(2, name="q")
    assert ch.capacity == 2 and ch.name == "q" and len(ch) == 0 and not ch.closed
    ch.send(1)
    ch.send(2)
    assert len(ch) == 2
    assert ch.try_send(3) is False                      # full
    with pytest.raises(TimeoutError):
        ch.send(3, timeout=0.01)
    assert ch.recv() == 1 and ch.try_recv() == (True, 2)
    assert ch.try_recv() == (False, None)               # empty
    with pytest.raises(TimeoutError):
        ch.recv(timeout=0.01)

    # a sender blocked on a full channel is released by a receive
    ch.send("a")
    ch.send("b")
    h = rt.spawn(ch.send, "c")
    assert wait_for(lambda: h.state == State.BLOCKED)
    snap = {r.id: r for r in rt.snapshot()}
    assert snap[h.id].wait_kind == WaitKind.CHANNEL_SEND and snap[h.id].wait_obj == ch.id
    assert [ch.recv(), ch.recv(), ch.recv()] == ["a", "b", "c"]
    h.join(timeout=5)


def test_rendezvous_between_gvthread_and_thread(rt):
    ch = Channel()
    got = []
    h = rt.spawn(lambda: [ch.recv() for _ in range(3)])
    t = threading.Thread(target=lambda: [ch.send(i) for i in range(3)])
    t.start()
    assert h.join(timeout=5) == [0, 1, 2]
    t.join(5)
    # and the reverse: GVThread sends, thread receives
    h = rt.spawn(lambda: [ch.send(i) for i in "xyz"])
    got = [ch.recv(timeout=5) for _ in range(3)]
    h.join(timeout=5)
    assert got == list("xyz")


def test_close_semantics(rt):
    ch = Channel(3)
    ch.send(1)
    ch.send(2)
    ch.close()
    with pytest.raises(ChannelClosed):
        ch.send(3)
    with pytest.raises(ChannelClosed):
        ch.try_send(3)
    with pytest.raises(ChannelClosed):
        ch.close()
    assert list(ch) == [1, 2]                          # drain, then stop
    with pytest.raises(ChannelClosed):
        ch.recv()
    with pytest.raises(ChannelClosed):
        ch.try_recv()

    # close wakes blocked receivers and senders
    c0 = Channel()
    rs = [rt.spawn(c0.recv) for _ in range(3)]
    full = Channel(1)
    full.send(0)
    s = rt.spawn(full.send, 1)
    assert wait_for(lambda: all(h.state == State.BLOCKED for h in rs + [s]))
    c0.close()
    full.close()
    for h in rs + [s]:
        with pytest.raises(ChannelClosed):
            h.join(timeout=5)
    assert full.recv() == 0                            # queued items survive close


def test_bad_input():
    with pytest.raises(ValueError):
        Channel(-1)
    with pytest.raises(TypeError):
        Channel(1, name=5)
    with pytest.raises(TypeError):
        select([("not a channel", "recv")])
    with pytest.raises(TypeError):
        select([(Channel(), "peek")])
    with pytest.raises(ValueError):
        select([])


def test_reference_counts_no_leak_no_double_free(rt):
    class Item:
        pass

    def live():
        gc.collect()
        return sum(1 for o in gc.get_objects() if isinstance(o, Item))

    ch = Channel(8)
    x = Item()
    base = sys.getrefcount(x)
    for _ in range(8):
        ch.send(x)
    assert sys.getrefcount(x) == base + 8
    for _ in range(8):
        assert ch.recv() is x
    assert sys.getrefcount(x) == base
    del x

    c0 = Channel()
    n = 2000
    p = rt.spawn(lambda: [c0.send(Item()) for _ in range(n)])
    got = [c0.recv() for _ in range(n)]
    p.join(timeout=10)
    assert len(got) == n and live() == n
    del got
    big = Channel(100)
    for _ in range(50):
        big.send(Item())
    del big                                            # buffered items freed with it
    assert live() == 0


def test_eight_producers_eight_consumers_exactly_once(rt):
    ch = Channel(16)
    n, k = 200_000, 8                                  # 1,000,000 in the integration suite

    def prod(j):
        for i in range(j, n, k):
            ch.send(i)

    def cons():
        return list(ch)

    ps = [rt.spawn(prod, j) for j in range(k)]
    cs = [rt.spawn(cons) for _ in range(k)]
    for p in ps:
        p.join(timeout=60)
    ch.close()
    got = [x for c in cs for x in c.join(timeout=60)]
    assert len(got) == n and sorted(got) == list(range(n))


def test_select_fairness_and_default():
    a, b = Channel(1), Channel(1)
    counts = [0, 0]
    for _ in range(10_000):
        a.try_send(1)
        b.try_send(2)
        i, v = select([(a, "recv"), (b, "recv")])
        counts[i] += 1
        assert v == (1, 2)[i]
    for c in counts:
        assert 4000 <= c <= 6000, counts
    e = Channel()
    assert select([(e, "recv")], default=True) == (None, None)
    with pytest.raises(TimeoutError):
        select([(e, "recv")], timeout=0.01)


def test_select_blocks_on_several_and_withdraws(rt):
    a, b, out = Channel(), Channel(), Channel(1)
    h = rt.spawn(lambda: select([(a, "recv"), (b, "recv"), (out, "send", "o")], timeout=5))
    # `out` has room: the send case is ready at once
    assert h.join(timeout=5) == (2, None) and out.recv() == "o"
    out.send("full")
    h = rt.spawn(lambda: select([(a, "recv"), (b, "recv"), (out, "send", "o")], timeout=5))
    assert wait_for(lambda: h.state == State.BLOCKED)
    b.send("B")                                        # rendezvous with the select
    assert h.join(timeout=5) == (1, "B")
    stats = {c["id"]: c for c in rt.channels()}
    assert stats[a.id]["receivers_waiting"] == 0       # the losing cases were withdrawn
    assert stats[out.id]["senders_waiting"] == 0
    b.close()
    assert select([(a, "recv"), (b, "recv")])[1] is CLOSED


def test_cancel_in_recv_and_in_select(rt):
    ch = Channel()
    log = []

    def body():
        try:
            ch.recv()
        finally:
            log.append("finally")

    h = rt.spawn(body)
    assert wait_for(lambda: h.state == State.BLOCKED)
    h.cancel()
    with pytest.raises(Cancelled):
        h.join(timeout=5)
    assert log == ["finally"]
    h = rt.spawn(lambda: select([(ch, "recv"), (Channel(), "recv")]))
    assert wait_for(lambda: h.state == State.BLOCKED)
    h.cancel()
    with pytest.raises(Cancelled):
        h.join(timeout=5)
    assert rt.channels() and all(c["receivers_waiting"] == 0 for c in rt.channels()
                                 if c["id"] == ch.id)
    # the channel still works after the cancelled receivers left
    s = rt.spawn(ch.send, 42)
    assert ch.recv(timeout=5) == 42
    s.join(timeout=5)


def test_channels_inspection_preview_is_bounded(rt):
    ch = Channel(50, name="big")
    for i in range(50):
        ch.send("x" * 1000 + str(i))
    info = [c for c in rt.channels(preview=5, preview_chars=40) if c["id"] == ch.id][0]
    assert info["name"] == "big" and info["length"] == 50 and info["capacity"] == 50
    assert len(info["preview"]) == 5 and all(len(p) <= 40 for p in info["preview"])
    assert info["closed"] is False and info["senders"] == [] and info["receivers"] == []


def test_int64_channel_from_python(rt):
    ch = Channel(4, kind="int64")
    assert ch.kind == "int64" and Channel().kind == "object"
    ch.send(2**63 - 1)
    ch.send(-2**63)
    assert ch.recv() == 2**63 - 1 and ch.recv() == -2**63
    with pytest.raises(TypeError):
        ch.send("not an int")
    with pytest.raises(OverflowError):
        ch.send(2**63)
    with pytest.raises(ValueError):
        Channel(1, kind="bytes")
    ch.send(5)
    info = [c for c in rt.channels() if c["id"] == ch.id][0]
    assert info["kind"] == "int64" and info["preview"] == ["5"]
    assert select([(ch, "recv")]) == (0, 5)
    h = rt.spawn(lambda: select([(ch, "send", 9)]))
    assert h.join(timeout=5) == (0, None) and ch.recv() == 9
    assert isinstance(ch.native_handle, int)
