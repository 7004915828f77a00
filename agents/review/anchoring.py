"""Place a model's finding in the document by the code it quotes, not by the line it names.

Small models get line numbers wrong (off by one or two, or counted from the start of the shown
code) but copy code well. So a finding's ``snippet`` is searched for in the document, strictest
first:

1. ``line``: a line whose stripped text equals the stripped snippet (the whole line's code);
2. ``substring``: a line containing the snippet (the range is just the snippet);
3. ``fuzzy``: a line whose stripped text is more than ``FUZZY_RATIO`` similar (difflib), for a
   snippet copied with a small slip (quotes, spacing, a dropped character).

Only the given candidate rows are searched (what the model was shown), and among several
matches of one kind the one nearest the model's line number wins. A snippet of several lines
is matched as a block first, then by its first line. No match: the finding is dropped, since a
model that cannot quote the code it means is most likely inventing the problem.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["FUZZY_RATIO", "Anchor", "AnchorMethod", "anchor_snippet", "fit_replacement"]

FUZZY_RATIO = 0.85
# A substring shorter than this matches too much (`x`, `)`) to mean anything.
_MIN_SUBSTRING = 3
# The prompt numbers lines as "12| code"; models sometimes copy the number along.
_LINE_NUMBER = re.compile(r"^\s*\d+\s*\|\s?")

AnchorMethod = Literal["line", "block", "substring", "fuzzy"]
# Sort key ranking candidate rows: nearest to the model's line number, then first.
_Key = Callable[[int], tuple[int, int]]


@dataclass(frozen=True)
class Anchor:
    """The range the snippet was found at: 0-based, code points, end exclusive."""

    line: int
    column: int
    end_line: int
    end_column: int
    method: AnchorMethod
    snippet_lines: int  # how many snippet lines the range covers (1 unless a block)


def clean_snippet(snippet: str) -> list[str]:
    """The snippet's non-blank lines, right-stripped, copied line numbers removed."""
    lines = [_LINE_NUMBER.sub("", line, count=1).rstrip() for line in snippet.splitlines()]
    return [line for line in lines if line.strip()]


def anchor_snippet(
    snippet: str,
    lines: Sequence[str],
    candidates: Iterable[int] | None = None,
    hint: int | None = None,
) -> Anchor | None:
    """Where ``snippet`` is in ``lines`` (the document split into lines), searching only the
    ``candidates`` rows (default: all); ``hint`` is the model's 0-based line, a tie-breaker."""
    wanted = clean_snippet(snippet)
    if not wanted:
        return None
    rows = sorted(set(range(len(lines)) if candidates is None else candidates))
    rows = [row for row in rows if 0 <= row < len(lines)]
    near = _nearest(hint)
    if len(wanted) > 1:
        block = _block(wanted, lines, rows, near)
        if block is not None:
            return block
    return _single(wanted[0].strip(), lines, rows, near)


def _nearest(hint: int | None) -> _Key:
    def key(row: int) -> tuple[int, int]:
        return (abs(row - hint) if hint is not None else 0, row)

    return key


def _span(line: str) -> tuple[int, int]:
    """Columns of a line's code, without indentation or trailing blanks."""
    stripped = line.rstrip()
    return len(stripped) - len(stripped.lstrip()), len(stripped)


def _block(wanted: list[str], lines: Sequence[str], rows: list[int], near: _Key) -> Anchor | None:
    allowed = set(rows)
    targets = [w.strip() for w in wanted]
    starts = [
        row
        for row in rows
        if all(
            row + i in allowed and lines[row + i].strip() == target
            for i, target in enumerate(targets)
        )
    ]
    if not starts:
        return None
    first = min(starts, key=near)
    last = first + len(targets) - 1
    return Anchor(first, _span(lines[first])[0], last, _span(lines[last])[1], "block", len(targets))


def _single(target: str, lines: Sequence[str], rows: list[int], near: _Key) -> Anchor | None:
    exact = [row for row in rows if lines[row].strip() == target]
    if exact:
        row = min(exact, key=near)
        column, end = _span(lines[row])
        return Anchor(row, column, row, end, "line", 1)
    if len(target) >= _MIN_SUBSTRING:
        inside = [row for row in rows if target in lines[row]]
        if inside:
            row = min(inside, key=near)
            column = lines[row].index(target)
            return Anchor(row, column, row, column + len(target), "substring", 1)
    fuzzy = [row for row in rows if _similar(target, lines[row].strip())]
    if fuzzy:
        row = min(fuzzy, key=near)
        column, end = _span(lines[row])
        return Anchor(row, column, row, end, "fuzzy", 1)
    return None


def _similar(a: str, b: str) -> bool:
    if not b:
        return False
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    # The quick upper bounds first: most lines are nowhere near.
    return (
        matcher.real_quick_ratio() > FUZZY_RATIO
        and matcher.quick_ratio() > FUZZY_RATIO
        and matcher.ratio() > FUZZY_RATIO
    )


def fit_replacement(
    snippet: str, replacement: str | None, anchor: Anchor, lines: Sequence[str]
) -> str | None:
    """The model's replacement for its snippet, made to replace exactly the anchor's range.

    None when there is nothing sound to offer: a fuzzy match (the range is not the text the
    replacement was written for), a multi-line snippet matched by its first line only, or a
    replacement equal to the code. Continuation lines are re-indented from the snippet's
    indentation to the document's.
    """
    if replacement is None or anchor.method == "fuzzy":
        return None
    wanted = clean_snippet(snippet)
    if len(wanted) != anchor.snippet_lines:
        return None
    new_lines = [_LINE_NUMBER.sub("", line, count=1) for line in replacement.splitlines()]
    while new_lines and not new_lines[-1].strip():
        new_lines.pop()
    if not new_lines:
        return None  # an empty replacement deletes code: too risky to offer from a model
    model_indent = _indent(wanted[0])
    document_indent = _indent(lines[anchor.line])
    fitted = [new_lines[0].strip()]
    for line in new_lines[1:]:
        body = line[len(model_indent) :] if line.startswith(model_indent) else line.lstrip()
        fitted.append(document_indent + body if body.strip() else "")
    text = "\n".join(fitted)
    if anchor.method == "substring":
        text = text.strip()
    current = _range_text(lines, anchor)
    return None if text == current else text


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def _range_text(lines: Sequence[str], anchor: Anchor) -> str:
    if anchor.line == anchor.end_line:
        return lines[anchor.line][anchor.column : anchor.end_column]
    middle = list(lines[anchor.line + 1 : anchor.end_line])
    return "\n".join(
        [lines[anchor.line][anchor.column :], *middle, lines[anchor.end_line][: anchor.end_column]]
    )
