"""The iopub publisher: one OS thread owns the PUB socket.

Anything may publish (the shell and control threads, and GVThreads on any worker
printing): publishing puts an item on a C SimpleQueue, which never blocks and never
parks, and the publisher thread signs and sends.  Consecutive stream writes with the
same parent, stream name and GVThread are merged into one message, so a GVThread that
prints 100,000 lines costs a few large messages, not 100,000 small ones.

Status messages of requests that publish nothing else (kernel_info, complete, gv_list,
...) are sent by the handling thread itself, under the socket lock (`status_now`): waking
the publisher for them made it compete for the GIL with the handler it brackets (a
kernel_info round trip took ~460 us with that, ~335 us without any iopub traffic). A zmq
socket may be used from several threads one at a time; the lock is that guarantee.
Everything that must stay in order with a request's output goes through the queue.

Output is bounded twice: one write over MAX_WRITE characters is cut with a note, and
when more than MAX_PENDING bytes wait to be sent (a client cannot keep up, or a loop
prints without end), further stream output is dropped and counted, with one note per
episode, instead of growing the kernel's memory.
"""
from __future__ import annotations

import _queue
import _thread
import logging
from typing import Any, Optional

import zmq

from gvkernel.session import Session

log = logging.getLogger("gvkernel.iopub")

MAX_WRITE = 1 << 20
MAX_MERGED = 1 << 20
MAX_PENDING = 32 << 20

_STOP = ("stop",)


def truncate(text: str, limit: int = MAX_WRITE) -> str:
    if len(text) <= limit:
        return text
    return (text[:limit] + f"\n[gvkernel: output truncated: {len(text) - limit:,} more "
            "characters not shown]\n")


class IOPub:
    def __init__(self, session: Session, socket: zmq.Socket):
        self.session = session
        self.socket = socket
        self._q: Any = _queue.SimpleQueue()
        self.pending = 0          # bytes of stream text queued; racy, a bound only
        self.dropped_bytes = 0
        self._dropping = False
        self.sent = 0
        self._thread: Optional[int] = None
        self._done = _thread.allocate_lock()
        self._sock_lock = _thread.allocate_lock()

    def start(self) -> None:
        self._done.acquire()
        self._thread = _thread.start_new_thread(self._run, ())

    # -- producers (any thread, any GVThread) ------------------------------
    def send(self, msg_type: str, content: dict, parent: Optional[dict] = None,
             metadata: Optional[dict] = None) -> None:
        self._q.put(("msg", msg_type, content, parent, metadata))

    def stream(self, name: str, text: str, parent: Optional[dict],
               metadata: Optional[dict]) -> None:
        if self.pending > MAX_PENDING:
            self.dropped_bytes += len(text)
            if not self._dropping:
                self._dropping = True
                self._q.put(("stream", "stderr", "\n[gvkernel: output is arriving faster "
                             "than clients take it; dropping some]\n", parent, metadata))
            return
        text = truncate(text)
        self.pending += len(text)
        self._q.put(("stream", name, text, parent, metadata))

    def status(self, state: str, parent: Optional[dict]) -> None:
        self.send("status", {"execution_state": state}, parent)

    def status_now(self, state: str, parent: Optional[dict]) -> None:
        """Send a status from the calling OS thread (not a GVThread), bypassing the
        queue: only for requests whose handling publishes nothing else."""
        frames = self.session.serialize("status", {"execution_state": state}, parent,
                                        idents=[b"status"])
        with self._sock_lock:
            self.socket.send_multipart(frames)
            self.sent += 1

    def stop(self, timeout: float = 2.0) -> None:
        """Send what is queued, then end the thread."""
        if self._thread is None:
            return
        self._q.put(_STOP)
        if self._done.acquire(timeout=timeout):
            self._done.release()

    # -- the publisher thread ----------------------------------------------
    def _run(self) -> None:
        try:
            held = None
            while True:
                item = held if held is not None else self._q.get()
                held = None
                if item is _STOP:
                    return
                if item[0] == "stream":
                    held = self._send_stream(item)
                else:
                    _, msg_type, content, parent, metadata = item
                    self._send(msg_type, content, parent, metadata)
        except zmq.ContextTerminated:
            return
        except Exception:  # pragma: no cover - a bug here must not go silent
            log.exception("iopub publisher failed")
        finally:
            self._done.release()

    def _send_stream(self, first: tuple) -> Optional[tuple]:
        """Send `first` merged with the stream items queued right behind it; return the
        first item that could not be merged (or None)."""
        _, name, text, parent, metadata = first
        parts = [text]
        size = len(text)
        key = (name, (parent or {}).get("msg_id"), _gvid(metadata))
        held = None
        while size < MAX_MERGED:
            try:
                nxt = self._q.get_nowait()
            except _queue.Empty:
                break
            if (nxt is not _STOP and nxt[0] == "stream"
                    and (nxt[1], (nxt[3] or {}).get("msg_id"), _gvid(nxt[4])) == key):
                parts.append(nxt[2])
                size += len(nxt[2])
                continue
            held = nxt
            break
        self.pending -= size
        if self.pending < MAX_PENDING // 2:
            self._dropping = False
        self._send("stream", {"name": name, "text": "".join(parts)}, parent, metadata)
        return held

    def _send(self, msg_type: str, content: dict, parent: Optional[dict],
              metadata: Optional[dict]) -> None:
        frames = self.session.serialize(msg_type, content, parent, metadata,
                                        idents=[msg_type.encode()])
        with self._sock_lock:
            self.socket.send_multipart(frames)
            self.sent += 1


def _gvid(metadata: Optional[dict]) -> Any:
    if not metadata:
        return None
    gv = metadata.get("gvthread")
    return gv.get("id") if isinstance(gv, dict) else None
