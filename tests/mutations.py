"""One-line bugs injected into correct Python code by mutation, for the bug-finding benchmark.

Each mutator walks the syntax tree for candidate nodes and rewrites the source text of exactly
one line at the node's position (the rest of the file keeps its formatting, so the bug line's
number is known and nothing else moves). A mutant is kept only when it still parses, its syntax
tree differs from the original's, and exactly one line changed.

Kinds (the usual one-token slips a reviewer should catch):

- ``compare-op``: ``<`` <-> ``<=``/``>``, ``==`` <-> ``!=``, ``in`` <-> ``not in``, ...
- ``arith-op``: ``+`` <-> ``-``, ``*`` -> ``/``, ``//`` -> ``/``, ... (also in ``+=``)
- ``range-bound``: the stop of a ``range(...)`` one off (``n`` -> ``n + 1``, ``n - 1`` -> ``n``)
- ``index-shift``: a subscript or slice bound one off (``xs[i]`` -> ``xs[i + 1]``)
- ``swap-args``: two adjacent positional call arguments swapped
- ``wrong-variable``: a local variable read replaced by another local of the function
- ``dropped-not``: ``not x`` -> ``x``
- ``wrong-return``: ``return name`` returning another local of the function
- ``and-or``: ``and`` <-> ``or``

Everything is deterministic for a seed: candidates are enumerated in source order and every
random choice comes from a ``random.Random`` seeded with a string naming the choice.
"""

from __future__ import annotations

import ast
import builtins
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = ["KINDS", "Mutant", "mutants", "one_line_change"]

KINDS = (
    "compare-op",
    "arith-op",
    "range-bound",
    "index-shift",
    "swap-args",
    "wrong-variable",
    "dropped-not",
    "wrong-return",
    "and-or",
)


@dataclass(frozen=True)
class Mutant:
    kind: str
    line: int  # 0-based line of the bug
    text: str  # the whole mutated source
    description: str  # what changed, e.g. "`<` -> `<=`"


@dataclass(frozen=True)
class _Edit:
    """Replace ``old`` (exactly the text at line:start..end) by ``new``; columns in characters."""

    line: int  # 0-based
    start: int
    end: int
    new: str


class _Source:
    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = text.split("\n")
        self.tree = ast.parse(text)
        self._dump = ast.dump(self.tree)

    def col(self, lineno: int, byte_offset: int) -> int:
        """ast columns count UTF-8 bytes; the text counts characters."""
        line = self.lines[lineno - 1]
        return len(line.encode("utf-8")[:byte_offset].decode("utf-8", "ignore"))

    def span(self, node: ast.AST) -> tuple[int, int, int] | None:
        """(0-based line, start, end) of a node on one line; None for a multi-line node."""
        lineno, end_lineno = getattr(node, "lineno", None), getattr(node, "end_lineno", None)
        if lineno is None or lineno != end_lineno:
            return None
        return (
            lineno - 1,
            self.col(lineno, node.col_offset),  # type: ignore[attr-defined]
            self.col(lineno, node.end_col_offset),  # type: ignore[attr-defined]
        )

    def segment(self, node: ast.AST) -> str | None:
        span = self.span(node)
        return None if span is None else self.lines[span[0]][span[1] : span[2]]

    def gap(self, before: ast.AST, after: ast.AST) -> tuple[int, int, int] | None:
        """The text between two nodes on one line (where an operator token sits)."""
        first, second = self.span(before), self.span(after)
        if first is None or second is None or first[0] != second[0] or first[2] > second[1]:
            return None
        return first[0], first[2], second[1]

    def apply(self, edit: _Edit) -> str | None:
        """The mutated text, or None when the edit is not a valid one-line mutation."""
        lines = list(self.lines)
        old = lines[edit.line]
        lines[edit.line] = old[: edit.start] + edit.new + old[edit.end :]
        text = "\n".join(lines)
        if one_line_change(self.text, text) != edit.line:
            return None
        try:
            tree = ast.parse(text)
        except SyntaxError:
            return None
        return text if ast.dump(tree) != self._dump else None


