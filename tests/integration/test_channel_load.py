"""8 producers -> 8 consumers over a capacity-16 channel, 1,000,000 messages."""
from gvthread import Channel, Runtime


def test_million_messages_each_received_exactly_once():
    n, k = 1_000_000, 8
    with Runtime(workers=2) as rt:
        ch = Channel(16)

        def prod(j):
            for i in range(j, n, k):
                ch.send(i)

        def cons():
            seen = bytearray(n)
            c = 0
            for x in ch:
                seen[x] += 1
                c += 1
            return seen, c

        ps = [rt.spawn(prod, j) for j in range(k)]
        cs = [rt.spawn(cons) for _ in range(k)]
        for p in ps:
            p.join(timeout=120)
        ch.close()
        total = bytearray(n)
        count = 0
        for c in cs:
            seen, m = c.join(timeout=120)
            count += m
            for i, v in enumerate(seen):
                if v:
                    total[i] += v
        assert count == n
        assert total.count(1) == n      # every message exactly once
