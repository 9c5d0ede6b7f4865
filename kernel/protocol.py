"""Constants of the wire protocol, and the %gvspawn option syntax, importable without the
runtime (gvshell uses them)."""
import re

# Jupyter messaging protocol version spoken.
PROTOCOL_VERSION = "5.3"
# Version of our gv_* requests (docs/protocol.md); bump on any incompatible change.
GV_PROTOCOL_VERSION = "1.0"
# Bounds every gv_* reply keeps.
MAX_PAGE = 1000
MAX_PREVIEW = 200
MAX_REPLY_BYTES = 1 << 20


_OPT = re.compile(r"\s*--(name|priority)(?:=|\s+)(\"[^\"]*\"|'[^']*'|\S+)")


def parse_spawn_args(line: str) -> tuple[dict, str]:
    """`[--name N] [--priority P] CODE` -> ({name, priority}, CODE)."""
    opts: dict[str, str] = {}
    pos = 0
    while True:
        m = _OPT.match(line, pos)
        if not m:
            break
        value = m.group(2)
        if value[:1] in "\"'":
            value = value[1:-1]
        opts[m.group(1)] = value
        pos = m.end()
    return opts, line[pos:].strip()


# The arguments of the inspection magics, shared by the kernel's magics, gvshell and the
# IPython extension; each raises ValueError (with the usage) that its caller turns into
# its own kind of usage error.
GVPS_USAGE = ("usage: %gvps [--state S[,S...]] [--name SUBSTR] [--priority P] [--limit N] "
              "[--all]")
_GVPS_OPTS = {"--state": "state", "-s": "state", "--name": "name", "-n": "name",
              "--priority": "priority", "-p": "priority", "--limit": "limit"}


def parse_gvps(words: list) -> dict:
    """The gv_list_request content for `%gvps WORDS` (shell-split words)."""
    content: dict = {"limit": 100}
    states: list = []
    it = iter(words)
    for word in it:
        if word in ("--all", "-a"):
            content["limit"] = MAX_PAGE
            continue
        key = _GVPS_OPTS.get(word)
        value = next(it, None)
        if key is None or value is None:
            raise ValueError(GVPS_USAGE)
        if key == "state":
            states += [s for s in value.split(",") if s]
        elif key == "limit":
            try:
                content["limit"] = int(value)
            except ValueError:
                raise ValueError(GVPS_USAGE) from None
        else:
            content[key] = value
    if states:
        content["state"] = states
    return content


def parse_ids(words: list, magic: str, allow_empty: bool = False) -> list:
    """GVThread (or channel) ids from `%magic WORDS`; commas separate too."""
    parts = [p for w in words for p in str(w).split(",") if p]
    if not parts and not allow_empty:
        raise ValueError(f"usage: %{magic} ID [ID...]")
    try:
        return [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"%{magic}: GVThread ids are integers, not {parts!r}") from None