def one_line_change(original: str, mutated: str) -> int | None:
    """The 0-based line where two texts differ, when they differ on exactly one line."""
    before, after = original.split("\n"), mutated.split("\n")
    if len(before) != len(after):
        return None
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    return changed[0] if len(changed) == 1 else None


# --- the mutators: each yields (edit, description) for every candidate -----------------------

_Candidates = Iterator[tuple[_Edit, str]]
_Mutator = Callable[[_Source, random.Random], _Candidates]

_COMPARE_TOKENS = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.Is: "is",
    ast.IsNot: "is not",
}
_COMPARE_SWAPS = {
    "<": ("<=", ">"),
    "<=": ("<", ">="),
    ">": (">=", "<"),
    ">=": (">", "<="),
    "==": ("!=",),
    "!=": ("==",),
    "in": ("not in",),
    "not in": ("in",),
    "is": ("is not",),
    "is not": ("is",),
}
_ARITH_TOKENS = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
}
_ARITH_SWAPS = {
    "+": ("-",),
    "-": ("+",),
    "*": ("/", "+"),
    "/": ("*", "//"),
    "//": ("/", "%"),
    "%": ("//",),
    "**": ("*",),
}
# Argument order does not matter to these: swapping would not be a bug.
_SYMMETRIC_CALLS = frozenset({"max", "min", "print", "set", "frozenset", "hash"})
_NAMES = set(dir(builtins))


def _token_edit(src: _Source, gap: tuple[int, int, int] | None, old: str, new: str) -> _Edit | None:
    """Replace the one operator token ``old`` found in a gap between two operands."""
    if gap is None:
        return None
    line, start, end = gap
    text = src.lines[line][start:end]
    # Word operators need word boundaries; symbols must not be part of a longer one (`<` in `<=`).
    if old[0].isalpha():
        pattern = r"(?<!\w)" + re.escape(old).replace(" ", r"\s+") + r"(?!\w)"
    else:
        pattern = r"(?<![<>=!*/%+-])" + re.escape(old) + r"(?![<>=!*/%+-])"
    found = list(re.finditer(pattern, text))
    if len(found) != 1:
        return None
    match = found[0]
    return _Edit(line, start + match.start(), start + match.end(), new)


def _compare_op(src: _Source, rng: random.Random) -> _Candidates:
    for node in ast.walk(src.tree):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        for i, op in enumerate(node.ops):
            old = _COMPARE_TOKENS[type(op)]
            new = rng.choice(_COMPARE_SWAPS[old])
            edit = _token_edit(src, src.gap(operands[i], operands[i + 1]), old, new)
            if edit is not None:
                yield edit, f"`{old}` -> `{new}`"


def _is_text(node: ast.AST) -> bool:
    return isinstance(node, ast.JoinedStr) or (
        isinstance(node, ast.Constant) and isinstance(node.value, str | bytes)
    )


def _arith_op(src: _Source, rng: random.Random) -> _Candidates:
    for node in ast.walk(src.tree):
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITH_TOKENS:
            if _is_text(node.left) or _is_text(node.right):
                continue  # string concatenation and %-formatting: not arithmetic
            old = _ARITH_TOKENS[type(node.op)]
            gap = src.gap(node.left, node.right)
        elif isinstance(node, ast.AugAssign) and type(node.op) in _ARITH_TOKENS:
            if _is_text(node.value):
                continue
            old = _ARITH_TOKENS[type(node.op)] + "="
            gap = src.gap(node.target, node.value)
        else:
            continue
        new = rng.choice(_ARITH_SWAPS[old.rstrip("=")]) + ("=" if old.endswith("=") else "")
        edit = _token_edit(src, gap, old, new)
        if edit is not None:
            yield edit, f"`{old}` -> `{new}`"


