"""Which other-file context chunks are relevant to the code at the cursor.

Other-file context is the costliest part of a cold prompt (300-500 of its tokens: 1-2 s of
prompt evaluation on 2 CPU cores), and it only pays when the model needs something from another
file. On code that has nothing to do with the other files open (side by side with llama-server
on HumanEval holes, 0.5B), sending the ring's chunks cost 2.6x the cold latency and lost exact
match; on real cross-file code (bench_crossfile) the definitions of the workspace's names are
what make a call fit. So a chunk goes into the prompt only when the code at the cursor asks for
it, by name:

* **defines** a name the cursor needs: a name used near the cursor (or imported anywhere in the
  file) that the current file does not bind itself, an attribute used near the cursor (``obj.
  method``), or a name starting with the one being typed;
* or **uses** a name the file imports from the workspace or a third-party package (not the
  standard library: ``List`` from ``typing`` is in every other file too) that appears near the
  cursor or is imported but not used yet (likely what comes next): it shows how the codebase
  calls that code;
* or it is a definition the memory looked up for the name being typed (source "definition");
* or it is a memory search hit defining a name that the words near the cursor (code, comments,
  docstrings) describe: most of its words, at least two (``apply_loyalty_discount`` for a
  docstring saying "after the loyalty discount"). Only the memory's hits: its search ranked them
  for this cursor already; the ring's chunks are there for being recent, and prose shares words
  with too much (on 60 HumanEval files, 2 false hits).

Names are found with regular expressions (Python first, the common binding forms of JS/TS, Go and
Rust too): cheap enough for every request (well under a millisecond on a 300-line window). What
is kept stays in the order given (the prompt's start must not be reshuffled); over the budget the
least relevant chunks go first. Nothing relevant: no context at all, and the cold prompt is the
bare fill-in-the-middle prompt.

The rules for what a chunk defines and which names words describe live in memory/names.py: the
memory applies them to every stored chunk before it searches (``CursorNames.needs``), and skips
the search when no chunk could pass this filter.
"""

from __future__ import annotations

import builtins
import keyword
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from memlsp.base.context import ContextChunk, ContextRequest, first_lines, last_lines
from memlsp.memory.names import (
    ASSIGNMENT,
    DEFINITION,
    DESCRIBED_MIN_WORDS,
    SearchNeeds,
    described_by,
    name_words,
    split_names,
)
from memlsp.memory.names import definitions_in as chunk_definitions
from memlsp.memory.typed_name import typed_name

__all__ = [
    "CURSOR_WINDOW_LINES",
    "DESCRIBED_MIN_WORDS",
    "CursorNames",
    "chunk_definitions",
    "relevant_chunks",
]

# The code "near the cursor": this many lines before it, and SUFFIX_WINDOW_LINES after.
CURSOR_WINDOW_LINES = 32
SUFFIX_WINDOW_LINES = 16

# A long file is read this far before and after the cursor (the regular expressions cost ~7 ms
# on 36 kB of Python), and its imports this far from its start.
SCAN_BEFORE_CHARS = 48_000
SCAN_AFTER_CHARS = 16_000
SCAN_HEAD_CHARS = 16_000

_IDENT = re.compile(r"[A-Za-z_$][\w$]*")
_ATTRIBUTE = re.compile(r"(?<=\.)[A-Za-z_$][\w$]*")
_FOR = re.compile(r"\bfor[ \t]+\(?([A-Za-z_][\w, \t]*?)\)?[ \t]+in\b")
_AS = re.compile(r"\bas[ \t]+([A-Za-z_]\w*)")
_PARAMS = re.compile(r"\b(?:def|function|fn|func|lambda)\b[^(\n:]*\(([^)]*)\)|\blambda\b([^:\n]*):")
_PY_FROM = re.compile(r"^[ \t]*from[ \t]+([\w.]+)[ \t]+import[ \t]+(\([^)]*\)|[^\n]*)", re.M)
_PY_IMPORT = re.compile(r"^[ \t]*import[ \t]+([\w. \t,]+?)[ \t]*(?:#.*)?$", re.M)
_JS_IMPORT = re.compile(
    r"^[ \t]*import[ \t]+(?:type[ \t]+)?([^;\n]*?)[ \t]+from[ \t]+['\"]([^'\"]+)['\"]", re.M
)

