"""Turn a tool's output into findings.

Parsers never raise: output they cannot read (a tool crashed, printed a usage message, changed
its format) gives no findings and a note saying why, so one odd tool never costs the others'
results. Positions are 0-based lines and columns, columns counting Unicode code points (what
ruff and CPython report); converting to the client's position encoding needs the line's text,
so it is the caller's job.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeGuard

from memlsp.base.edits import TextEdit
from memlsp.config.safe_read import read_regular_file

__all__ = [
    "PARSERS",
    "Finding",
    "Fix",
    "Parsed",
    "Severity",
    "ToolOutput",
    "parse_lines",
    "parse_output",
    "parse_py_compile",
    "parse_ruff_json",
]

logger = logging.getLogger(__name__)

Severity = Literal["error", "warning", "info", "hint"]


@dataclass(frozen=True)
class Fix:
    """A tool's own fix for a finding: every edit applies together."""

    message: str
    edits: tuple[TextEdit, ...]
    applicability: str = ""  # ruff's "safe" / "unsafe" / "display-only"; "" when not said


@dataclass(frozen=True)
class Finding:
    line: int
    column: int
    end_line: int
    end_column: int
    severity: Severity
    code: str  # the tool's rule id ("F401"); "" when it has none
    message: str
    source: str  # the tool's name
    fix: Fix | None = None


@dataclass(frozen=True)
class ToolOutput:
    """What a parser gets: the captured output and the file the tool ran on."""

    tool: str
    stdout: str
    stderr: str
    exit_code: int | None
    file: Path  # absolute, symlinks resolved
    root: Path  # the workspace root, resolved; relative paths in output are relative to it


@dataclass(frozen=True)
class Parsed:
    findings: tuple[Finding, ...] = ()
    notes: tuple[str, ...] = ()


Parser = Callable[[ToolOutput], Parsed]


class _Malformed(Exception):
    """One output record is not the shape the format promises; skip it."""


# Notes quote the tool's output; a line is enough to tell what went wrong.
_QUOTE_CHARS = 200


def _head(text: str) -> str:
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return line if len(line) <= _QUOTE_CHARS else line[: _QUOTE_CHARS - 3] + "..."


def _output_head(out: ToolOutput) -> str:
    return _head(out.stderr) or _head(out.stdout) or "(no output)"


class _SameFile:
    """Whether a path printed by the tool is the file we ran it on (tools may report on other
    files too, e.g. imported modules; those findings would land on the wrong lines)."""

    def __init__(self, out: ToolOutput) -> None:
        self._out = out
        self._seen: dict[str, bool] = {}

    def __call__(self, printed: str) -> bool:
        if printed not in self._seen:
            self._seen[printed] = self._check(printed)
        return self._seen[printed]

    def _check(self, printed: str) -> bool:
        path = Path(printed)
        try:
            return (path if path.is_absolute() else self._out.root / path).resolve() == (
                self._out.file
            )
        except (OSError, RuntimeError, ValueError):  # loops, NUL bytes, bad names
            return False


# -- ruff --output-format json ----------------------------------------------------------------


def parse_ruff_json(out: ToolOutput) -> Parsed:
    text = out.stdout.strip()
    if not text:  # ruff failed before linting (bad config...): parse_output quotes its stderr
        return Parsed()
    try:
        data = json.loads(text)
    except ValueError:
        return Parsed(notes=(f"output is not JSON: {_output_head(out)}",))
    if not isinstance(data, list):
        return Parsed(notes=("JSON output is not a list of diagnostics",))
    same_file = _SameFile(out)
    findings: list[Finding] = []
    malformed = 0
    for item in data:
        try:
            if same_file(_str(item, "filename")):
                findings.append(_ruff_finding(item, out.tool))
        except _Malformed:
            malformed += 1
    notes = (f"{malformed} malformed diagnostic(s) skipped",) if malformed else ()
    return Parsed(tuple(findings), notes)


def _ruff_finding(item: Any, tool: str) -> Finding:
    line, column = _ruff_location(item, "location")
    end_line, end_column = _ruff_location(item, "end_location")
    code = item.get("code")
    if code is not None and not isinstance(code, str):
        raise _Malformed
    # Like ruff's own language server: lint rules are warnings, only unparsable code is an error
    # (ruff's JSON says "error" for every rule, which would paint unused imports red).
    syntax = code in (None, "invalid-syntax")
    return Finding(
        line=line,
        column=column,
        end_line=end_line,
        end_column=end_column,
        severity="error" if syntax else "warning",
        code=code or "",
        message=_str(item, "message"),
        source=tool,
        fix=_ruff_fix(item.get("fix")),
    )


