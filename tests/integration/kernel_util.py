"""Helpers to drive a real gvkernel subprocess with jupyter_client (not a test module).

    with KernelProc(tmp_dir, "--max-gvthreads", "64") as k:
        reply, msgs = k.execute("1 + 1")

Every kernel these helpers start gets --workers 2, its history file in its own tmp
directory (GVKERNEL_HISTORY), its own connection file, and its output in a log file
there; stop() always kills the process.  Everything that waits has a deadline, so a
kernel that hangs fails a test instead of hanging the run.
"""

import os
import queue
import subprocess
import sys
import time
import uuid

from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.connect import write_connection_file

#: How long any single reply may take before a helper gives up (generous: a loaded
#: 2-core CI box; the latency tests measure and assert their own, tighter bounds).
REPLY_TIMEOUT = 20.0


def kernel_env(history_path, **extra):
    env = dict(os.environ)
    env["GVKERNEL_HISTORY"] = str(history_path)
    env.pop("JUPYTER_PATH", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Client:
    """Request/reply helpers over a BlockingKernelClient.

    Nothing read is dropped: replies that arrive while waiting for another are kept by
    the msg_id of their request, and every iopub message is kept in arrival order
    (bounded), marked once a collector has claimed it.  A collector sees unclaimed
    messages, or all of them with replay=True, so a test can still find the output of
    a background GVThread that an earlier collector (e.g. the spawning request's
    iopub_until_idle) already took."""

    MAX_KEPT = 20000

    def __init__(self, kc):
        self.kc = kc
        self._kept = []        # iopub messages in arrival order
        self._claimed = set()  # id() of the kept messages some collector took
        self._replies = {}

    # -- replies --------------------------------------------------------------
    def shell_reply(self, msg_id, timeout=REPLY_TIMEOUT):
        return self._reply(self.kc.get_shell_msg, msg_id, timeout)

    def control_reply(self, msg_id, timeout=REPLY_TIMEOUT):
        return self._reply(self.kc.get_control_msg, msg_id, timeout)

    def _reply(self, get, msg_id, timeout):
        if msg_id in self._replies:
            return self._replies.pop(msg_id)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no reply to {msg_id} within {timeout} s")
            try:
                m = get(timeout=left)
            except queue.Empty:
                raise TimeoutError(f"no reply to {msg_id} within {timeout} s") from None
            parent_id = m["parent_header"].get("msg_id")
            if parent_id == msg_id:
                return m
            self._replies[parent_id] = m

    # -- iopub ------------------------------------------------------------------
    def iopub_next(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no iopub message in time")
        try:
            m = self.kc.get_iopub_msg(timeout=left)
        except queue.Empty:
            raise TimeoutError("no iopub message in time") from None
        self._kept.append(m)
        if len(self._kept) > self.MAX_KEPT:
            for old in self._kept[:self.MAX_KEPT // 2]:
                self._claimed.discard(id(old))
            del self._kept[:self.MAX_KEPT // 2]
        return m

    def iopub_collect(self, pred, done, timeout=REPLY_TIMEOUT, replay=False):
        """iopub messages for which pred(m) holds, in arrival order, until
        done(collected) is true: first those already received (unclaimed ones, or all
        with replay=True), then new ones."""
        out = []

        def take(m):
            if pred(m):
                out.append(m)
                self._claimed.add(id(m))

        for m in list(self._kept):
            if done(out):
                return out
            if replay or id(m) not in self._claimed:
                take(m)
        deadline = time.monotonic() + timeout
        while not done(out):
            take(self.iopub_next(deadline))
        return out

    def iopub_until_idle(self, msg_id, timeout=REPLY_TIMEOUT):
        """iopub messages whose parent is msg_id, up to and including its status idle."""
        return self.iopub_collect(lambda m: m["parent_header"].get("msg_id") == msg_id,
                                  lambda out: bool(out) and is_idle(out[-1]), timeout)

    def drain_iopub(self):
        self._kept = []
        self._claimed = set()
        while True:
            try:
                self.kc.get_iopub_msg(timeout=0.05)
            except queue.Empty:
                return

    # -- requests ---------------------------------------------------------------
    def execute(self, code, timeout=REPLY_TIMEOUT, **kw):
        """Run code; (execute_reply, iopub messages of the request up to its idle)."""
        msg_id = self.kc.execute(code, **kw)
        reply = self.shell_reply(msg_id, timeout)
        msgs = self.iopub_until_idle(msg_id, timeout)
        return reply, msgs

    def execute_ok(self, code, timeout=REPLY_TIMEOUT, **kw):
        reply, msgs = self.execute(code, timeout, **kw)
        assert reply["content"]["status"] == "ok", (reply["content"], self.log())
        return reply, msgs

    def request(self, msg_type, content=None, channel="control"):
        """Send a (possibly custom) request; return its msg_id."""
        chan = self.kc.control_channel if channel == "control" else self.kc.shell_channel
        msg = self.kc.session.msg(msg_type, content or {})
        chan.send(msg)
        return msg["header"]["msg_id"]

    def call(self, msg_type, content=None, channel="control", timeout=REPLY_TIMEOUT):
        """Send a request and wait for its reply; (reply, round-trip seconds)."""
        t0 = time.perf_counter()
        msg_id = self.request(msg_type, content, channel)
        get = self.control_reply if channel == "control" else self.shell_reply
        reply = get(msg_id, timeout)
        return reply, time.perf_counter() - t0

    def kernel_info(self, timeout=REPLY_TIMEOUT):
        reply, dt = self.call("kernel_info_request", channel="shell", timeout=timeout)
        return reply["content"], dt

    def log(self):
        return ""


class KernelProc(Client):
    """A gvkernel subprocess and a BlockingKernelClient connected to it."""

    def __init__(self, workdir, *args, history=None, env=None):
        self.workdir = str(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.history = str(history or os.path.join(self.workdir, "history.sqlite"))
        self.connection_file = os.path.join(self.workdir, f"kernel-{uuid.uuid4().hex[:8]}.json")
        write_connection_file(self.connection_file, ip="127.0.0.1",
                              key=uuid.uuid4().hex.encode())
        self.log_path = self.connection_file[:-5] + ".log"
        self._log = open(self.log_path, "wb")
        cmd = [sys.executable, "-m", "gvkernel", "-f", self.connection_file, "--workers", "2",
               *args]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT,
                                     env=env or kernel_env(self.history))
        kc = BlockingKernelClient()
        kc.load_connection_file(self.connection_file)
        super().__init__(kc)
        self.kc.start_channels()
        try:
            self.kc.wait_for_ready(timeout=60)
        except BaseException:
            self.stop()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-4000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self):
        try:
            self.kc.stop_channels()
        except Exception:
            pass
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self._log.close()


def is_idle(m):
    return m["msg_type"] == "status" and m["content"]["execution_state"] == "idle"


def gv_meta(m):
    """The gvthread tag of an iopub message ({} if none)."""
    gv = m.get("metadata", {}).get("gvthread")
    return gv if isinstance(gv, dict) else {}


def by_type(msgs, msg_type):
    return [m for m in msgs if m["msg_type"] == msg_type]


def stream_text(msgs, name=None):
    return "".join(m["content"]["text"] for m in msgs
                   if m["msg_type"] == "stream" and (name is None or m["content"]["name"] == name))
