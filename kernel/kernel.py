"""The kernel: sockets, threads, request dispatch, and code execution as GVThreads.

Threads of a kernel process (docs/ARCHITECTURE.md draws them):
- main:      the shell ROUTER loop; answers everything but execute_request itself;
- executor:  runs execute_requests one at a time, in order: each cell is a GVThread,
             which this OS thread joins, so the shell loop stays free while code runs
             (complete, inspect and gv_* are answered during a long cell);
- control:   the control ROUTER loop (interrupt, shutdown, gv_*), so that these are
             served whatever the shell or executor are doing;
- iopub:     the publisher (gvkernel.iopub);
- heartbeat: zmq.proxy echoing on its own socket, without the GIL;
- the runtime's workers, timer and spare threads (gvthread).

Nothing a user's code does may take these down: each cell and each background GVThread
catches everything it raises (BaseException included) and reports it; every handler
runs under a guard that turns a bug into an error reply and a log line.
"""
from __future__ import annotations

import _queue
import _thread
import ast
import builtins
import collections
import contextvars
import linecache
import logging
import os
import pprint
import signal
import sys
import threading
import time
import traceback
import types
from typing import Any, Callable, Optional

import zmq

import gvthread
from gvthread._types import coerce_priority
from gvkernel import inspection, introspect
from gvkernel.history import History
from gvkernel.iopub import IOPub, truncate
from gvkernel.protocol import GV_PROTOCOL_VERSION
from gvkernel.session import MessageError, Session

log = logging.getLogger("gvkernel")

KERNEL_VERSION = "0.1.0"
_HERE = os.path.dirname(os.path.abspath(__file__))
MAX_REPR = 1 << 20


# The request a GVThread's output belongs to, inherited by the GVThreads it spawns
# (gvthread copies the spawner's context), so the output of a GVThread started by a
# %gvspawn'ed one goes to the same request, tagged with its own id.
_output_ctx: contextvars.ContextVar = contextvars.ContextVar("gvkernel_output", default=None)


class StdinNotImplementedError(RuntimeError):
    """input() in a request that did not allow stdin (as ipykernel says it)."""


# Requests whose handling publishes nothing on iopub but its status.
_SILENT = frozenset({"kernel_info_request", "complete_request", "inspect_request",
                     "is_complete_request", "history_request", "comm_info_request",
                     "interrupt_request", "gv_list_request", "gv_stack_request",
                     "gv_channels_request", "gv_stats_request", "gv_cancel_request"})


def _reply_type(msg_type: str) -> str:
    return msg_type[: -len("_request")] + "_reply" if msg_type.endswith("_request") else (
        msg_type + "_reply")


class _Ctx:
    """Where the output of one GVThread goes: the request that spawned it."""

    __slots__ = ("parent", "metadata", "idents")

    def __init__(self, parent: dict, gid: int, name: str, idents: Optional[list] = None):
        self.parent = parent
        self.metadata = {"gvthread": {"id": gid, "name": name}}
        self.idents = idents


