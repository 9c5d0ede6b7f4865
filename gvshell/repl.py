"""The interactive loop: a prompt_toolkit PromptSession in IPython's look, and the kernel.

- `In [n]:` / `Out[n]:` with n the kernel's execution_count; IPython3Lexer highlighting.
- Enter asks the kernel's is_complete: incomplete inserts a newline and the kernel's
  indent; a blank last line of a multi-line input submits it (as IPython). A kernel
  that does not answer within IS_COMPLETE_TIMEOUT gets IPython's own check instead.
- Tab asks the kernel's complete_request (synchronously, on the main thread, which owns
  the shell socket); Tab in leading whitespace indents.
- Ctrl-C at the prompt clears the line; while a cell runs it sends interrupt_request on
  control (the kernel runs in its own session, so the terminal's SIGINT does not reach it),
  one per Ctrl-C, and only the execute_reply ends the wait (see Shell._execute).
- Ctrl-D on an empty line exits, after a question when the kernel is ours.
- Kernel death (heartbeat.Heartbeat) ends the prompt at once; the shell says so and
  offers a restart (our kernel) or a reconnect (--existing).

The whole loop runs under patch_stdout, so the iopub reader's output (output.py) lands
above the prompt without breaking the line being edited.
"""
from __future__ import annotations

import os
import queue
import signal
import time
from typing import Iterable, Optional

from prompt_toolkit import PromptSession
from prompt_toolkit import prompt as pt_prompt
from prompt_toolkit.completion import Completer, Completion
from prompt_toolkit.document import Document
from prompt_toolkit.filters import Condition
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.history import FileHistory
from prompt_toolkit.key_binding import KeyBindings
from prompt_toolkit.lexers import PygmentsLexer
from prompt_toolkit.styles import Style, merge_styles, style_from_pygments_cls
from pygments.styles import get_style_by_name

from gvshell import magics
from gvshell.client import Connection, KernelDied
from gvshell.heartbeat import Heartbeat
from gvshell.output import IOPubReader, drain, patched_stdout, print_payloads

_PROMPT_STYLE = Style.from_dict({
    "in-prompt": "#ansigreen", "in-number": "#ansibrightgreen bold",
    "continuation": "#ansigreen",
})


#: How long Enter waits for the kernel's is_complete before checking locally (seconds).
IS_COMPLETE_TIMEOUT = 1.0


def local_is_complete(text: str) -> tuple[str, str]:
    """(status, indent) from IPython's TransformerManager, the check ipykernel (and our
    kernel) answer is_complete with; imported on first use (IPython is slow to import)."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager
        status, indent = TransformerManager().check_complete(text)
    except Exception:  # pragma: no cover - IPython is a dependency
        return "unknown", ""
    return status, " " * (indent or 0)


def history_path() -> str:
    from gvkernel.connection import data_dir
    return os.environ.get("GVSHELL_HISTORY") or os.path.join(data_dir("gvshell"), "history")


class KernelCompleter(Completer):
    """Completions from the kernel's complete_request."""

    def __init__(self, shell: "Shell"):
        self.shell = shell

    def get_completions(self, document: Document, complete_event) -> Iterable[Completion]:
        conn = self.shell.conn
        if conn is None or conn.dead.is_set():
            return
        try:
            c = conn.request("shell", "complete_request",
                             {"code": document.text, "cursor_pos": document.cursor_position},
                             timeout=2.0)
        except (TimeoutError, KernelDied):
            return
        if c.get("status") != "ok":
            return
        start = int(c.get("cursor_start", document.cursor_position)) - document.cursor_position
        for m in c.get("matches", []):
            yield Completion(m, start_position=start)


