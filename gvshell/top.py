"""%gvtop: a full-screen live view of a kernel's runtime (a prompt_toolkit Application).

It polls the kernel with gv_* requests (gv_stats, gv_list, gv_channels; gv_stack and
gv_cancel on demand) from a background thread, 4 times a second by default, and redraws
from the latest poll; a slow kernel makes the figures older, never the keys slower.

    workers   one bar per worker: busy share since the previous poll (from idle_ns)
    states    live GVThreads by state
    top       GVThreads by CPU share since the previous poll (sortable, filterable)
    channels  the deepest queues

Keys: Up/Down select, Enter shows/hides the selected GVThread's stack, c cancels it,
s cycles the sort key, f cycles the state filter, / edits the name filter (Enter or Esc
ends it), q or Esc quits.

`request(msg_type, content, timeout) -> reply content` is all it needs of a client, so
the same view works on a remote kernel and (through an adapter) on an in-process runtime.

Threads. The poller thread makes the periodic requests; the key handlers (Enter, c) run
on the main thread, in the Application's loop. A client socket must not be used by two
threads at once (ZeroMQ sockets are not thread-safe, and each waiter would drop the
other's replies), so:
- the caller may give the poller a `poll_request` of its own (gvshell: a second control
  socket, client.ThreadChannel), used by the poller thread only, and then the keys'
  `request` is the main thread's alone; without one, both go through `request` and a
  lock serializes them;
- every poll request has a deadline of POLL_TIMEOUT, and the poller checks its stop
  event between requests, so once stopped it ends within about POLL_TIMEOUT;
- `run` joins the poller, without giving up, before it returns: after %gvtop nothing
  but the main thread uses the client (and gvshell can close the poller's socket);
- a key's request has a deadline of KEY_TIMEOUT, and waits at most one poll request
  (POLL_TIMEOUT) for the lock, so a slow kernel slows a key by seconds at most.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional

from prompt_toolkit.application import Application
from prompt_toolkit.formatted_text import FormattedText
from prompt_toolkit.key_binding import KeyBindings
from prompt_toolkit.layout import HSplit, Layout, Window
from prompt_toolkit.layout.controls import FormattedTextControl
from prompt_toolkit.styles import Style

Request = Callable[[str, dict, float], dict]

#: Deadline of each of the poller's requests (seconds); also about how long `run` waits
#: for the poller after the user quits.
POLL_TIMEOUT = 1.0
#: Deadline of a request made by a key (Enter: the stack, c: cancel), on the UI thread.
KEY_TIMEOUT = 2.0

SORTS = ("cpu%", "cpu", "id", "name", "state")
STATE_FILTERS = (None, "running", "ready", "blocked", "preempted")
BAR = 30
TOP_ROWS = 15

STYLE = Style.from_dict({
    "title": "bold reverse", "head": "bold", "bar": "ansigreen", "barbg": "ansibrightblack",
    "sel": "reverse", "dim": "ansibrightblack", "warn": "ansired bold", "key": "bold ansicyan",
})


class TopModel:
    """The figures shown, computed from two successive polls; no UI here (testable)."""

    def __init__(self, request: Request):
        self.request = request
        self.lock = threading.Lock()
        self.stats: dict = {}
        self.items: list[dict] = []
        self.channels: list[dict] = []
        self.util: list[float] = []
        self.cpu_share: dict[int, float] = {}
        self.error: Optional[str] = None
        self.polled_at = 0.0
        self.polls = 0
        self._prev_idle: Optional[list[int]] = None
        self._prev_cpu: dict[int, float] = {}
        self._prev_t = 0.0
        self.sort = "cpu%"
        self.state_filter: Optional[str] = None
        self.name_filter = ""

    def poll(self, stop: Optional[threading.Event] = None) -> None:
        """One round of requests (POLL_TIMEOUT each); gives up between them once stop is
        set, keeping the last figures."""
        stopped = stop.is_set if stop is not None else (lambda: False)
        try:
            stats = self.request("gv_stats_request", {}, POLL_TIMEOUT)
            content: dict[str, Any] = {"limit": 1000}
            if self.state_filter:
                content["state"] = self.state_filter
            if self.name_filter:
                content["name"] = self.name_filter
            if stopped():
                return
            listing = self.request("gv_list_request", content, POLL_TIMEOUT)
            if stopped():
                return
            chans = self.request("gv_channels_request", {"limit": 1000, "preview": 0},
                                 POLL_TIMEOUT)
        except Exception as e:  # a dead or slow kernel: say so, keep the last figures
            with self.lock:
                self.error = str(e) or type(e).__name__
            return
        now = time.monotonic()
        workers = stats.get("runtime", {}).get("workers", [])
        idle = [int(w.get("idle_ns", 0)) for w in workers]
        items = listing.get("items", [])
        cpu = {g["id"]: float(g.get("cpu_time") or 0.0) for g in items}
        with self.lock:
            dt = now - self._prev_t if self._prev_t else 0.0
            if self._prev_idle is not None and dt > 0 and len(self._prev_idle) == len(idle):
                self.util = [max(0.0, min(1.0, 1.0 - (b - a) / 1e9 / dt))
                             for a, b in zip(self._prev_idle, idle)]
            elif not self.util:
                self.util = [0.0] * len(idle)
            self.cpu_share = {gid: max(0.0, (c - self._prev_cpu.get(gid, c)) / dt) if dt else 0.0
                              for gid, c in cpu.items()}
            self._prev_idle, self._prev_cpu, self._prev_t = idle, cpu, now
            self.stats = stats
            self.items = items
            self.total = listing.get("total", len(items))
            self.channels = sorted(chans.get("items", []), key=lambda c: -int(c.get("length") or 0))
            self.error = None
            self.polled_at = now
            self.polls += 1

    def sorted_items(self) -> list[dict]:
        with self.lock:
            items = list(self.items)
            share = dict(self.cpu_share)
        key = {"cpu%": lambda g: (-share.get(g["id"], 0.0), g["id"]),
               "cpu": lambda g: (-(g.get("cpu_time") or 0.0), g["id"]),
               "id": lambda g: g["id"],
               "name": lambda g: (g.get("name") or "", g["id"]),
               "state": lambda g: (g.get("state") or "", g["id"])}[self.sort]
        return sorted(items, key=key)


class Top:
    """The dashboard. `request` serves the keys (main thread); `poll_request`, when given,
    the poller thread alone (see the module docstring); `input`/`output` are for tests
    (prompt_toolkit's pipe input and DummyOutput)."""

    def __init__(self, request: Request, interval: float = 0.25,
                 poll_request: Optional[Request] = None, *, input: Any = None,
                 output: Any = None):
        if poll_request is None:
            lock = threading.Lock()
            send = request

            def one_at_a_time(msg_type: str, content: dict, timeout: float) -> dict:
                # The poller and the key handlers share one client, which matches replies
                # to requests by waiting for its own: requests must not interleave.
                with lock:
                    return send(msg_type, content, timeout)

            request = poll_request = one_at_a_time
        self.model = TopModel(poll_request)
        self.request = request
        self.poll_request = poll_request
        self.interval = interval
        self._io = (input, output)
        self.selected = 0
        self.show_stack = False
        self.stack_text = ""
        self.message = ""
        self.editing_filter = False
        self._stop = threading.Event()
        self.app = self._build()

    # -- drawing ----------------------------------------------------------------
    def _header(self) -> FormattedText:
        m = self.model
        st = m.stats
        kernel = st.get("kernel", {})
        up = kernel.get("uptime")
        out = [("class:title", " gvtop "),
               ("", f"  workers {st.get('workers', '?')}  time slice "
                    f"{st.get('time_slice', '?')} s"
                    + (f"  kernel up {up:.0f} s" if isinstance(up, (int, float)) else "")
                    + f"  polls {m.polls}\n")]
        if m.error:
            out.append(("class:warn", f" kernel not answering: {m.error}\n"))
        for i, u in enumerate(m.util):
            n = int(round(u * BAR))
            out += [("", f" w{i:<2} ["), ("class:bar", "#" * n), ("class:barbg", "." * (BAR - n)),
                    ("", f"] {u * 100:5.1f}%\n")]
        states = st.get("states", {})
        out.append(("class:head", " GVThreads: "))
        out.append(("", "  ".join(f"{k} {v}" for k, v in states.items()) + "\n"))
        return FormattedText(out)

    def _table(self) -> FormattedText:
        m = self.model
        items = m.sorted_items()
        if items:
            self.selected = max(0, min(self.selected, len(items) - 1))
        flt = [f"sort {m.sort}"]
        if m.state_filter:
            flt.append(f"state={m.state_filter}")
        if m.name_filter or self.editing_filter:
            flt.append(f"name~{m.name_filter}" + ("_" if self.editing_filter else ""))
        out = [("class:head", f" {'ID':>7} {'NAME':<24} {'STATE':<10} {'PRIO':<8} {'W':>2} "
                              f"{'CPU%':>6} {'CPU':>9}  WAITING ON"),
               ("class:dim", f"   ({', '.join(flt)})\n")]
        start = max(0, self.selected - TOP_ROWS + 1)
        for i, g in enumerate(items[start:start + TOP_ROWS], start):
            share = m.cpu_share.get(g["id"], 0.0) * 100
            cpu = g.get("cpu_time") or 0.0
            w = g.get("worker")
            line = (f" {g['id']:>7} {(g.get('name') or '')[:24]:<24} {g.get('state', ''):<10} "
                    f"{g.get('priority', ''):<8} {'-' if w is None else w:>2} {share:6.1f} "
                    f"{cpu:8.3f}s  {g.get('waiting_on') or ''}")
            out.append(("class:sel" if i == self.selected else "", line + "\n"))
        if not items:
            out.append(("class:dim", "   (no GVThreads match)\n"))
        if self.show_stack:
            out.append(("class:head", "\n stack of the selected GVThread:\n"))
            out.append(("", self.stack_text + "\n"))
        return FormattedText(out)

    def _channels(self) -> FormattedText:
        chans = self.model.channels[:5]
        out = [("class:head", f" {'CHANNEL':>7} {'NAME':<20} {'LEN':>6} {'CAP':>6} "
                              f"{'SEND':>5} {'RECV':>5}\n")]
        for c in chans:
            out.append(("", f" {c.get('id', ''):>7} {(c.get('name') or '')[:20]:<20} "
                            f"{c.get('length', 0):>6} {str(c.get('capacity', '')):>6} "
                            f"{c.get('senders_waiting', 0):>5} {c.get('receivers_waiting', 0):>5}\n"))
        if not chans:
            out.append(("class:dim", "   (no channels)\n"))
        return FormattedText(out)

    def _footer(self) -> FormattedText:
        keys = [("Up/Down", "select"), ("Enter", "stack"), ("c", "cancel"), ("s", "sort"),
                ("f", "state"), ("/", "filter"), ("q", "quit")]
        out = []
        for k, what in keys:
            out += [("class:key", f" {k}"), ("", f" {what} ")]
        if self.message:
            out.append(("class:warn", "  " + self.message))
        return FormattedText(out)

    def _build(self) -> Application:
        kb = KeyBindings()
        m = self.model

        @kb.add("q", filter=_not(self, "editing_filter"))
        @kb.add("escape", filter=_not(self, "editing_filter"))
        @kb.add("c-c")
        def _quit(event):
            event.app.exit()

        @kb.add("up")
        def _up(event):
            self.selected = max(0, self.selected - 1)
            self._refresh_stack(self.request, KEY_TIMEOUT)

        @kb.add("down")
        def _down(event):
            self.selected += 1
            self._refresh_stack(self.request, KEY_TIMEOUT)

        @kb.add("enter", filter=_not(self, "editing_filter"))
        def _stack(event):
            self.show_stack = not self.show_stack
            self._refresh_stack(self.request, KEY_TIMEOUT)

        @kb.add("c", filter=_not(self, "editing_filter"))
        def _cancel(event):
            g = self._selected()
            if g is None:
                return
            try:
                r = self.request("gv_cancel_request", {"ids": [g["id"]]}, KEY_TIMEOUT)
                ok = r.get("cancelled", {}).get(str(g["id"]))
                self.message = f"GVThread {g['id']}: " + {True: "cancelled",
                                                          False: "already ended"}.get(
                    ok, "not found")
            except Exception as e:
                self.message = f"cancel failed: {e}"

        @kb.add("s", filter=_not(self, "editing_filter"))
        def _sort(event):
            m.sort = SORTS[(SORTS.index(m.sort) + 1) % len(SORTS)]

        @kb.add("f", filter=_not(self, "editing_filter"))
        def _state(event):
            m.state_filter = STATE_FILTERS[(STATE_FILTERS.index(m.state_filter) + 1)
                                           % len(STATE_FILTERS)]

        @kb.add("/", filter=_not(self, "editing_filter"))
        def _filter(event):
            self.editing_filter = True

        @kb.add("enter", filter=_is(self, "editing_filter"))
        @kb.add("escape", filter=_is(self, "editing_filter"))
        def _filter_done(event):
            self.editing_filter = False

        @kb.add("backspace", filter=_is(self, "editing_filter"))
        def _filter_back(event):
            m.name_filter = m.name_filter[:-1]

        @kb.add("<any>", filter=_is(self, "editing_filter"))
        def _filter_char(event):
            ch = event.data
            if ch.isprintable():
                m.name_filter += ch

        body = HSplit([
            Window(FormattedTextControl(self._header), dont_extend_height=True),
            Window(height=1, char="-", style="class:dim"),
            Window(FormattedTextControl(self._table)),
            Window(height=1, char="-", style="class:dim"),
            Window(FormattedTextControl(self._channels), dont_extend_height=True),
            Window(FormattedTextControl(self._footer), height=1),
        ])
        inp, out = self._io
        return Application(layout=Layout(body), key_bindings=kb, style=STYLE, full_screen=True,
                           refresh_interval=self.interval, mouse_support=False,
                           input=inp, output=out)

    def _selected(self) -> Optional[dict]:
        items = self.model.sorted_items()
        if not items:
            return None
        return items[max(0, min(self.selected, len(items) - 1))]

    def _refresh_stack(self, request: Request, timeout: float) -> None:
        """The selected GVThread's stack, through request (the caller's thread's)."""
        if not self.show_stack:
            return
        g = self._selected()
        if g is None:
            self.stack_text = "(nothing selected)"
            return
        try:
            from gvkernel.tables import gvstack
            self.stack_text = gvstack(request("gv_stack_request", {"ids": [g["id"]]},
                                              timeout))
        except Exception as e:
            self.stack_text = f"(stack unavailable: {e})"

    # -- running --------------------------------------------------------------------
    def _poller(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            self.model.poll(self._stop)
            if self.show_stack and not self._stop.is_set():
                self._refresh_stack(self.poll_request, POLL_TIMEOUT)
            try:
                self.app.invalidate()
            except Exception:
                pass
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - t0)))

    def run(self) -> None:
        self.model.poll()
        t = threading.Thread(target=self._poller, name="gvtop-poller", daemon=True)
        t.start()
        try:
            self.app.run()
        finally:
            self._stop.set()
            # Until the poller is gone it may be in a request (POLL_TIMEOUT at most): wait
            # for it, a Ctrl-C meanwhile included, so the caller gets its client back.
            while t.is_alive():
                try:
                    t.join()
                except KeyboardInterrupt:
                    pass


def _not(top: Top, attr: str):
    from prompt_toolkit.filters import Condition
    return Condition(lambda: not getattr(top, attr))


def _is(top: Top, attr: str):
    from prompt_toolkit.filters import Condition
    return Condition(lambda: bool(getattr(top, attr)))


def run_top(request: Request, interval: float = 0.25,
            poll_request: Optional[Request] = None) -> None:
    """Show the dashboard until the user quits; `request(msg_type, content, timeout)`
    sends one gv_* request (and `poll_request`, if given, the poller thread's)."""
    Top(request, interval, poll_request).run()
