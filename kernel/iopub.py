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
prints or displays without end), further output (stream, display_data, execute_result,
error: `send_output`) is dropped and counted, with one note per episode, instead of
growing the kernel's memory.

User-provided content (display data, results) reaches `send_output` already serialised
by its producer, on the producer's thread: an object json cannot take is the user's
error there, and the publisher never runs user code (a repr) nor meets content it cannot
send.  Whatever still fails to send is logged and noted on stderr; the publisher loop
never ends but by stop().
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
        self.pending = 0          # bytes of output queued; racy, a bound only
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

    def send_output(self, msg_type: str, content: bytes, parent: Optional[dict] = None,
                    metadata: Optional[dict] = None, keep: bool = False) -> bool:
        """Queue output whose content is already serialised (Session.serialize takes
        bytes): counted in `pending` and dropped, as stream output is, when clients
        fall behind; False if it was dropped.  keep=True (a cell's execute_result or
        error: one per execute_request, the executor's pace) is counted, never dropped."""
        if not keep and self._over(len(content), parent, metadata):
            return False
        self.pending += len(content)
        self._q.put(("msg", msg_type, content, parent, metadata, len(content)))
        return True

    def stream(self, name: str, text: str, parent: Optional[dict],
               metadata: Optional[dict]) -> None:
        if self._over(len(text), parent, metadata):
            return
        text = truncate(text)
        self.pending += len(text)
        self._q.put(("stream", name, text, parent, metadata))

    def _over(self, size: int, parent: Optional[dict], metadata: Optional[dict]) -> bool:
        """True (and the output counted as dropped, noted once per episode) when more
        than MAX_PENDING bytes already wait."""
        if self.pending <= MAX_PENDING:
            return False
        self.dropped_bytes += size
        if not self._dropping:
            self._dropping = True
            self._q.put(("stream", "stderr", "\n[gvkernel: output is arriving faster "
                         "than clients take it; dropping some]\n", parent, metadata))
        return True

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
                try:
                    if item[0] == "stream":
                        held = self._send_stream(item)
                    else:
                        self._send_item(item)
                except zmq.ContextTerminated:
                    return
                except Exception as e:  # noqa: BLE001 - one bad message must not end it
                    self._failed(item, e)
        finally:
            self._done.release()

    def _send_item(self, item: tuple) -> None:
        _, msg_type, content, parent, metadata, *size = item
        try:
            self._send(msg_type, content, parent, metadata)
        finally:
            if size:
                self.pending -= size[0]
                if self.pending < MAX_PENDING // 2:
                    self._dropping = False

    def _failed(self, item: tuple, e: Exception) -> None:
        """Log a message that could not be sent, and say so on the request's stderr."""
        log.error("iopub: cannot send a %s message: %s: %s", item[1] if item[0] == "msg"
                  else "stream", type(e).__name__, e, exc_info=True)
        parent = item[3] if len(item) > 3 else None
        try:
            self._send("stream", {"name": "stderr", "text": (
                f"\n[gvkernel: a {item[1] if item[0] == 'msg' else 'stream'} message could "
                f"not be published: {type(e).__name__}]\n")}, parent, None)
        except Exception:  # noqa: BLE001 - the log line above is what is left
            pass

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
