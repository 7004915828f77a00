"""Which refactor actions fit a place in a document, and which lines each would rewrite.

Listing runs on every code-action request (each cursor move in some editors), so it never calls a
model and parses the document once, with tree-sitter: ``ast.parse`` of a 3,000-line file alone
takes ~45-70 ms here, tree-sitter ~22 ms, and tree-sitter also copes with the half-typed code an
editor holds most of the time. Python's ``ast`` is used only on the few lines of a loop, to decide
whether a comprehension can replace it.
"""

from __future__ import annotations

import ast
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tree_sitter import Node, Tree

from memlsp.agents.refactor.text_edits import LineSpan, TextRange, comment_prefix, grammar_for
from memlsp.base.languages import parser_for
from memlsp.config.refactor_schema import RefactorAction, RefactorConfig

__all__ = ["ActionOffer", "DiagnosticInfo", "Outline", "Target", "offers", "target_for"]

# Definitions that count as "the function at the cursor", per grammar.
FUNCTION_KINDS = {
    "python": frozenset({"function_definition"}),
    "javascript": frozenset(
        {"function_declaration", "generator_function_declaration", "method_definition"}
    ),
    "go": frozenset({"function_declaration", "method_declaration"}),
    "rust": frozenset({"function_item"}),
    "java": frozenset({"method_declaration", "constructor_declaration"}),
    "c": frozenset({"function_definition"}),
}
FUNCTION_KINDS["typescript"] = FUNCTION_KINDS["tsx"] = FUNCTION_KINDS["javascript"]
FUNCTION_KINDS["cpp"] = FUNCTION_KINDS["c"]
# Class-like definitions whose functions are methods (a helper extracted from one needs `self`).
_CLASSES = {
    "python": frozenset({"class_definition"}),
    "javascript": frozenset({"class_declaration", "class"}),
    "java": frozenset({"class_declaration", "enum_declaration", "record_declaration"}),
    "cpp": frozenset({"class_specifier", "struct_specifier"}),
}
_CLASSES["typescript"] = _CLASSES["tsx"] = _CLASSES["javascript"]
# `const f = () => {...}` is a function; an inline callback is not (it is part of a statement).
FUNCTION_VALUES = frozenset({"arrow_function", "function_expression", "function"})
# Wrappers whose lines belong to the definition inside them.
_WRAPPERS = frozenset({"decorated_definition", "export_statement"})


@dataclass(frozen=True)
class DiagnosticInfo:
    """A diagnostic from the request's context (ours or another server's)."""

    range: TextRange
    message: str
    source: str = ""
    code: str = ""
    severity: int = 0  # LSP: 1 error .. 4 hint; 0 unknown

    def to_json(self) -> dict[str, Any]:
        return {
            "range": self.range.to_json(),
            "message": self.message,
            "source": self.source,
            "code": self.code,
            "severity": self.severity,
        }

    @classmethod
    def from_json(cls, data: Any) -> DiagnosticInfo:
        if not isinstance(data, dict) or not isinstance(data.get("message"), str):
            raise ValueError(f"not a diagnostic: {data!r}")
        severity = data.get("severity")
        return cls(
            TextRange.from_json(data.get("range")),
            data["message"],
            str(data.get("source") or ""),
            str(data.get("code") or ""),
            severity if isinstance(severity, int) and not isinstance(severity, bool) else 0,
        )


@dataclass(frozen=True)
class Target:
    """The lines the model rewrites; ``selection`` is set when that is more than the selection
    (``scope: function``), so the prompt can say which lines the user meant."""

    span: LineSpan
    selection: LineSpan | None = None


