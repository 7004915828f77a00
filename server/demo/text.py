"""Text helpers of `memlsp demo`: LSP positions (UTF-16), applying edits, small diffs."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from lsprotocol import types as lsp


def end_position(text: str) -> lsp.Position:
    """The LSP position just after the last character of ``text``."""
    lines = text.split("\n")
    return lsp.Position(line=len(lines) - 1, character=_utf16_len(lines[-1]))


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def offset_at(text: str, position: lsp.Position) -> int:
    """The string index of an LSP position (UTF-16 columns, as clients send by default)."""
    lines = text.split("\n")
    line = min(position.line, len(lines) - 1)
    start = sum(len(part) + 1 for part in lines[:line])
    units = 0
    for index, char in enumerate(lines[line]):
        if units >= position.character:
            return start + index
        units += 2 if ord(char) > 0xFFFF else 1
    return start + len(lines[line])


def apply_edits(text: str, edits: Sequence[lsp.TextEdit]) -> str:
    """``text`` with non-overlapping LSP edits applied (from the last one backwards)."""
    spans = sorted(
        ((offset_at(text, e.range.start), offset_at(text, e.range.end), e.new_text) for e in edits),
        reverse=True,
    )
    for start, end, new_text in spans:
        text = text[:start] + new_text + text[end:]
    return text


def edits_for(edit: lsp.WorkspaceEdit | None, uri: str) -> list[lsp.TextEdit]:
    """The plain text edits a workspace edit makes to one document."""
    if edit is None:
        return []
    found: list[lsp.TextEdit] = list((edit.changes or {}).get(uri, []))
    for change in edit.document_changes or []:
        if isinstance(change, lsp.TextDocumentEdit) and change.text_document.uri == uri:
            found += [e for e in change.edits if isinstance(e, lsp.TextEdit)]
    return found


def unified_diff(before: str, after: str, name: str, context: int = 1) -> str:
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile=f"a/{name}",
        tofile=f"b/{name}",
        n=context,
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)
