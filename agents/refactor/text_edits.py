"""From a model's rewrite of some lines to minimal, checked text edits (pure functions).

The model rewrites whole lines (``LineSpan``); ``build_edits`` turns its answer into the smallest
set of line edits (difflib), re-indented to the original's base indentation, with new import lines
moved to the file's import block. It refuses (a message, no edits) when the result would not
parse, would be a no-op, drops a function or class the range defined, defines one named like a
definition elsewhere in the file, or visibly leaves code out ("# ... rest of the code"). Nothing
the model writes is ever run: it is parsed, never executed.

Positions are 0-based lines and columns in Unicode code points (``tool_parsers.TextEdit``);
converting to the client's encoding is the server's job. Lines are split on ``\\n``; a ``\\r``
before it (CRLF files) is kept out of line contents and written back on inserted lines.
"""

from __future__ import annotations

import ast
import difflib
import re
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from memlsp.base.edits import TextEdit
from memlsp.base.languages import language_by_lsp_id, parser_for

__all__ = [
    "EditOutcome",
    "LineSpan",
    "TextRange",
    "apply_edits",
    "build_comment_edits",
    "build_edits",
    "comment_prefix",
    "defined_names",
    "diff_edits",
    "edit_to_json",
    "edits_within",
    "extract_code",
    "grammar_for",
    "reindent",
    "syntax_errors",
]

