"""gvthread.compile: compile Python source with safepoint checks inserted.

A GVThread is preempted cooperatively: the monitor sets its preempt flag
when its time slice runs out, and the GVThread yields at its next safepoint;
a cancel or a timeout() is raised there too.  Code that loops without calling
into the runtime has no safepoint, so this module puts one into every code
object of the source that can loop or be run repeatedly:

- every loop back-edge (the top of each `for`, `async for` and `while` body),
  every function body (`def`, `async def`, nested or not) and every class
  body, after the docstring:

      if __gvpreempt__: __gvsafepoint__()

- every `for` clause of a list, set or dict comprehension or a generator
  expression, sync or async, as its first `if`, evaluated once per item of
  that clause's loop (an endless comprehension has no statement to hold the
  check above):

      [x for x in it if (not __gvpreempt__ or __gvsafepoint__() or True)]

- every lambda body, once per call (a lambda loops only through a
  comprehension, which has its own check; the condition is always true, so
  the lambda returns its body's value whatever the safepoint returns):

      lambda: BODY if (not __gvpreempt__ or __gvsafepoint__() or True) else None

`__gvpreempt__` is a C object whose truth is the calling GVThread's
preempt-or-interrupt flag, so the test is a cached builtin load and a truth
test; `__gvsafepoint__` is gvthread.safepoint, and whatever it raises
(Cancelled, TimeoutError) propagates from the check as from any call.  Both
live in `builtins`, so compiled code runs in any namespace.  An inserted
statement carries the line number of the statement it precedes, an inserted
condition the position of the clause's target or of the lambda's body, so
tracebacks, line numbers and coverage of the original lines are unchanged.
Cost of the comprehension check: docs/ARCHITECTURE.md, "Preemption".
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


def _locate(new: ast.AST, anchor: ast.AST) -> ast.AST:
    """Give every node of `new` anchor's start position, zero-width."""
    for n in ast.walk(new):
        ast.copy_location(n, anchor)
        n.end_lineno = anchor.lineno
        n.end_col_offset = anchor.col_offset
    return new


def _check_at(node: ast.stmt) -> ast.If:
    """`if __gvpreempt__: __gvsafepoint__()`, located at node."""
    return _locate(ast.If(
        test=ast.Name(id=FLAG, ctx=ast.Load()),
        body=[ast.Expr(value=ast.Call(func=ast.Name(id=SAFEPOINT, ctx=ast.Load()),
                                      args=[], keywords=[]))],
        orelse=[],
    ), node)


def _check_expr(anchor: ast.expr) -> ast.expr:
    """`(not __gvpreempt__ or __gvsafepoint__() or True)`, located at anchor: true
    whatever the safepoint returns; in a condition it compiles to one builtin load
    and one jump while the flag is clear."""
    return _locate(ast.BoolOp(op=ast.Or(), values=[
        ast.UnaryOp(op=ast.Not(), operand=ast.Name(id=FLAG, ctx=ast.Load())),
        ast.Call(func=ast.Name(id=SAFEPOINT, ctx=ast.Load()), args=[], keywords=[]),
        ast.Constant(value=True),
    ]), anchor)


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

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _function

    def _comprehension(self, node):
        self.generic_visit(node)
        # Each clause is a loop of its own: `for a in A for b in count()` spins
        # in the second clause without ever running the first clause's ifs.
        for gen in node.generators:
            gen.ifs.insert(0, _check_expr(gen.target))
        return node

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _comprehension

    def visit_Lambda(self, node):
        self.generic_visit(node)
        body = node.body
        node.body = ast.copy_location(
            ast.IfExp(test=_check_expr(body), body=body,
                      orelse=_locate(ast.Constant(value=None), body)), body)
        return node


def instrument(tree: ast.AST) -> ast.AST:
    """Insert the safepoint checks into a parsed module/interactive/expression tree
    (in place; the tree is returned)."""
    return ast.fix_missing_locations(_Instrument().visit(tree))


def compile(source, filename: str, mode: str, flags: int = 0, dont_inherit: bool = False,
            optimize: int = -1):
    """Like the builtin compile(), with a safepoint check in every code object of the
    source (loop back-edges, function, class and lambda bodies, each clause of a
    comprehension or generator expression), so a GVThread running the code can be
    preempted at the end of its time slice, cancelled or timed out without calling
    gvthread.safepoint() itself.  `source` may be a string,
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
