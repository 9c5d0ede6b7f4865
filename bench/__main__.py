"""``python -m bench SUITE [options]``: run a benchmark suite, one line per figure.

Exit status: 0 when every measurement ran (a missed target prints MISS and is only
informative), 1 when one crashed or timed out, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys

from . import SUITES
from ._runner import Options, format_line, run_figures


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="GVThread benchmarks, measured side by side with their peers.",
        epilog="suites: " + "; ".join(f"{k}: {v[1]}" for k, v in SUITES.items()),
    )
    p.add_argument("suite", nargs="?", choices=sorted(SUITES), help="suite to run")
    p.add_argument("--repeat", type=int, default=3, metavar="N",
                   help="runs per side; the median is reported (default 3)")
    p.add_argument("--quick", action="store_true",
                   help="smaller sizes, for a smoke test (figures are less stable)")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of lines")
    p.add_argument("-k", dest="select", metavar="SUBSTR", action="append",
                   help="only figures whose name contains SUBSTR (repeatable)")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="seconds allowed to one measurement child "
                        "(default 300, or 60 with --quick)")
    p.add_argument("--list", action="store_true", help="list the suite's figures and exit")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="print every sample to stderr as it is measured")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.suite is None:
        for name, (_, desc) in SUITES.items():
            print(f"{name:<8} {desc}")
        return 0
    if args.repeat < 1:
        parser.error("--repeat must be >= 1")

    module_name = SUITES[args.suite][0]
    module = importlib.import_module(module_name)
    figures = list(module.FIGURES)
    if args.select:
        figures = [f for f in figures if any(s in f.name for s in args.select)]
        if not figures:
            parser.error(f"no figure of {args.suite!r} matches {args.select}")
    if args.list:
        for f in figures:
            print(f"{f.name:<24} {f.unit:<10} vs {f.peer.label:<9} {f.doc}")
        return 0

    opts = Options(repeat=args.repeat, quick=args.quick, verbose=args.verbose,
                   timeout=args.timeout if args.timeout is not None
                   else (60.0 if args.quick else 300.0))
    print(f"# bench {args.suite}: {platform.python_implementation()} "
          f"{platform.python_version()}, {os.cpu_count()} CPUs, median of {opts.repeat}"
          f"{', quick' if opts.quick else ''}", file=sys.stderr, flush=True)

    def emit(res):
        if not args.json:
            print(format_line(res), flush=True)
        for e in res.errors:
            print(f"# {res.figure.name}: {e}", file=sys.stderr, flush=True)

    results = run_figures(module_name, figures, opts, emit=emit)
    if args.json:
        json.dump([r.to_json() for r in results], sys.stdout, indent=2)
        print()
    return 1 if any(r.crashed for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
