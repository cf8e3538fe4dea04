"""Find SQL built by string formatting: an AST scan of the code that talks to PostgreSQL.

A *sink* is a call that takes SQL text: SQLAlchemy's `text()` and `exec_driver_sql()`, asyncpg's
`execute`/`executemany`/`fetch`/`fetchrow`/`fetchval`/`prepare`/`copy_*`, Alembic's `op.execute`,
and `shared.db`'s `fetch`/`fetchrow`/`fetchval`/`execute` (called by name, the session first and
the SQL second).
A finding is a sink whose SQL argument is an f-string with placeholders, a `%` or `+` on a string,
or `"...".format(...)`, directly or through a local variable assigned such a value. Each finding
names the interpolated expressions (their source text) that are *not provably literal*.

Provably literal (`Literals`): string constants; names bound in the same function or module only
to provably literal values or as loop variables over tuples/lists of literals; f-strings, `+`,
`"sep".join(...)`, conditional expressions, subscripts and comprehensions made of those. Such
fragments (column lists, a table name from a fixed tuple) cannot carry input into the SQL; a
finding with nothing left is dropped. What remains needs a reason in the test's allow-list.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SINKS = frozenset(
    {
        "text",
        "exec_driver_sql",
        "execute",
        "executemany",
        "fetch",
        "fetchrow",
        "fetchval",
        "prepare",
        "copy_from_query",
        "copy_to_table",
        "copy_records_to_table",
    }
)
SQL_KEYWORDS = ("query", "statement", "sql")
# shared.db's helpers, called by their bare names: (session, sql, *parameters).
SESSION_FIRST = frozenset({"fetch", "fetchrow", "fetchval", "execute"})


@dataclass(frozen=True)
class Finding:
    path: str  # relative to the scanned root, with forward slashes
    line: int
    sink: str
    interpolated: tuple[str, ...]  # source of each formatted-in expression

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.sink}() gets SQL formatted with {self.interpolated}"


def scan(root: Path, folders: tuple[str, ...]) -> list[Finding]:
    findings: list[Finding] = []
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            findings += _scan_module(ast.parse(path.read_text(), filename=relative), relative)
    return findings


def scan_source(source: str, path: str = "<source>") -> list[Finding]:
    return _scan_module(ast.parse(source), path)


def _scan_module(tree: ast.Module, path: str) -> list[Finding]:
    findings: list[Finding] = []
    module_literals = Literals(tree, outer=None)
    scopes: list[ast.AST] = [tree]
    scopes += [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    for scope in scopes:
        literals = module_literals if scope is tree else Literals(scope, outer=module_literals)
        assigned = _formatted_assignments(scope)
        for call in _own_calls(scope):
            sink = _sink_name(call)
            if sink is None:
                continue
            for argument in _sql_arguments(call):
                parts = _interpolated(argument)
                if parts is None and isinstance(argument, ast.Name):
                    parts = assigned.get(argument.id)
                if parts is None:
                    continue
                unproven = tuple(
                    p for p in parts if not literals.proves(ast.parse(p, mode="eval").body)
                )
                if unproven:
                    findings.append(Finding(path, call.lineno, sink, unproven))
    return findings


class Literals:
    """Which expressions of one scope are made only of string literals written in the code."""

    def __init__(self, scope: ast.AST, *, outer: Literals | None) -> None:
        self._outer = outer
        self._bindings: dict[str, list[ast.expr | None]] = {}
        self._loop_over: dict[str, list[ast.expr]] = {}
        stack = list(ast.iter_child_nodes(scope))
        while stack:
            node = stack.pop()
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node is not scope:
                continue  # a scope of its own
            if isinstance(node, ast.arguments):
                for arg in [*node.posonlyargs, *node.args, *node.kwonlyargs]:
                    self._bindings.setdefault(arg.arg, []).append(None)  # from callers: unknown
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    self._bind(target, node.value)
            elif isinstance(node, ast.AnnAssign | ast.AugAssign):
                self._bind(node.target, node.value if isinstance(node, ast.AnnAssign) else None)
            elif isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
                if isinstance(node.target, ast.Name):
                    self._loop_over.setdefault(node.target.id, []).append(node.iter)
                else:
                    self._bind(node.target, None)
            elif isinstance(node, ast.NamedExpr | ast.With | ast.AsyncWith | ast.ExceptHandler):
                for name in ast.walk(node):
                    if isinstance(name, ast.Name) and isinstance(name.ctx, ast.Store):
                        self._bind(name, None)
            stack.extend(ast.iter_child_nodes(node))

    def _bind(self, target: ast.expr, value: ast.expr | None) -> None:
        if isinstance(target, ast.Name):
            self._bindings.setdefault(target.id, []).append(value)
        else:
            for name in ast.walk(target):
                if isinstance(name, ast.Name):
                    self._bindings.setdefault(name.id, []).append(None)

    def proves(self, node: ast.expr, _seen: frozenset[str] = frozenset()) -> bool:
        """True if `node` can only evaluate to text written in the code."""

        def each(*nodes: ast.expr) -> bool:
            return all(self.proves(n, _seen) for n in nodes)

        if isinstance(node, ast.Constant):
            return isinstance(node.value, str | int) and not isinstance(node.value, bool)
        if isinstance(node, ast.JoinedStr):
            return each(*(v.value for v in node.values if isinstance(v, ast.FormattedValue)))
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            return each(node.left, node.right)
        if isinstance(node, ast.IfExp):  # the condition picks between literals: fine
            return each(node.body, node.orelse)
        if isinstance(node, ast.Tuple | ast.List):
            return each(*node.elts)
        if isinstance(node, ast.Subscript):
            return self.proves(node.value, _seen)
        if isinstance(node, ast.ListComp | ast.GeneratorExp):
            return each(node.elt) and all(each(g.iter) for g in node.generators)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "join"
            and isinstance(node.func.value, ast.Constant)
        ):
            return each(*node.args) and not node.keywords
        if isinstance(node, ast.Name):
            return self._proves_name(node.id, _seen)
        return False

    def _proves_name(self, name: str, seen: frozenset[str]) -> bool:
        values = self._bindings.get(name, [])
        loops = self._loop_over.get(name, [])
        if not values and not loops:
            return self._outer is not None and self._outer._proves_name(name, seen)
        if name in seen:  # defined in terms of itself (x = x + ...): not provable here
            return False
        seen = seen | {name}
        return all(v is not None and self.proves(v, seen) for v in values) and all(
            self.proves(iterable, seen) for iterable in loops
        )


def _own_calls(scope: ast.AST) -> Iterator[ast.Call]:
    """Calls in `scope` but not in functions nested in it (those are scopes of their own)."""
    stack = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(node, ast.Call):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _formatted_assignments(scope: ast.AST) -> dict[str, tuple[str, ...]]:
    found: dict[str, tuple[str, ...]] = {}
    stack = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            parts = _interpolated(node.value)
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if parts is not None and isinstance(target, ast.Name):
                    found[target.id] = found.get(target.id, ()) + parts
        stack.extend(ast.iter_child_nodes(node))
    return found


def _sink_name(call: ast.Call) -> str | None:
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return name if name in SINKS else None


def _sql_arguments(call: ast.Call) -> list[ast.expr]:
    session_first = isinstance(call.func, ast.Name) and call.func.id in SESSION_FIRST
    arguments = list(call.args[1:2] if session_first else call.args[:1])
    arguments += [k.value for k in call.keywords if k.arg in SQL_KEYWORDS]
    return arguments


def _interpolated(node: ast.expr) -> tuple[str, ...] | None:
    """The expressions formatted into `node` if it builds a string by formatting, else None."""
    if isinstance(node, ast.JoinedStr):
        values = [v.value for v in node.values if isinstance(v, ast.FormattedValue)]
        return tuple(ast.unparse(v) for v in values) if values else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and _is_text(node.left):
        return (ast.unparse(node.right),)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _interpolated(node.left), _interpolated(node.right)
        if left is not None or right is not None:
            return (left or ()) + (right or ())
        if _is_text(node.left) or _is_text(node.right):
            others = [s for s in (node.left, node.right) if not _is_text(s)]
            return tuple(ast.unparse(s) for s in others)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "format"
        and _is_text(node.func.value)
    ):
        return tuple(ast.unparse(a) for a in [*node.args, *(k.value for k in node.keywords)])
    if isinstance(node, ast.IfExp):
        body, orelse = _interpolated(node.body), _interpolated(node.orelse)
        if body is not None or orelse is not None:
            return (body or ()) + (orelse or ())
    return None


def _is_text(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)
