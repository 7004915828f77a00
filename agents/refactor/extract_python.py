"""Extract function for Python, done as an IDE does it: by analysing the code, not by a model.

A small model asked for the whole rewrite often keeps the selected lines beside the new helper
or drops the call (seen with the 1.5B on a method, twice in a row). The mechanics are exact
here instead: the helper's parameters are the names the lines read that are bound before them,
its return values the names the lines bind that the code after them reads, and the lines are
replaced by one call. Only the helper's name comes from the model. Code this cannot handle
exactly (a ``return`` or ``yield`` among the lines, ``break`` out of a loop around them,
``global``/``nonlocal``, ``await``, a selection cutting a statement) gets a reason instead, and
the agent falls back to asking the model for the rewrite.
"""

from __future__ import annotations

import ast
import keyword
import re
import textwrap
from collections.abc import Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from memlsp.agents.refactor.text_edits import LineSpan

__all__ = ["ExtractionPlan", "plan_extraction", "valid_name"]

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
_LOOPS = (ast.For, ast.AsyncFor, ast.While)


@dataclass(frozen=True)
class ExtractionPlan:
    """What the extraction will write; ``render`` puts the helper's name in."""

    lines: tuple[str, ...]  # the enclosing function's lines as they are now
    selection: tuple[int, int]  # [start, end) within ``lines``
    parameters: tuple[str, ...]
    returns: tuple[str, ...]
    receiver: str  # "self" / "cls" for a method, "" for a function
    def_indent: str  # the enclosing definition's indentation
    unit: str  # one level of indentation in this code
    top_level: bool  # the enclosing function is at column 0 (two blank lines around defs)

    @property
    def body(self) -> list[str]:
        start, end = self.selection
        return list(self.lines[start:end])

    def render(self, name: str) -> str:
        """The enclosing function with the lines replaced by a call, then the new helper."""
        start, end = self.selection
        selected = self.body
        base = _indent_of(selected[0])
        args = ", ".join(self.parameters)
        call = f"{self.receiver}.{name}({args})" if self.receiver else f"{name}({args})"
        if self.returns:
            call = f"{', '.join(self.returns)} = {call}"
        rewritten = [*self.lines[:start], base + call, *self.lines[end:]]
        while rewritten and not rewritten[-1].strip():
            rewritten.pop()
        params = [self.receiver, *self.parameters] if self.receiver else list(self.parameters)
        inner = self.def_indent + self.unit
        helper = [f"{self.def_indent}def {name}({', '.join(params)}):"]
        helper += [(inner + line[len(base) :]) if line.strip() else "" for line in selected]
        if self.returns:
            helper.append(f"{inner}return {', '.join(self.returns)}")
        gap = ["", ""] if self.top_level else [""]
        return "\n".join([*rewritten, *gap, *helper])


def valid_name(name: str, taken: AbstractSet[str]) -> bool:
    return (
        re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) is not None
        and not keyword.iskeyword(name)
        and name not in taken
    )


def plan_extraction(
    doc_lines: Sequence[str], function: LineSpan, selection: LineSpan, method: bool
) -> ExtractionPlan | str:
    """The plan for moving ``selection`` (whole document lines) out of ``function`` (the lines
    of the definition holding it, decorators included) into a helper, or why it can't be done
    exactly. ``method``: the function is a method (its helper becomes one too)."""
    lines = list(doc_lines[function.start : function.end])
    start, end = selection.start - function.start, selection.end - function.start
    while end > start and not lines[end - 1].strip():
        end -= 1
    while start < end and not lines[start].strip():
        start += 1
    if not (0 < start < end <= len(lines)):
        return "Select whole lines inside the function's body."
    try:
        tree = ast.parse(textwrap.dedent("\n".join(lines)))
    except SyntaxError:
        return "The function does not parse as it is now."
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.FunctionDef):
        return "Only lines inside a plain (not async) function can be extracted this way."
    func = tree.body[0]
    first, last = start + 1, end  # ast's 1-based line numbers of the selection
    found = _covering_statements(func, first, last)
    if isinstance(found, str):
        return found
    chosen, loops_around = found
    problem = _unsupported(chosen)
    if problem:
        return problem
    everywhere = _uses(func.body)
    inside = _uses(chosen)
    bound_before = _arguments(func) | {u.name for u in everywhere if u.store and u.line < first}
    read = _ordered(u.name for u in inside if not u.store)
    bound_inside = _ordered(u.name for u in inside if u.store)
    later = {u.name for u in everywhere if not u.store and u.line > last}
    if loops_around:  # the loop runs the code above the lines again after them
        top = loops_around[0].lineno
        later |= {u.name for u in everywhere if not u.store and top <= u.line < first}
    returns = [n for n in bound_inside if n in later]
    # A value the lines may leave as it was (bound on some paths only) must come in as well.
    always = _always_bound(chosen)
    parameters = _ordered(
        [n for n in read if n in bound_before]
        + [n for n in returns if n in bound_before and n not in always]
    )
    receiver = ""
    args = func.args.posonlyargs + func.args.args
    if method and args and args[0].arg in ("self", "cls"):
        receiver = args[0].arg
        parameters = [p for p in parameters if p != receiver]
    base = _indent_of(lines[start])
    if any(line.strip() and not line.startswith(base) for line in lines[start:end]):
        return "The lines are indented less than their first line (a string over several lines?)."
    def_indent = _indent_of(lines[0])
    unit = _indent_of(lines[func.body[0].lineno - 1])[len(def_indent) :] or "    "
    return ExtractionPlan(
        lines=tuple(lines),
        selection=(start, end),
        parameters=tuple(parameters),
        returns=tuple(returns),
        receiver=receiver,
        def_indent=def_indent,
        unit=unit,
        top_level=def_indent == "",
    )


