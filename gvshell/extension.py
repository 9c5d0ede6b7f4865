"""The IPython extension: `%load_ext gvshell` in IPython or in a notebook.

Registers %gvspawn / %%gvspawn, %gvps, %gvstack, %gvchan, %gvcancel, %gvstats and %gvtop.
By default they work on an in-process runtime (a `gvthread.Runtime` made on first use,
published in the user namespace as `gvruntime`); `%gvconnect FILE` points them at a
running gvkernel instead (`%gvconnect` with no argument goes back to in-process).

Both back ends answer the same gv_* requests (docs/protocol.md) and the magics render the
replies with gvkernel.tables, so what `%gvps` prints here is what gvshell prints.
This is the one place where gvshell imports the runtime, and only when a magic needs the
in-process back end.
"""
from __future__ import annotations

import queue
import shlex
import sys
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Optional

from IPython.core.error import UsageError

from gvkernel import tables
from gvkernel.protocol import parse_gvps, parse_ids


class LocalBackend:
    """gv_* requests answered by an in-process runtime."""

    def __init__(self, user_ns: dict):
        import gvthread
        self.gvthread = gvthread
        self.runtime = gvthread.Runtime()
        self.user_ns = user_ns
        user_ns.setdefault("gvruntime", self.runtime)
        self.counter = 0

    def request(self, msg_type: str, content: dict, timeout: Optional[float] = None) -> dict:
        """The reply content (in-process: timeout is not needed, and ignored)."""
        from gvkernel import inspection
        rt = self.runtime
        try:
            if msg_type == "gv_spawn_request":
                h = self.spawn(content["code"], content.get("name"),
                               content.get("priority", "normal"))
                reply = {"id": h.id, "name": h.name, "handle": h}
            else:
                reply = inspection.answer(rt, msg_type, content)
        except (inspection.RequestError, KeyError) as e:
            return {"status": "error", "ename": type(e).__name__, "evalue": str(e)}
        reply["status"] = "ok"
        return reply

    def spawn(self, code: str, name: Optional[str], priority: Any):
        import ast
        import linecache
        from gvthread._types import coerce_priority
        gvthread = self.gvthread
        self.counter += 1
        filename = f"<gvspawn-{self.counter}>"
        linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
        tree = ast.parse(code, filename, "exec")
        expr = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            expr = gvthread.compile(ast.Expression(tree.body.pop().value), filename, "eval")
        body = gvthread.compile(tree, filename, "exec")
        ns = self.user_ns

        def task():
            exec(body, ns)
            return eval(expr, ns) if expr is not None else None

        label = name or (code.strip().splitlines() or ["gvspawn"])[0][:40]
        return self.runtime.spawn(task, name=label, priority=coerce_priority(priority))

    def close(self) -> None:
        self.runtime.shutdown(wait=False)


