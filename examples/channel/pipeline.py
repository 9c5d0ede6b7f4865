"""Channels: a three-stage pipeline, select with a timeout, and closing.

  pipeline   a producer sends numbers into a buffered Channel; N square workers receive
             them and send results into a second buffered Channel; a consumer sums them.
             Closing flows down the pipeline: the producer closes `numbers` when done,
             the last square worker to finish (a WaitGroup) closes `squares`, and every
             `for x in channel` loop ends when its channel is closed and drained.
  select     a consumer waits on two channels at once, a fast one and a slow one, with a
             timeout: select() returns whichever is ready first, raises TimeoutError when
             neither is, and returns gvthread.CLOSED for a closed, drained channel.
  closed     send on a closed channel raises ChannelClosed; recv drains what is queued
             first, then raises ChannelClosed.

Run:  python examples/channel/pipeline.py [--count 10000] [--workers 4] [--capacity 16]
"""
from __future__ import annotations

import argparse
import time

import gvthread
from gvthread import CLOSED, Channel, ChannelClosed, WaitGroup


def pipeline(count: int, workers: int, capacity: int) -> None:
    print(f"== pipeline: producer -> {workers} square workers -> consumer")
    numbers = Channel(capacity, name="numbers")
    squares = Channel(capacity, name="squares")
    wg = WaitGroup(name="square-workers")

    def producer():
        for i in range(count):
            numbers.send(i)             # parks while the buffer is full (backpressure)
        numbers.close()                 # no more numbers: ends the workers' loops

    def square_worker():
        try:
            for n in numbers:           # receives until numbers is closed and drained
                squares.send(n * n)
        finally:
            wg.done()

    def closer():
        wg.wait()                       # every worker has finished
        squares.close()

    def consumer():
        total = received = 0
        for sq in squares:
            total += sq
            received += 1
        return total, received

    t0 = time.monotonic()
    with gvthread.scope() as s:
        s.spawn(producer, name="producer")
        wg.add(workers)
        for i in range(workers):
            s.spawn(square_worker, name=f"square-{i}")
        s.spawn(closer, name="closer")
        result = s.spawn(consumer, name="consumer")
    total, received = result.join()
    elapsed = time.monotonic() - t0
    expected = sum(i * i for i in range(count))
    print(f"  {received:,} squares received, sum {total:,} "
          f"({'correct' if total == expected else f'WRONG, expected {expected:,}'})")
    print(f"  {received / elapsed:,.0f} items/s through 2 channels of capacity {capacity}; "
          f"both closed: numbers={numbers.closed}, squares={squares.closed}")


def select_demo() -> None:
    print("== select with a timeout")
    fast = Channel(4, name="fast")
    slow = Channel(4, name="slow")

    def ticker(ch, period, n, label):
        for k in range(n):
            gvthread.sleep(period)
            ch.send(f"{label}{k}")
        ch.close()

    gvthread.spawn(ticker, fast, 0.01, 5, "fast", name="fast-ticker")
    gvthread.spawn(ticker, slow, 0.035, 2, "slow", name="slow-ticker")
    open_channels = {0: fast, 1: slow}
    timeouts = 0
    got = []
    while open_channels:
        cases = [(ch, "recv") for ch in open_channels.values()]
        keys = list(open_channels)
        try:
            i, value = gvthread.select(cases, timeout=0.015)
        except TimeoutError:
            timeouts += 1               # neither was ready within 15 ms
            continue
        if value is CLOSED:
            print(f"  {open_channels[keys[i]].name} is closed")
            del open_channels[keys[i]]
        else:
            got.append(value)
    print(f"  received in order: {' '.join(got)}")
    print(f"  select() raised TimeoutError {timeouts} time(s) while both were quiet")


def closed_demo() -> None:
    print("== closing")
    ch = Channel(3, name="letters")
    for x in "ab":
        ch.send(x)
    ch.close()
    try:
        ch.send("c")
    except ChannelClosed:
        print("  send after close: ChannelClosed")
    drained = [ch.recv(), ch.recv()]
    try:
        ch.recv()
    except ChannelClosed:
        print(f"  recv drained {drained} first, then raised ChannelClosed")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=10_000, help="numbers through the pipeline")
    ap.add_argument("--workers", type=int, default=4, help="square workers")
    ap.add_argument("--capacity", type=int, default=16, help="capacity of each channel")
    args = ap.parse_args()

    with gvthread.Runtime(workers=2) as rt:
        # Run each demo in a GVThread, so the scope and gvthread.spawn use this runtime.
        rt.spawn(pipeline, args.count, args.workers, args.capacity, name="pipeline").join()
        rt.spawn(select_demo, name="select").join()
        rt.spawn(closed_demo, name="closed").join()


if __name__ == "__main__":
    main()