@dataclass(frozen=True)
class ActionOffer:
    """One action to show in the light bulb; ``data()`` goes into the unresolved CodeAction."""

    action: str
    title: str
    kind: str
    uri: str
    version: int | None
    range: TextRange  # the request's range: the selection, or the cursor
    target: LineSpan  # the lines the model would rewrite (for display and tests)
    instruction: str | None = None
    needs_instruction: bool = False
    diagnostics: tuple[DiagnosticInfo, ...] = ()

    def data(self) -> dict[str, Any]:
        """JSON-serialisable: what ``codeAction/resolve`` gets back to rebuild the request."""
        return {
            "memlsp": "refactor",
            "action": self.action,
            "uri": self.uri,
            "version": self.version,
            "range": self.range.to_json(),
            "instruction": self.instruction,
            "diagnostics": [d.to_json() for d in self.diagnostics],
        }


# -- document structure -----------------------------------------------------------------------

_cache = threading.local()  # a tree-sitter Parser/Tree is not to be shared between threads


def _tree(grammar: str, text: str) -> Tree:
    """The parse of ``text``; the last one is kept, since an editor asks for code actions many
    times (each cursor move) on an unchanged document."""
    last: tuple[str, str, Tree] | None = getattr(_cache, "last", None)
    if last is not None and last[0] == grammar and last[1] == text:
        return last[2]
    tree = parser_for(grammar).parse(text.encode("utf-8", "replace"))
    _cache.last = (grammar, text, tree)
    return tree


def _span(node: Node) -> LineSpan:
    end = node.end_point.row
    if node.end_point.column > 0 or end == node.start_point.row:
        end += 1
    return LineSpan(node.start_point.row, end)


def _ancestors(node: Node | None) -> Iterator[Node]:
    while node is not None:
        yield node
        node = node.parent


class Outline:
    """One document's structure, parsed lazily (a language without a grammar has none)."""

    def __init__(self, text: str, language_id: str) -> None:
        self.text = text
        self.lines = text.split("\n")
        self.language_id = language_id
        self.grammar = grammar_for(language_id)
        self._root: Node | None = None

    @property
    def root(self) -> Node | None:
        if self._root is None and self.grammar is not None:
            self._root = _tree(self.grammar, self.text).root_node
        return self._root

    def node_at(self, line: int) -> Node | None:
        """The smallest named node at the first non-blank character of ``line``."""
        root = self.root
        if root is None or not 0 <= line < len(self.lines):
            return None
        text = self.lines[line]
        column = len(text[: len(text) - len(text.lstrip())].encode("utf-8"))
        return root.named_descendant_for_point_range((line, column), (line, column))

    def enclosing_function(self, span: LineSpan) -> LineSpan | None:
        """The innermost function containing every line of ``span`` (with its decorators)."""
        kinds = FUNCTION_KINDS.get(self.grammar or "", frozenset())
        for node in _ancestors(self.node_at(span.start)):
            definition = self._definition(node, kinds)
            if definition is not None and _span(definition).contains(span):
                return _span(definition)
        return None

    def enclosing_class(self, span: LineSpan) -> str | None:
        """The name of the class whose method holds ``span``, if the function there is one."""
        function = self.enclosing_function(span)
        classes = _CLASSES.get(self.grammar or "", frozenset())
        if function is None or not classes:
            return None
        kinds = FUNCTION_KINDS.get(self.grammar or "", frozenset())
        # The first definition above the function decides: a function nested in a function
        # inside a class is not a method.
        for node in _ancestors(self.node_at(function.start)):
            if _span(node) == function or node.type in _WRAPPERS:
                continue
            if node.type in kinds:
                return None
            if node.type in classes:
                name = node.child_by_field_name("name")
                return name.text.decode("utf-8", "replace") if name and name.text else "?"
        return None

    @staticmethod
    def _definition(node: Node, kinds: frozenset[str]) -> Node | None:
        if node.type in kinds:
            outer = node
        elif node.type in FUNCTION_VALUES and node.parent is not None:
            if node.parent.type != "variable_declarator" or node.parent.parent is None:
                return None
            outer = node.parent.parent  # the whole `const f = ...;`
        else:
            return None
        while outer.parent is not None and outer.parent.type in _WRAPPERS:
            outer = outer.parent
        return outer

    def statement_at(self, line: int) -> LineSpan | None:
        """The statement that starts on ``line`` (all its lines), else the line; None if blank."""
        if not 0 <= line < len(self.lines) or not self.lines[line].strip():
            return None
        best = LineSpan(line, line + 1)
        for node in _ancestors(self.node_at(line)):
            if node.start_point.row != line or node.parent is None:
                break
            best = _span(node)
        return best

    # -- loops that a comprehension can replace (Python) ----------------------------------------

    def comprehension_target(self, span: LineSpan, has_selection: bool) -> LineSpan | None:
        """The outermost fitting loop (with the empty collection created right before it) that
        contains the selection or cursor, or that the selection contains."""
        if self.grammar != "python" or self.root is None:
            return None
        candidates = [n for n in _ancestors(self.node_at(span.start)) if n.type == "for_statement"]
        candidates = [n for n in candidates if _span(n).contains(span)]
        if has_selection:
            candidates += _loops_inside(self.root, span)
        for loop in sorted(candidates, key=lambda n: (n.start_point.row, -n.end_point.row)):
            accumulator = _loop_accumulator(self._source(_span(loop)))
            if accumulator is None:
                continue
            start = _span(loop).start
            before = _previous_statement(loop)
            if before is not None and _creates_empty(self._source(_span(before)), *accumulator):
                start = _span(before).start
            return LineSpan(start, _span(loop).end)
        return None

    def _source(self, span: LineSpan) -> str:
        """The lines of ``span``, dedented by the first line's indentation (for ``ast``)."""
        lines = self.lines[span.start : span.end]
        width = len(lines[0]) - len(lines[0].lstrip())
        return "\n".join(line[width:] if line[:width].isspace() else line for line in lines)