class RemoteBackend:
    """gv_* requests sent to a gvkernel over its control channel.

    Threads: `request` runs on IPython's thread and owns the control socket (under
    _lock); the printer thread alone reads iopub. `close` stops the printer and joins it
    before the sockets are closed (a socket closed under a thread inside a read of it is
    a crash, not an error).

    _mine holds the ids of our gv_spawn_requests whose output is printed here: an id is
    forgotten at its GVThread's exit event (the last message with it as parent), and at
    most MAX_MINE are kept (the oldest forgotten first: a GVThread that never ends must
    not grow it for ever).
    """

    #: How many spawn requests' output is followed at once (see the class docstring).
    MAX_MINE = 1000

    def __init__(self, connection_file: str):
        from jupyter_client import BlockingKernelClient
        kc = BlockingKernelClient(connection_file=connection_file)
        kc.load_connection_file()
        kc.start_channels()
        kc.wait_for_ready(timeout=10)
        self.kc = kc
        self.file = connection_file
        self._lock = threading.Lock()
        self._printer = threading.Thread(target=self._print_output, daemon=True,
                                         name="gvconnect-output")
        self._stop = threading.Event()
        self._mine: "OrderedDict[str, None]" = OrderedDict()
        self._mine_lock = threading.Lock()
        self._printer.start()

    def request(self, msg_type: str, content: dict, timeout: Optional[float] = 5.0) -> dict:
        timeout = 5.0 if timeout is None else timeout
        with self._lock:
            msg = self.kc.session.msg(msg_type, content)
            mid = msg["header"]["msg_id"]
            if msg_type == "gv_spawn_request":
                with self._mine_lock:
                    self._mine[mid] = None
                    while len(self._mine) > self.MAX_MINE:
                        self._mine.popitem(last=False)
            self.kc.session.send(self.kc.control_channel.socket, msg)
            deadline = time.monotonic() + timeout
            while True:
                try:
                    reply = self.kc.control_channel.get_msg(
                        timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    raise TimeoutError(f"no reply from the kernel in {timeout:g} s") from None
                if reply["parent_header"].get("msg_id") == mid:
                    return reply["content"]

    def following(self) -> int:
        """How many spawn requests' output is being followed (for tests)."""
        with self._mine_lock:
            return len(self._mine)

    def _print_output(self) -> None:
        """Print the output of GVThreads this extension spawned remotely, as it comes."""
        while not self._stop.is_set():
            try:
                # the channel's own get_msg: kc.get_iopub_msg would make this thread an
                # asyncio loop (jupyter_core's run_sync) that nothing closes
                msg = self.kc.iopub_channel.get_msg(timeout=0.2)
            except Exception:
                continue
            pid = msg["parent_header"].get("msg_id")
            with self._mine_lock:
                if pid not in self._mine:
                    continue
            if msg["msg_type"] == "stream":
                gv = msg["metadata"].get("gvthread", {})
                prefix = f"[{gv.get('id')} {gv.get('name', '')}] " if gv else ""
                stream = sys.stderr if msg["content"].get("name") == "stderr" else sys.stdout
                for line in msg["content"].get("text", "").splitlines():
                    print(prefix + line, file=stream)
                if gv.get("event") == "exit":
                    with self._mine_lock:
                        self._mine.pop(pid, None)

    def close(self) -> None:
        self._stop.set()
        if self._printer.is_alive() and threading.current_thread() is not self._printer:
            self._printer.join(5.0)
        if self._printer.is_alive():  # stuck in a print: leave its socket to the GC
            return
        self.kc.stop_channels()


def _usage(parse, *args):
    """parse(*args), its ValueError as IPython's UsageError."""
    try:
        return parse(*args)
    except ValueError as e:
        raise UsageError(str(e)) from None


_OPT_USAGE = "usage: %gvspawn [--name N] [--priority P] CODE"


class GVMagics:
    def __init__(self, shell: Any):
        self.shell = shell
        self.backend: Any = None

    def _backend(self):
        if self.backend is None:
            self.backend = LocalBackend(self.shell.user_ns)
        return self.backend

    def _ok(self, reply: dict) -> dict:
        if reply.get("status") != "ok":
            raise UsageError(f"{reply.get('ename', 'Error')}: {reply.get('evalue', '')}")
        return reply

    def gvconnect(self, line: str) -> None:
        path = line.strip()
        if self.backend is not None and isinstance(self.backend, RemoteBackend):
            self.backend.close()
            self.backend = None
        if not path:
            print("gv magics: in-process runtime")
            return
        from jupyter_client import find_connection_file
        try:
            path = find_connection_file(path)
        except OSError as e:
            raise UsageError(f"%gvconnect: {e}") from None
        self.backend = RemoteBackend(path)
        print(f"gv magics: connected to the kernel of {path}")

    def gvspawn(self, line: str, cell: Optional[str] = None) -> Any:
        from gvkernel.protocol import parse_spawn_args
        opts, code = parse_spawn_args(line)
        if cell is not None:
            if code:
                    raise UsageError("%%gvspawn takes options only; the code is the cell")
            code = cell
        if not code.strip():
            raise UsageError(_OPT_USAGE)
        reply = self._ok(self._backend().request("gv_spawn_request", {
            "code": code, "name": opts.get("name"), "priority": opts.get("priority", "normal")}))
        if "handle" in reply:
            return reply["handle"]
        print(f"GVThread {reply['id']} ({reply['name']}) started in the kernel")
        return None

    def gvps(self, line: str) -> None:
        content = _usage(parse_gvps, shlex.split(line))
        print(tables.gvps(self._ok(self._backend().request("gv_list_request", content))))

    def _ids(self, line: str, what: str) -> list[int]:
        return _usage(parse_ids, line.split(), what)

    def gvstack(self, line: str) -> None:
        ids = self._ids(line, "gvstack")
        print(tables.gvstack(self._ok(self._backend().request("gv_stack_request",
                                                              {"ids": ids}))))

    def gvchan(self, line: str) -> None:
        content = {"id": self._ids(line, "gvchan")[0]} if line.strip() else {}
        print(tables.gvchan(self._ok(self._backend().request("gv_channels_request", content))))

    def gvstats(self, line: str) -> None:
        print(tables.gvstats(self._ok(self._backend().request("gv_stats_request", {}))))

    def gvcancel(self, line: str) -> None:
        ids = self._ids(line, "gvcancel")
        reply = self._ok(self._backend().request("gv_cancel_request", {"ids": ids}))
        print(tables.gvcancel(reply))

    def gvtop(self, line: str) -> None:
        from gvshell.top import run_top
        backend = self._backend()
        run_top(lambda t, c, timeout: self._ok(backend.request(t, c, timeout)))


def load_ipython_extension(ip: Any) -> None:
    magics = GVMagics(ip)
    reg: Callable = ip.register_magic_function
    reg(magics.gvspawn, "line_cell", "gvspawn")
    for name in ("gvps", "gvstack", "gvchan", "gvstats", "gvcancel", "gvconnect", "gvtop"):
        reg(getattr(magics, name), "line", name)
    ip._gvshell_magics = magics


def unload_ipython_extension(ip: Any) -> None:
    magics = getattr(ip, "_gvshell_magics", None)
    if magics is not None and magics.backend is not None:
        magics.backend.close()
