"""Connection files, as Jupyter writes them, plus our optional CurveZMQ keys.

    {"ip": "127.0.0.1", "transport": "tcp", "shell_port": ..., "iopub_port": ...,
     "stdin_port": ..., "control_port": ..., "hb_port": ..., "key": "...",
     "signature_scheme": "hmac-sha256", "kernel_name": "gvthread"}

With --curve the file also holds "curve_server_public", "curve_server_secret",
"curve_client_public" and "curve_client_secret" (Z85): the server authenticates
exactly that client key, and a client needs the server's public key, so the whole
file is the credential, as the HMAC key already is.  It is always written 0600.
"""
from __future__ import annotations

import ipaddress
import json
import os
import socket
import tempfile
from typing import Any

PORT_NAMES = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")
CURVE_FIELDS = ("curve_server_public", "curve_server_secret", "curve_client_public",
                "curve_client_secret")


class ConnectionFileError(ValueError):
    pass


def read(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            info = json.load(f)
    except OSError as e:
        raise ConnectionFileError(f"cannot read connection file {path}: {e.strerror}") from None
    except ValueError as e:
        raise ConnectionFileError(f"connection file {path} is not JSON: {e}") from None
    if not isinstance(info, dict):
        raise ConnectionFileError(f"connection file {path} is not a JSON object")
    for name in PORT_NAMES:
        port = info.get(name, 0)
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConnectionFileError(f"{path}: {name} must be a port number, not {port!r}")
    if info.get("transport", "tcp") != "tcp":
        raise ConnectionFileError(f"{path}: only the tcp transport is supported")
    if not isinstance(info.get("key", ""), str):
        raise ConnectionFileError(f"{path}: key must be a string")
    return info


def write(path: str, info: dict[str, Any]) -> None:
    """Write atomically, created 0600 (the key and curve secrets are in it)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    # mkstemp: a fresh, unpredictable name created O_EXCL (and so never through a
    # link someone planted at a guessable name), mode 0600, in the same directory so
    # that os.replace is atomic.
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(info, f, indent=1)
            f.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def is_loopback(ip: str) -> bool:
    if ip in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        try:
            return ipaddress.ip_address(socket.gethostbyname(ip)).is_loopback
        except OSError:
            return False


def data_dir(app: str) -> str:
    """$XDG_DATA_HOME/APP (default ~/.local/share/APP): where gvkernel and gvshell keep
    their history, and, for "jupyter", Jupyter's data dir (unless $JUPYTER_DATA_DIR)."""
    if app == "jupyter" and os.environ.get("JUPYTER_DATA_DIR"):
        return os.environ["JUPYTER_DATA_DIR"]
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local",
                                                           "share")
    return os.path.join(base, app)


def runtime_dir() -> str:
    """Where Jupyter keeps connection files ($JUPYTER_RUNTIME_DIR or its default), so
    `jupyter console --existing` and `gvshell --existing` find ours."""
    return os.environ.get("JUPYTER_RUNTIME_DIR") or os.path.join(data_dir("jupyter"),
                                                                  "runtime")
