"""A text edit in memlsp's own coordinates, shared by the linters' fixes, the review's quick fixes
and the refactors; the LSP layer converts it to the client's position encoding."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TextEdit"]


@dataclass(frozen=True)
class TextEdit:
    """Replace the range [line:column, end_line:end_column) with ``new_text``.

    Lines and columns are 0-based; columns count Unicode code points (what ruff and CPython
    report), so converting to UTF-16 or UTF-8 offsets needs the line's text.
    """

    line: int
    column: int
    end_line: int
    end_column: int
    new_text: str
