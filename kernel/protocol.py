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
