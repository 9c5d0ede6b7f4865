"""Framing and signing of Jupyter messages: the one place that touches the wire format.

A message on a ROUTER socket is

    [routing ids..., b"<IDS|MSG>", signature, header, parent_header, metadata, content,
     buffers...]

where signature = hex(HMAC-SHA256(key, header + parent_header + metadata + content)).
We check it with hmac.compare_digest, refuse a signature seen before (a replay), and
drop and count whatever does not parse; nothing that fails here reaches a handler.

This is our own small module rather than jupyter_client.session: it imports in a few
milliseconds (jupyter_client pulls in traitlets and more), and the kernel needs exact
control over what is counted and logged when a message is refused.
"""
from __future__ import annotations

import collections
import datetime
import hashlib
import hmac
import json
import logging
import os
import threading
import uuid
from typing import Any, Optional

from gvkernel.protocol import PROTOCOL_VERSION

log = logging.getLogger("gvkernel.session")

DELIM = b"<IDS|MSG>"
# How many signatures are remembered to refuse replays; older ones fall out.
REPLAY_WINDOW = 1 << 16
# A message larger than this is refused before its JSON is parsed.
MAX_MESSAGE_BYTES = 64 << 20


class MessageError(Exception):
    """A message that is refused; `reason` is the counter it is filed under."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def _default(obj: Any) -> Any:
    if isinstance(obj, datetime.datetime):
        return obj.isoformat()
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return repr(obj)


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, default=_default, ensure_ascii=False,
                      separators=(",", ":")).encode("utf-8", "surrogatepass")


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


class Session:
    """Signs outgoing messages and checks incoming ones for one kernel.

    Thread-safe: the shell, control and iopub threads share one instance."""

    def __init__(self, key: bytes, signature_scheme: str = "hmac-sha256",
                 username: str = "gvkernel"):
        if signature_scheme != "hmac-sha256":
            raise ValueError(f"unsupported signature_scheme {signature_scheme!r} "
                             "(only hmac-sha256)")
        self.key = key
        self.session_id = uuid.uuid4().hex
        self.username = username
        self._lock = threading.Lock()
        self._seen: set[bytes] = set()
        self._seen_order: collections.deque[bytes] = collections.deque()
        self.dropped: collections.Counter[str] = collections.Counter()
        self.received = 0

    # -- signing ---------------------------------------------------------
    def sign(self, parts: list[bytes]) -> bytes:
        if not self.key:
            return b""
        h = hmac.new(self.key, digestmod=hashlib.sha256)
        for p in parts:
            h.update(p)
        return h.hexdigest().encode("ascii")

    # -- outgoing --------------------------------------------------------
    def header(self, msg_type: str) -> dict:
        return {"msg_id": uuid.uuid4().hex, "msg_type": msg_type, "session": self.session_id,
                "username": self.username, "date": now(), "version": PROTOCOL_VERSION}

    def serialize(self, msg_type: str, content: Any, parent: Optional[dict] = None,
                  metadata: Any = None, idents: Optional[list[bytes]] = None,
                  buffers: Optional[list[bytes]] = None) -> list[bytes]:
        """The frames of a message, ready for send_multipart.  `content` and `metadata`
        may be bytes already serialised with dumps() (by the producer of user-provided
        data, so that what cannot be serialised fails there, not in the publisher)."""
        body = [dumps(self.header(msg_type)), dumps(parent or {}),
                metadata if isinstance(metadata, bytes) else dumps(metadata or {}),
                content if isinstance(content, bytes) else dumps(content)]
        return [*(idents or []), DELIM, self.sign(body), *body, *(buffers or [])]

    # -- incoming --------------------------------------------------------
    def deserialize(self, frames: list[bytes]) -> tuple[list[bytes], dict]:
        """(routing ids, message dict) of a received multipart message, or MessageError.

        Every refusal is counted under its reason and logged; the caller drops it."""
        try:
            return self._deserialize(frames)
        except MessageError as e:
            with self._lock:
                self.dropped[e.reason] += 1
            log.warning("dropped a message: %s", e)
            raise

    def _deserialize(self, frames: list[bytes]) -> tuple[list[bytes], dict]:
        try:
            i = frames.index(DELIM)
        except ValueError:
            raise MessageError("malformed", "no <IDS|MSG> delimiter") from None
        idents, rest = frames[:i], frames[i + 1:]
        if len(rest) < 5:
            raise MessageError("malformed", f"{len(rest)} frames after the delimiter, need 5")
        if sum(len(f) for f in rest) > MAX_MESSAGE_BYTES:
            raise MessageError("too_large", f"over {MAX_MESSAGE_BYTES} bytes")
        sig, body, buffers = rest[0], rest[1:5], rest[5:]
        if self.key:
            if not sig:
                raise MessageError("unsigned", "empty signature")
            if not hmac.compare_digest(sig, self.sign(body)):
                raise MessageError("bad_signature", "signature does not match the content")
            with self._lock:
                if sig in self._seen:
                    raise MessageError("replayed", "signature seen before")
                self._seen.add(sig)
                self._seen_order.append(sig)
                if len(self._seen_order) > REPLAY_WINDOW:
                    self._seen.discard(self._seen_order.popleft())
        try:
            header, parent, metadata, content = (json.loads(b) for b in body)
        except Exception as e:  # noqa: BLE001 - ValueError, and RecursionError on deep
            # nesting (a signed message can nest 100,000 levels): whatever the parser
            # raises, the message is refused, never the loop that read it.
            raise MessageError("malformed", f"bad JSON: {type(e).__name__}: "
                               f"{str(e)[:200]}") from None
        if not all(isinstance(x, dict) for x in (header, parent, metadata, content)):
            raise MessageError("malformed", "header, parent, metadata and content must be objects")
        msg_type = header.get("msg_type")
        if not isinstance(msg_type, str) or not msg_type:
            raise MessageError("malformed", "header has no msg_type")
        with self._lock:
            self.received += 1
        return idents, {"header": header, "parent_header": parent, "metadata": metadata,
                        "content": content, "msg_type": msg_type, "buffers": buffers}

    def security_stats(self) -> dict:
        with self._lock:
            return {"received": self.received, "dropped": dict(self.dropped),
                    "dropped_total": sum(self.dropped.values())}


def new_key() -> bytes:
    return uuid.UUID(bytes=os.urandom(16)).hex.encode("ascii")
