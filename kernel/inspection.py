"""The gv_* inspection requests: what they take, what they answer, and their bounds.

Each function takes the request's content and returns the reply's content; a bad
argument raises RequestError, which the kernel turns into an error reply.  Every
reply is bounded (MAX_PAGE rows, MAX_PREVIEW characters per preview, MAX_REPLY_BYTES
in all) so that inspecting a busy kernel never hurts it.  docs/protocol.md is the
contract; GV_PROTOCOL_VERSION changes when it does.
"""
from __future__ import annotations

import json
import time
from typing import Any, Callable, Optional

import gvthread
from gvthread._types import Priority, State, WaitKind, coerce_priority

from gvkernel.protocol import MAX_PAGE, MAX_PREVIEW, MAX_REPLY_BYTES

DEFAULT_PAGE = 100
MAX_STACK_IDS = 64
MAX_FRAMES = 200


class RequestError(ValueError):
    pass


def _int(content: dict, key: str, default: int, lo: int, hi: int) -> int:
    v = content.get(key, default)
    if v is None:
        return default
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise RequestError(f"{key} must be an integer in {lo}..{hi}, not {v!r}")
    return v


def _names(value: Any, enum: Any, what: str) -> int:
    """A bitmask from one name/number or a list of them (None: 0 = any)."""
    if value is None:
        return 0
    items = value if isinstance(value, list) else [value]
    mask = 0
    for item in items:
        try:
            if what == "priority":
                mask |= 1 << coerce_priority(item)
            elif isinstance(item, str):
                mask |= 1 << int(enum[item.upper()])
            elif isinstance(item, int) and not isinstance(item, bool):
                mask |= 1 << int(enum(item))
            else:
                raise KeyError(item)
        except (KeyError, ValueError):
            names = ", ".join(m.name.lower() for m in enum)
            raise RequestError(f"unknown {what} {item!r}; expected one of {names}") from None
    return mask


def _row(t: tuple) -> dict:
    (gid, name, state, prio, worker, created, started, switches, wait_kind, wait_obj, cpu,
     preemptions) = t
    return {"id": gid, "name": name[:MAX_PREVIEW], "state": state.name.lower(),
            "priority": prio.name.lower(), "worker": worker, "created": created,
            "started": started, "switches": switches, "cpu_time": cpu,
            "preemptions": preemptions,
            "waiting_on": WaitKind(wait_kind).name.lower() if wait_kind else None,
            "wait_obj": wait_obj if wait_kind else None}


def _fit(reply: dict, key: str) -> dict:
    """Drop rows from reply[key] until its JSON is within MAX_REPLY_BYTES."""
    size = len(json.dumps(reply, default=repr))
    if size <= MAX_REPLY_BYTES:
        return reply
    rows = reply[key]
    while rows and size > MAX_REPLY_BYTES:
        keep = max(0, int(len(rows) * MAX_REPLY_BYTES / size) - 1)
        rows = rows[:keep]
        reply[key] = rows
        size = len(json.dumps(reply, default=repr))
    reply["truncated"] = True
    return reply


def gv_list(rt: gvthread.Runtime, content: dict) -> dict:
    """A page of live GVThreads.  content: cursor (from next_cursor; 0 first),
    limit (<= 1000), state, priority (a name or a list), name (substring)."""
    cursor = _int(content, "cursor", 0, 0, 2**32 - 1)
    limit = _int(content, "limit", DEFAULT_PAGE, 0, MAX_PAGE)
    states = _names(content.get("state"), State, "state")
    prios = _names(content.get("priority"), Priority, "priority")
    name = content.get("name")
    if name is not None and not isinstance(name, str):
        raise RequestError("name must be a string")
    rows, nxt, matched = rt._core.snapshot(cursor, limit, states, prios, name)
    return _fit({"items": [_row(t) for t in rows], "next_cursor": nxt, "total": matched,
                 "limit": limit}, "items")


