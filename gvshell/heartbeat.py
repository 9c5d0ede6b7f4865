"""Notice a dead kernel within about 2.5 s: our own heartbeat thread.

Not jupyter_client's HBChannel: it reports death through `call_handlers` on its own
thread with a loose timing, and we also want to watch the local kernel's process.
Here a REQ socket pings every PERIOD; a ping unanswered within TIMEOUT is a miss (the
REQ socket is then replaced: a REQ that missed its reply cannot send again); MISSES
misses in a row mean death. The kernel echoes on a zmq.proxy thread that never takes
the GIL, so a busy cell does not delay the echo. For a kernel we started, its process
exiting is death at once.
"""
from __future__ import annotations

import threading

import zmq
from typing import Callable

from gvshell.client import Connection

PERIOD = 0.25
TIMEOUT = 1.0
MISSES = 2


class Heartbeat(threading.Thread):
    def __init__(self, conn: Connection, on_death: Callable[[str], None]):
        super().__init__(name="gvshell-heartbeat", daemon=True)
        self.conn = conn
        self.on_death = on_death
        self._stop_ev = threading.Event()

    def stop(self) -> None:
        self._stop_ev.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(2 * TIMEOUT)

    def _proc_exited(self) -> bool:
        p = self.conn.proc
        return p is not None and p.poll() is not None

    def _socket(self):
        sock = self.conn.kc.hb_socket()
        # A refused CurveZMQ handshake (a kernel restarted with new keys) leaves a REQ
        # socket with no peer, where a plain send would block for ever: bound it.
        sock.sndtimeo = int(TIMEOUT * 1000)
        return sock

    def run(self) -> None:
        sock = self._socket()
        misses = 0
        reason = ""
        try:
            while not self._stop_ev.is_set():
                if self._proc_exited():
                    reason = f"the kernel process exited (status {self.conn.proc.returncode})"
                    break
                try:
                    sock.send(b"ping")
                    answered = bool(sock.poll(int(TIMEOUT * 1000)))
                except zmq.Again:
                    answered = False
                if answered:
                    sock.recv()
                    misses = 0
                    self._stop_ev.wait(PERIOD)
                    continue
                misses += 1
                sock.close(linger=0)
                sock = self._socket()
                if misses >= MISSES:
                    reason = f"no heartbeat for {misses * TIMEOUT:g} s"
                    break
        finally:
            sock.close(linger=0)
        if reason and not self._stop_ev.is_set():
            self.conn.dead.set()
            self.on_death(reason)
