"""Plain-text renderings of gv_* replies, shared by the kernel's magics and gvshell.

Functions here take reply contents (dicts, as they come off the wire) and return text;
they import nothing of the runtime, so a client can use them.
"""
from __future__ import annotations

from typing import Any, Iterable


def _cpu(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    if seconds < 1:
        return f"{seconds * 1e3:.1f}ms"
    return f"{seconds:.2f}s"


def table(headers: list[str], rows: Iterable[list[Any]]) -> str:
    rows = [["-" if v is None else str(v) for v in r] for r in rows]
    widths = [len(h) for h in headers]
    for r in rows:
        for i, v in enumerate(r):
            widths[i] = max(widths[i], len(v))
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*headers).rstrip()]
    lines += [fmt.format(*r).rstrip() for r in rows]
    return "\n".join(lines)


def gvps(reply: dict) -> str:
    items = reply.get("items", [])
    text = table(["ID", "NAME", "STATE", "PRIO", "WORKER", "CPU", "SWITCHES", "WAITING ON"],
                 [[g.get("id"), (g.get("name") or "")[:32], g.get("state"), g.get("priority"),
                   g.get("worker"), _cpu(g.get("cpu_time")), g.get("switches"),
                   g.get("waiting_on") or ""] for g in items])
    total = reply.get("total", len(items))
    if total > len(items):
        text += f"\n({len(items)} of {total} shown)"
    return text


def gvstack(reply: dict) -> str:
    out = []
    for gid, entry in reply.get("stacks", {}).items():
        if "error" in entry:
            out.append(f"GVThread {gid}: {entry['error']}")
            continue
        out.append(f"GVThread {gid} (most recent call last):")
        frames = entry.get("frames", [])
        if not frames:
            out.append("  (no Python frames: not started, or native)")
        for f in frames:
            out.append(f'  File "{f["filename"]}", line {f["lineno"]}, in {f["function"]}')
            if f.get("line"):
                out.append(f"    {f['line']}")
    return "\n".join(out)


def gvchan(reply: dict) -> str:
    items = reply.get("items", [])
    text = table(["ID", "NAME", "CAP", "LEN", "CLOSED", "SENDERS", "RECEIVERS", "PREVIEW"],
                 [[c.get("id"), (c.get("name") or "")[:24], c.get("capacity"), c.get("length"),
                   "yes" if c.get("closed") else "no", c.get("senders_waiting", 0),
                   c.get("receivers_waiting", 0),
                   ", ".join(c.get("preview", []))[:60]] for c in items])
    total = reply.get("total", len(items))
    if total > len(items):
        text += f"\n({len(items)} of {total} shown)"
    return text


def gvcancel(reply: dict) -> str:
    what = {True: "cancelled", False: "already finished", None: "no such live GVThread"}
    return "\n".join(f"GVThread {gid}: {what.get(ok, ok)}"
                     for gid, ok in reply.get("cancelled", {}).items())


def gvstats(reply: dict) -> str:
    rt = reply.get("runtime", {})
    states = reply.get("states", {})
    lines = [f"workers: {reply.get('workers')}   time slice: {reply.get('time_slice')} s",
             "GVThreads: " + ", ".join(f"{k} {v}" for k, v in states.items()),
             f"spawned {rt.get('spawned')}, finished {rt.get('finished')}, "
             f"live {rt.get('live')}"]
    keys = ["switches", "yields", "steals", "parks", "coop_preemptions", "forced_preemptions",
            "priority_preempts", "handoffs"]
    lines.append(table(["WORKER", *[k.upper() for k in keys]],
                       [[i, *[w.get(k) for k in keys]]
                        for i, w in enumerate(rt.get("workers", []))]
                       + [["total", *[rt.get(k) for k in keys]]]))
    kernel = reply.get("kernel")
    if kernel:
        sec = kernel.get("security", {})
        lines.append(f"kernel: up {kernel.get('uptime', 0):.0f} s, messages received "
                     f"{sec.get('received')}, dropped {sec.get('dropped_total')}")
    return "\n".join(lines)