def _loops_inside(root: Node, span: LineSpan) -> list[Node]:
    found, stack = [], [root]
    while stack:
        node = stack.pop()
        node_span = _span(node)
        if not node_span.overlaps(span):
            continue
        if node.type == "for_statement" and span.contains(node_span):
            found.append(node)
        else:
            stack.extend(node.named_children)
    return found


def _previous_statement(node: Node) -> Node | None:
    sibling = node.prev_named_sibling
    while sibling is not None and sibling.type == "comment":
        sibling = sibling.prev_named_sibling
    return sibling


def _parse_one(source: str) -> ast.stmt | None:
    try:
        body = ast.parse(source).body
    except (SyntaxError, ValueError, RecursionError):
        return None
    return body[0] if len(body) == 1 else None


def _loop_accumulator(source: str) -> tuple[str, str] | None:
    """(name, "list" | "set" | "dict") when the loop only fills one collection: nested ``for``s
    and ``if``s without ``else``, each with a single statement, ending in ``x.append(v)``,
    ``x.add(v)`` or ``x[k] = v`` that does not read ``x`` itself."""
    node = _parse_one(source)
    if not isinstance(node, ast.For) or node.orelse:
        return None
    guards: list[ast.expr] = []
    while isinstance(node, (ast.For, ast.If)):
        if node.orelse or len(node.body) != 1:
            return None
        guards.append(node.iter if isinstance(node, ast.For) else node.test)
        node = node.body[0]
    values: list[ast.expr]
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        call, func = node.value, node.value.func
        if not (
            isinstance(func, ast.Attribute)
            and isinstance(func.value, ast.Name)
            and func.attr in ("append", "add")
            and len(call.args) == 1
            and not call.keywords
            and not isinstance(call.args[0], ast.Starred)
        ):
            return None
        name, kind, values = func.value.id, "list" if func.attr == "append" else "set", call.args
    elif isinstance(node, ast.Assign) and len(node.targets) == 1:
        target = node.targets[0]
        if not (isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name)):
            return None
        name, kind, values = target.value.id, "dict", [target.slice, node.value]
    else:
        return None
    # `out.append(len(out))` reads the collection while it grows: a comprehension would differ.
    read = {n.id for part in [*guards, *values] for n in ast.walk(part) if isinstance(n, ast.Name)}
    return None if name in read else (name, kind)


