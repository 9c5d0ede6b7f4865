"""gvshell in a real terminal (a pexpect pty), shared by the terminal tests."""
from __future__ import annotations

import re
import sys
import time

import pexpect

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07|\x1b[()=>][0-9A-Za-z]?")
WAIT = 15.0  # generous bound for one expect on a loaded 2-core box


class Term:
    """gvshell in a pty; expect() searches the output with escape sequences removed."""

    def __init__(self, args, env, prefix=()):
        """`prefix` runs it through another command (e.g. ip netns exec NS)."""
        argv = [*prefix, sys.executable, "-m", "gvshell", *args]
        self.child = pexpect.spawn(argv[0], argv[1:], env=env, dimensions=(50, 200),
                                   encoding="utf-8", codec_errors="replace")
        self.raw = ""
        self.pos = 0

    def text(self) -> str:
        return _ANSI.sub("", self.raw).replace("\r", "")

    def _read(self, wait: float) -> None:
        try:
            self.raw += self.child.read_nonblocking(65536, wait)
        except pexpect.TIMEOUT:
            pass
        except pexpect.EOF:
            time.sleep(wait)

    def expect(self, pattern: str, timeout: float = WAIT) -> re.Match:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.text(), self.pos)
            if m:
                self.pos = m.end()
                return m
            if time.monotonic() > deadline:
                raise AssertionError(f"{pattern!r} not seen in {timeout} s; output since "
                                     f"the last match:\n{self.text()[self.pos:][-3000:]}")
            self._read(0.05)

    def pump(self, seconds: float) -> str:
        """Read for `seconds`; the text seen in that time (not consumed)."""
        start = len(self.text())
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self._read(0.05)
        return self.text()[start:]

    def send(self, s: str) -> None:
        self.child.send(s)

    def run(self, line: str, out: str | None = None) -> re.Match | None:
        """Type line + Enter; wait for `Out[n]: out` when given, then the next prompt."""
        return self.run_until(line, r"Out\[\d+\]: " + out if out is not None else None)

    def run_until(self, line: str, pattern: str | None = None) -> re.Match | None:
        """Type line + Enter; wait for pattern when given, then the next prompt."""
        self.send(line + "\r")
        m = self.expect(pattern) if pattern is not None else None
        self.expect(r"In \[\d+\]: ")
        return m

    def wait_exit(self, timeout: float = WAIT) -> int:
        """The exit status, once the shell has exited (all its output read)."""
        deadline = time.monotonic() + timeout
        while not self.child.eof():
            if time.monotonic() > deadline:
                raise AssertionError(f"gvshell still running after {timeout} s:\n"
                                     f"{self.text()[-3000:]}")
            self._read(0.05)
        self.child.close()
        if self.child.exitstatus is not None:
            return self.child.exitstatus
        return 128 + (self.child.signalstatus or 0)

    def __enter__(self) -> "Term":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self.child.isalive():
            self.child.terminate(force=True)
