"""Combining model findings with the linters' and with the previous review's.

Rules (each one a choice; the reasons are next to them):

* **Severity cap.** A model finding is at most ``max_llm_severity`` (default warning): the small
  models are wrong often enough that their findings must not look like compiler errors.
* **Linters first.** A model finding is dropped when a linter finding covers the same line and
  means the same thing: its rule maps to the same code (``E711`` and ``none-comparison``; also
  up to two lines away, where a model that quoted a neighbouring line puts it), or the linter
  reports a syntax error there (nothing else on that line is worth reading), or the
  model's finding is only ``style`` (a line a linter already flags needs no style remark on
  top). A model ``bug`` or ``security`` finding on a line with an unrelated lint (a long line)
  is kept. Linter findings are never dropped: they are precise and come with tested fixes.
* **One finding per line and code** among the model's findings.
* **Carry-over.** Model findings of the previous review stay published while the code they are
  on is unchanged: the model is not asked about that code again (or, for a small file shown
  whole, may or may not repeat itself: greedy decoding still varies with the rest of the
  prompt), and diagnostics that come and go between saves of untouched code would be noise. A
  finding is tied to its chunk's content hash and its offset in the chunk; when the chunk is
  gone (edited), the finding goes too, and the fresh review of that chunk replaces it. A new
  finding repeating a carried one (same line and code) is dropped as already reported.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from memlsp.agents.review.scope import Snapshot
from memlsp.agents.review.tool_parsers import Severity
from memlsp.agents.review.types import ReviewFinding

__all__ = [
    "KeptFinding",
    "cap_severity",
    "carry_over",
    "remember",
    "repeats_tool",
    "tool_category",
    "unique_llm",
]

_SEVERITIES: tuple[Severity, ...] = ("hint", "info", "warning", "error")
_RANK: Mapping[str, int] = {name: rank for rank, name in enumerate(_SEVERITIES)}


def cap_severity(severity: Severity, ceiling: str) -> Severity:
    """``severity``, lowered to ``ceiling`` (a config string; unknown ones mean warning)."""
    top: Severity = "warning"
    for known in _SEVERITIES:
        if known == ceiling:
            top = known
    return severity if _RANK[severity] <= _RANK[top] else top


# Linter rule ids (ruff's, which include flake8's and pylint's spellings) -> our codes.
_TOOL_CODES: Mapping[str, str] = {
    "B006": "mutable-default",
    "E711": "none-comparison",
    "F841": "unused-variable",
    "B007": "unused-variable",
    "F401": "unused-import",
    "E722": "bare-except",
    "BLE001": "bare-except",
    "S110": "bare-except",
    "S112": "bare-except",
    "F821": "undefined-name",
    "F822": "undefined-name",
    "SIM115": "resource-leak",
    "A001": "shadowed-builtin",
    "A002": "shadowed-builtin",
    "PLW2901": "bug",
}
# By prefix, longest first; what no rule names is a category of its own.
_TOOL_PREFIXES: tuple[tuple[str, str], ...] = (
    ("PERF", "performance"),
    ("S", "security"),
    ("E", "style"),
    ("W", "style"),
    ("I", "style"),
    ("D", "style"),
    ("N", "style"),
    ("UP", "style"),
)
# Any code on a line the parser could not read.
_SYNTAX = "*"
# Lines around a linter finding within which a model finding of the same kind repeats it.
_NEAR = 2


def tool_category(code: str) -> str:
    """Our code for a linter rule id; ``*`` for syntax errors; "" when unknown."""
    if code in _TOOL_CODES:
        return _TOOL_CODES[code]
    if code in ("SyntaxError", "IndentationError", "TabError", "E999", "invalid-syntax"):
        return _SYNTAX
    for prefix, category in _TOOL_PREFIXES:
        if code.startswith(prefix) and code[len(prefix) :].isdigit():
            return category
    return ""


# What a line must show for some codes to be about it at all (Python). A small model that
# says "comparison to None" and quotes the wrong code gets anchored on a line without one:
# that finding is noise wherever it lands. Codes not listed here are not checked.
_PYTHON_LINE_SHAPES: Mapping[str, re.Pattern[str]] = {
    "none-comparison": re.compile(r"[=!]=\s*None\b|\bNone\s*[=!]="),
    "bare-except": re.compile(r"^\s*except\s*:"),
    "mutable-default": re.compile(r"=\s*(\[|\{|(list|dict|set)\()"),
}


def fits_its_line(finding: ReviewFinding, line: str, language: str) -> bool:
    """Whether the anchored line can be what the finding's code says (see the shapes above)."""
    shape = _PYTHON_LINE_SHAPES.get(finding.code) if language == "python" else None
    return shape is None or bool(shape.search(line))


def repeats_tool(finding: ReviewFinding, tool_findings: Iterable[ReviewFinding]) -> bool:
    for tool in tool_findings:
        # ruff reports unparsable code without a rule id (or as "invalid-syntax").
        unparsable = tool.severity == "error" and tool.code == ""
        category = _SYNTAX if unparsable else tool_category(tool.code)
        first, last = tool.line, max(tool.line, tool.end_line)
        if first <= finding.line <= last and (
            category in (_SYNTAX, finding.code) or finding.code == "style"
        ):
            return True
        # The same kind of problem a line or two away is the linter's finding anchored on
        # a neighbouring line (the model quoted the line above the `except:`, say).
        if category == finding.code and first - _NEAR <= finding.line <= last + _NEAR:
            return True
    return False


def unique_llm(findings: Iterable[ReviewFinding]) -> list[ReviewFinding]:
    seen: set[tuple[int, str]] = set()
    out: list[ReviewFinding] = []
    for finding in findings:
        key = (finding.line, finding.code)
        if key not in seen:
            seen.add(key)
            out.append(finding)
    return out


@dataclass(frozen=True)
class KeptFinding:
    """A published model finding and where it sits in the chunk structure."""

    finding: ReviewFinding
    chunk_hash: str
    offset: int  # finding.line - the chunk's first line
    line_text: str


def remember(findings: Iterable[ReviewFinding], snap: Snapshot) -> tuple[KeptFinding, ...]:
    kept = []
    for finding in findings:
        index = snap.owner[finding.line] if 0 <= finding.line < len(snap.owner) else -1
        if index < 0:
            continue
        chunk = snap.chunks[index]
        offset = finding.line - chunk.start_line
        kept.append(KeptFinding(finding, chunk.content_hash, offset, snap.lines[finding.line]))
    return tuple(kept)


def carry_over(kept: Sequence[KeptFinding], current: Snapshot) -> list[ReviewFinding]:
    """The kept findings whose chunk is still in ``current``, moved to where it is now."""
    out = []
    for item in kept:
        if item.chunk_hash not in current.hashes:
            continue
        old = item.finding.line
        rows = [
            chunk.start_line + item.offset
            for chunk in current.chunks
            if chunk.content_hash == item.chunk_hash
        ]
        rows = [
            r for r in rows if 0 <= r < len(current.lines) and current.lines[r] == item.line_text
        ]
        if not rows:
            continue  # the chunk's text hides a changed line (blank runs): let it go
        row = min(rows, key=lambda r: (abs(r - old), r))
        shift = row - old
        out.append(replace(item.finding, line=row, end_line=item.finding.end_line + shift))
    return out
