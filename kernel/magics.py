"""Magics of the kernel, and the object `get_ipython()` returns in the user namespace.

IPython's input transformer turns `%name args`, `%%name`, `obj?` and `!cmd` into calls
on get_ipython(): run_line_magic, run_cell_magic, system, getoutput.  This is that
object.  A magic we do not have raises UsageError with the list of those we do.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import time
from typing import Any, Callable, Optional

import gvthread
from gvkernel import inspection, introspect, tables
from gvkernel.protocol import parse_gvps, parse_ids, parse_spawn_args


class UsageError(Exception):
    pass


def _usage(parse, *args):
    """parse(*args), its ValueError as our UsageError."""
    try:
        return parse(*args)
    except ValueError as e:
        raise UsageError(str(e)) from None


class Magics:
    def __init__(self, kernel: Any):
        self.kernel = kernel
        self.line: dict[str, Callable[[str], Any]] = {
            "gvspawn": self.gvspawn, "gvps": self.gvps, "gvstack": self.gvstack,
            "gvchan": self.gvchan, "gvstats": self.gvstats, "gvcancel": self.gvcancel,
            "pinfo": self.pinfo, "pinfo2": self.pinfo2, "time": self.time_line,
            "timeit": self.timeit_line, "who": self.who, "pwd": self.pwd, "cd": self.cd,
            "env": self.env, "lsmagic": self.lsmagic,
        }
        self.cell: dict[str, Callable[[str, str], Any]] = {
            "gvspawn": self.gvspawn_cell, "time": self.time_cell, "timeit": self.timeit_cell,
        }

    @property
    def user_ns(self) -> dict:
        return self.kernel.user_ns

    def names(self) -> list[str]:
        return sorted(set(self.line) | set(self.cell))

    # -- what IPython's transformer calls ------------------------------------
    def run_line_magic(self, name: str, line: str, _stack_depth: int = 1) -> Any:
        fn = self.line.get(name)
        if fn is None:
            raise UsageError(f"Line magic function `%{name}` not found (gvkernel has: "
                             f"{', '.join('%' + n for n in sorted(self.line))}).")
        return fn(line)

    def run_cell_magic(self, name: str, line: str, cell: str) -> Any:
        fn = self.cell.get(name)
        if fn is None:
            raise UsageError(f"Cell magic `%%{name}` not found (gvkernel has: "
                             f"{', '.join('%%' + n for n in sorted(self.cell))}).")
        return fn(line, cell)

    def system(self, cmd: str) -> int:
        """!cmd: runs in a shell on the blocking pool; its output is printed."""
        proc = gvthread.spawn_blocking(subprocess.run, cmd, shell=True, capture_output=True,
                                       text=True, errors="replace").join()
        if proc.stdout:
            print(proc.stdout, end="")
        if proc.stderr:
            import sys
            print(proc.stderr, end="", file=sys.stderr)
        self.user_ns["_exit_code"] = proc.returncode
        return proc.returncode

    def getoutput(self, cmd: str, split: bool = True, depth: int = 0) -> Any:
        proc = gvthread.spawn_blocking(subprocess.run, cmd, shell=True, capture_output=True,
                                       text=True, errors="replace").join()
        return proc.stdout.splitlines() if split else proc.stdout

    # -- gv magics ---------------------------------------------------------------
    def _parent(self) -> dict:
        parent, _ = self.kernel.output_target()
        return parent or {}

    def gvspawn(self, line: str) -> gvthread.Handle:
        opts, code = parse_spawn_args(line)
        if not code:
            raise UsageError("usage: %gvspawn [--name N] [--priority P] CODE")
        return self.kernel.spawn_background(code, self._parent(), name=opts.get("name"),
                                            priority=opts.get("priority", "normal"))

    def gvspawn_cell(self, line: str, cell: str) -> gvthread.Handle:
        opts, rest = parse_spawn_args(line)
        if rest:
            raise UsageError(f"%%gvspawn: unexpected {rest!r} (usage: %%gvspawn [--name N] "
                             "[--priority P], then the code on the next lines)")
        return self.kernel.spawn_background(cell, self._parent(), name=opts.get("name"),
                                            priority=opts.get("priority", "normal"))

    def gvps(self, line: str) -> None:
        print(tables.gvps(inspection.gv_list(self.kernel.runtime,
                                             _usage(parse_gvps, shlex.split(line)))))

    def _ids(self, line: str, what: str, allow_empty: bool = False) -> list[int]:
        return _usage(parse_ids, line.split(), what, allow_empty)

    def gvstack(self, line: str) -> None:
        ids = self._ids(line, "gvstack")
        print(tables.gvstack(inspection.gv_stack(self.kernel.runtime, {"ids": ids})))

    def gvchan(self, line: str) -> None:
        content: dict[str, Any] = {}
        if line.strip():
            content["id"] = self._ids(line, "gvchan")[0]
        print(tables.gvchan(inspection.gv_channels(self.kernel.runtime, content)))

    def gvstats(self, line: str) -> None:
        print(tables.gvstats(inspection.gv_stats(self.kernel.runtime, {},
                                                 {"kernel": self.kernel.kernel_stats()})))

    def gvcancel(self, line: str) -> None:
        ids = self._ids(line, "gvcancel")
        reply = inspection.gv_cancel(self.kernel.runtime, {"ids": ids})
        print(tables.gvcancel(reply))

    # -- a few of IPython's own ----------------------------------------------------
    def _info(self, line: str, detail: int) -> None:
        name = line.strip()
        try:
            obj = introspect._resolve(name, self.user_ns)
        except Exception:
            print(f"Object `{name}` not found.")
            return
        print(introspect.describe(obj, name, detail))

    def pinfo(self, line: str) -> None:
        self._info(line, 0)

    def pinfo2(self, line: str) -> None:
        self._info(line, 1)

    def _run(self, code: str) -> Any:
        body, expr = self.kernel.compile_cell(code, "<magic>")
        exec(body, self.user_ns)
        return eval(expr, self.user_ns) if expr is not None else None

    def time_line(self, line: str) -> Any:
        return self.time_cell("", line)

    def time_cell(self, line: str, cell: str) -> Any:
        t0 = time.perf_counter()
        try:
            return self._run(cell)
        finally:
            wall = time.perf_counter() - t0
            print(f"Wall time: {_dur(wall)}")

    def timeit_line(self, line: str) -> None:
        self.timeit_cell("", line)

    def timeit_cell(self, line: str, cell: str) -> None:
        body, expr = self.kernel.compile_cell(cell, "<timeit>")
        number, best = 1, float("inf")
        while True:
            t0 = time.perf_counter()
            for _ in range(number):
                exec(body, self.user_ns)
                if expr is not None:
                    eval(expr, self.user_ns)
            dt = time.perf_counter() - t0
            if dt >= 0.2 or number >= 10**7:
                break
            number *= 10
        for _ in range(4):
            t0 = time.perf_counter()
            for _ in range(number):
                exec(body, self.user_ns)
                if expr is not None:
                    eval(expr, self.user_ns)
            best = min(best, time.perf_counter() - t0)
        print(f"{_dur(best / number)} per loop (best of 4 runs, {number} loops each)")

    def who(self, line: str) -> None:
        hidden = {"In", "Out", "get_ipython", "display", "exit", "quit", "_ih", "_oh"}
        names = sorted(k for k in self.user_ns if not k.startswith("_") and k not in hidden)
        print("  ".join(names) if names else "Interactive namespace is empty.")

    def pwd(self, line: str) -> str:
        return os.getcwd()

    def cd(self, line: str) -> None:
        target = os.path.expanduser(line.strip() or "~")
        try:
            os.chdir(target)
        except OSError as e:
            raise UsageError(f"cd: {e}") from None
        print(os.getcwd())

    def env(self, line: str) -> Optional[Any]:
        name = line.strip()
        if name:
            return os.environ.get(name)
        return dict(os.environ)

    def lsmagic(self, line: str) -> None:
        print("Line magics: " + "  ".join("%" + n for n in sorted(self.line)))
        print("Cell magics: " + "  ".join("%%" + n for n in sorted(self.cell)))


def _dur(s: float) -> str:
    if s >= 1:
        return f"{s:.3g} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    if s >= 1e-6:
        return f"{s * 1e6:.3g} µs"
    return f"{s * 1e9:.3g} ns"