def _creates_empty(source: str, name: str, kind: str) -> bool:
    """``name = []`` / ``list()`` (or the set / dict forms) for that kind of collection."""
    node = _parse_one(source)
    if not (
        isinstance(node, ast.Assign)
        and len(node.targets) == 1
        and isinstance(node.targets[0], ast.Name)
        and node.targets[0].id == name
    ):
        return False
    value = node.value
    if isinstance(value, ast.Call):
        return (
            isinstance(value.func, ast.Name)
            and value.func.id == kind
            and not value.args
            and not value.keywords
        )
    if kind == "list":
        return isinstance(value, ast.List) and not value.elts
    return kind == "dict" and isinstance(value, ast.Dict) and not value.keys


# -- offers -----------------------------------------------------------------------------------


def target_for(action: RefactorAction, outline: Outline, selection: TextRange) -> Target | None:
    """Where ``action`` would apply for this selection (or cursor); None when it does not fit."""
    lines = selection.lines()
    has_selection = not selection.empty
    span: LineSpan | None
    if action.when == "comprehension_loop":
        span = outline.comprehension_target(lines, has_selection)
        return Target(span) if span is not None else None
    if action.applies_to == "selection":
        span = lines if has_selection else None
    elif action.applies_to == "function":
        span = outline.enclosing_function(lines)
    else:
        span = (
            lines
            if has_selection
            else outline.enclosing_function(lines) or outline.statement_at(lines.start)
        )
    if span is None or not any(line.strip() for line in outline.lines[span.start : span.end]):
        return None
    if action.scope == "function":
        outer = outline.enclosing_function(span)
        if outer is not None and outer != span:
            return Target(outer, selection=span)
    return Target(span)


def _fits_language(action: RefactorAction, language_id: str) -> bool:
    if action.languages and language_id not in action.languages:
        return False
    if action.output == "comment" and comment_prefix(language_id) is None:
        return False
    # Knowing where the enclosing function is (and what it is) needs a grammar.
    if (action.scope == "function" or action.applies_to == "function") and grammar_for(
        language_id
    ) is None:
        return False
    return action.when != "comprehension_loop" or grammar_for(language_id) == "python"


def diagnostics_in(
    diagnostics: Iterable[DiagnosticInfo], span: LineSpan
) -> tuple[DiagnosticInfo, ...]:
    return tuple(d for d in diagnostics if d.range.lines().overlaps(span))


def offers(
    config: RefactorConfig,
    text: str,
    language_id: str,
    selection: TextRange,
    diagnostics: Sequence[DiagnosticInfo] = (),
    *,
    uri: str = "",
    version: int | None = None,
    instruction: str | None = None,
) -> list[ActionOffer]:
    """The enabled actions that fit here, in catalogue order. No model call."""
    if not config.enabled:
        return []
    outline = Outline(text, language_id)
    request_lines = selection.lines()
    result = []
    for name, action in config.actions.items():
        if not action.enabled or not action.prompt.strip():
            continue
        if not _fits_language(action, language_id):
            continue
        if action.when == "diagnostics" and not diagnostics_in(diagnostics, request_lines):
            continue
        target = target_for(action, outline, selection)
        if target is None:
            continue
        given = instruction if action.takes_instruction and instruction else None
        result.append(
            ActionOffer(
                action=name,
                title=action.label,
                kind=action.kind,
                uri=uri,
                version=version,
                range=selection,
                target=target.span,
                instruction=given,
                needs_instruction=action.takes_instruction and given is None,
                diagnostics=diagnostics_in(diagnostics, target.span)
                if action.when == "diagnostics"
                else (),
            )
        )
    return result
