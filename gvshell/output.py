"""The iopub reader: one thread that reads iopub all the time and prints what it gets.

All output of the shell's own requests is printed here, the foreground cell's included,
so its order is iopub's order. While the prompt is up, sys.stdout is prompt_toolkit's
patch_stdout proxy: text written from this thread appears above the prompt and the line
being edited is redrawn below it, untouched.

Which output is whose:
- the foreground cell runs as a GVThread named `cell-N` (N from its execute_input); its
  output is printed as is;
- anything else tagged metadata["gvthread"] (a %gvspawn'ed GVThread, whose output has
  the spawning request as parent, even long after it went idle) is printed line by line
  with a `[ID NAME] ` prefix; a partial line waits for its end, but no longer than its
  GVThread's exit, its parent request's idle (a GVThread a cell spawned and joined:
  only GVThreads the kernel spawns send an exit event), PARTIAL_AGE seconds, or
  PARTIAL_MAX characters (a GVThread printing dots must not wait, nor grow, for ever);
  the rest of such a line comes later on a line of its own;
- output whose parent is another client's request is not printed (as jupyter console).

`wait_idle(msg_id)` lets the main thread wait until a request's `status: idle`, so a
cell's output is all printed before the next prompt.
"""
from __future__ import annotations

import contextlib
import queue
import sys
import threading
import time
from typing import Iterator, Optional

from prompt_toolkit.patch_stdout import StdoutProxy

from gvshell.client import Connection

_RED, _BRED, _RESET = "\x1b[31m", "\x1b[1;31m", "\x1b[0m"
_DIM = "\x1b[2m"


#: A background partial line is printed anyway once it is this old (seconds)...
PARTIAL_AGE = 0.5
#: ...or this long (characters).
PARTIAL_MAX = 4096


class _Partial:
    """The unfinished last line of one background GVThread's stream."""
    __slots__ = ("text", "gv", "parent", "since")

    def __init__(self, text: str, gv: dict, parent: Optional[str], since: float):
        self.text, self.gv, self.parent, self.since = text, gv, parent, since


def out_prompt(n: int) -> str:
    return f"{_RED}Out[{_BRED}{n}{_RESET}{_RED}]:{_RESET} "


