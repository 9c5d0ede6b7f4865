"""The gvshell command line.

    gvshell [--workers N] [--kernel-arg ARG]...   start a local gvkernel (shut down on exit)
    gvshell --existing [FILE]                     attach to a running kernel; FILE defaults
                                                  to the newest kernel-*.json in Jupyter's
                                                  runtime dir; the kernel keeps running
    gvshell -f FILE [--ip IP]                     attach through a connection file, e.g. a
                                                  remote kernel's, reached at IP
    gvshell --ip IP --shell-port P ... --key KEY  attach without a connection file

CurveZMQ: a connection file with curve_* fields (gvkernel --curve) turns it on by itself;
--curve insists on it (no keys is an error); --curve-keys FILE takes the keys from another
file (JSON with curve_server_public, curve_client_public, curve_client_secret). A kernel
that never answers kernel_info within --timeout (wrong keys, unreachable) is an error.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Optional

from gvkernel import connection
from gvshell import client
from gvshell.client import Connection

NO_ANSWER = "no answer from the kernel (wrong keys, or not reachable)"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gvshell", description="An IPython-style terminal for "
                                "gvkernel: GVThreads, their output and state, live.",
                                epilog=__doc__.split("\n", 2)[2],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--existing", nargs="?", const="", default=None, metavar="FILE",
                       help="attach to a running kernel (default: the newest connection "
                            "file in the Jupyter runtime dir) and leave it running on exit")
    where.add_argument("-f", "--connection-file", dest="connection_file", metavar="FILE",
                       help="attach to the kernel of this connection file (left running)")
    p.add_argument("--ip", help="kernel address, overriding the connection file's (remote)")
    remote = p.add_argument_group(
        "a kernel without a connection file",
        "--ip, the five ports and --key name a running kernel (left running on exit)")
    for name in connection.PORT_NAMES:
        remote.add_argument("--" + name.replace("_", "-"), dest=name, type=int, metavar="PORT")
    remote.add_argument("--key", default=os.environ.get("GVSHELL_KEY"),
                        help="the HMAC-SHA256 signing key (default $GVSHELL_KEY; the "
                             "command line is visible to other local users)")
    sec = p.add_argument_group("CurveZMQ")
    sec.add_argument("--curve", action="store_true",
                     help="require CurveZMQ (on by itself when the connection file has "
                          "curve_* keys)")
    sec.add_argument("--curve-keys", metavar="FILE",
                     help="JSON file with curve_server_public, curve_client_public and "
                          "curve_client_secret (Z85), e.g. a copy of the kernel's "
                          "connection file; implies --curve")
    p.add_argument("--timeout", type=float, default=client.START_TIMEOUT, metavar="SECONDS",
                   help="how long the kernel may take to answer at start before gvshell "
                        f"gives up (default {client.START_TIMEOUT:g})")
    p.add_argument("--workers", type=int, help="worker threads of a kernel gvshell starts")
    p.add_argument("--kernel-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for a kernel gvshell starts (repeatable)")
    p.add_argument("--style", default=os.environ.get("GVSHELL_STYLE", "default"),
                   help="pygments style for the input (default: default)")
    return p


def _attach_file(args: argparse.Namespace) -> Optional[str]:
    if args.connection_file:
        return args.connection_file
    if args.existing is None:
        return None
    if args.existing == "":
        return client.newest_connection_file()
    if os.path.exists(args.existing):
        return args.existing
    # as jupyter console: a bare name is looked up in the runtime dir
    return os.path.join(client.runtime_dir(), args.existing)


def _given_ports(args: argparse.Namespace) -> dict:
    return {n: getattr(args, n) for n in connection.PORT_NAMES if getattr(args, n) is not None}


def _remote(args: argparse.Namespace, path: Optional[str]) -> Connection:
    """Attach to a running kernel: a connection file, --ip and ports, or both (the
    command line's ports and key override the file's)."""
    curve = client.read_curve_keys(args.curve_keys) if args.curve_keys else None
    require = bool(args.curve or args.curve_keys)
    ports = _given_ports(args)
    if path is None:
        missing = [n for n in connection.PORT_NAMES if n not in ports]
        if missing:
            raise ValueError("without a connection file give every port: missing "
                             + ", ".join("--" + n.replace("_", "-") for n in missing))
        if not args.ip:
            raise ValueError("without a connection file give the kernel's --ip")
        info = {"transport": "tcp", "signature_scheme": "hmac-sha256", "ip": args.ip,
                "key": args.key or "", **ports}
        name = f"tcp://{args.ip} (ports from the command line)"
        return Connection(name, info=info, curve=curve, require_curve=require,
                          start_timeout=args.timeout)
    info = None
    if ports or args.key is not None:
        info = connection.read(path)
        info.update(ports)
        if args.key is not None:
            info["key"] = args.key
    return Connection(path, ip=args.ip, info=info, curve=curve, require_curve=require,
                      start_timeout=args.timeout)


def main(argv: Optional[list[str]] = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # before a kernel exists: its lazy imports, argument checks
        print("gvshell: interrupted", file=sys.stderr)
        return 130


def _main(argv: Optional[list[str]]) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.timeout <= 0:
        print("gvshell: --timeout must be positive", file=sys.stderr)
        return 2
    from pygments.styles import get_style_by_name
    from pygments.util import ClassNotFound

    from gvshell.repl import Shell  # prompt_toolkit only once the arguments are fine
    try:
        get_style_by_name(args.style)
    except ClassNotFound:
        print(f"gvshell: no pygments style {args.style!r}", file=sys.stderr)
        return 2
    # A closed terminal (SIGHUP) or a kill (SIGTERM) must still shut down our kernel,
    # which runs in its own session: leave through the cleanup below, or run()'s finally.
    for sig in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, _leave)
    conn: Optional[Connection] = None
    try:
        try:
            path = _attach_file(args)
            if path is None and not _given_ports(args):
                kargs = list(args.kernel_arg)
                if args.workers:
                    kargs += ["--workers", str(args.workers)]
                if args.curve or args.curve_keys:
                    raise ValueError("--curve is for attaching; a kernel gvshell starts "
                                     "listens on loopback only (--kernel-arg=--curve for one)")
                conn = Connection.start_local(kargs, start_timeout=args.timeout)
            else:
                kargs = []
                conn = _remote(args, path)
        except Exception as e:
            print(f"gvshell: {e}", file=sys.stderr)
            return 1
        try:
            shell = Shell(conn, kargs, style=args.style)
        except Exception as e:  # e.g. the history file's directory cannot be made
            print(f"gvshell: {e}", file=sys.stderr)
            _close(conn)
            return 1
        try:
            shell.attach()
        except TimeoutError:
            print(f"gvshell: {NO_ANSWER} in {args.timeout:g} s", file=sys.stderr)
            shell.detach(shutdown=conn.owned)
            return 1
        except Exception as e:
            print(f"gvshell: the kernel does not answer: {e}", file=sys.stderr)
            shell.detach(shutdown=conn.owned)
            return 1
        except BaseException:
            shell.detach(shutdown=conn.owned)
            raise
        return shell.run()
    except KeyboardInterrupt:  # Ctrl-C while starting: the kernel is ended above or here
        _close(conn)
        print("gvshell: interrupted", file=sys.stderr)
        return 130
    except BaseException:
        _close(conn)
        raise


def _close(conn: Optional[Connection]) -> None:
    """Detach from conn, shutting our own kernel down (idempotent: a second close only
    stops what is left)."""
    if conn is not None:
        conn.close(shutdown=conn.owned)


def _leave(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    raise SystemExit(main())