def _ruff_fix(raw: Any) -> Fix | None:
    if raw is None:
        return None
    edits = raw.get("edits") if isinstance(raw, Mapping) else None
    if not isinstance(edits, list) or not edits:
        raise _Malformed
    mapped = []
    for edit in edits:
        line, column = _ruff_location(edit, "location")
        end_line, end_column = _ruff_location(edit, "end_location")
        mapped.append(TextEdit(line, column, end_line, end_column, _str(edit, "content")))
    message = raw.get("message")
    applicability = raw.get("applicability")
    return Fix(
        message if isinstance(message, str) else "",
        tuple(mapped),
        applicability if isinstance(applicability, str) else "",
    )


def _ruff_location(item: Any, key: str) -> tuple[int, int]:
    """ruff's 1-based ``{"row", "column"}`` as a 0-based (line, column)."""
    where = item.get(key) if isinstance(item, Mapping) else None
    if not isinstance(where, Mapping):
        raise _Malformed
    row, column = where.get("row"), where.get("column")
    if not (_positive_int(row) and _positive_int(column)):
        raise _Malformed
    return row - 1, column - 1


def _positive_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _str(item: Any, key: str) -> str:
    value = item.get(key) if isinstance(item, Mapping) else None
    if not isinstance(value, str):
        raise _Malformed
    return value


# -- python -m py_compile ---------------------------------------------------------------------

# A SyntaxError as traceback.format_exception_only prints it:
#   File "/ws/a.py", line 3
#     y = (1 +)
#            ^
#   SyntaxError: invalid syntax
_PY_FILE_LINE = re.compile(r'^\s*File "(?P<file>.*)", line (?P<line>\d+)')
_PY_CARET = re.compile(r"^(?P<indent>\s*)(?P<carets>\^+)\s*$")
# Its last line; other errors (IndentationError, TabError, ValueError...) come as
# "Sorry: IndentationError: unexpected indent (/ws/a.py, line 4)".
_PY_ERROR = re.compile(r"^(?:Sorry: )?(?P<kind>[A-Za-z_]\w*): (?P<message>.*)$")
_PY_WHERE = re.compile(r"\s*\((?P<file>.*), line (?P<line>\d+)\)$")
# format_exception_only prints the source line indented by 4, after stripping these from it.
_PY_SHOWN_INDENT = 4
_PY_STRIPPED = " \n\f"


def parse_py_compile(out: ToolOutput) -> Parsed:
    text = out.stderr or out.stdout
    if out.exit_code == 0 and not text.strip():
        return Parsed()
    lines = text.splitlines()
    last = next((ln for ln in reversed(lines) if ln.strip()), "")
    error = _PY_ERROR.match(last)
    if error is None:
        return Parsed(notes=(f"unrecognised output: {_output_head(out)}",))
    kind, message = error["kind"], error["message"]
    line, column, width = _py_position(lines, out)
    where = _PY_WHERE.search(message)
    if where is not None:  # the "Sorry: ..." form names its line at the end
        message = message[: where.start()]
        if line is None and _SameFile(out)(where["file"]):
            line = int(where["line"]) - 1
    if line is None:  # no position (e.g. NUL bytes in the file): the file as a whole
        line, column, width = 0, 0, 0
    finding = Finding(
        line=line,
        column=column,
        end_line=line,
        end_column=column + width,
        severity="error",
        code=kind,
        message=message,
        source=out.tool,
    )
    return Parsed((finding,))


def _py_position(lines: list[str], out: ToolOutput) -> tuple[int | None, int, int]:
    """(0-based line, column, caret width) from the traceback's File line and caret line."""
    for i, text in enumerate(lines):
        match = _PY_FILE_LINE.match(text)
        if match is None or not _SameFile(out)(match["file"]):
            continue
        line = int(match["line"]) - 1
        caret = _PY_CARET.match(lines[i + 2]) if i + 2 < len(lines) else None
        if caret is None:
            return line, 0, 0
        shown_column = len(caret["indent"]) - _PY_SHOWN_INDENT
        return (
            line,
            max(0, shown_column + _stripped_indent(out.file, out.root, line)),
            len(caret["carets"]),
        )
    return None, 0, 0