class IOPubReader(threading.Thread):
    def __init__(self, conn: Connection, color: bool = True):
        super().__init__(name="gvshell-iopub", daemon=True)
        self.conn = conn
        self.color = color
        self._stop_ev = threading.Event()
        self._lock = threading.Lock()
        self._idle: dict[str, threading.Event] = {}   # msg_id -> set at status idle
        self._fg_names: dict[str, str] = {}           # msg_id -> "cell-N"
        # (gvthread id, stream) -> its unfinished line; the reader thread's alone
        self._partial: dict[tuple, _Partial] = {}

    # -- main-thread side ---------------------------------------------------------
    def expect(self, msg_id: str) -> threading.Event:
        """Register a request before sending it, so its idle is not missed."""
        ev = threading.Event()
        with self._lock:
            self._idle[msg_id] = ev
        return ev

    def forget(self, msg_id: str) -> None:
        with self._lock:
            self._idle.pop(msg_id, None)
            self._fg_names.pop(msg_id, None)

    def stop(self) -> None:
        self._stop_ev.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(2.0)

    # -- reader thread ------------------------------------------------------------
    def run(self) -> None:
        ch = self.conn.kc.iopub_channel
        while not self._stop_ev.is_set():
            try:
                msg = ch.get_msg(timeout=0.1)
            except queue.Empty:
                msg = None
            except Exception:  # socket closed under us at shutdown
                if self._stop_ev.is_set():
                    return
                continue
            try:
                if msg is not None:
                    self.handle(msg)
                self.flush_partials(older_than=time.monotonic() - PARTIAL_AGE)
            except Exception as e:  # a malformed message must not end the reader
                self.write(f"gvshell: cannot show an iopub message: {e!r}\n")

    def write(self, text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    def handle(self, msg: dict) -> None:
        parent = msg.get("parent_header") or {}
        if parent.get("session") != self.conn.session_id:
            return
        pid = parent.get("msg_id")
        mt = msg["msg_type"]
        c = msg["content"]
        gv = (msg.get("metadata") or {}).get("gvthread")
        if mt == "status":
            if c.get("execution_state") == "idle":
                # all of a request's output comes before its idle: what is left of a line
                # under it is shown now (before the next prompt, for a cell)
                self.flush_partials(parent=pid)
                with self._lock:
                    ev = self._idle.get(pid)
                if ev is not None:
                    ev.set()
            return
        if mt == "execute_input":
            with self._lock:
                self._fg_names[pid] = f"cell-{c.get('execution_count')}"
            return
        if mt == "stream":
            if gv and (gv.get("event") == "exit" or gv.get("name") != self._fg_names.get(pid)):
                self.background(gv, c.get("name", "stdout"), c.get("text", ""), pid)
            else:
                self.write(c.get("text", ""))
            return
        if mt == "execute_result":
            text = (c.get("data") or {}).get("text/plain", "")
            if "\n" in text:
                text = "\n" + text
            self.write(out_prompt(c.get("execution_count", 0)) + text + "\n")
            return
        if mt == "display_data":
            text = (c.get("data") or {}).get("text/plain")
            if text is not None:
                self.write(text + "\n")
            return
        if mt == "error":
            self.write("\n".join(c.get("traceback") or
                                 [f"{c.get('ename')}: {c.get('evalue')}"]) + "\n")
            return

    def background(self, gv: dict, stream: str, text: str,
                   parent: Optional[str] = None) -> None:
        key = (gv.get("id"), stream)
        prev = self._partial.pop(key, None)
        if prev is not None:
            text = prev.text + text
        exiting = gv.get("event") == "exit"
        if exiting:
            # flush whatever is left of both streams before the exit note
            for k in [k for k in self._partial if k[0] == gv.get("id")]:
                text = self._partial.pop(k).text + "\n" + text
        lines = text.split("\n")
        rest = lines.pop()
        if rest:
            if exiting or len(rest) >= PARTIAL_MAX:
                lines.append(rest)
            else:
                # a continued line keeps its age; a new one starts now
                since = prev.since if prev is not None and not lines else time.monotonic()
                self._partial[key] = _Partial(rest, gv, parent, since)
        self._write_lines(gv, lines)

    def flush_partials(self, parent: Optional[str] = None,
                       older_than: Optional[float] = None) -> None:
        """Print the partial lines under parent, or begun before older_than (monotonic
        time), as lines of their own."""
        for key, p in list(self._partial.items()):
            if (parent is not None and p.parent == parent) or \
                    (older_than is not None and p.since <= older_than):
                del self._partial[key]
                self._write_lines(p.gv, [p.text])

    def _write_lines(self, gv: dict, lines: list[str]) -> None:
        if not lines:
            return
        name = gv.get("name") or ""
        tag = f"[{gv.get('id')}{' ' + name if name else ''}] "
        if self.color:
            tag = f"{_DIM}{tag}{_RESET}"
        self.write("".join(tag + line + "\n" for line in lines))


def print_payloads(reply: dict) -> Optional[str]:
    """Text of `page` payloads in an execute_reply (IPython's `?` when a kernel pages)."""
    out = []
    for p in reply.get("payload") or []:
        if p.get("source") == "page":
            data = p.get("data") or {}
            out.append(data.get("text/plain", ""))
    return "\n".join(out) if out else None


@contextlib.contextmanager
def patched_stdout() -> Iterator[StdoutProxy]:
    """prompt_toolkit's patch_stdout, with a shorter pause between writes (background
    output shows within ~50 ms) and the proxy at hand for `drain`."""
    proxy = StdoutProxy(raw=True, sleep_between_writes=0.05)
    saved = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = proxy  # type: ignore[assignment]
    try:
        yield proxy
    finally:
        sys.stdout, sys.stderr = saved
        proxy.close()


def drain(proxy: StdoutProxy, timeout: float = 0.5) -> None:
    """Let the proxy write what is queued before a new prompt is drawn, so a cell's last
    output comes out above its own prompt, not redrawn over it. Best effort: reads a
    private queue of prompt_toolkit, bounded by timeout."""
    q = getattr(proxy, "_flush_queue", None)
    deadline = time.monotonic() + timeout
    proxy.flush()
    while q is not None and not q.empty() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.02)
