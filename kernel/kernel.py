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
from gvkernel.session import MessageError, Session, dumps

log = logging.getLogger("gvkernel")

KERNEL_VERSION = "0.1.0"
_HERE = os.path.dirname(os.path.abspath(__file__))
MAX_REPR = 1 << 20
#: How long complete/inspect wait for the GVThread that looks at user objects.
INTROSPECT_TIMEOUT = 1.0
#: Cells whose source stays in linecache (for tracebacks); older ones are dropped.
MAX_CELL_SOURCES = 1000
#: A cell longer than this (characters) is not kept compiled for a rerun.
MAX_CACHED_SOURCE = 1 << 20


# The request a GVThread's output belongs to, inherited by the GVThreads it spawns
# (gvthread copies the spawner's context), so the output of a GVThread started by a
# %gvspawn'ed one goes to the same request, tagged with its own id.
_output_ctx: contextvars.ContextVar = contextvars.ContextVar("gvkernel_output", default=None)


class StdinNotImplementedError(RuntimeError):
    """input() in a request that did not allow stdin.  The same name as IPython's
    (IPython.core.error), which ipykernel raises and clients recognise by `ename`; not
    that class itself, because importing it loads all of IPython, too slow for the
    kernel's start and too deep for a GVThread's stack if it happens on first use."""


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


def _type_name(obj: Any) -> str:
    """The name of obj's type, without running user code (a metaclass may define
    __name__ as a property; type.__dict__'s descriptor is the C one)."""
    try:
        return str(type.__dict__["__name__"].__get__(type(obj)))
    except BaseException:  # noqa: B036 - cannot happen for real types; be safe anyway
        return "object"


def safe_str(obj: Any) -> str:
    """str(obj), or `<unprintable T>` if its __str__ raises anything (BaseException
    included: a user's __str__ may raise SystemExit or recurse)."""
    try:
        s = str(obj)
        return s if type(s) is str else f"<unprintable {_type_name(obj)}>"
    except BaseException:  # noqa: B036 - user code must not end the kernel
        return f"<unprintable {_type_name(obj)}>"


def format_exception(exc: BaseException) -> tuple[str, str, list[str]]:
    """(ename, evalue, traceback lines) with the kernel's own frames left out.  Never
    raises: the exception is the user's, and its __str__, __notes__ or traceback may
    raise anything; what cannot be formatted shows as `<unprintable T>`."""
    ename = _type_name(exc)
    evalue = safe_str(exc)
    try:
        tb = exc.__traceback__
        while tb is not None and tb.tb_frame.f_code.co_filename.startswith(_HERE):
            tb = tb.tb_next
        text = "".join(traceback.format_exception(type(exc), exc, tb))
    except BaseException:  # noqa: B036 - user code must not end the kernel
        text = f"{ename}: {evalue}"
    return ename, evalue, [truncate(text, MAX_REPR).rstrip("\n")]