class OutStream:
    """sys.stdout / sys.stderr of the kernel process: each write goes to iopub, tagged
    with the writing GVThread and the request that started it."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, kernel: "Kernel", name: str):
        self._kernel = kernel
        self.name = name

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        if s:
            parent, metadata = self._kernel.output_target()
            self._kernel.iopub.stream(self.name, s, parent, metadata)
        return len(s)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def readable(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def fileno(self) -> int:
        import io
        raise io.UnsupportedOperation("fileno: kernel output goes to iopub, not to a file")

    @property
    def closed(self) -> bool:
        return False


def mime_bundle(obj: Any) -> dict:
    """What a value displays as: text/plain, and the rich forms its _repr_*_ offer."""
    data: dict[str, Any] = {}
    rich = getattr(type(obj), "_repr_mimebundle_", None)
    if rich is not None and not isinstance(obj, type):
        try:
            got = obj._repr_mimebundle_()
            if isinstance(got, tuple):
                got = got[0]
            if isinstance(got, dict):
                data.update({k: v for k, v in got.items() if isinstance(k, str)})
        except Exception:
            pass
    if not isinstance(obj, type):
        for meth, mime in (("_repr_html_", "text/html"), ("_repr_markdown_", "text/markdown"),
                           ("_repr_svg_", "image/svg+xml"), ("_repr_png_", "image/png"),
                           ("_repr_jpeg_", "image/jpeg"), ("_repr_latex_", "text/latex"),
                           ("_repr_json_", "application/json")):
            fn = getattr(type(obj), meth, None)
            if fn is None or mime in data:
                continue
            try:
                v = getattr(obj, meth)()
            except Exception:
                continue
            if v is None:
                continue
            if isinstance(v, bytes):
                import base64
                v = base64.b64encode(v).decode("ascii")
            data[mime] = v
    if "text/plain" not in data:
        if isinstance(obj, (dict, list, tuple, set, frozenset)) and len(obj) < 10_000:
            text = pprint.pformat(obj, width=79)
        else:
            text = repr(obj)
        data["text/plain"] = truncate(text, MAX_REPR)
    return data


def format_exception(exc: BaseException) -> tuple[str, str, list[str]]:
    """(ename, evalue, traceback lines) with the kernel's own frames left out."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_HERE):
        tb = tb.tb_next
    lines = traceback.format_exception(type(exc), exc, tb)
    return type(exc).__name__, str(exc), [truncate("".join(lines), MAX_REPR).rstrip("\n")]


