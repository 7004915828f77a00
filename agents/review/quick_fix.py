"""Findings' fixes as one minimal text edit, offered only when the fixed file still parses.

The whole fixed document is built first (a model's replacement over its range, or all of a
tool's edits), then compared with the original: the edit spans from the first to the last
character that differ. That is the smallest single edit there is (difflib's opcodes would give
several, and one edit must cover them all anyway), and it keeps an editor's undo and cursor
movement local: ``x == None`` -> ``x is None`` replaces two characters, not the line.

Parse check: Python with ``ast.parse``; the languages the chunker has tree-sitter grammars for
must parse without error nodes. A model's replacement in any other language is never offered
(it cannot be checked); a linter's fix is, since the linter knows its language. A model's Python
fix must also be plausible: it may not use a name the file never defines (small models "fix"
code with variables from elsewhere) nor remove a function or class definition. The model saw
credential values masked: lines it copied masked get their original back, and a fix that would
still write a mask is not offered (``redaction``).
"""

from __future__ import annotations

import ast
import builtins
import itertools
import logging
import warnings
from collections.abc import Sequence

from memlsp.agents.redaction import restore_credentials
from memlsp.agents.review.scope import chunk_language
from memlsp.agents.review.types import ReviewFinding
from memlsp.base.edits import TextEdit
from memlsp.base.languages import SYNTAX_LANGUAGES
from memlsp.base.languages import parser_for as tree_sitter_parser

__all__ = ["apply_edits", "parses", "plausible_python_fix", "quick_fix_edit"]

log = logging.getLogger(__name__)


def quick_fix_edit(text: str, finding: ReviewFinding, *, language_id: str) -> TextEdit | None:
    """The edit that fixes ``finding`` in ``text``, or None (no fix, a fix that would not
    apply, or one that would leave the file unparsable)."""
    if finding.origin == "llm":
        if finding.replacement is None:
            return None
        edits: Sequence[TextEdit] = (
            TextEdit(
                finding.line,
                finding.column,
                finding.end_line,
                finding.end_column,
                finding.replacement,
            ),
        )
    else:
        edits = finding.fix
    if not edits:
        return None
    fixed = apply_edits(text, edits)
    if fixed is not None and finding.origin == "llm":
        fixed = restore_credentials(text, fixed)
    if fixed is None or fixed == text:
        return None
    checked = parses(fixed, language_id)
    if checked is False or (checked is None and finding.origin == "llm"):
        return None
    if (
        finding.origin == "llm"
        and language_id == "python"
        and not plausible_python_fix(text, fixed)
    ):
        return None
    return _minimal_edit(text, fixed)


def plausible_python_fix(before: str, after: str) -> bool:
    """Whether ``after`` reads no name it leaves unbound (unless ``before`` did too) and keeps
    every function and class definition.

    Scopes are ignored (a name bound anywhere counts), so this rejects only clear inventions."""
    try:
        old, new = _names(ast.parse(before)), _names(ast.parse(after))
    except (SyntaxError, ValueError):
        return True  # the parse check above decides; this one only looks at names
    old_bound, old_used, old_defs = old
    new_bound, new_used, new_defs = new
    unresolved_before = old_used - old_bound - _BUILTINS
    unresolved_after = new_used - new_bound - _BUILTINS
    return not (unresolved_after - unresolved_before) and old_defs <= new_defs


_BUILTINS = frozenset(dir(builtins)) | {"__name__", "__file__", "__doc__", "self", "cls"}


def _names(tree: ast.AST) -> tuple[set[str], set[str], set[str]]:
    """(names bound anywhere, names read anywhere, function and class names) in ``tree``."""
    bound: set[str] = set()
    used: set[str] = set()
    definitions: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (used if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
            definitions.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            bound.update(node.names)
        elif isinstance(node, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and node.name:
            bound.add(node.name)
    return bound, used, definitions


def apply_edits(text: str, edits: Sequence[TextEdit]) -> str | None:
    """``text`` with ``edits`` applied; None if one is out of range or two overlap."""
    starts = _line_starts(text)
    spans = []
    for edit in edits:
        start = _offset(text, starts, edit.line, edit.column)
        end = _offset(text, starts, edit.end_line, edit.end_column)
        if start is None or end is None or end < start:
            return None
        spans.append((start, end, edit.new_text))
    spans.sort()
    for (_, end, _), (next_start, _, _) in itertools.pairwise(spans):
        if next_start < end:
            return None
    for start, end, new_text in reversed(spans):
        text = text[:start] + new_text + text[end:]
    return text


def parses(text: str, language_id: str) -> bool | None:
    """Whether ``text`` parses as ``language_id``; None when we have no parser for it."""
    if language_id == "python":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # SyntaxWarning for odd escapes is no error
                ast.parse(text)
        except (SyntaxError, ValueError):
            return False
        return True
    language = chunk_language(language_id, "")
    if language not in SYNTAX_LANGUAGES:
        return None
    try:
        tree = tree_sitter_parser(language).parse(text.encode("utf-8", "surrogatepass"))
    except Exception:  # a grammar failure is "cannot check", not "does not parse"
        log.warning("tree-sitter failed on a %s fix", language, exc_info=True)
        return None
    return not tree.root_node.has_error


def _minimal_edit(before: str, after: str) -> TextEdit:
    limit = min(len(before), len(after))
    prefix = 0
    while prefix < limit and before[prefix] == after[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and before[-1 - suffix] == after[-1 - suffix]:
        suffix += 1
    line, column = _position(before, prefix)
    end_line, end_column = _position(before, len(before) - suffix)
    return TextEdit(line, column, end_line, end_column, after[prefix : len(after) - suffix])


def _line_starts(text: str) -> list[int]:
    starts = [0]
    position = text.find("\n")
    while position >= 0:
        starts.append(position + 1)
        position = text.find("\n", position + 1)
    return starts


def _offset(text: str, starts: list[int], line: int, column: int) -> int | None:
    """Offset of (line, column); a position at the end of the text (the line after a final
    newline) is valid, one past a line's end is not."""
    if line < 0 or column < 0 or line >= len(starts):
        return None
    line_end = starts[line + 1] - 1 if line + 1 < len(starts) else len(text)
    offset = starts[line] + column
    return offset if offset <= line_end else None


def _position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset)
    return line, offset - (text.rfind("\n", 0, offset) + 1)
