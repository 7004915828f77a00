"""The review prompt: fixed opening turns, then the code with what the model should know.

Small models review poorly from a vague request ("review this code"). What helped here (Qwen2.5-
Coder 1.5B on a file with planted bugs): a concrete checklist (each code of the schema with what
it means), one worked example as an earlier turn of the conversation, permission to answer with
an empty list, line-numbered code, and a short checklist again right after the code. What hurt:
listing the linters' findings apart (the model copied the list as its answer); they are marked
at the end of their lines instead.

Order matters for speed: the system message and the example never change, so llama.cpp reuses
their KV cache from one review to the next; then the code, then the per-save extras.
"""

from __future__ import annotations

import builtins
import difflib
import json
import keyword
import re
from collections.abc import Sequence
from dataclasses import dataclass

from memlsp.agents.chat import ChatMessage
from memlsp.agents.review.schema import CODES, allowed_codes

__all__ = [
    "LINT_MARK",
    "CodeView",
    "ToolNote",
    "build_messages",
    "echoes_example",
    "numbered",
    "reminder",
    "strip_lint_mark",
    "system_prompt",
]

# One worked example, given as a previous turn of the conversation: inline in the system
# message the small models copied it into their answers verbatim. Two findings, so the model
# sees that a file can have several; their kinds differ from the common lint ones.
_EXAMPLE_CODE = (
    "def best_score(path):",
    "    f = open(path)",
    "    scores = [int(line) for line in f]",
    "    best = scores[0]",
    "    for i in range(1, len(scores) + 1):",
    "        if scores[i] > best:",
    "            best = scores[i]",
    "    return best",
)
_EXAMPLE_ANSWER = {
    "findings": [
        {
            "line": 2,
            "snippet": "f = open(path)",
            "code": "resource-leak",
            "severity": "warning",
            "message": "The file is never closed; use `with open(path) as f:`.",
        },
        {
            "line": 5,
            "snippet": "for i in range(1, len(scores) + 1):",
            "code": "off-by-one",
            "severity": "error",
            "message": "The last index is len(scores), one past the end: IndexError.",
            "replacement": "for i in range(1, len(scores)):",
        },
    ]
}


# --- echoes of the example -------------------------------------------------------------------
# The small models sometimes answer with the example's own findings, anchored on whatever line
# of the reviewed file looks closest (measured: 7 of 12 buggy programs got "The last index is
# len(scores), one past the end" back). Such a finding is never published.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Identifiers a message uses as code: in backticks, next to a call/index/attribute, or snake_case.
_CODE_SPAN = re.compile(r"`([^`]+)`")
_CODE_WORD = re.compile(r"(?<=[(\[.])[A-Za-z_]\w*|[A-Za-z_]\w*(?=[(\[])|\b[A-Za-z_]\w*_\w*\b")
_COMMON_NAMES = frozenset(keyword.kwlist) | frozenset(dir(builtins))
# The example's names that mean nothing outside it (`scores`, `best_score`, ...).
_EXAMPLE_NAMES = frozenset(_IDENTIFIER.findall("\n".join(_EXAMPLE_CODE))) - _COMMON_NAMES
_EXAMPLE_MESSAGES = tuple(str(f["message"]) for f in _EXAMPLE_ANSWER["findings"])
# How alike (difflib ratio of the normalized texts) a message must be to count as the example's.
_SAME_SENTENCE = 0.85


def _normalized(text: str) -> str:
    return " ".join(text.lower().split()).strip(" .")


def _code_names(message: str, snippet: str) -> set[str]:
    names = set(_IDENTIFIER.findall(snippet))
    for span in _CODE_SPAN.findall(message):
        names.update(_IDENTIFIER.findall(span))
    names.update(_CODE_WORD.findall(message))
    return names


def echoes_example(message: str, snippet: str, reviewed_text: str) -> bool:
    """Whether a model finding repeats the prompt's example rather than the reviewed code: it
    names identifiers only the example has (in its snippet, or as code in its message), or its
    message is one of the example's (the same sentence, case and spacing aside) about names the
    reviewed file lacks. A real resource leak of an `f = open(path)` keeps its apt message."""
    in_file = set(_IDENTIFIER.findall(reviewed_text))
    foreign = _EXAMPLE_NAMES - in_file
    if _code_names(message, snippet) & foreign:
        return True
    said = _normalized(message)
    return any(
        difflib.SequenceMatcher(None, said, _normalized(example)).ratio() >= _SAME_SENTENCE
        and bool(set(_IDENTIFIER.findall(example)) & foreign)
        for example in _EXAMPLE_MESSAGES
    )


# Repeated after the code: the small models follow what they read last far better than a
# checklist a thousand tokens up (measured: with it the 1.5B model found a mutable default it
# missed twice without). The full list stays in the system message. Written from the codes the
# model may use (agents.quality.categories): a category pruned from the schema is not asked for.
_REMINDER_ITEMS: dict[str, tuple[tuple[str, str], ...]] = {
    "python": (
        ("mutable-default", "mutable default arguments (`=[]`, `={}`)"),
        ("none-comparison", "`== None`"),
        ("unused-variable", "variables assigned but never used"),
        ("bare-except", "bare `except:`"),
        ("off-by-one", "off-by-one loop bounds"),
        ("resource-leak", "files not closed"),
        ("security", "eval/exec of input"),
        ("wrong-return", "missing returns"),
        ("bug", "other bugs"),
    ),
}
_GENERIC_ITEMS: tuple[tuple[str, str], ...] = (
    ("none-comparison", "null or undefined values used unchecked"),
    ("unused-variable", "variables assigned but never used"),
    ("bare-except", "errors caught and ignored"),
    ("off-by-one", "off-by-one loop bounds"),
    ("resource-leak", "files or connections not closed"),
    ("security", "code or queries built from input"),
    ("wrong-return", "missing returns"),
    ("bug", "other bugs"),
)


