"""Kernel figures: gvkernel vs ipykernel, as a Jupyter client sees them.

Each sample is one **session** in a fresh child process: the child writes a connection
file in advance (``jupyter_client.connect.write_connection_file``, so the kernel binds
known ports and the client can connect before the kernel exists), then drives the kernel
with a small raw pyzmq client (below: DEALER shell and control, SUB iopub, HMAC-SHA256
signing), the same client for both kernels. It is lighter than jupyter_client's
``BlockingKernelClient`` (no traitlets, no date parsing, no thread per channel), so more
of each round trip is the kernel's own. The kernels:

- ours: ``python -m gvkernel -f FILE --history TMP`` (default workers: one per CPU);
- peer: ``python -m ipykernel_launcher -f FILE --HistoryManager.hist_file=TMP``.

Both keep their input history in a fresh file in the session's temporary directory, so
neither pays for (or pollutes) a long history in the home directory. A session measures,
in this order:

- ``start``: ``starts`` times, from ``Popen`` to the first ``kernel_info_reply``: the
  request is queued on a shell socket connected before the ``Popen`` (reconnect interval
  2 ms, so the kernel's bind is seen within ~2 ms), and re-sent once a second in case it
  was lost. The median of the starts (ms) is the session's value. Every start but the
  last is shut down (``shutdown_request`` on control) and waited for; the last one is
  kept for the rest.
- settle: at least 1 s, then until the kernel's CPU time stands still for 0.3 s (its
  background start-up work, such as gvkernel's IPython import 0.5 s after start, must
  not land in the round trips).
- warm-up: the iopub SUB socket is confirmed connected (kernel_info until its busy/idle
  arrive on iopub), then ``warmup`` executions of ``1+1`` and kernel_infos.
- ``exec``: ``n`` executions of ``1+1`` (``silent: False, store_history: True``, as a
  notebook sends a cell): from the send of the ``execute_request`` until both its
  ``execute_reply`` (shell) and its ``status: idle`` (iopub) have arrived. p50 and p99
  (nearest rank, ms).
- ``info``: ``n`` kernel_info_requests on shell, send until ``kernel_info_reply``
  (p50, p99, ms); the idle status of each is awaited outside the timing, so every request
  finds the kernel idle.
- ``rss``: VmRSS of the kernel process (``/proc/PID/status``), 0.5 s after the above.
- ``gv_list``: ours only: one cell spawns 100,000 GVThreads parked on an Event
  (``import gvthread; ev = gvthread.Event(); hs = [gvthread.spawn(ev.wait) ...]``),
  then ``lists`` ``gv_list_request {"limit": 100}`` on control, send to reply (p50, p99,
  ms); the reply must hold 100 items and a total >= 100,000. The spawn cell returns
  once they are spawned, while the workers still run each to its ``ev.wait()``: the
  figure waits until all are parked (a ``state: blocked`` count), and the one request
  made during that burst is kept as ``info["list_during_spawn_ms"]``. ipykernel has no
  gv_list: its row is ``kernel_info_request`` on control (the smallest control round trip it
  offers), for scale only; the target is on our value (<= 50 ms).

Every line of the suite reads the same sessions (``bench._util.shared_sample``): one
session per side and repeat, each in a fresh child, the sides alternating.
"""

from __future__ import annotations

import os
import tempfile

from ._runner import Figure, Side, Target
from ._util import shared_figure

__all__ = ["FIGURES"]

_MS = 1e-6