def _shifted(src: _Source, node: ast.expr, rng: random.Random) -> str | None:
    """The expression's text one off: a literal or a trailing ``± k`` moved by one, or
    ``± 1`` appended."""
    text = src.segment(node)
    if text is None or isinstance(node, ast.IfExp | ast.Lambda | ast.BoolOp | ast.Compare):
        return None
    if isinstance(node, ast.Constant):
        if type(node.value) is not int:
            return None
        return str(node.value + rng.choice((1, -1)))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = node.operand
        if isinstance(inner, ast.Constant) and type(inner.value) is int:
            return str(-inner.value + rng.choice((1, -1)))
    if (
        isinstance(node, ast.BinOp)
        and isinstance(node.op, ast.Add | ast.Sub)
        and isinstance(node.right, ast.Constant)
        and type(node.right.value) is int
    ):
        # `i - 1` -> `i` or `i - 2`: the offset moved by one
        left = src.segment(node.left)
        if left is not None and text.startswith(left):
            sign = 1 if isinstance(node.op, ast.Add) else -1
            offset = sign * node.right.value + rng.choice((1, -1))
            if offset == 0:
                return left
            return f"{left} {'+' if offset > 0 else '-'} {abs(offset)}"
    if isinstance(node, ast.Constant | ast.JoinedStr):
        return None
    return f"{text} {rng.choice(('+', '-'))} 1"


def _range_bound(src: _Source, rng: random.Random) -> _Candidates:
    for node in ast.walk(src.tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "range"
            and 1 <= len(node.args) <= 3
            and not node.keywords
        ):
            continue
        stop = node.args[0] if len(node.args) == 1 else node.args[1]
        span, new = src.span(stop), _shifted(src, stop, rng)
        if span is not None and new is not None:
            old = src.lines[span[0]][span[1] : span[2]]
            yield _Edit(*span, new), f"`range` stop `{old}` -> `{new}`"


def _annotation_nodes(tree: ast.AST) -> set[int]:
    """ids of every node inside a type annotation (``List[int]`` is no index)."""
    roots: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None:
            roots.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns:
            roots.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
    return {id(inner) for root in roots for inner in ast.walk(root)}


def _index_shift(src: _Source, rng: random.Random) -> _Candidates:
    skip = _annotation_nodes(src.tree)
    for node in ast.walk(src.tree):
        if not isinstance(node, ast.Subscript) or id(node) in skip:
            continue
        index = node.slice
        if isinstance(index, ast.Slice):
            bound = index.upper or index.lower
            if bound is None:
                continue
            index = bound
        if not isinstance(index, ast.Name | ast.Constant | ast.BinOp | ast.UnaryOp | ast.Call):
            continue
        span, new = src.span(index), _shifted(src, index, rng)
        if span is not None and new is not None:
            old = src.lines[span[0]][span[1] : span[2]]
            yield _Edit(*span, new), f"index `{old}` -> `{new}`"


def _swap_args(src: _Source, rng: random.Random) -> _Candidates:
    for node in ast.walk(src.tree):
        if not isinstance(node, ast.Call) or len(node.args) < 2:
            continue
        if isinstance(node.func, ast.Name) and node.func.id in _SYMMETRIC_CALLS:
            continue
        if any(isinstance(arg, ast.Starred) for arg in node.args):
            continue
        pairs = [
            i
            for i in range(len(node.args) - 1)
            if ast.dump(node.args[i]) != ast.dump(node.args[i + 1])
        ]
        if not pairs:
            continue
        i = rng.choice(pairs)
        first, second = src.span(node.args[i]), src.span(node.args[i + 1])
        gap = src.gap(node.args[i], node.args[i + 1])
        if first is None or second is None or gap is None:
            continue
        line = src.lines[first[0]]
        a, b = line[first[1] : first[2]], line[second[1] : second[2]]
        between = line[gap[1] : gap[2]]
        yield (
            _Edit(first[0], first[1], second[2], b + between + a),
            f"arguments `{a}`, `{b}` swapped",
        )


def _functions(tree: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def _comprehension_names(function: ast.AST) -> set[str]:
    """Names bound by comprehensions (out of scope elsewhere in the function)."""
    names: set[str] = set()
    for node in ast.walk(function):
        if isinstance(node, ast.comprehension):
            names |= {n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)}
    return names


