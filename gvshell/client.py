"""The connection to one kernel: sockets, requests with deadlines, a local kernel process.

Why jupyter_client: its `Session` already frames and signs messages exactly as the kernel
checks them (HMAC-SHA256, replay-safe headers), and its `BlockingKernelClient` gives one
ZeroMQ socket per channel with blocking `get_msg(timeout)`. We use those lower layers,
not its `execute_interactive` or `KernelManager`: the shell needs its own loop (interrupt on
Ctrl-C, input_request, kernel death noticed mid-wait), its own iopub reader thread
(output.py) and its own heartbeat thread (heartbeat.py).

Thread ownership (ZeroMQ sockets are not thread-safe, and a thread waiting for its reply
drops the replies it reads that are not its own): every socket has one owning thread, and
a thread that needs to make requests gets a socket of its own instead of sharing one.
- shell, control, stdin sockets of `Connection`: the main thread only (the prompt's key
  bindings and completer run on it too), so `Connection.send`/`request` are main-thread
  calls;
- iopub socket: the iopub reader thread only (output.IOPubReader);
- hb socket: the heartbeat thread, which makes its own (heartbeat.Heartbeat);
- the %gvtop poller: a `ThreadChannel` of its own to the control port
  (`Connection.thread_channel`), made before the poller starts and closed after it has
  been joined (thread start and join are the memory barriers ZeroMQ asks for when a
  socket changes threads). The kernel's ROUTER tells the two DEALERs apart by identity,
  so each gets its own replies. Rejected: one control socket behind a lock, with replies
  for other waiters kept for them: Python locks are not fair, so a thread polling in a
  loop can starve the other past its deadline, and a fair hand-off needs a condition
  variable and a reader-election protocol, more code than a second socket.

Socket options are set in one place, `GVKernelClient.configure_socket`, called on every
socket before it connects, the heartbeat's included. That is where CurveZMQ goes on: with
`curve` keys (from the connection file's curve_* fields, or given apart with
--curve-keys) every socket gets curve_serverkey = curve_server_public and the client key
pair curve_client_public/curve_client_secret. With wrong keys the kernel's ZAP handler
drops the handshake and nothing ever answers; ZeroMQ says nothing about it, so the only
sign is the start timeout of `wait_ready` (gvshell --timeout).
"""
from __future__ import annotations

import glob
import os
import queue
import subprocess
import sys
import threading
import time
import uuid
from typing import Optional

import zmq
from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.channels import ZMQSocketChannel
from jupyter_client.connect import channel_socket_types

from gvkernel import connection

#: Deadline for ordinary replies (complete, is_complete use shorter ones).
REPLY_TIMEOUT = 10.0
#: How long a local kernel may take to write its connection file and answer kernel_info
#: (the default of Connection's start_timeout, read when the Connection is made).
START_TIMEOUT = 30.0
#: Until the kernel first answers, a send gives up after this long (SNDTIMEO, seconds):
#: a DEALER whose CurveZMQ handshake was refused has no pipe left, and its send would
#: block for ever. wait_ready lifts it once the kernel has answered.
START_SEND_TIMEOUT = 0.2
#: Send timeout of a ThreadChannel (seconds): a kernel that stopped reading must not hold
#: its thread in send for ever.
THREAD_SEND_TIMEOUT = 1.0
#: The curve_* fields a client needs (the server's secret is the kernel's alone).
CURVE_CLIENT_FIELDS = ("curve_server_public", "curve_client_public", "curve_client_secret")


class KernelDied(Exception):
    """The kernel stopped answering (heartbeat lost, or its process exited)."""