def _pct(sorted_values: list, p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    import math
    k = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[k - 1]


class _Client:
    """A minimal Jupyter client on raw pyzmq sockets: sign, send, receive, match by
    parent msg_id. Incoming signatures are not checked (the kernels are ours)."""

    def __init__(self, info: dict):
        import hashlib
        import hmac
        import json
        import uuid

        import zmq

        self._zmq = zmq
        self._json = json
        self._uuid = uuid
        self._hmac = hmac
        self._sha256 = hashlib.sha256
        self.key = info["key"].encode() if isinstance(info["key"], str) else info["key"]
        self.session = uuid.uuid4().hex
        self.ctx = zmq.Context()
        url = f"tcp://{info['ip']}:%d"

        def sock(kind, port):
            s = self.ctx.socket(kind)
            s.linger = 0
            s.setsockopt(zmq.RECONNECT_IVL, 2)
            s.setsockopt(zmq.RECONNECT_IVL_MAX, 2)
            s.connect(url % port)
            return s

        self.shell = sock(zmq.DEALER, info["shell_port"])
        self.control = sock(zmq.DEALER, info["control_port"])
        self.iopub = sock(zmq.SUB, info["iopub_port"])
        self.iopub.setsockopt(zmq.SUBSCRIBE, b"")
        self.poller = zmq.Poller()
        self.poller.register(self.shell, zmq.POLLIN)
        self.poller.register(self.iopub, zmq.POLLIN)

    def close(self) -> None:
        self.ctx.destroy(linger=0)

    def send(self, sock, msg_type: str, content: dict) -> str:
        import datetime
        msg_id = self._uuid.uuid4().hex
        header = {"msg_id": msg_id, "msg_type": msg_type, "session": self.session,
                  "username": "bench", "version": "5.3",
                  "date": datetime.datetime.now(datetime.timezone.utc).isoformat()}
        dumps = self._json.dumps
        body = [dumps(header).encode(), b"{}", b"{}", dumps(content).encode()]
        h = self._hmac.new(self.key, digestmod=self._sha256)
        for part in body:
            h.update(part)
        sock.send_multipart([b"<IDS|MSG>", h.hexdigest().encode(), *body])
        return msg_id

    def _parse(self, frames: list) -> tuple:
        """(msg_type, parent msg_id, content) of a received message."""
        i = frames.index(b"<IDS|MSG>")
        loads = self._json.loads
        header, parent = loads(frames[i + 2]), loads(frames[i + 3])
        return header.get("msg_type"), parent.get("msg_id"), loads(frames[i + 5])

    def recv_reply(self, sock, msg_id: str, timeout: float) -> dict:
        """The content of sock's reply to msg_id (other replies are dropped)."""
        deadline_ms = int(timeout * 1000)
        while True:
            if not sock.poll(deadline_ms):
                raise TimeoutError(f"no reply to {msg_id} within {timeout:g}s")
            _, parent, content = self._parse(sock.recv_multipart())
            if parent == msg_id:
                return content

    def wait_idle(self, msg_id: str, timeout: float) -> None:
        while True:
            if not self.iopub.poll(int(timeout * 1000)):
                raise TimeoutError(f"no idle status for {msg_id} within {timeout:g}s")
            msg_type, parent, content = self._parse(self.iopub.recv_multipart())
            if (parent == msg_id and msg_type == "status"
                    and content.get("execution_state") == "idle"):
                return

    def execute(self, code: str, timeout: float = 60.0) -> dict:
        """Send code; return the execute_reply once both it and the idle status are in."""
        msg_id = self.send(self.shell, "execute_request", {
            "code": code, "silent": False, "store_history": True,
            "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})
        reply = None
        idle = False
        poll = self.poller.poll
        while reply is None or not idle:
            events = dict(poll(int(timeout * 1000)))
            if not events:
                raise TimeoutError(f"execute {code!r}: no reply/idle within {timeout:g}s")
            if self.shell in events:
                _, parent, content = self._parse(self.shell.recv_multipart())
                if parent == msg_id:
                    reply = content
            if self.iopub in events:
                msg_type, parent, content = self._parse(self.iopub.recv_multipart())
                if (parent == msg_id and msg_type == "status"
                        and content.get("execution_state") == "idle"):
                    idle = True
        return reply


def _write_connection(tmp: str) -> tuple[str, dict]:
    from jupyter_client.connect import write_connection_file
    path, info = write_connection_file(os.path.join(tmp, "kernel.json"), ip="127.0.0.1",
                                       key=os.urandom(16).hex().encode())
    info = dict(info)
    if isinstance(info["key"], bytes):
        info["key"] = info["key"].decode()
    return path, info


def _argv(impl: str, path: str, tmp: str) -> list[str]:
    import sys
    if impl == "gvkernel":
        return [sys.executable, "-m", "gvkernel", "-f", path,
                "--history", os.path.join(tmp, "gv_history.sqlite")]
    return [sys.executable, "-m", "ipykernel_launcher", "-f", path,
            f"--HistoryManager.hist_file={os.path.join(tmp, 'ipy_history.sqlite')}"]


def _start(impl: str, path: str, info: dict, tmp: str):
    """(Popen, client, ms from Popen to the first kernel_info_reply)."""
    import subprocess
    import time

    client = _Client(info)
    msg_id = client.send(client.shell, "kernel_info_request", {})   # queued until bound
    # stderr to a file, not a pipe: nobody reads it during the session, and a full pipe
    # would block a kernel that logs.
    errlog = os.path.join(tmp, "stderr.log")
    with open(errlog, "wb") as err:
        t0 = time.perf_counter_ns()
        proc = subprocess.Popen(_argv(impl, path, tmp), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 60
    ids = {msg_id}
    while True:
        if client.shell.poll(1000):
            _, parent, _ = client._parse(client.shell.recv_multipart())
            if parent in ids:
                break
            continue
        rc = proc.poll()
        if rc is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            with open(errlog, "rb") as f:
                err = f.read().decode(errors="replace")[-2000:]
            client.close()
            how = "timed out" if rc is None else f"exit status {rc}"
            raise RuntimeError(f"{impl} did not answer kernel_info ({how}): {err}")
        ids.add(client.send(client.shell, "kernel_info_request", {}))
    t1 = time.perf_counter_ns()
    return proc, client, (t1 - t0) * _MS


def _stop(proc, client) -> None:
    import subprocess
    try:
        client.send(client.control, "shutdown_request", {"restart": False})
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    finally:
        client.close()


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return int(fields[11]) + int(fields[12])        # utime + stime


def _settle(pid: int, floor: float = 1.0, quiet: float = 0.3, most: float = 6.0) -> float:
    """Wait ``floor`` s, then until the kernel's CPU time stands still for ``quiet`` s
    (its background start-up work done: gvkernel imports IPython's input transformer
    0.5 s after it starts, ipykernel starts its history thread...), at most ``most`` s
    in all; the seconds waited."""
    import time
    t0 = time.monotonic()
    time.sleep(floor)
    last = _cpu_ticks(pid)
    while time.monotonic() - t0 < most:
        time.sleep(quiet)
        now = _cpu_ticks(pid)
        if now == last:
            break
        last = now
    return time.monotonic() - t0


def _round_trips(fn, n: int) -> list:
    import time
    now = time.perf_counter_ns
    out = []
    for _ in range(n):
        t0 = now()
        fn()
        out.append((now() - t0) * _MS)
    out.sort()
    return out


_SPAWN_CELL = ("import gvthread\n"
               "_bench_ev = gvthread.Event()\n"
               "_bench_hs = [gvthread.spawn(_bench_ev.wait) for _ in range({n})]\n"
               "len(_bench_hs)")


def _session(impl: str, starts: int, warmup: int, n: int, lists: int,
             gvthreads: int) -> dict:
    import gc
    import shutil
    import statistics
    import time

    tmp = tempfile.mkdtemp(prefix=f"bench-kernel-{impl}-")
    gc.disable()        # the client's own gc pauses are not the kernel's
    try:
        path, info = _write_connection(tmp)
        start_ms = []
        for i in range(starts):
            proc, client, ms = _start(impl, path, info, tmp)
            start_ms.append(ms)
            if i < starts - 1:
                _stop(proc, client)
        try:
            out = {"pid": proc.pid, "start_all_ms": start_ms,
                   "settle_s": _settle(proc.pid)}
            # iopub connected: a kernel_info whose busy/idle arrives on it
            deadline = time.monotonic() + 30
            while True:
                mid = client.send(client.shell, "kernel_info_request", {})
                client.recv_reply(client.shell, mid, 30)
                try:
                    client.wait_idle(mid, 0.2)
                    break
                except TimeoutError:
                    if time.monotonic() > deadline:
                        raise
            for _ in range(warmup):
                r = client.execute("1+1")
                if r.get("status") != "ok":
                    raise RuntimeError(f"execute 1+1: {r}")
                mid = client.send(client.shell, "kernel_info_request", {})
                client.recv_reply(client.shell, mid, 30)
                client.wait_idle(mid, 30)

            ex = _round_trips(lambda: client.execute("1+1"), n)

            def info_rt():
                mid = client.send(client.shell, "kernel_info_request", {})
                client.recv_reply(client.shell, mid, 30)
                info_rt.last = mid

            info_rt.last = None
            inf = []
            now = time.perf_counter_ns
            for _ in range(n):
                t0 = now()
                info_rt()
                inf.append((now() - t0) * _MS)
                client.wait_idle(info_rt.last, 30)
            inf.sort()
            time.sleep(0.5)
            rss = _rss_kb(proc.pid)

            if impl == "gvkernel":
                r = client.execute(_SPAWN_CELL.format(n=gvthreads), timeout=120)
                if r.get("status") != "ok":
                    raise RuntimeError(f"spawning {gvthreads} GVThreads: {r}")
                rss_spawned = _rss_kb(proc.pid)
                # The cell returns once they are spawned; the workers then run each to
                # its ev.wait(). A request in that burst waits for the GIL (kept in info
                # as list_during_spawn_ms); the figure is the parked steady state.
                t0 = time.perf_counter_ns()
                mid = client.send(client.control, "gv_list_request", {"limit": 100})
                client.recv_reply(client.control, mid, 60)
                out["list_during_spawn_ms"] = (time.perf_counter_ns() - t0) * _MS
                deadline = time.monotonic() + 60
                while True:
                    mid = client.send(client.control, "gv_list_request",
                                      {"limit": 1, "state": "blocked"})
                    parked = client.recv_reply(client.control, mid, 60).get("total", 0)
                    if parked >= gvthreads:
                        break
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{gvthreads} GVThreads not all parked in 60 s")
                    time.sleep(0.05)
                out["parked_after_s"] = (time.perf_counter_ns() - t0) * 1e-9
                time.sleep(0.2)

                def ctl():
                    mid = client.send(client.control, "gv_list_request", {"limit": 100})
                    c = client.recv_reply(client.control, mid, 60)
                    if (c.get("status") != "ok" or len(c.get("items", ())) != 100
                            or c.get("total", 0) < gvthreads):
                        raise RuntimeError(f"gv_list: {str(c)[:300]}")
                ctl_what = "gv_list_request limit=100"
                out["rss_spawned_kb"] = rss_spawned
            else:
                def ctl():
                    mid = client.send(client.control, "kernel_info_request", {})
                    client.recv_reply(client.control, mid, 60)
                ctl_what = "kernel_info_request on control"
            ctl()                                   # first one: warm-up
            lst = _round_trips(ctl, lists)
        finally:
            _stop(proc, client)
        out.update({
            "start": statistics.median(start_ms),
            "exec_p50": _pct(ex, 50), "exec_p99": _pct(ex, 99), "exec_max": ex[-1],
            "info_p50": _pct(inf, 50), "info_p99": _pct(inf, 99), "info_max": inf[-1],
            "rss": rss / 1024.0,
            "list_p50": _pct(lst, 50), "list_p99": _pct(lst, 99), "list_what": ctl_what,
            "n": n, "lists": lists, "starts": starts, "warmup": warmup,
        })
        return out
    finally:
        gc.enable()
        shutil.rmtree(tmp, ignore_errors=True)


def session(impl: str, metric: str, **params):
    """``metric`` of one session with ``impl`` (the n-th child asking for a metric of a
    side reads that side's n-th session, made by whichever child needed it first)."""
    return shared_figure("kernel", {"impl": impl, **params}, metric, metric,
                         lambda: _session(impl, **params))


# -- the figures -----------------------------------------------------------------------

_SESSION = {"starts": 5, "warmup": 50, "n": 500, "lists": 20, "gvthreads": 100_000}
_SESSION_Q = {"starts": 3, "warmup": 20, "n": 100, "lists": 10}

_FIGS = [
    # metric, unit, targets, doc
    ("start", "ms", (Target("ratio", "<=", 0.6),),
     "Popen to the first kernel_info_reply, median of the session's starts"),
    ("exec_p50", "ms", (Target("ratio", "<=", 0.3),),
     "execute `1+1`: send to execute_reply and iopub idle, p50"),
    ("exec_p99", "ms", (),
     "execute `1+1`: send to execute_reply and iopub idle, p99"),
    ("info_p50", "ms", (Target("ratio", "<=", 0.5),),
     "kernel_info_request on shell, send to reply, p50"),
    ("info_p99", "ms", (),
     "kernel_info_request on shell, send to reply, p99"),
    ("rss", "MiB", (),
     "VmRSS of the idle kernel process after the above (informative)"),
    ("list_p50", "ms", (Target("value", "<=", 50.0),),
     "gv_list_request limit=100 on control with 100,000 parked GVThreads, p50 "
     "(ipykernel: kernel_info on control, for scale)"),
    ("list_p99", "ms", (Target("value", "<=", 50.0),),
     "the same, p99; target <= 50 ms"),
]


FIGURES = [
    Figure(f"kernel.{metric}", unit,
           ours=Side("gvkernel", "session", {"impl": "gvkernel", "metric": metric,
                                             **_SESSION}, _SESSION_Q),
           peer=Side("ipykernel", "session", {"impl": "ipykernel", "metric": metric,
                                              **_SESSION}, _SESSION_Q),
           targets=targets, doc=doc)
    for metric, unit, targets, doc in _FIGS
]