# -- finding the statements ------------------------------------------------------------------


def _blocks(node: ast.AST) -> Iterator[list[ast.stmt]]:
    for field in ("body", "orelse", "finalbody"):
        block = getattr(node, field, None)
        if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
            yield block
    for handler in getattr(node, "handlers", []) or []:
        yield handler.body
    for case in getattr(node, "cases", []) or []:
        yield case.body


def _covering_statements(
    func: ast.FunctionDef, first: int, last: int
) -> tuple[list[ast.stmt], list[ast.stmt]] | str:
    """The run of sibling statements spanning exactly lines ``first``..``last``, and the loops
    around them (inside the function)."""
    loops: list[ast.stmt] = []
    block = func.body
    while True:
        inside = [s for s in block if s.lineno <= last and (s.end_lineno or s.lineno) >= first]
        if not inside:
            return "Select whole lines inside the function's body."
        if len(inside) == 1 and (inside[0].lineno < first or (inside[0].end_lineno or 0) > last):
            outer = inside[0]  # the lines are within one statement: look in its blocks
            if isinstance(outer, _SCOPES):
                return "The lines are inside a nested definition: extract from that one."
            inner = next(
                (
                    b
                    for b in _blocks(outer)
                    if b[0].lineno <= last and (b[-1].end_lineno or b[-1].lineno) >= first
                ),
                None,
            )
            if inner is None or inner[0].lineno > last:
                return "Select whole statements: the selection cuts one in two."
            if isinstance(outer, _LOOPS):
                loops.append(outer)
            block = inner
            continue
        if inside[0].lineno < first or (inside[-1].end_lineno or 0) > last:
            return "Select whole statements: the selection cuts one in two."
        return inside, loops


def _unsupported(statements: list[ast.stmt]) -> str:
    for node in _walk_scope(statements):
        if isinstance(node, ast.Return):
            return "The lines contain a return."
        if isinstance(node, (ast.Yield, ast.YieldFrom)):
            return "The lines contain a yield."
        if isinstance(node, ast.Await):
            return "The lines contain an await."
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            return "The lines contain a global or nonlocal statement."
    for statement in statements:
        if _loose_jump(statement):
            return "The lines contain a break or continue for a loop around them."
    return ""


def _loose_jump(node: ast.AST) -> bool:
    """A break/continue not inside a loop that is itself inside ``node``."""
    if isinstance(node, (ast.Break, ast.Continue)):
        return True
    if isinstance(node, _LOOPS):
        return any(_loose_jump(n) for n in node.orelse)  # the loop's body binds its own
    if isinstance(node, _SCOPES):
        return False
    return any(_loose_jump(child) for child in ast.iter_child_nodes(node))


# -- names ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Use:
    name: str
    line: int
    store: bool


def _walk_scope(nodes: Iterable[ast.AST]) -> Iterator[ast.AST]:
    """Every node of ``nodes`` in this scope: nested functions, lambdas and classes are
    yielded but not entered."""
    stack = list(nodes)[::-1]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, _SCOPES):
            continue
        stack.extend(reversed(list(ast.iter_child_nodes(node))))


def _comprehension_locals(nodes: Sequence[ast.AST]) -> set[int]:
    """ids of the Name nodes that are a comprehension's own variables (its own scope)."""
    ids: set[int] = set()
    for node in _walk_scope(nodes):
        if isinstance(node, _COMPREHENSIONS):
            own = {
                n.id for g in node.generators for n in ast.walk(g.target) if isinstance(n, ast.Name)
            }
            ids |= {id(n) for n in ast.walk(node) if isinstance(n, ast.Name) and n.id in own}
    return ids


def _uses(nodes: Sequence[ast.AST]) -> list[_Use]:
    """The reads and bindings of names in this scope, in source order."""
    local = _comprehension_locals(nodes)
    found: list[_Use] = []
    for node in _walk_scope(nodes):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Name) and id(node) not in local:
            found.append(_Use(node.id, line, not isinstance(node.ctx, ast.Load)))
        elif isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            found.append(_Use(node.target.id, line, False))  # x += 1 reads x too
        elif isinstance(node, _SCOPES):
            if not isinstance(node, ast.Lambda):
                found.append(_Use(node.name, line, True))
            if not isinstance(node, ast.ClassDef):  # closures read the names they use
                found += [
                    _Use(n.id, n.lineno, False)
                    for n in ast.walk(node)
                    if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
                ]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            found += [_Use((a.asname or a.name).split(".")[0], line, True) for a in node.names]
        elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name:
            found.append(_Use(node.name, line, True))
    return found


def _always_bound(statements: list[ast.stmt]) -> set[str]:
    """Names that statements at the top level of the lines bind on every path."""
    names: set[str] = set()
    for statement in statements:
        if isinstance(statement, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = statement.targets if isinstance(statement, ast.Assign) else [statement.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(statement.name)
    return names


def _arguments(func: ast.FunctionDef) -> set[str]:
    a = func.args
    names = {x.arg for x in [*a.posonlyargs, *a.args, *a.kwonlyargs]}
    names |= {x.arg for x in (a.vararg, a.kwarg) if x is not None}
    return names


def _ordered(names: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(names))


def _indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]
