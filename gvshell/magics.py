"""Magics the shell answers itself with gv_* requests on the control channel.

    %gvps [--state S[,S...]] [--name N] [--limit L]
    %gvstack ID...        %gvchan [ID]        %gvcancel ID...        %gvstats
    %gvtop                a full-screen live view (gvshell.top); q quits

Control is served while a cell runs, and the replies are rendered with gvkernel.tables,
the same text the kernel's own magics print. Anything else (%gvspawn, %%gvspawn, `obj?`,
other magics) goes to the kernel as code. Only a one-line input that starts with one of
these names is taken; `x = %gvps` is code.
"""
from __future__ import annotations

import shlex
from typing import Callable, Optional

from gvkernel import tables
from gvkernel.protocol import parse_gvps, parse_ids

from gvshell.client import REPLY_TIMEOUT, Connection

NAMES = ("gvps", "gvstack", "gvchan", "gvcancel", "gvstats", "gvtop")


class MagicError(Exception):
    pass


def _ids(words: list[str], magic: str, allow_empty: bool = False) -> list[int]:
    try:
        return parse_ids(words, magic, allow_empty)
    except ValueError as e:
        raise MagicError(str(e)) from None


def parse(line: str) -> Optional[tuple[str, list[str]]]:
    """(name, words) when line is one of our magics, else None."""
    s = line.strip()
    if "\n" in s or not s.startswith("%") or s.startswith("%%"):
        return None
    head, _, rest = s[1:].partition(" ")
    if head not in NAMES:
        return None
    try:
        return head, shlex.split(rest)
    except ValueError as e:
        raise MagicError(f"%{head}: {e}") from None


def run(conn: Connection, name: str, words: list[str]) -> str:
    return _HANDLERS[name](conn, words)


def _request(conn: Connection, msg_type: str, content: dict,
             timeout: float = REPLY_TIMEOUT) -> dict:
    return _checked(conn.request("control", msg_type, content, timeout))


def _checked(reply: dict) -> dict:
    if reply.get("status") != "ok":
        raise MagicError(f"{reply.get('ename', 'Error')}: {reply.get('evalue', '')}")
    return reply


def gvps(conn: Connection, words: list[str]) -> str:
    try:
        content = parse_gvps(words)
    except ValueError as e:
        raise MagicError(str(e)) from None
    return tables.gvps(_request(conn, "gv_list_request", {"cursor": 0, **content}))


def gvstack(conn: Connection, words: list[str]) -> str:
    return tables.gvstack(_request(conn, "gv_stack_request", {"ids": _ids(words, "gvstack")}))


def gvchan(conn: Connection, words: list[str]) -> str:
    ids = _ids(words, "gvchan", allow_empty=True)
    if len(ids) > 1:
        raise MagicError("usage: %gvchan [ID]")
    content: dict = {"offset": 0, "limit": 100}
    if ids:
        content["id"] = ids[0]
    return tables.gvchan(_request(conn, "gv_channels_request", content))


def gvcancel(conn: Connection, words: list[str]) -> str:
    reply = _request(conn, "gv_cancel_request", {"ids": _ids(words, "gvcancel")})
    return tables.gvcancel(reply)


def gvstats(conn: Connection, words: list[str]) -> str:
    if words:
        raise MagicError("usage: %gvstats")
    return tables.gvstats(_request(conn, "gv_stats_request", {}))


def gvtop(conn: Connection, words: list[str]) -> str:
    if words:
        raise MagicError("usage: %gvtop")
    from gvshell.top import run_top
    # The poller thread gets a control socket of its own; the keys use conn's, on this
    # thread (client.py: one socket, one thread). run_top returns once the poller ended.
    own = conn.thread_channel("control")
    try:
        run_top(lambda t, c, timeout: _request(conn, t, c, timeout),
                poll_request=lambda t, c, timeout: _checked(own.request(t, c, timeout)))
    finally:
        own.close()
    return ""


_HANDLERS: dict[str, Callable[[Connection, list[str]], str]] = {
    "gvps": gvps, "gvstack": gvstack, "gvchan": gvchan, "gvcancel": gvcancel,
    "gvstats": gvstats, "gvtop": gvtop,
}
