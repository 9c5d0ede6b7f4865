"""The gvshell command line.

    gvshell [--workers N] [--kernel-arg ARG]...   start a local gvkernel (shut down on exit)
    gvshell --existing [FILE]                     attach to a running kernel; FILE defaults
                                                  to the newest kernel-*.json in Jupyter's
                                                  runtime dir; the kernel keeps running
    gvshell -f FILE [--ip IP]                     attach through a connection file, e.g. a
                                                  remote kernel's, reached at IP
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Optional

from gvshell import client
from gvshell.client import Connection


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gvshell", description="An IPython-style terminal for "
                                "gvkernel: GVThreads, their output and state, live.")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--existing", nargs="?", const="", default=None, metavar="FILE",
                       help="attach to a running kernel (default: the newest connection "
                            "file in the Jupyter runtime dir) and leave it running on exit")
    where.add_argument("-f", "--connection-file", dest="connection_file", metavar="FILE",
                       help="attach to the kernel of this connection file (left running)")
    p.add_argument("--ip", help="kernel address, overriding the connection file's (remote)")
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


def main(argv: Optional[list[str]] = None) -> int:
    args = parser().parse_args(sys.argv[1:] if argv is None else argv)
    from pygments.styles import get_style_by_name
    from pygments.util import ClassNotFound

    from gvshell.repl import Shell  # prompt_toolkit only once the arguments are fine
    try:
        get_style_by_name(args.style)
    except ClassNotFound:
        print(f"gvshell: no pygments style {args.style!r}", file=sys.stderr)
        return 2
    try:
        path = _attach_file(args)
        if path is None:
            kargs = list(args.kernel_arg)
            if args.workers:
                kargs += ["--workers", str(args.workers)]
            conn = Connection.start_local(kargs)
        else:
            kargs = []
            conn = Connection(path, ip=args.ip)
    except Exception as e:
        print(f"gvshell: {e}", file=sys.stderr)
        return 1
    shell = Shell(conn, kargs, style=args.style)
    try:
        shell.attach()
    except Exception as e:
        print(f"gvshell: the kernel does not answer: {e}", file=sys.stderr)
        shell.detach(shutdown=conn.owned)
        return 1
    # A closed terminal (SIGHUP) or a kill (SIGTERM) must still shut down our kernel,
    # which runs in its own session: leave through run()'s finally.
    for sig in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, _leave)
    return shell.run()


def _leave(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    raise SystemExit(main())
