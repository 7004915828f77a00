"""Split workspace files into chunks for the memory.

Code in a language with a tree-sitter grammar gets one chunk per definition (function, class,
method, type), each with its leading comments; a class chunk is an outline (header, docstring,
fields, one line per method) whose methods are chunks of their own, so little text is stored
twice. Lines outside every definition (imports, constants, top-level statements) go to "module"
chunks, so nothing of a file goes unindexed. Anything else, or code the parser cannot handle,
is cut into line windows. Long chunks are split into overlapping windows; each window after the
first starts with the definition's signature, so every window stays findable by name.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from tree_sitter import Node

from memlsp.base.languages import CPP_IN_HEADER, SYNTAX_LANGUAGES, language_for, parser_for
from memlsp.memory.records import ChunkRecord

__all__ = [
    "MAX_CHARS",
    "MAX_LINES",
    "MODULE_SYMBOL",
    "OVERLAP_LINES",
    "SYNTAX_LANGUAGES",
    "TEXT_SYMBOL",
    "chunk_file",
    "identifiers",
    "language_for",
]

log = logging.getLogger(__name__)

# A chunk holds at most this much text (a window's signature header included): about what a
# small embedding model reads in one go.
MAX_LINES = 60
MAX_CHARS = 2000
# Consecutive windows share this many lines, so a statement cut at a boundary is whole in one.
OVERLAP_LINES = 5
# Symbols of chunks that are not a definition.
MODULE_SYMBOL = "<module>"
TEXT_SYMBOL = ""
_ANONYMOUS = "<anonymous>"
# A signature longer than this (many parameters, one a line) is cut in window headers.
_MAX_SIGNATURE_LINES = 4
# With these, a header and one line always fit in MAX_CHARS.
_MAX_HEADER_LINE_CHARS = 240
_MAX_LINE_CHARS = MAX_CHARS // 2


@dataclass(frozen=True, slots=True)
class _Syntax:
    """Which node types of a grammar play which part in chunking."""

    functions: frozenset[str]  # own chunk; inside a class only when it has a body
    containers: frozenset[str]  # class-like: outline chunk, members split out
    types: frozenset[str]  # other definitions, whole; a one-line one stays in its module chunk
    scopes: frozenset[str]  # definitions inside are chunked; a named scope prefixes symbols
    wrappers: frozenset[str]  # hold one definition (decorators, export, template)
    comments: frozenset[str]  # attached to the definition right below them
    variables: frozenset[str] = frozenset()  # `const f = () => ...` is a function


def _names(*names: str) -> frozenset[str]:
    return frozenset(names)


_JS = _Syntax(
    functions=_names(
        "function_declaration",
        "generator_function_declaration",
        "function_expression",
        "method_definition",
        "field_definition",
    ),
    containers=_names("class_declaration", "class"),
    types=frozenset(),
    scopes=_names("ERROR"),
    wrappers=_names("export_statement"),
    comments=_names("comment"),
    variables=_names("lexical_declaration", "variable_declaration"),
)
_TS = _Syntax(
    functions=_JS.functions | {"public_field_definition"},
    containers=_JS.containers | {"abstract_class_declaration"},
    types=_names(
        "interface_declaration", "type_alias_declaration", "enum_declaration", "function_signature"
    ),
    scopes=_names("internal_module", "module", "ERROR"),
    wrappers=_names("export_statement", "ambient_declaration", "expression_statement"),
    comments=_names("comment"),
    variables=_JS.variables,
)
_C_PREPROCESSOR = _names(
    "preproc_if", "preproc_ifdef", "preproc_else", "preproc_elif", "preproc_elifdef", "ERROR"
)
_SYNTAX: dict[str, _Syntax] = {
    "python": _Syntax(
        functions=_names("function_definition"),
        containers=_names("class_definition"),
        types=frozenset(),
        scopes=_names("ERROR"),
        wrappers=_names("decorated_definition"),
        comments=_names("comment"),
    ),
    "javascript": _JS,
    "typescript": _TS,
    "tsx": _TS,
    "go": _Syntax(
        functions=_names("function_declaration", "method_declaration"),
        containers=frozenset(),
        types=_names("type_declaration"),
        scopes=_names("ERROR"),
        wrappers=frozenset(),
        comments=_names("comment"),
    ),
    "rust": _Syntax(
        functions=_names("function_item"),
        containers=_names("impl_item", "trait_item"),
        types=_names("struct_item", "enum_item", "union_item", "macro_definition"),
        scopes=_names("mod_item", "foreign_mod_item", "ERROR"),
        wrappers=frozenset(),
        # Attributes (#[derive], #[test]) belong to the item below them, as comments do.
        comments=_names("line_comment", "block_comment", "attribute_item"),
    ),
    "java": _Syntax(
        functions=_names(
            "method_declaration", "constructor_declaration", "compact_constructor_declaration"
        ),
        containers=_names(
            "class_declaration",
            "interface_declaration",
            "enum_declaration",
            "record_declaration",
            "annotation_type_declaration",
        ),
        types=frozenset(),
        scopes=_names("enum_body_declarations", "ERROR"),
        wrappers=frozenset(),
        comments=_names("line_comment", "block_comment"),
    ),
    "c": _Syntax(
        functions=_names("function_definition"),
        containers=frozenset(),
        types=_names("struct_specifier", "union_specifier", "enum_specifier", "type_definition"),
        scopes=_C_PREPROCESSOR,
        wrappers=frozenset(),
        comments=_names("comment"),
    ),
    "cpp": _Syntax(
        functions=_names("function_definition"),
        containers=_names("class_specifier", "struct_specifier", "union_specifier"),
        types=_names(
            "enum_specifier", "type_definition", "alias_declaration", "concept_definition"
        ),
        scopes=_C_PREPROCESSOR | {"namespace_definition", "linkage_specification"},
        wrappers=_names("template_declaration"),
        comments=_names("comment"),
    ),
}

# Declarator nodes that wrap a C/C++ function's name.
_C_DECLARATORS = _names(
    "function_declarator",
    "pointer_declarator",
    "reference_declarator",
    "parenthesized_declarator",
    "attributed_declarator",
)
# Scopes whose name qualifies the symbols inside (a preprocessor #ifdef's name does not).
_NAMED_SCOPES = _names("namespace_definition", "mod_item", "internal_module", "module")
_FUNCTION_VALUES = _names(
    "arrow_function", "function_expression", "function", "generator_function", "class"
)


# --- definitions ----------------------------------------------------------------------------


@dataclass(slots=True)
class _Def:
    symbol: str
    start: int  # first row, leading comments included
    end: int
    sig_first: int
    sig_last: int
    members: list[_Def] = field(default_factory=list)


def _text(node: Node | None) -> str:
    if node is None or node.text is None:
        return ""
    return node.text.decode("utf-8", "replace")


def _end_row(node: Node) -> int:
    # A node that takes its line break along (preprocessor lines, doc comments) ends at column
    # 0 of the next row; that row is not the node's.
    row, column = node.end_point
    return row - 1 if column == 0 and row > node.start_point[0] else row


def _dotted(name: str) -> str:
    return " ".join(name.replace("::", ".").split())


def _first_of_type(node: Node, node_type: str) -> Node | None:
    stack = [node]
    while stack:
        current = stack.pop()
        if current.type == node_type:
            return current
        stack.extend(reversed(current.named_children))
    return None


class _FileChunker:
    """Finds the definitions in one parsed file and turns them into chunks."""

    def __init__(self, path: str, language: str, lines: list[str], syntax: _Syntax) -> None:
        self.path = path
        self.language = language
        self.lines = lines
        self.syntax = syntax

    # Recognising definitions.

    def _unwrap(self, node: Node) -> Node | None:
        """The definition a wrapper node holds (itself if not a wrapper); None if none."""
        syntax = self.syntax
        while node.type in syntax.wrappers:
            inner = node.child_by_field_name("declaration") or node.child_by_field_name(
                "definition"
            )
            if inner is None:
                inner = next((c for c in node.named_children if self._is_definition(c)), None)
            if inner is None:
                return None
            node = inner
        return node if self._is_definition(node) else None

    def _is_definition(self, node: Node) -> bool:
        syntax = self.syntax
        t = node.type
        return (
            t in syntax.functions
            or t in syntax.containers
            or t in syntax.types
            or t in syntax.scopes
            or t in syntax.wrappers
            or (t in syntax.variables and self._function_declarator(node) is not None)
        )

    @staticmethod
    def _function_declarator(node: Node) -> Node | None:
        for child in node.named_children:
            if child.type == "variable_declarator":
                value = child.child_by_field_name("value")
                if value is not None and value.type in _FUNCTION_VALUES:
                    return child
        return None

    def _name_node(self, node: Node) -> Node | None:
        t = node.type
        if t in self.syntax.variables:
            declarator = self._function_declarator(node)
            return None if declarator is None else declarator.child_by_field_name("name")
        if t == "field_definition":
            return node.child_by_field_name("property")
        if t == "impl_item":
            return node.child_by_field_name("type")
        if t == "type_definition":
            return node.child_by_field_name("declarator")
        if t == "type_declaration":
            spec = next(iter(node.named_children), None)
            return None if spec is None else spec.child_by_field_name("name")
        if t == "function_definition" and self.language in ("c", "cpp"):
            declarator = node.child_by_field_name("declarator")
            while declarator is not None and declarator.type in _C_DECLARATORS:
                declarator = declarator.child_by_field_name("declarator")
            return declarator
        return node.child_by_field_name("name")

    def _name(self, node: Node, name_node: Node | None) -> str:
        t = node.type
        if t == "impl_item":
            base = name_node
            if base is not None and base.type != "type_identifier":
                base = _first_of_type(base, "type_identifier") or base
            return _dotted(_text(base))
        if t == "type_declaration":
            specs = [_text(s.child_by_field_name("name")) for s in node.named_children]
            return ", ".join(s for s in specs if s)
        if t == "method_declaration" and self.language == "go":
            receiver = node.child_by_field_name("receiver")
            owner = None if receiver is None else _first_of_type(receiver, "type_identifier")
            name = _text(name_node)
            return f"{_text(owner)}.{name}" if owner is not None else name
        return _dotted(_text(name_node))

    def _body(self, node: Node) -> Node | None:
        if node.type in self.syntax.variables:
            declarator = self._function_declarator(node)
            value = None if declarator is None else declarator.child_by_field_name("value")
            return None if value is None else value.child_by_field_name("body")
        if node.type in ("field_definition", "public_field_definition"):
            value = node.child_by_field_name("value")
            return None if value is None else value.child_by_field_name("body")
        return node.child_by_field_name("body")

    # Collecting definitions.

    def collect(self, nodes: Iterable[Node], prefix: str, in_container: bool) -> list[_Def]:
        """Definitions among sibling nodes, flattened through scopes, in source order."""
        syntax = self.syntax
        defs: list[_Def] = []
        # Rows of the run of comments right above the current node, if any.
        comment_start = comment_end = -2
        for node in nodes:
            start = node.start_point[0]
            if node.type in syntax.comments:
                if start > comment_end + 1:
                    comment_start = start
                comment_end = _end_row(node)
                continue
            attached = comment_start if comment_end >= start - 1 else start
            comment_start = comment_end = -2
            inner = self._unwrap(node)
            if inner is None:
                continue
            if inner.type in syntax.scopes:
                defs.extend(self._scope(inner, prefix, in_container))
                continue
            found = self._definition(node, inner, prefix, in_container)
            if found is not None:
                found.start = min(found.start, attached)
                defs.append(found)
        return defs

    def _scope(self, node: Node, prefix: str, in_container: bool) -> list[_Def]:
        name = ""
        if node.type in _NAMED_SCOPES:
            name = _dotted(_text(node.child_by_field_name("name"))).strip("\"'")
        body = node.child_by_field_name("body") or node
        inner_prefix = f"{prefix}{name}." if name else prefix
        return self.collect(body.named_children, inner_prefix, in_container)

    def _definition(self, outer: Node, node: Node, prefix: str, in_container: bool) -> _Def | None:
        syntax = self.syntax
        t = node.type
        body = self._body(node)
        is_container = t in syntax.containers
        if is_container and body is None:
            return None  # a forward declaration: `struct s;`
        if in_container and not is_container and (body is None or t in syntax.types):
            return None  # fields, types and bodiless signatures stay in the class outline
        if t in ("field_definition", "public_field_definition") and body is None:
            return None  # a field whose value is not a function
        start, end = outer.start_point[0], _end_row(outer)
        if t in syntax.types and end == start:
            return None
        name_node = self._name_node(node)
        name = self._name(node, name_node)
        if not name:
            name = "default" if outer.type == "export_statement" else _ANONYMOUS
        if t == "impl_item":
            trait = node.child_by_field_name("trait")
            impl = f"impl {_text(trait)} for {name}" if trait is not None else f"impl {name}"
            symbol, member_prefix = prefix + impl, prefix + name + "."
        else:
            symbol = prefix + name
            member_prefix = symbol + "."
        # The signature starts at the name's line, past annotations and decorators; not where
        # the name comes last (`typedef struct {...} name;`).
        sig_first = node.start_point[0]
        opened = body.start_point[0] if body is not None else sig_first
        if name_node is not None and name_node.start_point[0] <= opened:
            sig_first = max(sig_first, name_node.start_point[0])
        sig_last = sig_first
        if body is not None and body.prev_sibling is not None:
            sig_last = max(sig_first, _end_row(body.prev_sibling))
        sig_last = min(sig_last, sig_first + _MAX_SIGNATURE_LINES - 1, end)
        found = _Def(symbol, start, end, sig_first, sig_last)
        if is_container and body is not None:
            found.members = self.collect(body.named_children, member_prefix, in_container=True)
        return found

    # Emitting chunks.

    def emit(self, defs: list[_Def]) -> list[ChunkRecord]:
        chunks: list[ChunkRecord] = []
        covered = bytearray(len(self.lines))
        for d in defs:
            covered[d.start : d.end + 1] = b"\1" * (d.end + 1 - d.start)
            self._emit_def(d, chunks)
        loose = [(row, line) for row, line in enumerate(self.lines) if not covered[row]]
        chunks.extend(_windows(self.path, self.language, MODULE_SYMBOL, loose, []))
        chunks.sort(key=lambda c: (c.start_line, c.end_line))
        return chunks

    def _emit_def(self, d: _Def, chunks: list[ChunkRecord]) -> None:
        lines = self.lines
        segments: list[tuple[int, str]] = []
        if d.members:
            # The outline: the class's own lines, and each member's first signature line.
            heads = {m.sig_first: m for m in d.members}
            hidden = bytearray(d.end + 1 - d.start)
            for m in d.members:
                lo, hi = max(m.start, d.start) - d.start, min(m.end, d.end) - d.start
                hidden[lo : hi + 1] = b"\1" * (hi + 1 - lo)
            for row in range(d.start, d.end + 1):
                member = heads.get(row)
                if member is not None:
                    elided = member.end > row
                    segments.append((row, lines[row].rstrip() + (" ..." if elided else "")))
                elif not hidden[row - d.start]:
                    segments.append((row, lines[row]))
        else:
            segments = [(row, lines[row]) for row in range(d.start, d.end + 1)]
        header = [(row, lines[row]) for row in range(d.sig_first, d.sig_last + 1)]
        span = (d.start, d.end)
        chunks.extend(_windows(self.path, self.language, d.symbol, segments, header, span))
        for m in d.members:
            self._emit_def(m, chunks)


def _tidy(segments: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Drop carriage returns and blank runs; shorten over-long lines."""
    out: list[tuple[int, str]] = []
    for row, raw in segments:
        line = raw.rstrip("\r")
        if not line.strip():
            if out and out[-1][1]:
                out.append((row, ""))
            continue
        # Cut, not split: a line is one row, and a chunk is known by its first row (the store's
        # id), so two chunks must not start on one row. A line this long is data anyway.
        out.append((row, line[:_MAX_LINE_CHARS]))
    while out and not out[-1][1]:
        out.pop()
    return out