class Kernel:
    def __init__(self, info: dict, *, workers: Optional[int] = None,
                 curve: Optional[dict] = None, history_path: Optional[str] = None,
                 max_gvthreads: int = 1_000_000, stack_size: Optional[int] = None):
        self.info = info
        self.session = Session(info.get("key", "").encode(), info.get("signature_scheme",
                                                                       "hmac-sha256"))
        self.ctx = zmq.Context()
        self.curve = curve
        self._auth = None
        self.started = time.time()
        self.runtime = gvthread.Runtime(workers=workers, max_gvthreads=max_gvthreads,
                                        **({"stack_size": stack_size} if stack_size else {}))
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
        # Which OS thread owns which socket (see reply()): filled in as the threads start.
        self._owner: dict[str, int] = {}
        self._executor_ident: Optional[int] = None
        self._pushes: dict[str, zmq.Socket] = {}  # the executor's own
        # An execute_request taken off the queue whose GVThread is not yet spawned
        # (compiling) and an interrupt that arrived meanwhile: see interrupt().
        self._fg_lock = _thread.allocate_lock()
        self._cell_pending = False
        self._pending_interrupt = False
        # Background GVThreads spawned but not yet started, by id: one cancelled
        # before it starts never runs its function, so _reap_unstarted reports it.
        self._unstarted: dict[int, tuple] = {}
        # Filenames of the cells in linecache, oldest first (bounded: MAX_CELL_SOURCES).
        self._cell_files: collections.OrderedDict[str, None] = collections.OrderedDict()
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
        # The way back for replies sent by the executor thread (see reply()): one
        # inproc PULL per ROUTER loop, bound here and then used only by that loop's
        # thread (starting the thread is the memory barrier zmq asks for a socket
        # that changes threads); the executor's PUSH ends are its own (_push).
        self._reply_addr: dict[str, str] = {}
        self._reply_pull: dict[str, zmq.Socket] = {}
        for channel in ("shell", "control"):
            pull = self.ctx.socket(zmq.PULL)
            pull.linger = 0
            addr = f"inproc://gvkernel-{id(self):x}-{channel}-replies"
            pull.bind(addr)
            self._reply_addr[channel] = addr
            self._reply_pull[channel] = pull

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
        """The loop of one ROUTER socket (shell or control), on the thread that owns it:
        only this thread touches `sock` (libzmq sockets are not thread-safe: a ROUTER
        sent on by two threads at once aborts the process in router.cpp).  Replies
        composed elsewhere (the executor's execute_replies) arrive on this loop's inproc
        PULL and are sent from here.  Nothing a message holds may end the loop."""
        pull = self._reply_pull[channel]
        self._owner[channel] = _thread.get_ident()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(pull, zmq.POLLIN)
        reap_at = 0.0
        while not self._stop.is_set():
            if channel == "shell" and time.monotonic() >= reap_at:
                reap_at = time.monotonic() + 0.1
                self._reap_unstarted()
            try:
                ready = dict(poller.poll(100))
                if pull in ready:
                    self._forward_replies(pull, sock, channel)
                if sock not in ready:
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
                self.dispatch(sock, channel, idents, msg)
            except MessageError:
                continue
            except BaseException:  # noqa: B036 - the loop outlives any one message
                # logging's handler holds the real stderr (app.py), not OutStream.
                log.exception("%s loop: a message could not be handled", channel)

    def _forward_replies(self, pull: zmq.Socket, sock: zmq.Socket, channel: str) -> None:
        while True:
            try:
                frames = pull.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                sock.send_multipart(frames)
            except zmq.ZMQError as e:
                log.error("%s socket: cannot send a reply: %s", channel, e)

    def dispatch(self, sock: zmq.Socket, channel: str, idents: list, msg: dict) -> None:
        """Answer one request, on the thread of its socket's loop."""
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
        except inspection.RequestError as e:  # a bad request, not a kernel bug
            log.debug("bad %s: %s", msg_type, e)
            self.reply(msg, idents, _reply_type(msg_type), {
                "status": "error", "ename": "BadRequest", "evalue": str(e), "traceback": []})
        except BaseException as e:  # noqa: B036 - nothing may end the loop
            log.exception("handling %s", msg_type)
            ename, evalue, tb = format_exception(e)
            self.reply(msg, idents, _reply_type(msg_type), {
                "status": "error", "ename": ename, "evalue": evalue, "traceback": tb})
        finally:
            if busy:
                status("idle", msg["header"])

    def reply(self, msg: dict, idents: list, msg_type: str, content: dict,
              metadata: Optional[dict] = None) -> None:
        """Answer msg on the socket it came in on.  Only the thread of that socket's
        loop sends on it; the executor hands its frames to that loop through its inproc
        PUSH (see _serve)."""
        try:
            frames = self.session.serialize(msg_type, content, msg["header"], metadata,
                                            idents)
        except Exception as e:  # noqa: BLE001 - content json cannot take: still answer
            log.exception("cannot serialise %s", msg_type)
            frames = self.session.serialize(msg_type, {
                "status": "error", "ename": "SerializationError",
                "evalue": f"the reply could not be serialised: {type(e).__name__}",
                "traceback": []}, msg["header"], None, idents)
        channel = msg["_channel"]
        me = _thread.get_ident()
        try:
            if me == self._owner.get(channel):
                msg["_socket"].send_multipart(frames)
            elif me == self._executor_ident:
                self._push(channel).send_multipart(frames)
            else:  # a bug: it would race the loop on the socket
                log.error("%s for %s dropped: sent from a thread that owns no socket",
                          msg_type, channel)
        except zmq.ZMQError as e:
            log.error("cannot send %s: %s", msg_type, e)

    def _push(self, channel: str) -> zmq.Socket:
        """The executor's PUSH end towards `channel`'s loop (executor thread only)."""
        push = self._pushes.get(channel)
        if push is None:
            push = self.ctx.socket(zmq.PUSH)
            push.linger = 0
            push.sndhwm = 0  # never block the executor on a busy loop
            push.connect(self._reply_addr[channel])
            self._pushes[channel] = push
        return push

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

    @staticmethod
    def _code_and_cursor(msg: dict) -> tuple[str, int]:
        c = msg["content"]
        code = c.get("code", "")
        if not isinstance(code, str):
            raise inspection.RequestError(f"{msg['msg_type']} needs code (a string)")
        pos = c.get("cursor_pos", len(code))
        if not isinstance(pos, int) or isinstance(pos, bool):
            raise inspection.RequestError(f"{msg['msg_type']} needs cursor_pos (an int)")
        return code, pos

    def _introspect(self, fn: Callable[..., dict], *args: Any, fallback: dict) -> dict:
        """fn(*args) in a GVThread of the kernel's runtime, joined for at most
        INTROSPECT_TIMEOUT s: completion and inspection reach user code (a property,
        __repr__, __dir__, __getattr__), which must neither hang nor end the thread
        that serves requests.  On a timeout the GVThread is cancelled (user code in C
        may not notice; the loop answers anyway) and `fallback` is the answer."""
        def guarded() -> dict:
            try:
                return fn(*args)
            except BaseException as e:  # noqa: B036 - user code, answered as nothing found
                log.debug("introspection: %s", safe_str(e))
                return fallback
        try:
            h = self.runtime.spawn(guarded, name="gvkernel-introspect",
                                   priority=gvthread.Priority.HIGH)
        except Exception as e:  # noqa: BLE001 - a full runtime: answer without
            log.debug("introspection not started: %s", e)
            return fallback
        try:
            return h.join(INTROSPECT_TIMEOUT)
        except TimeoutError:
            h.cancel()
            log.debug("introspection timed out")
            return dict(fallback, metadata={"gvkernel": "(timed out)"})
        except BaseException as e:  # noqa: B036 - Cancelled by a runtime shutdown, ...
            log.debug("introspection failed: %s", safe_str(e))
            return fallback

    def complete(self, msg_type: str, idents: list, msg: dict) -> None:
        code, pos = self._code_and_cursor(msg)
        pos = max(0, min(len(code), pos))
        empty = {"status": "ok", "matches": [], "cursor_start": pos, "cursor_end": pos,
                 "metadata": {}}
        self.reply(msg, idents, "complete_reply", self._introspect(
            introspect.complete, code, pos, self.user_ns, self.magics.names(),
            fallback=empty))

    def inspect(self, msg_type: str, idents: list, msg: dict) -> None:
        code, pos = self._code_and_cursor(msg)
        detail = msg["content"].get("detail_level", 0)
        nothing = {"status": "ok", "found": False, "data": {}, "metadata": {}}
        self.reply(msg, idents, "inspect_reply", self._introspect(
            introspect.inspect_request, code, pos, 1 if detail else 0, self.user_ns,
            fallback=nothing))

    def is_complete(self, msg_type: str, idents: list, msg: dict) -> None:
        code = msg["content"].get("code", "")
        if not isinstance(code, str):
            raise inspection.RequestError("is_complete_request needs code (a string)")
        if len(code) > introspect.MAX_IS_COMPLETE:
            self.reply(msg, idents, "is_complete_reply", {"status": "unknown"})
            return
        status, indent = introspect.check_complete(code)
        content: dict[str, Any] = {"status": status}
        if indent is not None:
            content["indent"] = indent
        self.reply(msg, idents, "is_complete_reply", content)

    def history_request(self, msg_type: str, idents: list, msg: dict) -> None:
        try:
            rows = self.history.request(msg["content"])
        except ValueError as e:  # an unknown hist_access_type: the client's
            raise inspection.RequestError(str(e)) from None
        self.reply(msg, idents, "history_reply", {"status": "ok", "history": rows})

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
        # Under _fg_lock with run_foreground's spawn: a cell taken off the queue but not
        # yet spawned (compiling: the first IPython-syntax cell takes ~0.5 s) is marked
        # and reports KeyboardInterrupt instead of running.  The lock is held only for
        # a spawn; the SIGINT handler (main thread) may wait for it that long.
        with self._fg_lock:
            fg = self.foreground
            if fg is None and self._cell_pending:
                self._pending_interrupt = True
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
        try:
            if msg_type == "gv_spawn_request":
                content = self.gv_spawn(msg, idents, c)
            else:
                content = inspection.answer(self.runtime, msg_type, c,
                                            lambda: {"kernel": self.kernel_stats()})
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
            # Serialised here, in the caller's GVThread: what json cannot take (a dict
            # with non-str keys) is the caller's error, not the publisher's.
            try:
                content = dumps({"data": data, "metadata": md, "transient": {}})
            except (TypeError, ValueError) as e:
                raise TypeError(f"display: this data cannot be sent as JSON: {e}") from None
            # Tagged in the message's metadata, as stream output is (the GVThread that
            # displayed it), as well as in the display metadata.
            self.iopub.send_output("display_data", content, parent, meta)

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
        self._executor_ident = _thread.get_ident()
        while not self._stop.is_set():
            idents, msg = self._exec_q.get()
            if msg is None:
                return
            with self._fg_lock:
                self._cell_pending = True
                self._pending_interrupt = False
            try:
                self.iopub.status("busy", msg["header"])
                self.execute(idents, msg)
            except BaseException:  # noqa: B036 - the executor outlives any one cell
                # A kernel bug, or user code reached outside a GVThread: log it, and
                # answer without touching the user's objects again.
                log.exception("execute_request")
                try:
                    self.reply(msg, idents, "execute_reply", {
                        "status": "error", "ename": "KernelError",
                        "evalue": "the kernel failed to run this request (see its log)",
                        "traceback": [], "execution_count": self.execution_count})
                except BaseException:  # noqa: B036
                    log.exception("execute_reply")
            finally:
                with self._fg_lock:
                    self._cell_pending = False
                self.iopub.status("idle", msg["header"])

    def compile_cell(self, code: str, filename: str) -> tuple[Any, Any]:
        """(code object of the statements, code object of a trailing expression or None).
        Both are compiled with gvthread.compile, so loops in them can be preempted."""
        source = introspect.transform_cell(code)
        self._remember_source(filename, source)
        tree = ast.parse(source, filename, "exec")
        expr = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = tree.body.pop()
            expr = gvthread.compile(ast.Expression(last.value), filename, "eval")
        body = gvthread.compile(tree, filename, "exec")
        return body, expr

    def _remember_source(self, filename: str, source: str) -> None:
        """Put a cell's source in linecache (for tracebacks and gv_stack), keeping the
        entries of the last MAX_CELL_SOURCES cells only; <gvspawn-N> entries are dropped
        when their GVThread ends (_background)."""
        linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True),
                                     filename)
        if filename.startswith("<cell-"):
            self._cell_files[filename] = None
            self._cell_files.move_to_end(filename)
            while len(self._cell_files) > MAX_CELL_SOURCES:
                old, _ = self._cell_files.popitem(last=False)
                linecache.cache.pop(old, None)

    def _compile_cached(self, code: str, filename: str) -> tuple[Any, Any]:
        """compile_cell, remembering the last cells run: a cell run again (a loop of
        `1+1` from a client, a notebook rerun) skips parsing and instrumenting. A hit
        keeps the filename of its first run, whose linecache entry holds the same
        source (renewed here, as its cell is one of the last run), so tracebacks still
        show the right lines.  A cell over MAX_CACHED_SOURCE characters is not kept."""
        hit = self._compiled.get(code)
        if hit is not None:
            self._compiled.move_to_end(code)
            first = hit[2]
            if first in self._cell_files:
                self._cell_files.move_to_end(first)
            else:
                self._remember_source(first, introspect.transform_cell(code))
            return hit[:2]
        compiled = self.compile_cell(code, filename)
        if len(code) <= MAX_CACHED_SOURCE:
            self._compiled[code] = (*compiled, filename)
            if len(self._compiled) > 256:
                self._compiled.popitem(last=False)
        return compiled

    def execute(self, idents: list, msg: dict) -> None:
        c = msg["content"]
        parent = msg["header"]
        code = c.get("code", "")
        if not isinstance(code, str):  # the client's error, not the kernel's
            self.reply(msg, idents, "execute_reply", {
                "status": "error", "ename": "BadRequest",
                "evalue": "execute_request: code must be a string", "traceback": [],
                "execution_count": self.execution_count, "user_expressions": {},
                "payload": []})
            return
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
            result = self.run_foreground(body, expr, parent, idents, c, store, n, silent)
        if result[0] == "ok":
            _, content, user_expr, gid = result
            if content is not None:  # the execute_result, serialised by the cell
                self.iopub.send_output("execute_result", content, parent, keep=True)
            payload = [{"source": "ask_exit", "keepkernel": True}] if self._ask_exit else []
            self._ask_exit = False
            self.reply(msg, idents, "execute_reply", {
                "status": "ok", "execution_count": n, "user_expressions": user_expr,
                "payload": payload}, {"gvthread": {"id": gid}})
            return
        _, ename, evalue, tb = result[:4]
        if not silent:
            self.iopub.send_output("error", dumps({"ename": ename, "evalue": evalue,
                                                   "traceback": tb}), parent, keep=True)
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
            self.iopub.status("idle", msg["header"])  # (reply() routes through _push)

    def user_expressions(self, exprs: Any) -> dict:
        """Evaluate an execute_request's user_expressions; called in the cell's GVThread
        (run_foreground), so they are interruptible and cannot hang the executor.  Each
        value is checked to serialise, so the reply always can."""
        out: dict[str, Any] = {}
        if not isinstance(exprs, dict):
            return out
        for key, src in list(exprs.items())[:100]:
            try:
                value = eval(builtins.compile(str(src), "<user_expression>", "eval"),
                             self.user_ns)
                entry = {"status": "ok", "data": mime_bundle(value), "metadata": {}}
                dumps(entry)
            except BaseException as e:  # noqa: B036 - user code must not end the kernel
                if isinstance(e, gvthread.Cancelled):
                    raise
                ename, evalue, tb = format_exception(e)
                entry = {"status": "error", "ename": ename, "evalue": evalue,
                         "traceback": tb}
            out[str(key)] = entry
        return out

    def run_foreground(self, body: Any, expr: Any, parent: dict, idents: list, content: dict,
                       store: bool, n: int, silent: bool = False) -> tuple:
        """Run a compiled cell as a GVThread and join it: ("ok", execute_result content
        as bytes or None, user_expressions, GVThread id) or ("error", ename, evalue,
        traceback).  Everything that touches user objects (the value's repr and its
        serialisation, user_expressions) happens in the GVThread."""
        ns = self.user_ns

        ctx = _Ctx(parent, 0, "", idents if content.get("allow_stdin") else None)
        exprs = content.get("user_expressions")

        def cell() -> tuple:
            _output_ctx.set(ctx)
            try:
                exec(body, ns)
                out = None
                value = eval(expr, ns) if expr is not None else None
                if getattr(value, "__func__", None) is Kernel._no_exit:
                    # bare `exit`: ask the client to leave (it keeps the kernel running)
                    self._ask_exit = True
                elif value is not None:
                    if store:
                        self._store_output(n, value)
                    if not silent:
                        out = dumps({"execution_count": n, "data": mime_bundle(value),
                                     "metadata": {}})
                return ("ok", out, self.user_expressions(exprs))
            except gvthread.Cancelled as e:
                if self.interrupted:
                    ki = KeyboardInterrupt()
                    ki.__traceback__ = e.__traceback__
                    return ("error", *format_exception(ki))
                return ("error", *format_exception(e))
            except BaseException as e:  # noqa: B036 - user code must not end the kernel
                return ("error", *format_exception(e))

        with self._fg_lock:  # see interrupt()
            if self._pending_interrupt:
                return ("error", *format_exception(KeyboardInterrupt()))
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
            try:
                started.wait()
            except BaseException:  # noqa: B036 - cancelled before spawn_background ended
                ctx = box.get("ctx")
                if ctx is not None and self._unstarted.pop(ctx.metadata["gvthread"]["id"],
                                                           None):
                    self._exit_unstarted(ctx, filename)
                raise
            ctx = box["ctx"]
            # From here this GVThread reports its own end (not _reap_unstarted).
            self._unstarted.pop(ctx.metadata["gvthread"]["id"], None)
            _output_ctx.set(ctx)
            return self._background(task, ctx, filename)

        h = self.runtime.spawn(wrapper, name=name, priority=prio)
        ctx = _Ctx(parent, h.id, h.name)
        box["ctx"] = ctx
        self.contexts[h.id] = ctx
        self._unstarted[h.id] = (h, ctx, filename)
        started.set()
        return h

    def _reap_unstarted(self) -> None:
        """Report the background GVThreads that ended without running (cancelled before
        they started: the runtime then never calls their function): their exit event,
        and their contexts and linecache entries dropped.  Called by the shell loop
        every 100 ms; the dict holds only GVThreads not yet started, usually none."""
        if not self._unstarted:
            return
        for gid, (h, ctx, filename) in list(self._unstarted.items()):
            if h.done() and self._unstarted.pop(gid, None) is not None:
                self._exit_unstarted(ctx, filename)

    def _exit_unstarted(self, ctx: _Ctx, filename: str) -> None:
        gv = dict(ctx.metadata["gvthread"])
        gv.update(event="exit", status="cancelled", ename="Cancelled",
                  evalue="cancelled before it started")
        self.contexts.pop(gv["id"], None)
        linecache.cache.pop(filename, None)
        self.iopub.send("stream", {"name": "stderr", "text": (
            f"[GVThread {gv['id']} ({gv['name']}) cancelled before it started]\n")},
            ctx.parent, {"gvthread": gv})

    def _background(self, task: Callable[[], Any], ctx: _Ctx, filename: str) -> Any:
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
            try:
                result = None if value is None else truncate(repr(value), 4096)
                if type(result) not in (str, type(None)):
                    raise TypeError("__repr__ returned non-string")
            except BaseException as e:  # noqa: B036 - the value's repr is user code
                result = f"<unprintable {_type_name(value)}: {_type_name(e)}>"
            gv.update(event="exit", status="ok", result=result)
            text = f"[GVThread {gv['id']} ({gv['name']}) finished" + (
                f": {result}]\n" if result is not None else "]\n")
            self.iopub.send("stream", {"name": "stdout", "text": text}, ctx.parent,
                            {"gvthread": gv})
            return value
        finally:
            self.contexts.pop(gv["id"], None)
            linecache.cache.pop(filename, None)