_STDLIB = frozenset(sys.stdlib_module_names)
# Words that are never a workspace's own names: keywords of the usual languages, Python's
# builtins, and the receivers every method uses.
_COMMON = frozenset(
    [
        *keyword.kwlist,
        *keyword.softkwlist,
        *dir(builtins),
        "self",
        "cls",
        "this",
        "super",
        "function",
        "const",
        "let",
        "var",
        "new",
        "typeof",
        "undefined",
        "null",
        "true",
        "false",
        "func",
        "fn",
        "mut",
        "pub",
        "impl",
        "struct",
        "enum",
        "interface",
        "export",
        "default",
        "void",
        "string",
        "number",
        "boolean",
        "int",
        "err",
        "nil",
    ]
)


@dataclass(frozen=True)
class Relevance:
    """Why a chunk is relevant: names it defines and names it uses that the cursor needs."""

    defines: frozenset[str]
    described: frozenset[str]  # names it defines that the words near the cursor describe
    uses: frozenset[str]
    lookup: bool  # a definition looked up for the name being typed

    @property
    def score(self) -> float:
        return (
            (4.0 if self.lookup else 0.0)
            + 2.0 * len(self.defines)
            + 1.5 * len(self.described)
            + len(self.uses)
        )


# String literals and comments (their words are prose, not names the code needs).
_PROSE = re.compile(
    r'"""[\s\S]*?(?:"""|$(?![\s\S]))|\'\'\'[\s\S]*?(?:\'\'\'|$(?![\s\S]))'
    r'|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'|`[^`]*`'
    r"|#[^\n]*|//[^\n]*|/\*[\s\S]*?\*/"
)


def _blank(text: str, spans: Iterable[tuple[int, int]]) -> str:
    """``text`` with the ``spans`` blanked out, line breaks kept (positions stay)."""
    parts: list[str] = []
    at = 0
    for start, end in sorted(spans):
        start = max(start, at)
        if end <= start:
            continue
        parts.append(text[at:start])
        parts.append(_NOT_NEWLINE.sub(" ", text[start:end]))
        at = end
    parts.append(text[at:])
    return "".join(parts)


_NOT_NEWLINE = re.compile(r"[^\n]")


def _names(text: str) -> set[str]:
    return set(_IDENT.findall(text))


def _imports(text: str) -> tuple[dict[str, bool], list[tuple[int, int]]]:
    """Names ``text`` imports -> whether from outside the standard library; and where the
    import statements are (they are not uses)."""
    found: dict[str, bool] = {}
    lines: list[tuple[int, int]] = []
    for match in _PY_FROM.finditer(text):
        lines.append(match.span())
        module = match.group(1)
        outside = module.startswith(".") or module.split(".")[0] not in _STDLIB
        for part in match.group(2).strip().strip("()").replace("\n", " ").split(","):
            words = part.split()
            if not words or words[0] == "*":
                continue
            name = words[2] if len(words) >= 3 and words[1] == "as" else words[0]
            found[name] = found.get(name, False) or outside
    for match in _PY_IMPORT.finditer(text):
        lines.append(match.span())
        for part in match.group(1).split(","):
            words = part.split()
            if not words:
                continue
            module = words[0]
            name = words[2] if len(words) >= 3 and words[1] == "as" else module.split(".")[0]
            outside = module.split(".")[0] not in _STDLIB
            found[name] = found.get(name, False) or outside
    for match in _JS_IMPORT.finditer(text):
        lines.append(match.span())
        for part in re.split(r"[{},]", match.group(1)):
            words = part.split()
            if words and words[0] == "type":
                words = words[1:]
            if not words:
                continue
            name = words[-1] if "as" in words else words[0]
            if name != "*" and _IDENT.fullmatch(name):
                found[name] = True
    return found, lines


def _bound(text: str) -> set[str]:
    """Names ``text`` binds itself (definitions, assignments, loop and ``as`` targets,
    parameters); ``text`` without its imports."""
    bound = set(DEFINITION.findall(text))
    for group in ASSIGNMENT.findall(text):
        bound.update(split_names(group))
    for group in _FOR.findall(text):
        bound.update(split_names(group))
    bound.update(_AS.findall(text))
    for params, lambda_params in _PARAMS.findall(text):
        for part in (params or lambda_params).split(","):
            name = _IDENT.search(part.split("=")[0].split(":")[0])
            if name:
                bound.add(name.group())
    return bound


class CursorNames:
    """What the code at a cursor needs from other files, found once per request."""

    def __init__(
        self,
        prefix: str,
        suffix: str,
        *,
        window_lines: int = CURSOR_WINDOW_LINES,
        suffix_lines: int = SUFFIX_WINDOW_LINES,
    ) -> None:
        # Bounded work on a long file: the code around the cursor, and the imports at its top.
        if len(prefix) > SCAN_BEFORE_CHARS:
            start = prefix.find("\n", len(prefix) - SCAN_BEFORE_CHARS) + 1
            head_imports = _imports(prefix[:SCAN_HEAD_CHARS])[0]
            prefix = prefix[start:]
        else:
            head_imports = {}
        suffix = suffix[:SCAN_AFTER_CHARS]
        whole = prefix + suffix
        imports, import_spans = _imports(whole)
        imports = {**head_imports, **imports}
        # Code only: no imports (not uses), strings or comments (prose), at the same places.
        code = _blank(whole, [*import_spans, *(m.span() for m in _PROSE.finditer(whole))])
        cut = len(prefix)
        window = last_lines(code[:cut], window_lines) + first_lines(code[cut:], suffix_lines)
        near = _names(window)
        bound = _bound(code)
        # Imported but not used yet: likely what comes next.
        unused = set(imports) - _names(code)
        wanted = (near - bound) | set(imports)
        self.wanted: frozenset[str] = frozenset(n for n in wanted if n not in _COMMON)
        self.attributes: frozenset[str] = frozenset(
            n for n in _ATTRIBUTE.findall(window) if n not in _COMMON and n not in bound
        )
        self.workspace_imports: frozenset[str] = frozenset(
            n for n, outside in imports.items() if outside and (n in near or n in unused)
        )
        typed = typed_name(prefix, suffix)
        # A name the file itself has starting so is more likely what is being typed.
        local = (bound | near) - {typed}
        self.typed: str = "" if any(n.startswith(typed) for n in local) else typed
        # The words of the code and prose near the cursor (a docstring saying what to write).
        self.words: frozenset[str] = frozenset(
            w for name in _names(last_lines(prefix, window_lines)) for w in name_words(name)
        )

    @classmethod
    def of(cls, request: ContextRequest) -> CursorNames:
        return cls(request.prefix, request.suffix)

    def needs(self) -> SearchNeeds:
        """What a memory chunk would have to define or use to be relevant here: the memory
        skips its search when no stored chunk could be (memory/names.py)."""
        return SearchNeeds(
            self.wanted | self.attributes, self.typed, self.words, self.workspace_imports
        )

    def relevance(self, chunk: ContextChunk) -> Relevance:
        defined = chunk_definitions(chunk.text)
        defines = defined & (self.wanted | self.attributes)
        if self.typed:
            defines |= {n for n in defined if n.startswith(self.typed) and n != self.typed}
        # Only for the memory's chunks, which its search ranked for this cursor already; a
        # ring chunk is there for being recent, and prose shares words with too much.
        described = frozenset(
            n for n in defined - defines if chunk.source == "memory" and described_by(n, self.words)
        )
        uses: frozenset[str] = frozenset()
        if self.workspace_imports:
            uses = self.workspace_imports & _names(chunk.text)
        return Relevance(
            frozenset(defines), described, frozenset(uses), chunk.source == "definition"
        )


def relevant_chunks(
    chunks: Sequence[ContextChunk], names: CursorNames, budget_chars: int
) -> list[ContextChunk]:
    """The relevant ``chunks``, in their order, the most relevant first when over
    ``budget_chars`` (ties: the later chunk, as the ring and the memory put the best last)."""
    scored = [(names.relevance(c).score, n, c) for n, c in enumerate(chunks)]
    ranked = sorted((s for s in scored if s[0] > 0), key=lambda s: (-s[0], -s[1]))
    kept: set[int] = set()
    left = budget_chars
    for _, n, chunk in ranked:
        if len(chunk.text) <= left:
            kept.add(n)
            left -= len(chunk.text)
    return [c for n, c in enumerate(chunks) if n in kept]


def names_of(chunks: Iterable[ContextChunk]) -> list[str]:
    """For logs: where each chunk comes from."""
    return [f"{c.path}:{c.start_line + 1}" for c in chunks]