def _windows(
    path: str,
    language: str,
    symbol: str,
    raw_segments: list[tuple[int, str]],
    raw_header: list[tuple[int, str]],
    span: tuple[int, int] | None = None,
) -> list[ChunkRecord]:
    """Chunks of `raw_segments` (row, line); `span` is the rows a definition covers, which
    an outline's first and last lines may not reach."""
    segments = _tidy(raw_segments)
    if not segments:
        return []
    header = [line.rstrip("\r")[:_MAX_HEADER_LINE_CHARS] for _, line in raw_header]
    header = header[:_MAX_SIGNATURE_LINES]
    header_last_row = raw_header[-1][0] if raw_header else -1
    header_chars = sum(len(line) + 1 for line in header)

    def record(part: list[tuple[int, str]], with_header: bool) -> ChunkRecord:
        body = [line for _, line in part]
        text = "\n".join([*header, *body] if with_header else body)
        first, last = part[0][0], part[-1][0]
        if span is not None:
            first = span[0] if part[0] is segments[0] else first
            last = span[1] if part[-1] is segments[-1] else last
        return ChunkRecord.of(path, symbol, language, first, last, text)

    total = sum(len(line) + 1 for _, line in segments)
    if len(segments) <= MAX_LINES and total <= MAX_CHARS:
        return [record(segments, False)]
    chunks: list[ChunkRecord] = []
    start = 0
    while True:
        # The signature is repeated only where the window no longer shows it.
        with_header = bool(header) and segments[start][0] > header_last_row
        max_lines = MAX_LINES - (len(header) if with_header else 0)
        max_chars = MAX_CHARS - (header_chars if with_header else 0)
        stop, chars = start, 0
        while stop < len(segments) and stop - start < max_lines:
            size = len(segments[stop][1]) + 1
            if stop > start and chars + size > max_chars:
                break
            chars += size
            stop += 1
        if stop < len(segments):
            # End at a blank line when one is near: windows then hold whole paragraphs.
            for cut in range(stop - 1, start + (stop - start) * 3 // 4, -1):
                if not segments[cut][1]:
                    stop = cut
                    break
        part = segments[start:stop]
        while len(part) > 1 and not part[0][1]:
            part = part[1:]
        chunks.append(record(part, with_header))
        if stop >= len(segments):
            return chunks
        overlap = min(OVERLAP_LINES, (stop - start) // 2)
        start = max(stop - overlap, start + 1)


def _line_windows(path: str, language: str, lines: list[str]) -> list[ChunkRecord]:
    return _windows(path, language, TEXT_SYMBOL, list(enumerate(lines)), [])


def _unique(chunks: list[ChunkRecord]) -> list[ChunkRecord]:
    """Keep one chunk per (symbol, first line), the store's identity of a chunk. Two can only
    meet where definitions share a line (`int f() {} int f(int) {}`), and then a line-based
    chunk of either holds both."""
    seen: set[tuple[str, int]] = set()
    unique: list[ChunkRecord] = []
    for chunk in chunks:
        key = (chunk.symbol, chunk.start_line)
        if key not in seen:
            seen.add(key)
            unique.append(chunk)
    return unique


def chunk_file(path: str, text: str, language: str | None = None) -> list[ChunkRecord]:
    """Chunks of a file's text, in line order. `path` is relative to the workspace; `language`
    defaults to `language_for(path)`. Never raises on bad syntax."""
    language = language or language_for(path)
    lines = text.split("\n")
    if language == "c" and path.lower().endswith(".h") and CPP_IN_HEADER.search(text):
        language = "cpp"
    if language not in SYNTAX_LANGUAGES:
        return _line_windows(path, language or "text", lines)
    try:
        tree = parser_for(language).parse(text.encode("utf-8", "replace"))
        chunker = _FileChunker(path, language, lines, _SYNTAX[language])
        defs = chunker.collect(tree.root_node.named_children, "", in_container=False)
        return _unique(chunker.emit(defs))
    except Exception:  # a grammar bug must not stop indexing: the file still gets windows
        log.warning("chunking %s as %s failed; using line windows", path, language, exc_info=True)
        return _line_windows(path, language, lines)


# --- identifiers ----------------------------------------------------------------------------

_IDENTIFIER = re.compile(r"[^\W\d]\w*")
# camelCase / PascalCase / ACRONYMWord parts; digits stay with the letters before them.
_CAMEL_PART = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+[0-9]*|[A-Z]+[0-9]*|[0-9]+")


def identifiers(text: str) -> list[str]:
    """Lower-case terms for lexical search: each identifier whole, then its snake_case and
    camelCase parts (`parseHTTPResponse` -> parsehttpresponse, parse, http, response). Terms
    shorter than two characters and bare numbers are left out; repeats are kept, so the list
    carries term frequencies."""
    terms: list[str] = []
    for match in _IDENTIFIER.finditer(text):
        word = match.group()
        whole = word.lower()
        if len(whole) >= 2:
            terms.append(whole)
        parts: list[str] = []
        for piece in word.split("_"):
            if not piece:
                continue
            parts.extend(_CAMEL_PART.findall(piece) if piece.isascii() else [piece])
        if len(parts) == 1 and parts[0].lower() == whole:
            continue
        for part in parts:
            lowered = part.lower()
            if len(lowered) >= 2 and not lowered.isdigit():
                terms.append(lowered)
    return terms