class GVKernelClient(BlockingKernelClient):
    """BlockingKernelClient whose sockets all pass through `configure_socket`."""

    #: CurveZMQ client keys (CURVE_CLIENT_FIELDS, Z85 str), or None for plain TCP.
    curve: Optional[dict] = None

    def configure_socket(self, sock: zmq.Socket, channel: str) -> None:
        """Set options on a socket before it connects: linger, a send timeout until the
        kernel first answers (not on hb: heartbeat.py's send does not expect zmq.Again),
        and CurveZMQ keys."""
        sock.linger = 1000
        if channel != "hb":
            sock.sndtimeo = int(START_SEND_TIMEOUT * 1000)
        if self.curve:
            sock.curve_serverkey = self.curve["curve_server_public"].encode()
            sock.curve_publickey = self.curve["curve_client_public"].encode()
            sock.curve_secretkey = self.curve["curve_client_secret"].encode()

    def _create_connected_socket(self, channel: str,
                                 identity: Optional[bytes] = None) -> zmq.Socket:
        sock = self.context.socket(channel_socket_types[channel])
        if identity:
            sock.identity = identity
        self.configure_socket(sock, channel)
        sock.connect(self._make_url(channel))
        return sock

    def hb_socket(self) -> zmq.Socket:
        """A fresh REQ socket to the heartbeat port (owned by the heartbeat thread)."""
        return self._create_connected_socket("hb")

    def thread_socket(self, channel: str) -> zmq.Socket:
        """A fresh DEALER to a request port, with ZeroMQ's random identity (the main
        socket's identity is the session id, and a ROUTER ignores a second peer with an
        identity it already has)."""
        sock = self._create_connected_socket(channel)
        sock.sndtimeo = int(THREAD_SEND_TIMEOUT * 1000)
        return sock


def wait_reply(ch: ZMQSocketChannel, msg_id: str, timeout: float,
               dead: threading.Event) -> dict:
    """The reply to msg_id read from ch (by the thread that owns ch); other replies (late
    ones of requests that timed out) are dropped. Raises TimeoutError, or KernelDied as
    soon as dead is set."""
    deadline = time.monotonic() + timeout
    while True:
        if dead.is_set():
            raise KernelDied()
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no reply from the kernel in {timeout:g} s")
        try:
            msg = ch.get_msg(timeout=min(left, 0.1))
        except queue.Empty:
            continue
        if msg["parent_header"].get("msg_id") == msg_id:
            return msg


class ThreadChannel:
    """A request socket of its own for one thread other than the main one (the %gvtop
    poller): `request` as Connection.request, but only ever called by that thread.
    Made and closed by the main thread, before the thread starts and after it is joined."""

    def __init__(self, conn: "Connection", channel: str = "control"):
        self.conn = conn
        self.channel = channel
        self.ch = ZMQSocketChannel(conn.kc.thread_socket(channel), conn.kc.session)

    def request(self, msg_type: str, content: dict, timeout: float = REPLY_TIMEOUT) -> dict:
        msg = self.conn.kc.session.msg(msg_type, content)
        try:
            self.ch.send(msg)
        except zmq.Again:
            raise TimeoutError("the kernel takes no messages (no connection)") from None
        return wait_reply(self.ch, msg["header"]["msg_id"], timeout, self.conn.dead)["content"]

    def close(self) -> None:
        self.ch.close()


def runtime_dir() -> str:
    return connection.runtime_dir()


def curve_keys(info: dict, source: str) -> Optional[dict]:
    """The client's CurveZMQ keys from info (a connection file, or a --curve-keys file),
    None when it has no curve_* field; ValueError when they are partial or not Z85 keys."""
    if not any(info.get(k) for k in CURVE_CLIENT_FIELDS):
        return None
    keys = {}
    for k in CURVE_CLIENT_FIELDS:
        v = info.get(k)
        if not isinstance(v, str) or len(v) != 40:
            raise ValueError(f"{source}: {k} must be a 40-character Z85 CurveZMQ key")
        keys[k] = v
    return keys


def read_curve_keys(path: str) -> dict:
    """--curve-keys FILE: a JSON object with the three CURVE_CLIENT_FIELDS (a copy of
    the kernel's connection file will do)."""
    keys = curve_keys(connection.read(path), path)
    if keys is None:
        raise ValueError(f"{path}: no curve keys ({', '.join(CURVE_CLIENT_FIELDS)})")
    return keys


