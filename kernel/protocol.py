"""Constants of the wire protocol, importable without the runtime (gvshell uses them)."""

# Jupyter messaging protocol version spoken.
PROTOCOL_VERSION = "5.3"
# Version of our gv_* requests (docs/protocol.md); bump on any incompatible change.
GV_PROTOCOL_VERSION = "1.0"
# Bounds every gv_* reply keeps.
MAX_PAGE = 1000
MAX_PREVIEW = 200
MAX_REPLY_BYTES = 1 << 20