# A line that starts an import, per grammar (the names of memlsp.base.languages; single-line
# forms only: a multi-line import in a rewrite stays where the model put it).
_IMPORT_LINE = {
    "python": re.compile(
        r"(import\s+[\w.]+(\s+as\s+\w+)?(\s*,\s*[\w.]+(\s+as\s+\w+)?)*"
        r"|from\s+[.\w]+\s+import\s+(\([^()]*\)|[^()#]+))\s*(#.*)?$"
    ),
    "javascript": re.compile(r"import\s.+;?$"),
    "typescript": re.compile(r"import\s.+;?$"),
    "tsx": re.compile(r"import\s.+;?$"),
    "java": re.compile(r"import\s+(static\s+)?[\w.*]+\s*;$"),
    "rust": re.compile(r"use\s+[^;]+;$"),
    "c": re.compile(r"#include\s*[<\"].+[>\"]$"),
    "cpp": re.compile(r"#include\s*[<\"].+[>\"]$"),
}
# Definitions whose name a rewrite must keep, per grammar (a model that "simplifies" a function
# away, or answers with only part of the code, is caught by this).
_DEFINITIONS = {
    "python": frozenset({"function_definition", "class_definition"}),
    "javascript": frozenset(
        {"function_declaration", "generator_function_declaration", "class_declaration"}
        | {"method_definition"}
    ),
    "go": frozenset({"function_declaration", "method_declaration", "type_spec"}),
    "rust": frozenset({"function_item", "struct_item", "enum_item", "trait_item"}),
    "java": frozenset(
        {"method_declaration", "constructor_declaration", "class_declaration"}
        | {"interface_declaration", "enum_declaration", "record_declaration"}
    ),
}
_DEFINITIONS["typescript"] = _DEFINITIONS["tsx"] = _DEFINITIONS["javascript"] | {
    "interface_declaration",
    "type_alias_declaration",
}
# Comment lines standing in for code the model left out ("# ... rest of the code").
_ELISION = re.compile(
    r"^\s*(\.\.\.\s*$|(#|//|--|/\*)\s*(\.\.\.|…)|(#|//|--|/\*).*\b("
    r"(rest|remainder) of (the )?(code|function|method|class|file|implementation|body)"
    r"|existing code|(code|logic|implementation) (remains |stays |is )?unchanged"
    r"|same as (before|above|the original)|omitted for brevity)\b)",
    re.IGNORECASE,
)
_FENCE = re.compile(r"^[ \t]*(```|~~~)[^\n]*\n", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class TextRange:
    """A range as LSP gives it: 0-based, end exclusive, columns in code points."""

    line: int
    column: int
    end_line: int
    end_column: int

    @property
    def empty(self) -> bool:
        return (self.line, self.column) == (self.end_line, self.end_column)

    def lines(self) -> LineSpan:
        """The whole lines it touches; an end at column 0 of a later line leaves that line out."""
        end = (
            self.end_line
            if self.end_column == 0 and self.end_line > self.line
            else self.end_line + 1
        )
        return LineSpan(self.line, max(end, self.line + 1))

    def to_json(self) -> dict[str, Any]:
        return {
            "start": {"line": self.line, "character": self.column},
            "end": {"line": self.end_line, "character": self.end_column},
        }

    @classmethod
    def from_json(cls, data: Any) -> TextRange:
        """From an LSP-shaped ``{"start": {...}, "end": {...}}``; ValueError when malformed."""
        try:
            start, end = data["start"], data["end"]
            values = (start["line"], start["character"], end["line"], end["character"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a range: {data!r}") from exc
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
            raise ValueError(f"not a range: {data!r}")
        return cls(*values)


@dataclass(frozen=True, slots=True)
class LineSpan:
    """Whole lines ``[start, end)`` of a document."""

    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start

    def contains(self, other: LineSpan) -> bool:
        return self.start <= other.start and other.end <= self.end

    def overlaps(self, other: LineSpan) -> bool:
        return self.start < other.end and other.start < self.end


@dataclass(frozen=True)
class EditOutcome:
    """Edits to apply, or a user-facing ``message`` saying why there are none."""

    edits: tuple[TextEdit, ...] = ()
    message: str = ""
    new_text: str = ""  # the document after the edits (for checks and tests)

    @property
    def ok(self) -> bool:
        return bool(self.edits) and not self.message


def edit_to_json(edit: TextEdit) -> dict[str, Any]:
    """LSP ``TextEdit`` shape (code-point columns)."""
    span = TextRange(edit.line, edit.column, edit.end_line, edit.end_column)
    return {"range": span.to_json(), "newText": edit.new_text}


def grammar_for(language_id: str) -> str | None:
    """The tree-sitter grammar of an LSP language id; None where memlsp parses none."""
    language = language_by_lsp_id(language_id)
    return language.grammar if language else None


def comment_prefix(language_id: str) -> str | None:
    """The line-comment marker of a language; None where there is none (or it is unknown)."""
    language = language_by_lsp_id(language_id)
    return language.line_comments[0] if language and language.line_comments else None


# -- extracting and re-indenting the model's code ---------------------------------------------


def extract_code(answer: str) -> str:
    """The first fenced block of a chat answer; an unclosed fence (a cut-off answer) runs to the
    end; without any fence, the whole answer."""
    opening = _FENCE.search(answer)
    if opening is None:
        return answer.strip("\n")
    fence = opening.group(1)
    rest = answer[opening.end() :]
    closing = re.search(rf"^[ \t]*{re.escape(fence)}[ \t]*$", rest, re.MULTILINE)
    body = rest[: closing.start()] if closing else rest
    return body.rstrip("\n")


def _indent_of(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def _first_indent(lines: Iterable[str]) -> str | None:
    return next((_indent_of(line) for line in lines if line.strip()), None)


def reindent(lines: Sequence[str], base: str) -> list[str]:
    """Shift ``lines`` so the first non-blank one starts with ``base``, keeping the relative
    indentation (models often return a method dedented to column 0)."""
    first = _first_indent(lines)
    if first is None or first == base:
        return list(lines)
    width = len(first)
    shifted = []
    for line in lines:
        if not line.strip():
            shifted.append("")
            continue
        own = _indent_of(line)
        # Drop the model's base (as far as this line has it), then put the original's base.
        keep = own[width:] if own.startswith(first) else own[min(len(own), width) :]
        shifted.append(base + keep + line[len(own) :])
    return shifted


# -- parsing -----------------------------------------------------------------------------------


def syntax_errors(text: str, language_id: str) -> list[LineSpan] | None:
    """Where ``text`` has syntax errors (empty: it parses); None when there is no parser.

    Python is checked by the compiler's own parser (exact); when it fails, tree-sitter locates
    the errors, so that a document that was already broken can be compared with the result.
    """
    grammar = grammar_for(language_id)
    if grammar is None:
        return None
    if grammar == "python":
        try:
            ast.parse(text)
            return []
        except (SyntaxError, ValueError, RecursionError) as exc:
            line = max(0, (getattr(exc, "lineno", None) or 1) - 1)
            return _tree_sitter_errors(text, grammar) or [LineSpan(line, line + 1)]
    return _tree_sitter_errors(text, grammar)


def _tree_sitter_errors(text: str, grammar: str) -> list[LineSpan]:
    root = parser_for(grammar).parse(text.encode("utf-8", "replace")).root_node
    errors, stack = [], [root]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            errors.append(LineSpan(node.start_point.row, node.end_point.row + 1))
        elif node.has_error:
            stack.extend(node.children)
    return errors


def defined_names(lines: Sequence[str], language_id: str) -> set[str]:
    """Names of the functions and classes defined in ``lines`` (parsed on their own, dedented);
    empty where the language has no such table (the check is then skipped)."""
    grammar = grammar_for(language_id)
    kinds = _DEFINITIONS.get(grammar or "")
    if grammar is None or kinds is None:
        return set()
    base = _first_indent(lines) or ""
    source = "\n".join(line[len(base) :] if line.startswith(base) else line for line in lines)
    names, stack = set(), [parser_for(grammar).parse(source.encode("utf-8", "replace")).root_node]
    while stack:
        node = stack.pop()
        name = node.child_by_field_name("name") if node.type in kinds else None
        if name is not None and name.text is not None:
            names.add(name.text.decode("utf-8", "replace"))
        stack.extend(node.named_children)
    return names


# -- edits -------------------------------------------------------------------------------------


def _split(text: str) -> tuple[list[str], str]:
    """Line contents (no line ends) and the document's line end."""
    eol = "\r\n" if "\r\n" in text else "\n"
    lines = text.split("\n")
    if eol == "\r\n":
        lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    return lines, eol


def diff_edits(
    doc_lines: Sequence[str], span: LineSpan, new_lines: Sequence[str], eol: str = "\n"
) -> list[TextEdit]:
    """Minimal whole-line edits turning ``doc_lines[span]`` into ``new_lines``."""
    old = list(doc_lines[span.start : span.end])
    last = len(doc_lines) - 1  # the last line has no line end after it
    edits = []
    matcher = difflib.SequenceMatcher(None, old, list(new_lines), autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        a, b = span.start + i1, span.start + i2
        inserted = list(new_lines[j1:j2])
        if b <= last:
            text = "".join(line + eol for line in inserted)
            edits.append(TextEdit(a, 0, b, 0, text))
        elif a > last:  # appending after the last line
            edits.append(
                TextEdit(
                    last, len(doc_lines[last]), last, len(doc_lines[last]), eol + eol.join(inserted)
                )
            )
        elif inserted:
            edits.append(TextEdit(a, 0, last, len(doc_lines[last]), eol.join(inserted)))
        elif a > 0:  # deleting the last lines: take the line end before them too
            edits.append(TextEdit(a - 1, len(doc_lines[a - 1]), last, len(doc_lines[last]), ""))
        else:
            edits.append(TextEdit(0, 0, last, len(doc_lines[last]), ""))
    return edits


def apply_edits(text: str, edits: Iterable[TextEdit]) -> str:
    """Apply edits given against the same original text; ValueError if they overlap or fall
    outside it."""
    starts = [0]
    for index, char in enumerate(text):
        if char == "\n":
            starts.append(index + 1)

    def offset(line: int, column: int) -> int:
        if line >= len(starts):
            raise ValueError(f"line {line} is past the end of the text")
        end = starts[line + 1] - 1 if line + 1 < len(starts) else len(text)
        if end > starts[line] and text[end - 1] == "\r":
            end -= 1
        return min(starts[line] + column, end)

    spans = sorted(
        ((offset(e.line, e.column), offset(e.end_line, e.end_column), e.new_text) for e in edits),
        key=lambda s: (s[0], s[1]),
    )
    out, cursor = [], 0
    for start, end, new in spans:
        if start < cursor or end < start:
            raise ValueError("overlapping or reversed edits")
        out.append(text[cursor:start])
        out.append(new)
        cursor = end
    out.append(text[cursor:])
    return "".join(out)


def edits_within(edits: Iterable[TextEdit], span: LineSpan, import_line: int | None = None) -> bool:
    """Every edit stays inside ``span`` (an edit deleting the document's last lines may start at
    the end of the line before), or is a pure insertion at ``import_line``."""
    for e in edits:
        start, end = (e.line, e.column), (e.end_line, e.end_column)
        if import_line is not None and start == end == (import_line, 0):
            continue
        starts_inside = start >= (span.start, 0) or (e.line == span.start - 1 and not e.new_text)
        if not (starts_inside and start <= end <= (span.end, 0)):
            return False
    return True


# -- imports -----------------------------------------------------------------------------------


def _split_imports(lines: list[str], grammar: str | None) -> tuple[list[str], list[str]]:
    """Import lines at the very top of a rewrite (at column 0) and the rest."""
    pattern = _IMPORT_LINE.get(grammar or "")
    if pattern is None:
        return [], lines
    index = 0
    imports = []
    while index < len(lines):
        line = lines[index]
        if line.strip() and (line != line.lstrip() or not pattern.match(line)):
            break
        if line.strip():
            imports.append(line.rstrip())
        index += 1
    return imports, lines[index:]


def _import_insert_line(
    doc_lines: list[str], text: str, grammar: str | None, before: int
) -> int | None:
    """The line new imports go on: after the file's imports above ``before`` (the target).
    None when there is no safe place (then the rewrite keeps its imports)."""
    if grammar == "python":
        try:
            module = ast.parse(text)
        except (SyntaxError, ValueError, RecursionError):
            return None
        line = 0
        for index, node in enumerate(module.body):
            if node.lineno - 1 >= before:
                break
            docstring = (
                index == 0
                and isinstance(node, ast.Expr)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            )
            if not (docstring or isinstance(node, (ast.Import, ast.ImportFrom))):
                break  # the first run of imports only: later ones sit under try/if blocks
            line = node.end_lineno or node.lineno
        return line
    pattern = _IMPORT_LINE.get(grammar or "")
    if pattern is None:
        return None
    last = 0
    for index, content in enumerate(doc_lines[:before]):
        if pattern.match(content):
            last = index + 1
    return last


# -- building ----------------------------------------------------------------------------------


def build_edits(text: str, span: LineSpan, rewrite: str, language_id: str) -> EditOutcome:
    """Edits replacing the lines ``span`` of ``text`` with the model's ``rewrite``, or why not."""
    doc_lines, eol = _split(text)
    if not (0 <= span.start < span.end <= len(doc_lines)):
        return EditOutcome(message="The code changed before the edit was ready; try again.")
    old = doc_lines[span.start : span.end]
    grammar = grammar_for(language_id)
    new = [line.rstrip() for line in rewrite.replace("\r\n", "\n").split("\n")]
    while new and not new[0].strip():
        new.pop(0)
    while new and not new[-1].strip():
        new.pop()
    if not new:
        return EditOutcome(message="The model returned no code.")
    # Keep the blank lines that ended the original range (the gap before the next definition).
    trailing = len(old) - len(list(_rstrip_blank(old)))
    imports: list[str] = []
    import_line: int | None = None
    if not _split_imports(old, grammar)[0]:
        imports, new = _split_imports(new, grammar)
        present = {line.strip() for line in doc_lines}
        imports = [line for line in imports if line.strip() not in present]
        if imports:
            import_line = _import_insert_line(doc_lines, text, grammar, span.start)
            if import_line is None:  # no safe place: leave them where the model put them
                new, imports = [*imports, *new], []
    base = _first_indent(old) or ""
    new = reindent(new, base) + [""] * trailing
    if _same(old, new) and not imports:
        return EditOutcome(message="The model suggested no change.")
    old_text = set(line.strip() for line in old)
    dropped = [line for line in new if _ELISION.match(line) and line.strip() not in old_text]
    if dropped:
        return EditOutcome(
            message=f"The model left code out ({dropped[0].strip()!r}); nothing was changed."
        )
    old_names, new_names = defined_names(old, language_id), defined_names(new, language_id)
    lost = old_names - new_names
    if lost:
        names = ", ".join(sorted(lost))
        return EditOutcome(message=f"The model's rewrite drops {names}; nothing was changed.")
    # A new definition named like one elsewhere in the file would shadow or replace code
    # outside the range while the edit itself stays inside it.
    added = new_names - old_names
    outside = [*doc_lines[: span.start], *doc_lines[span.end :]]
    clash = added & defined_names(outside, language_id) if added else set()
    if clash:
        names = ", ".join(sorted(clash))
        return EditOutcome(
            message=f"The model's rewrite redefines {names}, defined elsewhere in the file; "
            "nothing was changed."
        )
    edits = diff_edits(doc_lines, span, new, eol)
    if imports and import_line is not None:
        edits.insert(0, TextEdit(import_line, 0, import_line, 0, "".join(i + eol for i in imports)))
    if not edits_within(edits, span, import_line if imports else None):
        return EditOutcome(
            message="The change reached outside the selected code; nothing was changed."
        )
    shift = len(imports) if import_line is not None else 0
    return _checked(
        text, edits, language_id, span, LineSpan(span.start + shift, span.start + shift + len(new))
    )


def build_comment_edits(
    text: str, span: LineSpan, explanation: str, language_id: str, width: int = 100
) -> EditOutcome:
    """Insert ``explanation`` as line comments above ``span``, at its indentation."""
    prefix = comment_prefix(language_id)
    if prefix is None:
        return EditOutcome(message=f"memlsp does not know how to write a comment in {language_id}.")
    doc_lines, eol = _split(text)
    if not (0 <= span.start < span.end <= len(doc_lines)):
        return EditOutcome(message="The code changed before the edit was ready; try again.")
    words = re.sub(r"^```.*$", "", explanation, flags=re.MULTILINE).strip()
    if not words:
        return EditOutcome(message="The model returned no explanation.")
    base = _first_indent(doc_lines[span.start : span.end]) or ""
    room = max(40, width - len(base) - len(prefix) - 1)
    lines = []
    for paragraph in words.split("\n"):
        stripped = paragraph.strip().lstrip("#/-").strip()
        if stripped:
            lines.extend(textwrap.wrap(stripped, room) or [""])
    comment = "".join(f"{base}{prefix} {line}{eol}" for line in lines)
    edit = TextEdit(span.start, 0, span.start, 0, comment)
    return _checked(text, [edit], language_id, span, LineSpan(span.start, span.end + len(lines)))


def _checked(
    text: str, edits: list[TextEdit], language_id: str, old: LineSpan, new: LineSpan
) -> EditOutcome:
    """The edits, if the edited document parses; where the original did not, the result may
    not have more errors, nor an error in the new code (``new``, lines of the edited document)
    unless the replaced code (``old``) had one already."""
    new_text = apply_edits(text, edits)
    after = syntax_errors(new_text, language_id)
    if after:
        before = syntax_errors(text, language_id) or []
        worse = not before or len(after) > len(before)
        if worse or (
            any(e.overlaps(new) for e in after) and not any(e.overlaps(old) for e in before)
        ):
            return EditOutcome(
                message="The model's rewrite is not valid code; nothing was changed."
            )
    return EditOutcome(tuple(edits), "", new_text)


def _rstrip_blank(lines: Sequence[str]) -> Sequence[str]:
    end = len(lines)
    while end and not lines[end - 1].strip():
        end -= 1
    return lines[:end]


def _same(old: Sequence[str], new: Sequence[str]) -> bool:
    return [line.rstrip() for line in _rstrip_blank(old)] == [
        line.rstrip() for line in _rstrip_blank(new)
    ]
