"""IPython syntax, completion and `obj?` inspection for the kernel.

IPython's input transformer (magics, `obj?`, `!cmd`, `%%cell` magics, dedent) is used
for what it is best at, but it imports all of IPython (~0.3-0.5 s here), so a cell that
is plain Python never needs it: transform_cell() tries ast.parse first.  The kernel
warms it up in the background after start (see Kernel.warm_up).

Completion and inspection are our own and small: they evaluate only dotted names
(namespace lookups and getattr, never calls), so completing `f().x` cannot run user
code, and they are deterministic and fast, which jedi is not on a first call.
"""
from __future__ import annotations

import ast
import builtins
import inspect
import keyword
import re
import threading
from typing import Any, Optional

_tm_lock = threading.Lock()
_tm: Any = None

MAX_MATCHES = 1000
MAX_INSPECT = 20_000
#: Completion and inspection look at most this many characters before the cursor (and
#: inspection as many after it): a name is never that long, and a long line costs no more.
WINDOW = 10_000
#: is_complete answers "unknown" for longer code rather than tokenising it all.
MAX_IS_COMPLETE = 1 << 20


def _transformer() -> Any:
    global _tm
    with _tm_lock:
        if _tm is None:
            from IPython.core.inputtransformer2 import TransformerManager
            _tm = TransformerManager()
        return _tm


def warm_up() -> None:
    _transformer()


def transform_cell(cell: str) -> str:
    """Python source for an IPython cell."""
    try:
        ast.parse(cell)
        return cell
    except SyntaxError:
        pass
    except (ValueError, MemoryError, RecursionError):
        return cell  # let compile() report it
    return _transformer().transform_cell(cell)


def check_complete(code: str) -> tuple[str, Optional[str]]:
    """('complete' | 'incomplete' | 'invalid', indent or None) for is_complete_request."""
    status, indent = _transformer().check_complete(code)
    if status == "incomplete":
        return status, " " * (indent or 0)
    return status, None


_NAME_AT = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")
_WORD = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_DIGITS = frozenset("0123456789")


def token_before(line: str) -> str:
    """The dotted name (`a.b.c`, or `a.b.` with a trailing dot) that ends `line`, or "".

    A backward scan, linear in the token: a regex search anchored with `$` tries every
    start position and is quadratic on a long run of word characters.  Same answer
    as the leftmost match of [A-Za-z_]\\w*(\\.[A-Za-z_]\\w*)*\\.?$ (ASCII)."""
    i = len(line)
    while i > 0 and (line[i - 1] in _WORD or line[i - 1] == "."):
        i -= 1
    parts = line[i:].split(".")
    trailing = len(parts) > 1 and parts[-1] == ""
    last = len(parts) - 2 if trailing else len(parts) - 1
    best = None
    for k in range(last, -1, -1):
        p = parts[k]
        j = next((n for n, ch in enumerate(p) if ch not in _DIGITS), None)
        if j is None:  # empty, or all digits: no name starts here or to its left
            break
        best = (k, j)
        if j:  # starts inside this part: cannot extend further left
            break
    if best is None:
        return ""
    k, j = best
    return ".".join([parts[k][j:], *parts[k + 1:last + 1]]) + ("." if trailing else "")


def _resolve(dotted: str, ns: dict) -> Any:
    """The object a dotted name refers to, without calling anything but getattr."""
    head, *rest = dotted.split(".")
    if head in ns:
        obj = ns[head]
    elif hasattr(builtins, head):
        obj = getattr(builtins, head)
    else:
        raise LookupError(head)
    for part in rest:
        obj = getattr(obj, part)
    return obj


def complete(code: str, cursor_pos: int, ns: dict, magics: list[str]) -> dict:
    """The content of a complete_reply."""
    cursor_pos = max(0, min(len(code), cursor_pos))
    before = code[max(0, cursor_pos - WINDOW):cursor_pos]
    line = before.rsplit("\n", 1)[-1]
    matches: list[str] = []
    m = re.search(r"%{1,2}([A-Za-z_]\w*)?$", line)
    if m and (line[:m.start()].strip() == ""):
        prefix = m.group(1) or ""
        pct = m.group(0)[: len(m.group(0)) - len(prefix)]
        matches = [pct + name for name in magics if name.startswith(prefix)]
        start = cursor_pos - len(m.group(0))
    else:
        token = token_before(line)
        start = cursor_pos - len(token)
        if "." in token:
            base, _, attr = token.rpartition(".")
            try:
                obj = _resolve(base, ns)
                names = dir(obj)
            except Exception:
                names = []
            hide = not attr.startswith("_")
            matches = [f"{base}.{n}" for n in names if n.startswith(attr)
                       and not (hide and n.startswith("_"))]
        else:
            pool = set(ns) | set(dir(builtins)) | set(keyword.kwlist)
            hide = not token.startswith("_")
            matches = sorted(n for n in pool if n.startswith(token)
                             and not (hide and n.startswith("_")))
    matches = sorted(set(matches), key=lambda s: (s.lower(), s))[:MAX_MATCHES]
    return {"status": "ok", "matches": matches, "cursor_start": start,
            "cursor_end": cursor_pos, "metadata": {}}


def name_at(code: str, cursor_pos: int) -> str:
    """The dotted name under (or just before) the cursor."""
    cursor_pos = max(0, min(len(code), cursor_pos))
    lo = max(0, cursor_pos - WINDOW)
    code, cursor_pos = code[lo:cursor_pos + WINDOW], cursor_pos - lo
    for m in _NAME_AT.finditer(code):
        if m.start() <= cursor_pos <= m.end():
            return m.group(0).rstrip(".")
    m = _NAME_AT.search(code[:cursor_pos].rstrip("( \t"))
    best = ""
    for m in _NAME_AT.finditer(code[:cursor_pos]):
        best = m.group(0)
    return best.rstrip(".")


def describe(obj: Any, name: str, detail: int = 0) -> str:
    """What `name?` (detail 0) or `name??` (detail 1) prints."""
    out = [f"Type:      {type(obj).__name__}"]
    try:
        r = repr(obj)
    except Exception as e:
        r = f"<repr failed: {e!r}>"
    if len(r) > 400:
        r = r[:400] + "..."
    out.append(f"String form: {r}")
    try:
        if callable(obj):
            out.append(f"Signature: {name}{inspect.signature(obj)}")
    except (TypeError, ValueError):
        pass
    try:
        f = inspect.getfile(obj)
        out.append(f"File:      {f}")
    except (TypeError, OSError):
        pass
    if detail:
        try:
            out.append("Source:\n" + inspect.getsource(obj))
        except (TypeError, OSError):
            pass
    doc = inspect.getdoc(obj)
    if doc and not (detail and len(out) and out[-1].startswith("Source:")):
        out.append("Docstring:\n" + doc)
    text = "\n".join(out)
    return text[:MAX_INSPECT]


def inspect_request(code: str, cursor_pos: int, detail: int, ns: dict) -> dict:
    """The content of an inspect_reply."""
    name = name_at(code, cursor_pos)
    if not name:
        return {"status": "ok", "found": False, "data": {}, "metadata": {}}
    try:
        obj = _resolve(name, ns)
    except Exception:
        return {"status": "ok", "found": False, "data": {}, "metadata": {}}
    return {"status": "ok", "found": True, "data": {"text/plain": describe(obj, name, detail)},
            "metadata": {}}