class Shell:
    def __init__(self, conn: Connection, kernel_args: list[str], style: str = "default"):
        self.conn: Optional[Connection] = conn
        self.kernel_args = kernel_args
        self.reader: Optional[IOPubReader] = None
        self.hb: Optional[Heartbeat] = None
        self.count = 1
        self._death = ""
        self._pending = ""   # the line being edited when the kernel died
        path = history_path()
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self.session: PromptSession = PromptSession(
            history=FileHistory(path), lexer=PygmentsLexer(_lexer()), multiline=True,
            completer=KernelCompleter(self), complete_while_typing=False,
            key_bindings=self._bindings(),
            prompt_continuation=self._continuation,
            style=merge_styles([style_from_pygments_cls(get_style_by_name(style)),
                                _PROMPT_STYLE]),
            include_default_pygments_style=False)

    # -- attach / detach ------------------------------------------------------------
    def attach(self) -> None:
        conn = self.conn
        assert conn is not None
        conn.wait_ready()
        self.reader = IOPubReader(conn)
        self.reader.start()
        self.hb = Heartbeat(conn, self._on_death)
        self.hb.start()
        self.count = conn.execution_count()

    def detach(self, shutdown: bool) -> None:
        try:
            if self.hb is not None:
                self.hb.stop()
            if self.reader is not None:
                self.reader.stop()
        finally:  # a Ctrl-C in a join above must not leave our kernel running
            if self.conn is not None:
                self.conn.close(shutdown=shutdown)

    def banner(self) -> str:
        conn = self.conn
        assert conn is not None
        info = conn.kernel_info
        gv = info.get("gvthread") or {}
        how = "started" if conn.owned else "attached to"
        return (f"gvshell: {how} {info.get('implementation', 'kernel')} "
                f"(protocol {info.get('protocol_version')}, gv {gv.get('protocol_version')}, "
                f"{gv.get('workers')} workers)\n"
                f"connection file: {conn.connection_file}\n")

    # -- prompt ---------------------------------------------------------------------
    def _in_prompt(self) -> FormattedText:
        return FormattedText([("class:in-prompt", "In ["),
                              ("class:in-number", str(self.count)),
                              ("class:in-prompt", "]: ")])

    def _continuation(self, width: int, line_number: int, wrap_count: int) -> FormattedText:
        return FormattedText([("class:continuation", "...: ".rjust(width))])

    def _bindings(self) -> KeyBindings:
        kb = KeyBindings()

        @Condition
        def in_indent() -> bool:
            from prompt_toolkit.application import get_app
            before = get_app().current_buffer.document.current_line_before_cursor
            return before == "" or before.isspace()

        @kb.add("tab", filter=in_indent)
        def _(event) -> None:
            event.current_buffer.insert_text("    ")

        @kb.add("enter")
        def _(event) -> None:
            buf = event.current_buffer
            if buf.complete_state:
                buf.complete_state = None
                return
            doc = buf.document
            if not doc.is_cursor_at_the_end:
                buf.insert_text("\n")
                return
            text = doc.text
            if not text.strip():
                buf.text = ""
                buf.validate_and_handle()
                return
            if "\n" in text and not doc.current_line.strip():
                buf.text = text.rstrip()
                buf.validate_and_handle()
                return
            status, indent = self._is_complete(text)
            if status == "incomplete":
                buf.insert_text("\n" + indent)
            else:
                buf.validate_and_handle()

        @kb.add("escape", "enter")
        def _(event) -> None:
            event.current_buffer.insert_text("\n")

        return kb

    def _is_complete(self, text: str) -> tuple[str, str]:
        """The kernel's is_complete; when it does not answer within IS_COMPLETE_TIMEOUT
        (a busy control of the kernel, a dead kernel), IPython's own check, so that an
        unfinished block gets a new line instead of being run."""
        try:
            c = self.conn.request("shell", "is_complete_request", {"code": text},  # type: ignore[union-attr]
                                  timeout=IS_COMPLETE_TIMEOUT)
        except (TimeoutError, KernelDied):
            return local_is_complete(text)
        return c.get("status", "unknown"), c.get("indent", "") or ""

    # -- death ------------------------------------------------------------------------
    def _on_death(self, reason: str) -> None:
        """Heartbeat thread: end the prompt now, if it is up."""
        self._death = reason
        app = self.session.app
        loop = getattr(app, "loop", None)
        if app.is_running and loop is not None:
            loop.call_soon_threadsafe(self._exit_prompt)

    def _exit_prompt(self) -> None:
        app = self.session.app
        if app.is_running and not app.future.done():
            self._pending = app.current_buffer.text
            app.exit(exception=KernelDied(self._death))

    def _pre_run(self) -> None:
        if self.conn is not None and self.conn.dead.is_set():
            self._exit_prompt()

    def _ask(self, question: str, on_eof: bool = False) -> bool:
        """A yes/no question, yes by default; Ctrl-C is no, end of input is on_eof."""
        try:
            answer = pt_prompt(question)
        except EOFError:
            return on_eof
        except KeyboardInterrupt:
            return False
        return answer.strip().lower() in ("", "y", "yes")

    def handle_death(self) -> bool:
        """Say the kernel died; restart or reconnect when asked. False: leave the shell."""
        conn = self.conn
        assert conn is not None
        print(f"\ngvshell: the kernel died: {self._death or 'no heartbeat'}.", flush=True)
        tail = conn.log_tail().strip()
        if tail:
            print(tail[-1000:], flush=True)
        owned = conn.owned
        self.detach(shutdown=owned)
        while True:
            if owned:
                if not self._ask("Restart a new kernel? ([y]/n) "):
                    return False
            elif not self._ask(f"Reconnect to {conn.connection_file}? ([y]/n) "):
                return False
            try:
                if owned:
                    self.conn = Connection.start_local(self.kernel_args)
                else:
                    self.conn = conn.reopen()  # same keys, ports and timeout
                self._death = ""
                self.attach()
            except Exception as e:
                print(f"gvshell: cannot {'restart' if owned else 'reconnect'}: {e}", flush=True)
                if self.conn is not None and self.conn is not conn:
                    self.conn.close(shutdown=owned)
                    self.conn = conn
                continue
            print("gvshell: " + ("restarted: " if owned else "reconnected: ")
                  + self.conn.connection_file, flush=True)
            return True

    # -- running cells --------------------------------------------------------------
    def run_cell(self, text: str) -> None:
        conn = self.conn
        assert conn is not None and self.reader is not None
        try:
            m = magics.parse(text)
            if m is not None:
                text = magics.run(conn, *m)
                if text:
                    print(text, flush=True)
                return
        except magics.MagicError as e:
            print(e, flush=True)
            return
        except TimeoutError as e:
            print(f"gvshell: {e}", flush=True)
            return
        msg = conn.kc.session.msg("execute_request", {
            "code": text, "silent": False, "store_history": True, "user_expressions": {},
            "allow_stdin": True, "stop_on_error": True})
        msg_id = msg["header"]["msg_id"]
        idle = self.reader.expect(msg_id)
        try:
            reply = self._execute(msg)
            # all of the cell's output is printed before the next prompt
            deadline = time.monotonic() + 3.0
            while not idle.wait(0.05):
                if conn.dead.is_set():
                    raise KernelDied(self._death)
                if time.monotonic() > deadline:
                    break
        finally:
            self.reader.forget(msg_id)
        page = print_payloads(reply)
        if page:
            print(page, flush=True)
        status = reply.get("status")
        if status in ("ok", "error"):
            self.count = int(reply.get("execution_count", self.count)) + 1
        elif status == "aborted":
            print("(aborted)", flush=True)

    def _execute(self, msg: dict) -> dict:
        """Send the execute_request msg; its execute_reply's content. Only that reply (or
        the kernel's death) ends the wait.

        Ctrl-C (SIGINT: the terminal is in cooked mode while a cell runs) is counted by a
        handler of our own instead of raising KeyboardInterrupt, and each one sends an
        interrupt_request from the loop: a KeyboardInterrupt could land anywhere,
        including in the handler that sends the previous interrupt, and so leave this
        wait (back to the prompt) while the cell still runs."""
        conn = self.conn
        assert conn is not None
        pressed = [0]   # Ctrl-Cs as SIGINT so far: changed by the handler only
        keyed = 0       # Ctrl-Cs as a key, at an input() prompt
        sent = 0        # interrupt_requests sent for both

        def on_sigint(signum: int, frame: object) -> None:
            pressed[0] += 1

        msg_id = msg["header"]["msg_id"]
        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            conn.kc.shell_channel.send(msg)
            while True:
                while sent < pressed[0] + keyed:
                    sent += 1
                    conn.send("control", "interrupt_request", {})
                if conn.dead.is_set():
                    raise KernelDied(self._death)
                try:
                    got = conn.kc.shell_channel.get_msg(timeout=0.05)
                except queue.Empty:
                    got = None
                if got is not None and got["parent_header"].get("msg_id") == msg_id:
                    return got["content"]
                try:
                    self._serve_stdin()
                except KeyboardInterrupt:  # Ctrl-C as a key, at an input() prompt
                    keyed += 1
        finally:
            signal.signal(signal.SIGINT, previous)

    def _serve_stdin(self) -> None:
        conn = self.conn
        assert conn is not None
        try:
            req = conn.kc.stdin_channel.get_msg(timeout=0)
        except queue.Empty:
            return
        if req["msg_type"] != "input_request":
            return
        c = req["content"]
        try:
            value = pt_prompt(c.get("prompt", ""), is_password=bool(c.get("password")))
        except EOFError:
            value = ""
        reply = conn.kc.session.msg("input_reply", {"value": value}, parent=req["header"])
        conn.kc.stdin_channel.send(reply)

    # -- the loop ---------------------------------------------------------------------
    def confirm_exit(self) -> bool:
        if self.conn is None or not self.conn.owned:
            return True
        # end of input here too means leave (as IPython): no is an endless loop when
        # stdin has ended
        return self._ask("Do you really want to exit ([y]/n)? ", on_eof=True)

    def run(self) -> int:
        leave_running = self.conn is not None and not self.conn.owned
        with patched_stdout() as proxy:
            print(self.banner(), end="", flush=True)
            try:
                while True:
                    try:
                        if self.conn is not None and self.conn.dead.is_set():
                            raise KernelDied(self._death)
                        drain(proxy)
                        default, self._pending = self._pending, ""
                        text = self.session.prompt(self._in_prompt, default=default,
                                                   pre_run=self._pre_run)
                        if text.strip():
                            self.run_cell(text)
                    except KeyboardInterrupt:
                        continue
                    except EOFError:
                        if self.confirm_exit():
                            break
                    except KernelDied:
                        if not self.handle_death():
                            return 1
            finally:
                self.detach(shutdown=not leave_running)
        return 0


def _lexer():
    try:
        from IPython.lib.lexers import IPython3Lexer
        return IPython3Lexer
    except ImportError:  # pragma: no cover - IPython is a dependency
        from pygments.lexers import PythonLexer
        return PythonLexer


__all__ = ["Shell", "history_path", "KernelCompleter"]
