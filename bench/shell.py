"""Shell figures: ``gvshell`` with no arguments, from spawn to its first prompt, and out.

Each sample is one **session** in a fresh child process, with ``starts`` starts of the
shell, each in a new pty (pexpect, 50x200, ``TERM=xterm``, ``PROMPT_TOOLKIT_NO_CPR=1``)
and a fresh temporary directory for ``JUPYTER_RUNTIME_DIR``, ``GVSHELL_HISTORY`` and
``GVKERNEL_HISTORY``, so no start reads a long history or finds an old connection file.
The shell starts its own local gvkernel (default workers), as a user's ``gvshell`` does.
The sides:

- ours: ``python -m gvshell`` (``sys.executable``);
- peer: the ``gvshell`` console script found on PATH (the entry point pip wrote: the same
  code, plus its wrapper's import of ``gvshell.app``); ``script:absent`` when there is none.

Per start, measured from just before ``pexpect.spawn``:

- ``start``: until ``In [1]:`` is on the screen (escape sequences removed): the shell's
  imports, the kernel's start, the first ``kernel_info`` and the first prompt drawn;
- ``exit``: from Ctrl-D on the empty prompt, through the question the shell asks before
  leaving a kernel it started ("Do you really want to exit ([y]/n)?", answered ``y``),
  until the shell has exited **and** every kernel process of this start (found by its
  temporary directory in /proc/PID/cmdline) is gone. A kernel left behind fails the
  measurement (it is killed first).

The session's values: the median and the max of its starts (``start_p50``,
``start_max``) and the median exit. Target: the median start <= 1.5 s.

Every line of the suite reads the same sessions (``bench._util.shared_sample``).
"""

from __future__ import annotations

import os
import tempfile

from ._runner import Figure, Side, Target
from ._util import shared_figure

__all__ = ["FIGURES"]

PROMPT = "In [1]:"
_WAIT = 30.0           # one expect; generous for a loaded 2-core box


def _command(impl: str) -> tuple[str, list[str]] | None:
    import shutil
    import sys

    if impl == "module":
        return sys.executable, ["-m", "gvshell"]
    script = shutil.which("gvshell")
    return (script, []) if script else None


def _procs_under(marker: str) -> list[int]:
    """Pids (not ours) whose command line contains marker."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().decode("utf-8", "replace")
            with open(f"/proc/{pid}/stat") as f:
                zombie = f.read().rsplit(") ", 1)[1][0] == "Z"
        except OSError:
            continue
        if marker in cmd and not zombie:
            out.append(int(pid))
    return out


class _Screen:
    """What a pty child has printed, with escape sequences removed."""

    def __init__(self, child):
        import re
        self.child = child
        self.raw = ""
        self._ansi = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|"
                                r"\x1b[()=>][0-9A-Za-z]?")

    def text(self) -> str:
        return self._ansi.sub("", self.raw).replace("\r", "")

    def wait_for(self, s: str, timeout: float = _WAIT) -> None:
        import time

        import pexpect
        deadline = time.monotonic() + timeout
        while s not in self.text():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{s!r} not seen in {timeout:g} s; screen ends with:\n"
                                   f"{self.text()[-1500:]}")
            try:
                self.raw += self.child.read_nonblocking(65536, min(left, 0.05))
            except pexpect.TIMEOUT:
                pass
            except pexpect.EOF:
                raise RuntimeError(f"gvshell exited before {s!r}; screen:\n"
                                   f"{self.text()[-1500:]}") from None


def _one_start(cmd: tuple[str, list[str]]) -> tuple[float, float]:
    """(start, exit) seconds of one gvshell session in a pty."""
    import shutil
    import signal
    import time

    import pexpect

    tmp = tempfile.mkdtemp(prefix="gvbench-shell-")
    child = None
    try:
        os.mkdir(os.path.join(tmp, "runtime"))
        env = dict(os.environ)
        env.pop("JUPYTER_PATH", None)
        env.update(JUPYTER_RUNTIME_DIR=os.path.join(tmp, "runtime"),
                   GVSHELL_HISTORY=os.path.join(tmp, "shell_history"),
                   GVKERNEL_HISTORY=os.path.join(tmp, "kernel_history.sqlite"),
                   PROMPT_TOOLKIT_NO_CPR="1", TERM="xterm", COLUMNS="200", LINES="50")
        t0 = time.perf_counter()
        child = pexpect.spawn(cmd[0], cmd[1], env=env, dimensions=(50, 200),
                              encoding="utf-8", codec_errors="replace")
        screen = _Screen(child)
        screen.wait_for(PROMPT)
        started = time.perf_counter() - t0

        kernels = _procs_under(tmp)            # the kernel names its connection file in tmp
        if not kernels:
            raise RuntimeError("no kernel process found under the session's directory")
        t1 = time.perf_counter()
        child.send("\x04")
        screen.wait_for("Do you really want to exit")
        child.send("y\r")
        child.expect(pexpect.EOF, timeout=_WAIT)
        deadline = time.monotonic() + 10.0
        while _procs_under(tmp):
            if time.monotonic() > deadline:
                left = _procs_under(tmp)
                for pid in left:
                    os.kill(pid, signal.SIGKILL)
                raise RuntimeError(f"kernel processes {left} still alive 10 s after gvshell "
                                   "exited")
            time.sleep(0.005)
        exited = time.perf_counter() - t1
        child.close()
        if child.exitstatus not in (0, None):
            raise RuntimeError(f"gvshell exited with status {child.exitstatus}")
        return started, exited
    finally:
        if child is not None and child.isalive():
            child.terminate(force=True)
        for pid in _procs_under(tmp):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        shutil.rmtree(tmp, ignore_errors=True)


def _session(impl: str, starts: int) -> dict:
    import statistics

    cmd = _command(impl)
    if cmd is None:
        return {"absent": True, "start_p50": 0.0, "start_max": 0.0, "exit": 0.0}
    runs = [_one_start(cmd) for _ in range(starts)]
    st = [s * 1e3 for s, _ in runs]
    ex = [e * 1e3 for _, e in runs]
    return {"start_p50": statistics.median(st), "start_max": max(st),
            "exit": statistics.median(ex), "starts_ms": st, "exits_ms": ex,
            "command": " ".join([cmd[0], *cmd[1]])}


def session(impl: str, metric: str, **params):
    """``metric`` of one session with ``impl`` (the n-th child asking for a metric of a
    side reads that side's n-th session, made by whichever child needed it first)."""
    return shared_figure("shell", {"impl": impl, **params}, metric, metric,
                         lambda: _session(impl, **params))


# -- the figures -----------------------------------------------------------------------

_SESSION = {"starts": 5}
_SESSION_Q = {"starts": 2}

_FIGS = [
    # metric, unit, targets, doc
    ("start_p50", "ms", (Target("value", "<=", 1500.0),),
     "spawn to the first `In [1]:` in a pty, median of the session's starts"),
    ("start_max", "ms", (Target("value", "<=", 1500.0, ideal=True),),
     "spawn to the first `In [1]:`, slowest of the session's starts"),
    ("exit", "ms", (),
     "Ctrl-D, `y`, until gvshell and its kernel are both gone, median"),
]

FIGURES = [
    Figure(f"shell.{metric}", unit,
           ours=Side("-m", "session", {"impl": "module", "metric": metric, **_SESSION},
                     _SESSION_Q),
           peer=Side("script", "session", {"impl": "script", "metric": metric, **_SESSION},
                     _SESSION_Q),
           targets=targets, doc=doc)
    for metric, unit, targets, doc in _FIGS
]
