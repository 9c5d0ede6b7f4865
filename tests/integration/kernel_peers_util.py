"""Helpers shared by the kernel tests that drive gvkernel from peers and raw sockets
(test_kernel_conformance, test_kernel_clients, test_kernel_security).

- `install_kernelspec(tmpdir)`: `gvkernel install --prefix` into a temp prefix; returns
  the JUPYTER_PATH entry that makes kernel_name "gvthread" resolve to it.
- `KernelProcess`: a `gvkernel -f FILE` subprocess, waited for until its connection file
  is written and its shell port answers; always killed by `stop()`.
- `RawClient`: DEALER sockets that sign (or deliberately mis-sign) messages with the
  kernel's key, for tests that must control every frame.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any, Optional

import zmq

DELIM = b"<IDS|MSG>"


def install_kernelspec(prefix: str) -> str:
    """Install the "gvthread" kernelspec under PREFIX; return PREFIX/share/jupyter."""
    r = subprocess.run([sys.executable, "-m", "gvkernel", "install", "--prefix", prefix],
                       capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"gvkernel install failed ({r.returncode}): {r.stderr}")
    share = os.path.join(prefix, "share", "jupyter")
    spec = os.path.join(share, "kernels", "gvthread", "kernel.json")
    if not os.path.exists(spec):
        raise RuntimeError(f"gvkernel install wrote no {spec}: {r.stdout}{r.stderr}")
    return share


def kernel_env(history: str, **extra: str) -> dict:
    env = dict(os.environ)
    env["GVKERNEL_HISTORY"] = history
    env.update(extra)
    return env


class KernelProcess:
    """`python -m gvkernel -f CONNECTION_FILE [args]` as a subprocess."""

    def __init__(self, connection_file: str, args: tuple = (), history: str = ":memory:",
                 env: Optional[dict] = None, workers: int = 2):
        self.connection_file = connection_file
        fd, self.log_path = tempfile.mkstemp(prefix="gvkernel-", suffix=".log")
        self._log = os.fdopen(fd, "wb")
        cmd = [sys.executable, "-m", "gvkernel", "-f", connection_file,
               "--workers", str(workers), *args]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL,
                                     env=env or kernel_env(history), start_new_session=True)
        self.info: dict[str, Any] = {}

    def wait_ready(self, timeout: float = 30.0) -> dict:
        """Wait for the connection file to hold all five ports and the kernel to answer
        kernel_info; returns the connection info."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gvkernel exited {self.proc.returncode}: {self.log()}")
            try:
                with open(self.connection_file, encoding="utf-8") as f:
                    info = json.load(f)
                if all(info.get(p) for p in ("shell_port", "iopub_port", "stdin_port",
                                             "control_port", "hb_port")):
                    self.info = info
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.05)
        else:
            raise RuntimeError(f"gvkernel wrote no connection file: {self.log()}")
        c = RawClient(self.info)
        try:
            while time.monotonic() < deadline:
                reply = c.request("kernel_info_request", {}, timeout=1.0)
                if reply is not None:
                    return self.info
                if self.proc.poll() is not None:
                    break
            raise RuntimeError(f"gvkernel did not answer kernel_info: {self.log()}")
        finally:
            c.close()

    def log(self) -> str:
        self._log.flush()
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.proc.kill()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()
        try:
            os.unlink(self.log_path)
        except OSError:
            pass


#: How long a send may wait for a pipe to the kernel before it counts as undeliverable.
SEND_TIMEOUT_MS = 5000


class RawClient:
    """A hand-made client: DEALER on shell and control, SUB on iopub, exact frames."""

    def __init__(self, info: dict, key: Optional[bytes] = None,
                 curve: Optional[dict] = None, ctx: Optional[zmq.Context] = None):
        self.info = info
        self.key = info.get("key", "").encode() if key is None else key
        self.session = uuid.uuid4().hex
        self.ctx = ctx or zmq.Context()
        self._own_ctx = ctx is None
        ip = info.get("ip", "127.0.0.1")
        self.sockets: dict[str, zmq.Socket] = {}
        for name, kind in (("shell", zmq.DEALER), ("control", zmq.DEALER),
                           ("iopub", zmq.SUB)):
            s = self.ctx.socket(kind)
            s.linger = 0
            # A DEALER with no live pipe blocks in send; with wrong CURVE keys libzmq
            # drops the pipe after each failed handshake, so an unbounded send can hang.
            s.sndtimeo = SEND_TIMEOUT_MS
            if curve:
                s.curve_serverkey = curve["curve_server_public"].encode()
                s.curve_publickey = curve["curve_client_public"].encode()
                s.curve_secretkey = curve["curve_client_secret"].encode()
            if kind == zmq.SUB:
                s.setsockopt(zmq.SUBSCRIBE, b"")
            s.connect(f"tcp://{ip}:{info[name + '_port']}")
            self.sockets[name] = s

    def sign(self, body: list[bytes], key: Optional[bytes] = None) -> bytes:
        key = self.key if key is None else key
        if not key:
            return b""
        h = hmac.new(key, digestmod=hashlib.sha256)
        for p in body:
            h.update(p)
        return h.hexdigest().encode()

    def body(self, msg_type: str, content: dict) -> tuple[str, list[bytes]]:
        msg_id = uuid.uuid4().hex
        header = {"msg_id": msg_id, "msg_type": msg_type, "session": self.session,
                  "username": "test", "date": "2024-01-01T00:00:00+00:00", "version": "5.3"}
        return msg_id, [json.dumps(x).encode() for x in (header, {}, {}, content)]

    def frames(self, msg_type: str, content: dict,
               key: Optional[bytes] = None) -> tuple[str, list[bytes]]:
        msg_id, body = self.body(msg_type, content)
        return msg_id, [DELIM, self.sign(body, key), *body]

    def send_frames(self, frames: list[bytes], channel: str = "shell") -> None:
        self.sockets[channel].send_multipart(frames)

    def recv_reply(self, msg_id: str, channel: str = "shell",
                   timeout: float = 10.0) -> Optional[dict]:
        """The reply whose parent is msg_id, or None after timeout."""
        s = self.sockets[channel]
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not s.poll(int(left * 1000)):
                return None
            frames = s.recv_multipart()
            i = frames.index(DELIM)
            header, parent, _, content = (json.loads(f) for f in frames[i + 2:i + 6])
            if parent.get("msg_id") == msg_id:
                return {"header": header, "parent_header": parent, "content": content,
                        "msg_type": header["msg_type"]}

    def request(self, msg_type: str, content: dict, channel: str = "shell",
                timeout: float = 10.0) -> Optional[dict]:
        msg_id, frames = self.frames(msg_type, content)
        try:
            self.send_frames(frames, channel)
        except zmq.Again:
            return None  # never even queued: no peer would take it, so no reply
        return self.recv_reply(msg_id, channel, timeout)

    def close(self) -> None:
        for s in self.sockets.values():
            s.close(linger=0)
        if self._own_ctx:
            self.ctx.term()