def _locals_by_line(function: ast.FunctionDef | ast.AsyncFunctionDef) -> list[tuple[int, str]]:
    """(line where bound, name) for the parameters and the names the function assigns."""
    args = function.args
    params = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    params += [a for a in (args.vararg, args.kwarg) if a is not None]
    bound = [(function.lineno, a.arg) for a in params]
    inside = _comprehension_names(function)
    for node in ast.walk(function):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and node.id not in inside:
            bound.append((node.lineno, node.id))
    first: dict[str, int] = {}
    for line, name in sorted(bound):
        first.setdefault(name, line)
    return sorted((line, name) for name, line in first.items())


def _other_local(
    function: ast.FunctionDef | ast.AsyncFunctionDef, name: ast.Name, rng: random.Random
) -> str | None:
    """Another local bound before ``name``'s line (in scope there), chosen at random."""
    others = [n for line, n in _locals_by_line(function) if line <= name.lineno and n != name.id]
    return rng.choice(others) if others else None


def _reads(function: ast.FunctionDef | ast.AsyncFunctionDef) -> Iterator[ast.Name]:
    """Reads of the function's own locals (nested functions are walked on their own)."""
    names = {name for _, name in _locals_by_line(function)} - _comprehension_names(function)
    returned = {
        id(node.value)
        for node in ast.walk(function)
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Name)
    }
    for node in ast.walk(function):
        if (
            isinstance(node, ast.Name)
            and isinstance(node.ctx, ast.Load)
            and node.id in names
            and id(node) not in returned  # a returned name is `wrong-return`'s
        ):
            yield node


def _wrong_variable(src: _Source, rng: random.Random) -> _Candidates:
    for function in _functions(src.tree):
        for name in _reads(function):
            span, other = src.span(name), _other_local(function, name, rng)
            if span is not None and other is not None:
                yield _Edit(*span, other), f"`{name.id}` -> `{other}`"


def _wrong_return(src: _Source, rng: random.Random) -> _Candidates:
    for function in _functions(src.tree):
        for node in ast.walk(function):
            if not (isinstance(node, ast.Return) and isinstance(node.value, ast.Name)):
                continue
            name = node.value
            span, other = src.span(name), _other_local(function, name, rng)
            if span is not None and other is not None:
                yield _Edit(*span, other), f"returns `{other}` instead of `{name.id}`"


def _dropped_not(src: _Source, rng: random.Random) -> _Candidates:
    for node in ast.walk(src.tree):
        if not (isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)):
            continue
        outer, inner = src.span(node), src.span(node.operand)
        if outer is None or inner is None or outer[0] != inner[0]:
            continue
        line = src.lines[outer[0]]
        # Keep any parentheses between `not` and its operand: only the word and its space go.
        prefix = line[outer[1] : inner[1]]
        match = re.match(r"not\s*", prefix)
        if match is not None:
            yield _Edit(outer[0], outer[1], outer[1] + match.end(), ""), "`not` dropped"


def _and_or(src: _Source, rng: random.Random) -> _Candidates:
    for node in ast.walk(src.tree):
        if not isinstance(node, ast.BoolOp):
            continue
        old, new = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
        i = rng.randrange(len(node.values) - 1)
        edit = _token_edit(src, src.gap(node.values[i], node.values[i + 1]), old, new)
        if edit is not None:
            yield edit, f"`{old}` -> `{new}`"


_MUTATORS: dict[str, _Mutator] = {
    "compare-op": _compare_op,
    "arith-op": _arith_op,
    "range-bound": _range_bound,
    "index-shift": _index_shift,
    "swap-args": _swap_args,
    "wrong-variable": _wrong_variable,
    "dropped-not": _dropped_not,
    "wrong-return": _wrong_return,
    "and-or": _and_or,
}
assert tuple(_MUTATORS) == KINDS


def mutants(text: str, kind: str, seed: int | str = 0) -> list[Mutant]:
    """Every valid mutant of one kind of a source text, by line (a candidate that does not
    parse or changes nothing is skipped)."""
    src = _Source(text)
    rng = random.Random(f"{seed}:{kind}")
    out: list[Mutant] = []
    seen: set[str] = set()
    for edit, description in _MUTATORS[kind](src, rng):
        mutated = src.apply(edit)
        if mutated is not None and mutated not in seen:
            seen.add(mutated)
            out.append(Mutant(kind, edit.line, mutated, description))
    return sorted(out, key=lambda m: (m.line, m.description))