def newest_connection_file(directory: Optional[str] = None) -> str:
    files = glob.glob(os.path.join(directory or runtime_dir(), "kernel-*.json"))
    if not files:
        raise FileNotFoundError(f"no kernel-*.json connection file in {directory or runtime_dir()}")
    return max(files, key=os.path.getmtime)


class Connection:
    """One attached kernel. `owned` when this shell started it (and so shuts it down).

    The kernel is named by a connection file, or by `info` (a connection-file dict, e.g.
    --ip and the ports from the command line; connection_file is then only its name).
    `curve`: client keys overriding the file's; `require_curve`: no keys is an error.
    """

    def __init__(self, connection_file: str, *, ip: Optional[str] = None,
                 proc: Optional[subprocess.Popen] = None, log_path: Optional[str] = None,
                 info: Optional[dict] = None, curve: Optional[dict] = None,
                 require_curve: bool = False, start_timeout: Optional[float] = None):
        self.connection_file = connection_file
        self.ip = ip
        self.proc = proc
        self.log_path = log_path
        self.dead = threading.Event()
        self.start_timeout = START_TIMEOUT if start_timeout is None else start_timeout
        self._given = (info, curve, require_curve)
        info = dict(info) if info is not None else connection.read(connection_file)
        if ip:
            info["ip"] = ip
        self.curve = curve or curve_keys(info, connection_file)
        if require_curve and not self.curve:
            raise ValueError(f"--curve: {connection_file} has no curve keys "
                             f"({', '.join(CURVE_CLIENT_FIELDS)}); give --curve-keys FILE")
        self.kc = GVKernelClient()
        self.kc.curve = self.curve
        self.kc.load_connection_info(info)
        self.kc.start_channels(shell=True, iopub=True, stdin=True, hb=False, control=True)
        self.session_id = self.kc.session.session
        self.kernel_info: dict = {}
        self._closed = False

    @property
    def owned(self) -> bool:
        return self.proc is not None

    def reopen(self) -> "Connection":
        """A new Connection to the same (not owned) kernel, with the same keys and
        timeout: what a reconnect after the kernel's death needs."""
        info, curve, require_curve = self._given
        return Connection(self.connection_file, ip=self.ip, info=info, curve=curve,
                          require_curve=require_curve, start_timeout=self.start_timeout)

    # -- local kernels ------------------------------------------------------------
    @classmethod
    def start_local(cls, kernel_args: list[str],
                    start_timeout: Optional[float] = None) -> "Connection":
        """Start `python -m gvkernel -f NEW_FILE` in its own session (the terminal's
        Ctrl-C must not reach it: the shell turns Ctrl-C into interrupt_request)."""
        start_timeout = START_TIMEOUT if start_timeout is None else start_timeout
        d = runtime_dir()
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, f"kernel-gv-{uuid.uuid4().hex[:12]}.json")
        log_path = path[:-5] + ".log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "gvkernel", "-f", path, *kernel_args],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True)
        # From here on the kernel is ours to end, whatever ends this call: it runs in its
        # own session, so nothing else (not the terminal's Ctrl-C) would.
        try:
            deadline = time.monotonic() + start_timeout
            while not os.path.exists(path):
                if proc.poll() is not None:
                    raise RuntimeError(f"gvkernel exited with status {proc.returncode}:\n"
                                       + _tail(log_path))
                if time.monotonic() > deadline:
                    raise RuntimeError("gvkernel did not write its connection file in time")
                time.sleep(0.02)
            return cls(path, proc=proc, log_path=log_path, start_timeout=start_timeout)
        except BaseException:  # KeyboardInterrupt and SystemExit (SIGTERM) included
            _end_process(proc)
            for p in (path, log_path):
                try:
                    os.unlink(p)
                except OSError:
                    pass
            raise

    def log_tail(self) -> str:
        return _tail(self.log_path) if self.log_path else ""

    # -- requests (main thread; another thread uses a thread_channel) ----------------
    def thread_channel(self, channel: str = "control") -> ThreadChannel:
        """A socket of its own for a thread other than the main one (see ThreadChannel)."""
        return ThreadChannel(self, channel)

    def send(self, channel: str, msg_type: str, content: dict) -> str:
        msg = self.kc.session.msg(msg_type, content)
        try:
            getattr(self.kc, f"{channel}_channel").send(msg)
        except zmq.Again:
            raise TimeoutError("the kernel takes no messages (no connection)") from None
        return msg["header"]["msg_id"]

    def wait_reply(self, channel: str, msg_id: str, timeout: float = REPLY_TIMEOUT) -> dict:
        """The reply to msg_id on channel (main thread); other replies (late ones of
        requests that timed out) are dropped. Raises TimeoutError, or KernelDied as soon
        as death is known."""
        return wait_reply(getattr(self.kc, f"{channel}_channel"), msg_id, timeout, self.dead)

    def request(self, channel: str, msg_type: str, content: dict,
                timeout: float = REPLY_TIMEOUT) -> dict:
        return self.wait_reply(channel, self.send(channel, msg_type, content), timeout)["content"]

    def wait_ready(self, timeout: Optional[float] = None) -> dict:
        """kernel_info until answered (the first messages may be lost while connecting),
        for at most timeout (default: start_timeout) seconds; then TimeoutError."""
        timeout = self.start_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.kernel_info = self.request("shell", "kernel_info_request", {},
                                                timeout=min(1.0, max(0.1, deadline - time.monotonic())))
                for ch in ("shell", "control", "stdin"):  # connected: sends may block again
                    getattr(self.kc, f"{ch}_channel").socket.sndtimeo = -1
                return self.kernel_info
            except TimeoutError:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError("gvkernel exited:\n" + self.log_tail()) from None
                if time.monotonic() > deadline:
                    raise

    def execution_count(self) -> int:
        """The number the next stored cell gets (a silent execute does not count)."""
        c = self.request("shell", "execute_request",
                         {"code": "", "silent": True, "store_history": False,
                          "user_expressions": {}, "allow_stdin": False})
        return int(c.get("execution_count", 1))

    # -- ending -------------------------------------------------------------------
    def close(self, shutdown: bool = False) -> None:
        """Stop the channels; with shutdown, ask an owned kernel to exit, then make sure.
        Once only: a second call (a cleanup path after another) does nothing."""
        if self._closed:
            return
        self._closed = True
        try:
            if shutdown and not self.dead.is_set():
                try:
                    self.request("control", "shutdown_request", {"restart": False},
                                 timeout=2.0)
                except (TimeoutError, KernelDied):
                    pass
        finally:  # a Ctrl-C in the request above must not leave an owned kernel running
            try:
                self.kc.stop_channels()
            except Exception:
                pass
            if self.proc is not None and shutdown:
                _end_process(self.proc, grace=3.0)
                for p in (self.connection_file, self.log_path):
                    try:
                        os.unlink(p)
                    except (OSError, TypeError):
                        pass


def _end_process(proc: subprocess.Popen, grace: float = 0.0) -> None:
    """Give proc grace seconds to exit by itself, then kill it; reap it. A Ctrl-C
    meanwhile does not stop this (the caller is leaving anyway), it only ends the grace."""
    deadline = time.monotonic() + grace
    killed = False
    while True:
        try:
            left = deadline - time.monotonic()
            if not killed and left <= 0:
                killed = True
                proc.kill()
            proc.wait(left if not killed else 5)
            return
        except KeyboardInterrupt:
            deadline = 0.0
        except subprocess.TimeoutExpired:
            if killed:
                return
        except OSError:
            return


def _tail(path: Optional[str], n: int = 2000) -> str:
    try:
        with open(path, "rb") as f:  # type: ignore[arg-type]
            return f.read()[-n:].decode("utf-8", "replace")
    except (OSError, TypeError):
        return ""

