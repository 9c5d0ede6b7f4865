"""The gvkernel command: serve a kernel, or install its kernelspec.

    gvkernel [-f CONNECTION_FILE] [--ip IP] [--curve] [--workers N] [--no-monkey]
    gvkernel install [--user | --prefix P | --sys-prefix] [--name NAME]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import uuid
from typing import Optional

from gvkernel import connection

KERNEL_NAME = "gvthread"


def _serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gvkernel",
                                description="A Jupyter kernel that runs code as GVThreads. "
                                "Subcommand: `gvkernel install` writes its kernelspec.")
    p.add_argument("-f", "--connection-file", dest="connection_file",
                   help="Jupyter connection file (created 0600, with free ports and a new "
                        "key, if missing)")
    p.add_argument("--ip", default=None, help="address to listen on (default 127.0.0.1)")
    p.add_argument("--curve", action="store_true",
                   help="encrypt with CurveZMQ; the keys go into the connection file")
    p.add_argument("--workers", type=int, default=None,
                   help="worker OS threads of the runtime (default: one per CPU)")
    p.add_argument("--max-gvthreads", type=int, default=1_000_000)
    p.add_argument("--stack-size", type=_size, default=None, metavar="BYTES",
                   help="stack of each GVThread, e.g. 8M, 64K or bytes (default 8M, a "
                        "main thread's)")
    p.add_argument("--no-monkey", dest="monkey", action="store_false",
                   help="do not patch time.sleep, threading and queue for user code")
    p.add_argument("--history", default=None, help="history file (default "
                   "$GVKERNEL_HISTORY or ~/.local/share/gvkernel/history.sqlite)")
    p.add_argument("--log-level", default="WARNING")
    return p


def _size(text: str) -> int:
    """'8M', '512K', '1G' or a byte count -> bytes."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    mult = units.get(t[-1:], 1)
    try:
        n = int(t[:-1] if t[-1:] in units else t)
    except ValueError:
        n = 0
    if n <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size: give bytes or a count with K, M or G (8M, 512K)")
    return n * mult


def _install_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gvkernel install",
                                description="Write the gvthread kernelspec, so that Jupyter "
                                "clients (jupyter console --kernel gvthread, nbclient, "
                                "JupyterLab) can start gvkernel.")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true", help="in the user's Jupyter data dir")
    where.add_argument("--prefix", help="under PREFIX/share/jupyter/kernels")
    where.add_argument("--sys-prefix", action="store_true",
                       help="under sys.prefix (the default)")
    p.add_argument("--name", default=KERNEL_NAME)
    p.add_argument("--display-name", default=None)
    return p


def install(argv: list[str]) -> int:
    args = _install_parser().parse_args(argv)
    if args.user:
        root = os.path.join(connection.data_dir("jupyter"), "kernels")
    else:
        prefix = args.prefix or sys.prefix
        root = os.path.join(prefix, "share", "jupyter", "kernels")
    dest = os.path.join(root, args.name)
    os.makedirs(dest, exist_ok=True)
    v = sys.version_info
    spec = {"argv": [sys.executable, "-m", "gvkernel", "-f", "{connection_file}"],
            "display_name": args.display_name or f"GVThread (Python {v.major}.{v.minor})",
            "language": "python", "interrupt_mode": "message",
            "metadata": {"debugger": False}}
    with open(os.path.join(dest, "kernel.json"), "w", encoding="utf-8") as f:
        json.dump(spec, f, indent=1)
        f.write("\n")
    print(f"Installed kernelspec {args.name} in {dest}")
    return 0


def _curve_keys(info: dict) -> dict:
    import zmq
    if all(isinstance(info.get(k), str) and info.get(k) for k in connection.CURVE_FIELDS):
        return {k: info[k] for k in connection.CURVE_FIELDS}
    spub, ssec = zmq.curve_keypair()
    cpub, csec = zmq.curve_keypair()
    return {"curve_server_public": spub.decode(), "curve_server_secret": ssec.decode(),
            "curve_client_public": cpub.decode(), "curve_client_secret": csec.decode()}


def serve(argv: list[str]) -> int:
    args = _serve_parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
                        format="gvkernel %(levelname)s %(name)s: %(message)s",
                        stream=sys.__stderr__)
    path = args.connection_file
    if path and os.path.exists(path):
        try:
            info = connection.read(path)
        except connection.ConnectionFileError as e:
            print(f"gvkernel: {e}", file=sys.stderr)
            return 2
        fresh = False
    else:
        if not path:
            path = os.path.join(connection.runtime_dir(), f"kernel-gv-{uuid.uuid4().hex[:12]}.json")
        info = {"transport": "tcp", "signature_scheme": "hmac-sha256",
                "key": uuid.uuid4().hex, "kernel_name": KERNEL_NAME}
        fresh = True
    if args.ip is not None:
        info["ip"] = args.ip
    info.setdefault("ip", "127.0.0.1")
    if not connection.is_loopback(info["ip"]) and not info.get("key"):
        print(f"gvkernel: refusing to listen on {info['ip']} without a key: anyone who can "
              "reach it could run code. Put a key in the connection file.", file=sys.stderr)
        return 2
    curve = _curve_keys(info) if (args.curve or info.get("curve_server_public")) else None
    if curve:
        info.update(curve)
    from gvkernel.kernel import Kernel
    try:
        kernel = Kernel(info, workers=args.workers, curve=curve,
                        history_path=args.history, max_gvthreads=args.max_gvthreads,
                        stack_size=args.stack_size)
    except Exception as e:  # bind failures, bad ports: say so, don't dump a traceback
        print(f"gvkernel: cannot start: {e}", file=sys.stderr)
        return 1
    if fresh or curve:
        connection.write(path, kernel.info)
    else:
        os.chmod(path, 0o600) if os.stat(path).st_uid == os.getuid() else None
    if fresh:
        print(f"gvkernel: connection file {path}", file=sys.__stderr__, flush=True)
    if args.monkey:
        import gvthread.monkey
        gvthread.monkey.patch_all()
    try:
        kernel.start()
    except KeyboardInterrupt:
        pass
    finally:
        kernel.close()
        if fresh:
            try:
                os.unlink(path)
            except OSError:
                pass
    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    # Stuck GVThreads (a busy C call) must not hold the exit: the runtime's workers
    # are not joined, and interpreter teardown under running workers is not safe.
    os._exit(0)


def main(argv: Optional[list[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["install"]:
        return install(argv[1:])
    return serve(argv)


if __name__ == "__main__":
    raise SystemExit(main())
