"""The standalone examples/ programs, each run as a subprocess with small sizes.

Each must exit 0 and print its key lines. The playground (gvshell cells) is not run here;
tests/integration/test_gvshell.py drives gvshell itself.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(60)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLES = os.path.join(ROOT, "examples")


def run_example(path: str, *args: str, timeout: float = 30.0) -> str:
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, path), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, (f"{path} exited {proc.returncode}\nstdout:\n"
                                  f"{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}")
    return proc.stdout


def test_basic():
    out = run_example("basic/basics.py", "--sleepers", "200")
    assert "GVThread" in out and "fib20: 6765" in out
    assert "join() re-raised: ValueError" in out
    assert "high0 high1 high2 normal0 normal1 normal2 low0 low1 low2" in out
    assert "('gamma', 'GAMMA')" in out
    assert re.search(r"a failure cancelled the scope after [\d.]+ s: \['KeyError'\]", out)
    m = re.search(r"200 GVThreads slept 0.2 s each in ([\d.]+) s", out)
    assert m and float(m.group(1)) < 5.0, out


def test_channel():
    out = run_example("channel/pipeline.py", "--count", "2000", "--workers", "3")
    assert "2,000 squares received, sum 2,664,667,000 (correct)" in out, out
    assert "both closed: numbers=True, squares=True" in out
    assert "fast is closed" in out and "slow is closed" in out
    got = re.search(r"received in order: (.*)", out).group(1).split()
    assert sorted(got) == sorted([f"fast{i}" for i in range(5)] + ["slow0", "slow1"])
    assert "send after close: ChannelClosed" in out
    assert "recv drained ['a', 'b'] first, then raised ChannelClosed" in out


def test_stress():
    out = run_example("stress/many.py", "--count", "5000")
    assert re.search(r"^spawn\s+[\d,]+ GVThreads/s", out, re.M), out
    assert "(5,000 live)" in out
    m = re.search(r"MiB parked, ([\d,]+) B per GVThread", out)
    assert m and 0 < int(m.group(1).replace(",", "")) < 64 * 1024, out
    assert re.search(r"^wake \+ join\s+[\d,]+ ms", out, re.M)
    assert "result       ok" in out


def test_webserver():
    out = run_example("webserver/server.py", "--seconds", "1.5", "--rate", "400",
                      "--handlers", "8", "--report", "0.5")
    assert re.search(r"^\[\s+0\.5 s\]\s+[\d,]+ req/s", out, re.M), out
    m = re.search(r"completed ([\d,]+) requests in [\d.]+ s: [\d,]+ req/s", out)
    assert m, out
    completed = int(m.group(1).replace(",", ""))
    assert 300 <= completed <= 600, out         # 400/s for 1.5 s, however loaded the box
    m = re.search(r"latency ms: p50 ([\d.]+)\s+p90 ([\d.]+)\s+p99 ([\d.]+)\s+max ([\d.]+)", out)
    assert m, out
    p50, p90, p99, mx = map(float, m.groups())
    assert 0 < p50 <= p90 <= p99 <= mx
    assert "runtime:" in out


def test_webserver_in_a_gvthread():
    """start()/stop() as a gvshell cell uses them: from a GVThread, on its runtime."""
    code = (
        "import sys, time, gvthread\n"
        f"sys.path.insert(0, {os.path.join(EXAMPLES, 'webserver')!r})\n"
        "import server\n"
        "lines = []\n"
        "def cell():\n"
        "    h = server.start(rate=300, handlers=4, report=0.2, out=lines.append)\n"
        "    gvthread.sleep(0.5)\n"
        "    names = {t.name for t in gvthread.runtime().snapshot()}\n"
        "    assert {'acceptor', 'handler-0', 'stats', 'webserver'} <= names, names\n"
        "    server.stop()\n"
        "    return h.join(timeout=10)\n"
        "summary = gvthread.spawn(cell).join(timeout=20)\n"
        "assert summary['completed'] > 50, summary\n"
        "assert any(l.startswith('completed') for l in lines), lines\n"
        "print('ok', summary['completed'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30, cwd=ROOT)
    assert proc.returncode == 0 and proc.stdout.startswith("ok"), proc.stdout + proc.stderr


@pytest.mark.parametrize("path", ["preemption/busy_vs_ticker.py"])
def test_preemption(path):
    out = run_example(path, "--seconds", "0.3", "--period", "0.01")
    for row in ("gvthread.compile", "builtin compile", "time_slice=None", "compile + High"):
        assert re.search(rf"^{re.escape(row)}\s+", out, re.M), out