class Kernel:
    def __init__(self, info: dict, *, workers: Optional[int] = None,
                 curve: Optional[dict] = None, history_path: Optional[str] = None,
                 max_gvthreads: int = 1_000_000):
        self.info = info
        self.session = Session(info.get("key", "").encode(), info.get("signature_scheme",
                                                                       "hmac-sha256"))
        self.ctx = zmq.Context()
        self.curve = curve
        self._auth = None
        self.started = time.time()
        self.runtime = gvthread.Runtime(workers=workers, max_gvthreads=max_gvthreads)
        self.history = History(history_path)
        self.execution_count = 1
        self.cell_counter = 0
        self._compiled: collections.OrderedDict[str, tuple[Any, Any]] = collections.OrderedDict()
        self.user_ns: dict[str, Any] = {}
        self.user_module = types.ModuleType("__main__")
        self.user_ns = self.user_module.__dict__
        self.contexts: dict[int, _Ctx] = {}
        self.last_parent: dict = {}
        self.foreground: Optional[gvthread.Handle] = None
        self.foreground_ctx: Optional[_Ctx] = None
        self.interrupted = False
        self._exec_q: Any = _queue.SimpleQueue()
        self._stdin_lock = _thread.allocate_lock()
        # The pending input()'s abort flag: a new one-item list per call (raw_input).
        self._stdin_abort: list[bool] = [False]
        self._stop = threading.Event()
        self.restart = False
        # Set by a cell whose value is the bare name `exit`/`quit`: its execute_reply
        # carries an ask_exit payload, as IPython's autocall exit does.
        self._ask_exit = False
        self._bind()
        self.iopub = IOPub(self.session, self.iopub_socket)
        from gvkernel.magics import Magics
        self.magics = Magics(self)
        self._init_namespace()
        self.handlers: dict[str, Callable[[str, list, dict], None]] = {
            "kernel_info_request": self.kernel_info,
            "execute_request": self.queue_execute,
            "complete_request": self.complete,
            "inspect_request": self.inspect,
            "is_complete_request": self.is_complete,
            "history_request": self.history_request,
            "comm_info_request": self.comm_info,
            "comm_open": self.comm_open,
            "comm_msg": self.ignore,
            "comm_close": self.ignore,
            "interrupt_request": self.interrupt_request,
            "shutdown_request": self.shutdown_request,
            "gv_list_request": self.gv_request,
            "gv_stack_request": self.gv_request,
            "gv_channels_request": self.gv_request,
            "gv_stats_request": self.gv_request,
            "gv_cancel_request": self.gv_request,
            "gv_spawn_request": self.gv_request,
        }

    # -- sockets -----------------------------------------------------------
    def _socket(self, kind: int) -> zmq.Socket:
        s = self.ctx.socket(kind)
        s.linger = 1000
        if self.curve:
            s.curve_secretkey = self.curve["curve_server_secret"].encode()
            s.curve_publickey = self.curve["curve_server_public"].encode()
            s.curve_server = True
        return s

    def _bind(self) -> None:
        if self.curve:
            from zmq.auth.thread import ThreadAuthenticator
            allowed = self.curve["curve_client_public"].encode()

            class _Only:
                def callback(self, domain: str, key: bytes) -> bool:
                    return key == allowed

            self._auth = ThreadAuthenticator(self.ctx, log=logging.getLogger("gvkernel.auth"))
            self._auth.start()
            self._auth.configure_curve_callback(domain="*", credentials_provider=_Only())
        ip = self.info.get("ip", "127.0.0.1")
        self.shell_socket = self._socket(zmq.ROUTER)
        self.control_socket = self._socket(zmq.ROUTER)
        self.stdin_socket = self._socket(zmq.ROUTER)
        self.iopub_socket = self._socket(zmq.PUB)
        self.hb_socket = self._socket(zmq.ROUTER)
        for name, sock in (("shell_port", self.shell_socket),
                           ("control_port", self.control_socket),
                           ("stdin_port", self.stdin_socket), ("iopub_port", self.iopub_socket),
                           ("hb_port", self.hb_socket)):
            port = int(self.info.get(name) or 0)
            if port:
                sock.bind(f"tcp://{ip}:{port}")
            else:
                port = sock.bind_to_random_port(f"tcp://{ip}")
            self.info[name] = port

    # -- lifecycle ---------------------------------------------------------
    def start(self) -> None:
        """Serve until a shutdown_request; runs the shell loop on this thread."""
        self.iopub.start()
        _thread.start_new_thread(self._heartbeat, ())
        _thread.start_new_thread(self._serve, (self.control_socket, "control"))
        _thread.start_new_thread(self._executor, ())
        self._orig_streams = (sys.stdout, sys.stderr)
        sys.stdout = OutStream(self, "stdout")  # type: ignore[assignment]
        sys.stderr = OutStream(self, "stderr")  # type: ignore[assignment]
        self._install_builtins()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, lambda *_: self.interrupt())
        self.iopub.status("starting", None)
        threading.Timer(0.5, self._warm_up).start()
        self._serve(self.shell_socket, "shell")

    def _warm_up(self) -> None:
        try:
            introspect.warm_up()
        except Exception:
            log.exception("warm-up failed")

    def _heartbeat(self) -> None:
        try:
            zmq.proxy(self.hb_socket, self.hb_socket)
        except zmq.ZMQError:
            pass

    def close(self) -> None:
        self.iopub.stop()
        try:
            self.runtime.shutdown(wait=False)
        except Exception:
            log.exception("runtime shutdown")
        self.history.close()
        if self._auth is not None:
            self._auth.stop()

    # -- the request loop ----------------------------------------------------
    def _serve(self, sock: zmq.Socket, channel: str) -> None:
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        while not self._stop.is_set():
            try:
                if not poller.poll(100):
                    continue
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                continue
            except zmq.ZMQError as e:
                if self._stop.is_set():
                    return
                log.error("%s socket: %s", channel, e)
                time.sleep(0.05)
                continue
            try:
                idents, msg = self.session.deserialize(frames)
            except MessageError:
                continue
            self.dispatch(sock, channel, idents, msg)

    def dispatch(self, sock: zmq.Socket, channel: str, idents: list, msg: dict) -> None:
        msg_type = msg["msg_type"]
        handler = self.handlers.get(msg_type)
        msg["_socket"] = sock
        msg["_channel"] = channel
        if handler is None:
            self.reply(msg, idents, _reply_type(msg_type), {
                "status": "error", "ename": "UnknownMessageType",
                "evalue": f"unknown msg_type {msg_type!r}", "traceback": []})
            return
        if not isinstance(msg["content"], dict):
            msg["content"] = {}
        if msg_type == "execute_request":
            self.queue_execute(msg_type, idents, msg)
            return
        busy = msg_type not in ("comm_msg", "comm_close")
        # Handlers that publish nothing themselves send their status directly (see
        # gvkernel.iopub); the others keep it in order with what they publish.
        status = self.iopub.status_now if msg_type in _SILENT else self.iopub.status
        if busy:
            status("busy", msg["header"])
        try:
            handler(msg_type, idents, msg)
        except Exception as e:
            log.exception("handling %s", msg_type)
            ename, evalue, tb = format_exception(e)
            self.reply(msg, idents, _reply_type(msg_type), {
                "status": "error", "ename": ename, "evalue": evalue, "traceback": tb})
        finally:
            if busy:
                status("idle", msg["header"])

    def reply(self, msg: dict, idents: list, msg_type: str, content: dict,
              metadata: Optional[dict] = None) -> None:
        frames = self.session.serialize(msg_type, content, msg["header"], metadata, idents)
        try:
            msg["_socket"].send_multipart(frames)
        except zmq.ZMQError as e:
            log.error("cannot send %s: %s", msg_type, e)

    # -- simple requests -----------------------------------------------------
    def kernel_info(self, msg_type: str, idents: list, msg: dict) -> None:
        v = sys.version_info
        self.reply(msg, idents, "kernel_info_reply", {
            "status": "ok", "protocol_version": "5.3", "implementation": "gvkernel",
            "implementation_version": KERNEL_VERSION,
            "language_info": {
                "name": "python", "version": f"{v.major}.{v.minor}.{v.micro}",
                "mimetype": "text/x-python", "file_extension": ".py",
                "pygments_lexer": "ipython3", "codemirror_mode": {"name": "ipython",
                                                                 "version": 3},
                "nbconvert_exporter": "python"},
            "banner": (f"gvkernel {KERNEL_VERSION}: Python {v.major}.{v.minor}.{v.micro} "
                       f"on GVThread, {self.runtime.workers} workers\n"
                       "%gvspawn CODE runs CODE in the background; %gvps lists GVThreads."),
            "help_links": [], "debugger": False,
            "gvthread": {"protocol_version": GV_PROTOCOL_VERSION,
                         "workers": self.runtime.workers}})

    def complete(self, msg_type: str, idents: list, msg: dict) -> None:
        c = msg["content"]
        code = c.get("code", "")
        pos = c.get("cursor_pos", len(code))
        if not isinstance(code, str) or not isinstance(pos, int):
            raise ValueError("complete_request needs code (str) and cursor_pos (int)")
        self.reply(msg, idents, "complete_reply",
                   introspect.complete(code, pos, self.user_ns, self.magics.names()))

    def inspect(self, msg_type: str, idents: list, msg: dict) -> None:
        c = msg["content"]
        code = c.get("code", "")
        pos = c.get("cursor_pos", len(code))
        if not isinstance(code, str) or not isinstance(pos, int):
            raise ValueError("inspect_request needs code (str) and cursor_pos (int)")
        detail = c.get("detail_level", 0)
        self.reply(msg, idents, "inspect_reply",
                   introspect.inspect_request(code, pos, 1 if detail else 0, self.user_ns))

    def is_complete(self, msg_type: str, idents: list, msg: dict) -> None:
        code = msg["content"].get("code", "")
        if not isinstance(code, str):
            raise ValueError("is_complete_request needs code (str)")
        status, indent = introspect.check_complete(code)
        content: dict[str, Any] = {"status": status}
        if indent is not None:
            content["indent"] = indent
        self.reply(msg, idents, "is_complete_reply", content)

    def history_request(self, msg_type: str, idents: list, msg: dict) -> None:
        self.reply(msg, idents, "history_reply",
                   {"status": "ok", "history": self.history.request(msg["content"])})

    def comm_info(self, msg_type: str, idents: list, msg: dict) -> None:
        self.reply(msg, idents, "comm_info_reply", {"status": "ok", "comms": {}})

    def comm_open(self, msg_type: str, idents: list, msg: dict) -> None:
        # No comm targets are registered: close it at once, as the spec asks.
        cid = msg["content"].get("comm_id", "")
        self.iopub.send("comm_close", {"comm_id": cid, "data": {}}, msg["header"])

    def ignore(self, msg_type: str, idents: list, msg: dict) -> None:
        pass

    def interrupt_request(self, msg_type: str, idents: list, msg: dict) -> None:
        self.interrupt()
        self.reply(msg, idents, "interrupt_reply", {"status": "ok"})

    def interrupt(self) -> None:
        """Cancel the foreground cell (KeyboardInterrupt in it); background GVThreads
        are left alone."""
        self.interrupted = True
        self._stdin_abort[0] = True
        fg = self.foreground
        if fg is not None:
            fg.cancel()

    def shutdown_request(self, msg_type: str, idents: list, msg: dict) -> None:
        restart = bool(msg["content"].get("restart", False))
        content = {"status": "ok", "restart": restart}
        self.reply(msg, idents, "shutdown_reply", content)
        self.iopub.send("shutdown_reply", content, msg["header"])
        self.restart = restart
        self._stop.set()

    def wait_stopped(self) -> None:
        self._stop.wait()

    # -- gv_* ----------------------------------------------------------------
    def gv_request(self, msg_type: str, idents: list, msg: dict) -> None:
        c = msg["content"]
        kind = msg_type[: -len("_request")]
        try:
            if kind == "gv_list":
                content = inspection.gv_list(self.runtime, c)
            elif kind == "gv_stack":
                content = inspection.gv_stack(self.runtime, c)
            elif kind == "gv_channels":
                content = inspection.gv_channels(self.runtime, c)
            elif kind == "gv_stats":
                content = inspection.gv_stats(self.runtime, c, {"kernel": self.kernel_stats()})
            elif kind == "gv_cancel":
                content = inspection.gv_cancel(self.runtime, c)
            else:
                content = self.gv_spawn(msg, idents, c)
        except (inspection.RequestError, ValueError, TypeError, SyntaxError,
                gvthread.SlotsExhausted) as e:  # a full runtime is the user's, not a bug
            self.reply(msg, idents, _reply_type(msg_type), {
                "status": "error", "ename": type(e).__name__, "evalue": str(e),
                "traceback": [], "protocol": GV_PROTOCOL_VERSION})
            return
        content["status"] = "ok"
        content["protocol"] = GV_PROTOCOL_VERSION
        self.reply(msg, idents, _reply_type(msg_type), content)

    def kernel_stats(self) -> dict:
        return {"uptime": time.time() - self.started, "security": self.session.security_stats(),
                "iopub": {"sent": self.iopub.sent, "dropped_bytes": self.iopub.dropped_bytes},
                "execution_count": self.execution_count}

    def gv_spawn(self, msg: dict, idents: list, c: dict) -> dict:
        code = c.get("code")
        if not isinstance(code, str):
            raise inspection.RequestError("code must be a string")
        name = c.get("name")
        if name is not None and not isinstance(name, str):
            raise inspection.RequestError("name must be a string")
        h = self.spawn_background(code, msg["header"], name=name,
                                  priority=c.get("priority", "normal"))
        return {"id": h.id, "name": h.name}

    # -- execution -------------------------------------------------------------
    def _init_namespace(self) -> None:
        ns = self.user_ns
        ns.update({"__name__": "__main__", "__builtins__": builtins,
                   "get_ipython": lambda: self.magics, "display": self.display,
                   "In": [""], "Out": {}, "_": None, "__": None, "___": None,
                   "_ih": None, "_oh": None, "exit": self._no_exit, "quit": self._no_exit})
        ns["_ih"] = ns["In"]
        ns["_oh"] = ns["Out"]
        sys.modules["__main__"] = self.user_module

    def _no_exit(self, *args: Any) -> None:
        raise SystemExit("exit() does not stop the kernel: ask the client to shut it down "
                         "(gvshell: Ctrl-D)")

    def _install_builtins(self) -> None:
        builtins.input = self.raw_input  # type: ignore[assignment]
        try:
            import getpass
            getpass.getpass = lambda prompt="Password: ", stream=None: self.raw_input(
                prompt, password=True)
        except ImportError:
            pass

    def output_target(self) -> tuple[Optional[dict], Optional[dict]]:
        """(parent header, metadata) for output written by the caller right now."""
        gid = gvthread.current_id()
        if gid is not None:
            ctx = self.contexts.get(gid)
            if ctx is not None:
                return ctx.parent, ctx.metadata
            inherited = _output_ctx.get()
            h = gvthread.current_handle()
            tag = {"gvthread": {"id": gid, "name": h.name if h is not None else ""}}
            return (inherited.parent if inherited is not None else self.last_parent), tag
        return self.last_parent, None

    def display(self, *objs: Any, raw: bool = False, metadata: Optional[dict] = None,
                **kwargs: Any) -> None:
        """Publish each object as display_data (raw: each is already a MIME bundle)."""
        parent, meta = self.output_target()
        for obj in objs:
            data = obj if raw and isinstance(obj, dict) else mime_bundle(obj)
            md = dict(metadata or {})
            if meta:
                md.update(meta)
            # Tagged in the message's metadata, as stream output is (the GVThread that
            # displayed it), as well as in the display metadata.
            self.iopub.send("display_data", {"data": data, "metadata": md, "transient": {}},
                            parent, meta)

    def raw_input(self, prompt: str = "", password: bool = False) -> str:
        ctx = self.foreground_ctx
        gid = gvthread.current_id()
        if (ctx is None or ctx.idents is None or gid is None
                or self.foreground is None or self.foreground.id != gid):
            raise StdinNotImplementedError(
                "input() is only available to the foreground cell of a client that allows "
                "stdin")
        # A fresh flag per call: the _ask of an interrupted input() may still be polling
        # (up to 100 ms) with _stdin_lock held; clearing a shared flag here would revive
        # it, and this input() would wait for that lock forever.
        self._stdin_abort[0] = True
        abort = self._stdin_abort = [False]
        h = gvthread.spawn_blocking(self._ask, str(prompt), password, ctx, abort)
        return h.join()

    def _ask(self, prompt: str, password: bool, ctx: _Ctx, abort: list) -> str:
        with self._stdin_lock:
            sock = self.stdin_socket
            while True:  # drop replies to earlier, abandoned requests
                try:
                    sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
            sock.send_multipart(self.session.serialize(
                "input_request", {"prompt": prompt, "password": password}, ctx.parent,
                None, ctx.idents))
            while not abort[0] and not self._stop.is_set():
                if not sock.poll(100):
                    continue
                try:
                    _, msg = self.session.deserialize(sock.recv_multipart())
                except MessageError:
                    continue
                if msg["msg_type"] == "input_reply":
                    value = msg["content"].get("value", "")
                    return value if isinstance(value, str) else str(value)
            raise KeyboardInterrupt("input() interrupted")

    def queue_execute(self, msg_type: str, idents: list, msg: dict) -> None:
        self._exec_q.put((idents, msg))

    def _executor(self) -> None:
        while not self._stop.is_set():
            idents, msg = self._exec_q.get()
            if msg is None:
                return
            self.iopub.status("busy", msg["header"])
            try:
                self.execute(idents, msg)
            except Exception as e:
                log.exception("execute_request")
                ename, evalue, tb = format_exception(e)
                self.reply(msg, idents, "execute_reply", {
                    "status": "error", "ename": ename, "evalue": evalue, "traceback": tb,
                    "execution_count": self.execution_count})
            finally:
                self.iopub.status("idle", msg["header"])

    def compile_cell(self, code: str, filename: str) -> tuple[Any, Any]:
        """(code object of the statements, code object of a trailing expression or None).
        Both are compiled with gvthread.compile, so loops in them can be preempted."""
        source = introspect.transform_cell(code)
        lines = source.splitlines(keepends=True)
        linecache.cache[filename] = (len(source), None, lines, filename)
        tree = ast.parse(source, filename, "exec")
        expr = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = tree.body.pop()
            expr = gvthread.compile(ast.Expression(last.value), filename, "eval")
        body = gvthread.compile(tree, filename, "exec")
        return body, expr

    def _compile_cached(self, code: str, filename: str) -> tuple[Any, Any]:
        """compile_cell, remembering the last cells run: a cell run again (a loop of
        `1+1` from a client, a notebook rerun) skips parsing and instrumenting. A hit
        keeps the filename of its first run, whose linecache entry holds the same
        source, so tracebacks still show the right lines."""
        hit = self._compiled.get(code)
        if hit is not None:
            self._compiled.move_to_end(code)
            return hit
        compiled = self.compile_cell(code, filename)
        self._compiled[code] = compiled
        if len(self._compiled) > 256:
            self._compiled.popitem(last=False)
        return compiled

    def execute(self, idents: list, msg: dict) -> None:
        c = msg["content"]
        parent = msg["header"]
        code = c.get("code", "")
        if not isinstance(code, str):
            raise TypeError("execute_request: code must be a string")
        silent = bool(c.get("silent", False))
        store = bool(c.get("store_history", not silent)) and not silent
        n = self.execution_count
        self.last_parent = parent
        if not silent:
            self.iopub.send("execute_input", {"code": code, "execution_count": n}, parent)
        self.cell_counter += 1
        filename = f"<cell-{self.cell_counter}>"
        if store:
            self.execution_count += 1
            self.user_ns["In"].append(code)
            self.user_ns[f"_i{n}"] = code
            self.history.store(n, code)
        self.interrupted = False
        try:
            body, expr = self._compile_cached(code, filename)
        except (SyntaxError, ValueError, OverflowError, MemoryError, RecursionError) as e:
            result: tuple = ("error", *format_exception(e))
        else:
            result = self.run_foreground(body, expr, parent, idents, c, store, n)
        if result[0] == "ok":
            data = result[1]
            if data is not None and not silent:
                self.iopub.send("execute_result", {"execution_count": n, "data": data,
                                                   "metadata": {}}, parent)
            user_expr = self.user_expressions(c.get("user_expressions"))
            payload = [{"source": "ask_exit", "keepkernel": True}] if self._ask_exit else []
            self._ask_exit = False
            self.reply(msg, idents, "execute_reply", {
                "status": "ok", "execution_count": n, "user_expressions": user_expr,
                "payload": payload}, {"gvthread": {"id": result[2]}})
            return
        _, ename, evalue, tb = result[:4]
        if not silent:
            self.iopub.send("error", {"ename": ename, "evalue": evalue, "traceback": tb},
                            parent)
        if c.get("stop_on_error", True):
            self._abort_queued()
        self.reply(msg, idents, "execute_reply", {
            "status": "error", "execution_count": n, "ename": ename, "evalue": evalue,
            "traceback": tb, "user_expressions": {}, "payload": []})

    def _abort_queued(self) -> None:
        """As ipykernel: after an error, execute_requests already queued are answered
        'aborted' instead of run (a notebook's later cells depend on earlier ones)."""
        while True:
            try:
                idents, msg = self._exec_q.get_nowait()
            except _queue.Empty:
                return
            if msg is None:
                self._exec_q.put((None, None))
                return
            self.iopub.status("busy", msg["header"])
            self.reply(msg, idents, "execute_reply", {"status": "aborted",
                                                      "execution_count": self.execution_count})
            self.iopub.status("idle", msg["header"])

    def user_expressions(self, exprs: Any) -> dict:
        out: dict[str, Any] = {}
        if not isinstance(exprs, dict):
            return out
        for key, src in list(exprs.items())[:100]:
            try:
                value = eval(builtins.compile(str(src), "<user_expression>", "eval"),
                             self.user_ns)
                out[key] = {"status": "ok", "data": mime_bundle(value), "metadata": {}}
            except Exception as e:
                ename, evalue, tb = format_exception(e)
                out[key] = {"status": "error", "ename": ename, "evalue": evalue,
                            "traceback": tb}
        return out

    def run_foreground(self, body: Any, expr: Any, parent: dict, idents: list, content: dict,
                       store: bool, n: int) -> tuple:
        ns = self.user_ns

        ctx = _Ctx(parent, 0, "", idents if content.get("allow_stdin") else None)

        def cell() -> tuple:
            _output_ctx.set(ctx)
            try:
                exec(body, ns)
                if expr is None:
                    return ("ok", None)
                value = eval(expr, ns)
                if getattr(value, "__func__", None) is Kernel._no_exit:
                    # bare `exit`: ask the client to leave (it keeps the kernel running)
                    self._ask_exit = True
                    return ("ok", None)
                if value is None:
                    return ("ok", None)
                if store:
                    self._store_output(n, value)
                return ("ok", mime_bundle(value))
            except gvthread.Cancelled as e:
                if self.interrupted:
                    ki = KeyboardInterrupt()
                    ki.__traceback__ = e.__traceback__
                    return ("error", *format_exception(ki))
                return ("error", *format_exception(e))
            except BaseException as e:  # noqa: B036 - user code must not end the kernel
                return ("error", *format_exception(e))

        try:
            h = self.runtime.spawn(cell, name=f"cell-{n}")
        except Exception as e:
            return ("error", *format_exception(e))
        ctx.metadata = {"gvthread": {"id": h.id, "name": h.name}}
        self.contexts[h.id] = ctx
        self.foreground_ctx = ctx
        self.foreground = h
        try:
            while True:
                try:
                    result = h.join()
                    break
                except gvthread.Cancelled:
                    # join() from an OS thread does not raise this; be safe anyway.
                    continue
        except BaseException as e:
            result = ("error", *format_exception(e))
        finally:
            self.foreground = None
            self.foreground_ctx = None
            self.contexts.pop(h.id, None)
        if result[0] == "ok":
            return (*result, h.id)
        return result

    def _store_output(self, n: int, value: Any) -> None:
        ns = self.user_ns
        ns["Out"][n] = value
        ns["___"], ns["__"], ns["_"] = ns.get("__"), ns.get("_"), value
        ns[f"_{n}"] = value

    # -- background GVThreads ----------------------------------------------------
    def spawn_background(self, code: str, parent: dict, name: Optional[str] = None,
                         priority: Any = "normal") -> gvthread.Handle:
        """Start CODE as a GVThread in the user namespace; its output is tagged with its
        id and `parent`, and an iopub stream message reports how it ended."""
        prio = coerce_priority(priority)
        self.cell_counter += 1
        filename = f"<gvspawn-{self.cell_counter}>"
        body, expr = self.compile_cell(code, filename)
        ns = self.user_ns
        if not name:
            first = code.strip().splitlines()[0] if code.strip() else "gvspawn"
            name = first[:40]

        def task() -> Any:
            exec(body, ns)
            return eval(expr, ns) if expr is not None else None

        started = gvthread.Event()
        box: dict[str, Any] = {}

        def wrapper() -> Any:
            started.wait()
            _output_ctx.set(box["ctx"])
            return self._background(task, box["ctx"])

        h = self.runtime.spawn(wrapper, name=name, priority=prio)
        ctx = _Ctx(parent, h.id, h.name)
        box["ctx"] = ctx
        self.contexts[h.id] = ctx
        started.set()
        return h

    def _background(self, task: Callable[[], Any], ctx: _Ctx) -> Any:
        gv = dict(ctx.metadata["gvthread"])
        try:
            value = task()
        except BaseException as e:  # noqa: B036 - reported, never raised into the runtime
            ename, evalue, tb = format_exception(e)
            status = "cancelled" if isinstance(e, gvthread.Cancelled) else "error"
            gv.update(event="exit", status=status, ename=ename, evalue=evalue)
            text = f"[GVThread {gv['id']} ({gv['name']}) {status}]\n" + "\n".join(tb) + "\n"
            self.iopub.send("stream", {"name": "stderr", "text": text}, ctx.parent,
                            {"gvthread": gv})
            if status == "cancelled":
                raise
            return None
        else:
            result = None if value is None else truncate(repr(value), 4096)
            gv.update(event="exit", status="ok", result=result)
            text = f"[GVThread {gv['id']} ({gv['name']}) finished" + (
                f": {result}]\n" if result is not None else "]\n")
            self.iopub.send("stream", {"name": "stdout", "text": text}, ctx.parent,
                            {"gvthread": gv})
            return value
        finally:
            self.contexts.pop(gv["id"], None)