# The linted file is read again only to measure one line's indent; a source file is far smaller.
_SOURCE_MAX_BYTES = 16 << 20


def _stripped_indent(file: Path, root: Path, line: int) -> int:
    """How much leading whitespace the traceback dropped from the file's line: its caret
    counts from the stripped text, the editor from the real line."""
    try:
        data = read_regular_file(file, max_bytes=_SOURCE_MAX_BYTES, inside=root)
        text = data.decode("utf-8", errors="replace")
    except OSError:
        return 0
    # Python's own line breaks only (str.splitlines also splits on \f, \v and others).
    source_lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if line >= len(source_lines):
        return 0
    real = source_lines[line]
    return len(real) - len(real.lstrip(_PY_STRIPPED))


# -- generic "file:line[:col]: [severity:] message" ---------------------------------------------

# Windows drive letters ("C:\...") survive the lazy file group: "\..." is not digits.
_LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?:(?P<col>\d+):)?\s*(?P<rest>.*)$")
_LEVEL = re.compile(
    r"^(?P<level>fatal error|error|warning|note|info|hint)\s*:\s*(?P<rest>.*)$", re.IGNORECASE
)
_LEVELS: Mapping[str, Severity] = {
    "fatal error": "error",
    "error": "error",
    "warning": "warning",
    "note": "info",
    "info": "info",
    "hint": "hint",
}
_LEADING_CODE = re.compile(r"^(?P<code>[A-Z]{1,4}\d{1,5})\b:?\s*(?P<rest>.*)$")  # flake8, pylint
_TRAILING_CODE = re.compile(r"^(?P<rest>.*?)\s+\[(?P<code>[\w.-]+)\]$")  # mypy


def parse_lines(out: ToolOutput) -> Parsed:
    """Lines like ``path:12:5: error: message [code]`` (gcc, mypy, flake8, eslint -f unix):
    1-based line and column; severity, column and code optional. Other lines are ignored."""
    same_file = _SameFile(out)
    findings = [
        finding
        for file, finding in _line_findings(out.stdout, out.stderr, out.tool)
        if same_file(file)
    ]
    return Parsed(tuple(findings))


def _line_findings(stdout: str, stderr: str, tool: str) -> Iterator[tuple[str, Finding]]:
    for text in (*stdout.splitlines(), *stderr.splitlines()):
        match = _LINE.match(text.strip())
        if match is None or int(match["line"]) < 1:
            continue
        line = int(match["line"]) - 1
        column = max(0, int(match["col"]) - 1) if match["col"] else 0
        severity: Severity = "warning"
        rest = match["rest"]
        if level := _LEVEL.match(rest):
            severity, rest = _LEVELS[level["level"].lower()], level["rest"]
        code = ""
        if coded := _LEADING_CODE.match(rest) or _TRAILING_CODE.match(rest):
            code, rest = coded["code"], coded["rest"]
        if message := rest.strip():
            finding = Finding(line, column, line, column, severity, code, message, tool)
            yield match["file"], finding


# -- registry ---------------------------------------------------------------------------------

# Keys match memlsp.config.schema.TOOL_PARSERS (the config's valid values for ToolSpec.parser).
PARSERS: Mapping[str, Parser] = {
    "ruff-json": parse_ruff_json,
    "py-compile": parse_py_compile,
    "lines": parse_lines,
}


def parse_output(parser: str, out: ToolOutput) -> Parsed:
    """Run the named parser; never raises. A tool that failed without findings gets a note
    quoting its first line of output (e.g. ruff rejecting the project's config)."""
    chosen = PARSERS.get(parser)
    if chosen is None:
        return Parsed(notes=(f"unknown parser {parser!r}",))
    try:
        parsed = chosen(out)
    except Exception as exc:  # a parser bug must cost one tool's findings, not the request
        logger.exception("parser %s failed on %s's output", parser, out.tool)
        return Parsed(notes=(f"parser {parser} failed: {exc!r}",))
    if not parsed.findings and not parsed.notes and out.exit_code not in (0, None):
        note = f"exited with status {out.exit_code}: {_output_head(out)}"
        return Parsed(notes=(note,))
    return parsed
