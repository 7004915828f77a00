"""Checks that an "extract function" rewrite really extracted something.

Small instruct models sometimes write the new helper and then copy the original lines unchanged
beside it: the edit would compile and look plausible, yet add dead code. Tree-sitter finds the
functions the rewrite defines that the original code did not, and a new function must be called
somewhere outside its own definition.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from tree_sitter import Node

from memlsp.agents.refactor.actions import FUNCTION_KINDS, FUNCTION_VALUES
from memlsp.agents.refactor.text_edits import grammar_for
from memlsp.base.languages import parser_for

__all__ = ["defined_functions", "extraction_problem"]


def defined_functions(grammar: str, text: str) -> dict[str, list[tuple[int, int]]]:
    """Each function name defined in ``text`` with the character spans of its definitions."""
    kinds = FUNCTION_KINDS.get(grammar, frozenset())
    data = text.encode("utf-8", "replace")
    root = parser_for(grammar).parse(data).root_node
    found: dict[str, list[tuple[int, int]]] = {}
    for node in _walk(root):
        definition: Node | None = None
        name: str | None = None
        if node.type in kinds:
            definition, name = node, _name_of(node)
        elif (
            node.type in FUNCTION_VALUES
            and node.parent is not None
            and node.parent.type == "variable_declarator"
        ):
            definition, name = node.parent, _name_of(node.parent)
        if definition is not None and name:
            start = len(data[: definition.start_byte].decode("utf-8", "replace"))
            end = len(data[: definition.end_byte].decode("utf-8", "replace"))
            found.setdefault(name, []).append((start, end))
    return found


def extraction_problem(original: str, rewrite: str, language_id: str) -> str | None:
    """Why ``rewrite`` is not an extraction of part of ``original``; None when it is one (or the
    language has no grammar to tell)."""
    grammar = grammar_for(language_id)
    if grammar is None or grammar not in FUNCTION_KINDS:
        return None
    before = defined_functions(grammar, original)
    after = defined_functions(grammar, rewrite)
    new = {name: spans for name, spans in after.items() if name not in before}
    if not new:
        # Only Python's grammar parses a rewrite fragment (a few methods, no class) reliably
        # enough to say "nothing was defined"; elsewhere, let the other checks decide.
        if grammar == "python":
            return "The model did not write a new function; nothing was changed."
        return None
    called = [name for name, spans in new.items() if _used_outside(rewrite, name, spans)]
    if called:
        return None
    names = ", ".join(f"`{name}`" for name in sorted(new))
    return (
        f"The model wrote {names} but did not replace the selected lines with a call to it; "
        "nothing was changed."
    )


def _used_outside(text: str, name: str, spans: list[tuple[int, int]]) -> bool:
    rest, cursor = [], 0
    for start, end in sorted(spans):
        rest.append(text[cursor:start])
        cursor = max(cursor, end)
    rest.append(text[cursor:])
    return re.search(rf"(?<![\w$]){re.escape(name)}(?![\w$])", "".join(rest)) is not None


def _name_of(node: Node) -> str | None:
    """The identifier a definition introduces (C's sits inside nested declarators)."""
    current: Node | None = node
    for _ in range(8):
        if current is None:
            return None
        name = current.child_by_field_name("name")
        if name is not None and name.text:
            return name.text.decode("utf-8", "replace")
        if current.type in ("identifier", "field_identifier") and current is not node:
            return current.text.decode("utf-8", "replace") if current.text else None
        current = current.child_by_field_name("declarator")
    return None


def _walk(node: Node) -> Iterator[Node]:
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.named_children))