def reminder(language_id: str, codes: Sequence[str] | None = None) -> str:
    """The request repeated after the code, naming only the allowed categories (all: None)."""
    allowed = set(allowed_codes(codes))
    items = [
        phrase
        for code, phrase in _REMINDER_ITEMS.get(language_id, _GENERIC_ITEMS)
        if code in allowed
    ]
    if not items:
        check = ""
    elif len(items) == 1:
        check = f" Check each one for: {items[0]}."
    else:
        check = f" Check each one for: {', '.join(items[:-1])}, and {items[-1]}."
    return f"Review the numbered lines.{check} Answer with the JSON only."


def system_prompt(codes: Sequence[str] | None = None) -> str:
    """The system message; its checklist lists the allowed codes (all: None)."""
    checklist = "\n".join(f"- {code}: {CODES[code]}" for code in allowed_codes(codes))
    return (
        "You are a careful code reviewer. You get numbered lines of one source file. "
        "Find real problems in them: bugs, crashes, security holes, and the patterns below.\n"
        f"Check every line against this list (the code of each problem in front):\n{checklist}\n"
        "\nAnswer with JSON only: an object with a list of findings.\n"
        "- line: the number of the line the problem is on.\n"
        "- snippet: that line's code copied exactly, without its number.\n"
        "- message: one short sentence: what is wrong and what happens.\n"
        "- replacement: the corrected snippet, only when one changed line fixes it.\n"
        "- severity: error for a certain crash or wrong result, warning for a likely bug, "
        "info for the rest.\n"
        "Report only real problems in the numbered lines, each once. Working code needs no "
        'finding: an empty list {"findings": []} is a good answer.'
    )


@dataclass(frozen=True)
class CodeView:
    """The lines shown to the model: (0-based row, text) in file order; a gap between rows
    is shown as a ``...`` line."""

    path: str
    language_id: str
    rows: tuple[tuple[int, str], ...]
    partial: bool  # some of the file is left out


@dataclass(frozen=True)
class ToolNote:
    line: int  # 0-based
    code: str  # the linter's rule id


# Linter findings are shown as a mark at the end of their line. Listed apart, as "line 11:
# E711 ...", the small models copied the list into their answer as findings of its own.
LINT_MARK = "  # lint: "
_LINT_MARK_RE = re.compile(r"\s*# lint: [^#]*$")


def strip_lint_mark(snippet: str) -> str:
    """A snippet without the lint mark the model may have copied along with the line."""
    return "\n".join(_LINT_MARK_RE.sub("", line) for line in snippet.split("\n"))


def numbered(rows: Sequence[tuple[int, str]], notes: Sequence[ToolNote] = ()) -> str:
    marks: dict[int, list[str]] = {}
    for note in notes:
        codes = marks.setdefault(note.line, [])
        if note.code and note.code not in codes:
            codes.append(note.code)
    out: list[str] = []
    previous = None
    for row, text in rows:
        if previous is not None and row != previous + 1:
            out.append("...")
        mark = f"{LINT_MARK}{', '.join(marks[row])} (reported)" if marks.get(row) else ""
        out.append(f"{row + 1}| {text}{mark}")
        previous = row
    return "\n".join(out)


def build_messages(
    view: CodeView,
    tool_notes: Sequence[ToolNote],
    snippets: Sequence[str],
    codes: Sequence[str] | None = None,
) -> list[ChatMessage]:
    """The review conversation; ``codes``: the categories the model may report (all: None)."""
    return [
        *_preamble(codes),
        ChatMessage("user", _code_message(view, tool_notes, snippets, codes)),
    ]


def _code_message(
    view: CodeView,
    tool_notes: Sequence[ToolNote],
    snippets: Sequence[str],
    codes: Sequence[str] | None = None,
) -> str:
    language = view.language_id or "text"
    code = numbered(view.rows, tool_notes)
    parts = [f"File: {view.path} ({language})", f"```{language}\n{code}\n```"]
    if view.partial:
        parts.append("Lines not shown were reviewed before or are unchanged; ignore them.")
    if any(note.code for note in tool_notes):
        parts.append(
            f"Lines ending in `{LINT_MARK.strip()} ...` have problems a linter already "
            "reported: do not report those again."
        )
    if snippets:
        joined = "\n\n".join(snippets)
        parts.append(
            "Related code from elsewhere in the workspace, for reference only "
            f"(do not review it):\n```\n{joined}\n```"
        )
    parts.append(reminder(view.language_id, codes))
    return "\n\n".join(parts)


def _preamble(codes: Sequence[str] | None = None) -> list[ChatMessage]:
    """The messages every review starts with (the same for one config: their KV cache is
    reused). The worked example shows only its findings in allowed categories; with none left,
    it is left out (an example answering [] for buggy code would teach silence)."""
    allowed = set(allowed_codes(codes))
    shown = [f for f in _EXAMPLE_ANSWER["findings"] if f["code"] in allowed]
    system = ChatMessage("system", system_prompt(codes))
    if not shown:
        return [system]
    example = CodeView("example/stats.py", "python", tuple(enumerate(_EXAMPLE_CODE)), False)
    return [
        system,
        ChatMessage("user", _code_message(example, (), (), codes)),
        ChatMessage("assistant", json.dumps({"findings": shown})),
    ]