def _ids(content: dict, key: str = "ids", most: int = MAX_STACK_IDS) -> list[int]:
    ids = content.get(key)
    if isinstance(ids, int) and not isinstance(ids, bool):
        ids = [ids]
    if (not isinstance(ids, list) or not ids or len(ids) > most
            or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < 2**63
                       for i in ids)):
        raise RequestError(f"{key} must be a GVThread id or a list of 1..{most} ids")
    return ids


def gv_stack(rt: gvthread.Runtime, content: dict) -> dict:
    """Python stacks, outermost frame first, of the GVThreads in content["ids"]."""
    stacks: dict[str, Any] = {}
    for gid in _ids(content):
        try:
            frames = rt.stack(gid)
        except KeyError:
            stacks[str(gid)] = {"error": f"no live GVThread with id {gid}"}
            continue
        frames = frames[-MAX_FRAMES:]
        stacks[str(gid)] = {"frames": [{"filename": f, "lineno": ln, "function": fn,
                                        "line": line[:MAX_PREVIEW]}
                                       for f, ln, fn, line in frames]}
    reply = {"stacks": stacks}
    if len(json.dumps(reply)) > MAX_REPLY_BYTES:
        for entry in stacks.values():
            if "frames" in entry:
                entry["frames"] = entry["frames"][-20:]
        reply["truncated"] = True
    return reply


def gv_channels(rt: gvthread.Runtime, content: dict) -> dict:
    """A page of live channels, with bounded previews of what is queued."""
    offset = _int(content, "offset", 0, 0, 2**63 - 1)
    limit = _int(content, "limit", DEFAULT_PAGE, 0, MAX_PAGE)
    preview = _int(content, "preview", 5, 0, 50)
    chars = _int(content, "preview_chars", 80, 1, MAX_PREVIEW)
    cid = content.get("id")
    if cid is not None and (not isinstance(cid, int) or isinstance(cid, bool)):
        raise RequestError("id must be a channel id")
    chans = rt.channels(preview=preview, preview_chars=chars)
    if cid is not None:
        chans = [c for c in chans if c.get("id") == cid]
    page = chans[offset:offset + limit]
    nxt = offset + limit if offset + limit < len(chans) else None
    return _fit({"items": page, "total": len(chans), "next_offset": nxt, "limit": limit},
                "items")


def gv_stats(rt: gvthread.Runtime, content: dict, extra: Optional[dict] = None) -> dict:
    stats = rt.stats()
    counts: dict[str, int] = {}
    for st in State:
        if st in (State.FINISHED, State.CANCELLED):
            continue
        counts[st.name.lower()] = rt._core.snapshot(0, 0, 1 << int(st))[2]
    reply = {"runtime": stats, "states": counts, "time": time.time(),
             "workers": rt.workers, "time_slice": rt.time_slice}
    if extra:
        reply.update(extra)
    return reply


def gv_cancel(rt: gvthread.Runtime, content: dict) -> dict:
    """Cancel GVThreads by id: per id, true if a cancellation was delivered, false if
    it had already ended, null if there is no such live GVThread."""
    out: dict[str, Optional[bool]] = {}
    for gid in _ids(content, "ids" if "ids" in content else "id", MAX_PAGE):
        try:
            out[str(gid)] = bool(rt.handle(gid).cancel())
        except KeyError:
            out[str(gid)] = None
    return {"cancelled": out}


_ANSWERS = {"gv_list_request": gv_list, "gv_stack_request": gv_stack,
            "gv_channels_request": gv_channels, "gv_cancel_request": gv_cancel}


def answer(rt: gvthread.Runtime, msg_type: str, content: dict,
           stats_extra: Optional[Callable[[], dict]] = None) -> dict:
    """The reply content of any gv_* request but gv_spawn (which needs a namespace to run
    in): the kernel and the IPython extension's in-process back end both answer here.
    RequestError for bad arguments; KeyError for a msg_type that is not one of ours."""
    if msg_type == "gv_stats_request":
        return gv_stats(rt, content, stats_extra() if stats_extra else None)
    return _ANSWERS[msg_type](rt, content)
