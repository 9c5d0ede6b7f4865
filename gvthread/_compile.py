"""gvthread.compile: compile Python source with safepoint checks inserted.

A GVThread is preempted cooperatively: the monitor sets its preempt flag
when its time slice runs out, and the GVThread yields at its next safepoint.
Code that loops without calling into the runtime has no safepoint, so this
module adds one at every loop back-edge (the top of each loop body) and every
function entry:

    if __gvpreempt__: __gvsafepoint__()

`__gvpreempt__` is a C object whose truth is the calling GVThread's
preempt-or-interrupt flag, so the test is a cached builtin load and a truth
test; `__gvsafepoint__` is gvthread.safepoint.  Both live in `builtins`, so
compiled code runs in any namespace.  The inserted statements carry the line
number of the statement they precede, so tracebacks, line numbers and
coverage of the original lines are unchanged.  Comprehensions and generator
expressions are not instrumented (their loops are implicit in the AST).
"""
from __future__ import annotations

import ast
import builtins

from gvthread import _core

FLAG = "__gvpreempt__"
SAFEPOINT = "__gvsafepoint__"


def _install_builtins() -> None:
    if getattr(builtins, FLAG, None) is not _core.preempt_flag:
        setattr(builtins, FLAG, _core.preempt_flag)
        setattr(builtins, SAFEPOINT, _core.safepoint)


def _check_at(node: ast.stmt) -> ast.If:
    """`if __gvpreempt__: __gvsafepoint__()`, located at node."""
    check = ast.If(
        test=ast.Name(id=FLAG, ctx=ast.Load()),
        body=[ast.Expr(value=ast.Call(func=ast.Name(id=SAFEPOINT, ctx=ast.Load()),
                                      args=[], keywords=[]))],
        orelse=[],
    )
    for n in ast.walk(check):
        ast.copy_location(n, node)
        n.end_lineno = node.lineno
        n.end_col_offset = node.col_offset
    return check


class _Instrument(ast.NodeTransformer):
    def _prepend(self, body: list, skip_docstring: bool) -> None:
        i = 0
        if (skip_docstring and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            i = 1
        anchor = body[i] if i < len(body) else body[-1]
        body.insert(i, _check_at(anchor))

    def _loop(self, node):
        self.generic_visit(node)
        self._prepend(node.body, skip_docstring=False)
        return node

    visit_For = visit_AsyncFor = visit_While = _loop

    def _function(self, node):
        self.generic_visit(node)
        self._prepend(node.body, skip_docstring=True)
        return node

    visit_FunctionDef = visit_AsyncFunctionDef = _function


def instrument(tree: ast.AST) -> ast.AST:
    """Insert the safepoint checks into a parsed module/interactive/expression tree."""
    return ast.fix_missing_locations(_Instrument().visit(tree))


def compile(source, filename: str, mode: str, flags: int = 0, dont_inherit: bool = False,
            optimize: int = -1):
    """Like the builtin compile(), with a safepoint check at every loop back-edge and
    function entry, so a GVThread running the code can be preempted at the end of its
    time slice without calling gvthread.safepoint() itself.  `source` may be a string,
    bytes or an AST; mode is "exec", "eval" or "single"."""
    _install_builtins()
    if isinstance(source, ast.AST):
        tree = source
    else:
        tree = builtins.compile(source, filename, mode, flags | ast.PyCF_ONLY_AST,
                                dont_inherit, optimize)
    tree = instrument(tree)
    return builtins.compile(tree, filename, mode, flags & ~ast.PyCF_ONLY_AST, dont_inherit,
                            optimize)
