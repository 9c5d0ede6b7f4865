"""Figure definitions, the side-by-side runner, and the report format.

A :class:`Figure` compares two :class:`Side` s, ours and a peer's. The runner measures
each side ``repeat`` times, every time in a fresh child process, alternating which side
goes first from one repeat to the next, and reports the medians and their ratio
(ours / peer, whatever the direction of "better"). Targets apply to the ratio or to our
absolute value; ``ideal`` targets are reported but do not decide OK/MISS.

Verdicts: ``INFO`` (a figure without a target), ``OK`` (every non-ideal target met),
``MISS`` (one is not: informative, exit status stays 0), ``CRASH`` (a child exited
nonzero, timed out, or printed no result: the suite's exit status becomes 1).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from ._child import RESULT_MARK

__all__ = ["Side", "Target", "Figure", "Options", "Result", "run_figures",
           "format_line", "format_value"]

_BENCH_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclass(frozen=True)
class Side:
    """One side of a figure: ``module.func(**params)`` run in a child process."""

    label: str                  # shown before the peer's value: "greenlet", "asyncio"...
    func: str                   # name of the measurement function in the suite module
    params: dict = field(default_factory=dict)
    quick: dict = field(default_factory=dict)   # overrides of params under --quick

    def resolved(self, quick: bool) -> dict:
        return {**self.params, **self.quick} if quick else dict(self.params)


@dataclass(frozen=True)
class Target:
    on: str                     # "ratio" or "value"
    op: str                     # "<=", "<", ">=", ">"
    limit: float
    ideal: bool = False         # reported, but does not decide OK/MISS

    def met(self, value: float, ratio: float) -> bool:
        x = ratio if self.on == "ratio" else value
        return {"<=": x <= self.limit, "<": x < self.limit,
                ">=": x >= self.limit, ">": x > self.limit}[self.op]

    def describe(self, unit: str) -> str:
        if self.on == "ratio":
            text = f"{self.op} {self.limit:.2f}"
            return f"ideal ratio {text}" if self.ideal else text
        text = f"value {self.op} {self.limit:g} {unit}"
        return f"ideal {text}" if self.ideal else text


@dataclass(frozen=True)
class Figure:
    name: str                   # "core.switch_py"
    unit: str                   # "ns/switch", "spawns/s", "B/task"
    ours: Side
    peer: Side
    targets: tuple[Target, ...] = ()
    doc: str = ""


@dataclass
class Options:
    repeat: int = 3
    quick: bool = False
    timeout: float = 300.0      # seconds per child
    verbose: bool = False


@dataclass
class Result:
    figure: Figure
    module: str
    value: Optional[float] = None
    peer_value: Optional[float] = None
    samples: dict = field(default_factory=lambda: {"ours": [], "peer": []})
    info: dict = field(default_factory=lambda: {"ours": [], "peer": []})
    errors: list = field(default_factory=list)
    params: dict = field(default_factory=dict)

    @property
    def crashed(self) -> bool:
        return bool(self.errors)

    @property
    def ratio(self) -> Optional[float]:
        if self.value is None or not self.peer_value:
            return None
        return self.value / self.peer_value

    def target_results(self) -> list[tuple[Target, Optional[bool]]]:
        out = []
        for t in self.figure.targets:
            if (t.on == "ratio" and self.ratio is None) or self.value is None:
                out.append((t, None))
            else:
                out.append((t, t.met(self.value, self.ratio if self.ratio is not None
                                     else float("nan"))))
        return out

    @property
    def status(self) -> str:
        if self.crashed:
            return "CRASH"
        if not self.figure.targets:
            return "INFO"
        hard = [ok for t, ok in self.target_results() if not t.ideal]
        return "OK" if all(hard) else "MISS"

    def to_json(self) -> dict[str, Any]:
        f = self.figure
        return {
            "name": f.name,
            "unit": f.unit,
            "value": self.value,
            "peer": f.peer.label,
            "peer_value": self.peer_value,
            "ratio": self.ratio,
            "targets": [
                {"on": t.on, "op": t.op, "limit": t.limit, "ideal": t.ideal, "met": ok}
                for t, ok in self.target_results()
            ],
            "status": self.status,
            "samples": self.samples,
            "info": self.info,
            "params": self.params,
            "errors": self.errors,
            "doc": f.doc,
        }


# -- running ---------------------------------------------------------------------------

def _child_env() -> dict:
    env = dict(os.environ)
    # The children import `bench` (and `gvthread`) the way the parent did: put the tree
    # that holds this `bench` package first, as `python -m bench` from the root does.
    pp = env.get("PYTHONPATH")
    env["PYTHONPATH"] = _BENCH_ROOT + (os.pathsep + pp if pp else "")
    return env


def _text(data) -> str:
    if isinstance(data, bytes):
        return data.decode(errors="replace")
    return data or ""


def _digest(stderr: str, head: int = 4, tail: int = 14) -> str:
    """The useful part of a child's stderr: a fatal message comes first, a traceback
    last, and faulthandler repeats one stack per GVThread (so repeated lines go)."""
    seen, lines = set(), []
    for line in stderr.splitlines():
        if line.strip() and line not in seen:
            seen.add(line)
            lines.append(line)
    if len(lines) > head + tail:
        lines = lines[:head] + ["  [...]"] + lines[-tail:]
    return "\n".join(lines)


def _run_side(module: str, side: Side, opts: Options) -> tuple[Optional[dict], Optional[str]]:
    """Run one measurement child. Returns (result, error); both may be set."""
    params = side.resolved(opts.quick)
    # faulthandler: a segfault in the runtime leaves the Python stacks in the report.
    cmd = [sys.executable, "-X", "faulthandler", "-m", "bench._child",
           module, side.func, json.dumps(params)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=opts.timeout,
                              env=_child_env(), cwd=_BENCH_ROOT)
        out, err, rc = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        out, err = _text(e.stdout), _text(e.stderr)
        rc = None
    result = None
    for line in out.splitlines():
        if line.startswith(RESULT_MARK):
            result = json.loads(line[len(RESULT_MARK):])
    error = None
    if rc is None:
        error = f"timed out after {opts.timeout:g}s"
    elif rc != 0:
        error = f"exit status {rc}" + (f" (signal {-rc})" if rc < 0 else "")
    elif result is None:
        error = "no result printed"
    if error is not None:
        tail = _digest(err)
        error = f"{side.label} ({side.func}): {error}" + (f"\n{tail}" if tail else "")
    return result, error


def run_figure(module: str, fig: Figure, opts: Options) -> Result:
    res = Result(fig, module, params={"ours": fig.ours.resolved(opts.quick),
                                      "peer": fig.peer.resolved(opts.quick)})
    sides = {"ours": fig.ours, "peer": fig.peer}
    dead: set[str] = set()
    for r in range(opts.repeat):
        order = ("ours", "peer") if r % 2 == 0 else ("peer", "ours")
        for key in order:
            if key in dead:
                continue        # a side that crashed once is not run again
            t0 = time.monotonic()
            out, error = _run_side(module, sides[key], opts)
            if out is not None:
                res.samples[key].append(out["value"])
                if out.get("info"):
                    res.info[key].append(out["info"])
            if error is not None:
                res.errors.append(error)
                dead.add(key)
            if opts.verbose:
                v = "-" if out is None else format_value(out["value"])
                print(f"# {fig.name} {key} #{r + 1}: {v} {fig.unit}"
                      f" ({time.monotonic() - t0:.2f}s)"
                      f"{'  ' + error.splitlines()[0] if error else ''}",
                      file=sys.stderr, flush=True)
    if res.samples["ours"]:
        res.value = statistics.median(res.samples["ours"])
    if res.samples["peer"]:
        res.peer_value = statistics.median(res.samples["peer"])
    return res


def run_figures(module: str, figures: list[Figure], opts: Options, emit=None) -> list[Result]:
    """Run the figures in order; ``emit(result)`` is called as each one completes."""
    results = []
    for fig in figures:
        res = run_figure(module, fig, opts)
        results.append(res)
        if emit is not None:
            emit(res)
    return results


# -- formatting ------------------------------------------------------------------------

def format_value(v: Optional[float]) -> str:
    if v is None:
        return "-"
    if abs(v) >= 10_000:
        return f"{v:,.0f}"
    if abs(v) >= 100:
        return f"{v:.1f}"
    return f"{v:.2f}"


def format_line(res: Result) -> str:
    f = res.figure
    ratio = "-" if res.ratio is None else f"{res.ratio:.2f}"
    parts = []
    for t, ok in res.target_results():
        text = t.describe(f.unit)
        if t.ideal and ok is False:
            text += " missed"
        parts.append(text)
    targets = f" (target {', '.join(parts)})" if parts else " (no target)"
    return (f"{f.name:<24} {format_value(res.value):>10} {f.unit:<10}  "
            f"{f.peer.label:<9} {format_value(res.peer_value):>10} {f.unit:<10}  "
            f"ratio {ratio}{targets} {res.status}")
