"""What to show the model on a save: the code that changed, found by syntax.

A file is cut into chunks by the memory's chunker (one per function, method, class outline,
and windows of loose module lines; tree-sitter for the languages it knows, line windows
otherwise). Each line belongs to its innermost chunk. A chunk whose content hash was not in the
previous version of the file has changed; one whose hash the model has not seen yet is
unreviewed.

* A small file (``whole_file_max_lines``) is shown whole whenever any chunk changed: the model
  sees the changed code in its full context, and it is cheap.
* A larger file gets its unreviewed chunks, the ones changed by this save first, then the rest
  in file order, until the character budget is spent; what is left is reviewed on later saves.
* Nothing changed (a save of the same code, or of blank lines only): nothing to show.
"""

from __future__ import annotations

from dataclasses import dataclass

from memlsp.base.languages import SYNTAX_LANGUAGES, language_by_lsp_id, language_for
from memlsp.memory.chunker import chunk_file
from memlsp.memory.records import ChunkRecord

__all__ = [
    "ReviewScope",
    "Snapshot",
    "chunk_language",
    "model_reviews",
    "plan_scope",
    "snapshot",
]


def chunk_language(language_id: str, path: str) -> str | None:
    """The chunker's language for an LSP language id, or one of the chunker's own grammar names
    (falling back to the file name)."""
    language = language_by_lsp_id(language_id)
    if language is not None and language.grammar:
        return language.grammar
    return language_id if language_id in SYNTAX_LANGUAGES else language_for(path)


# Prose and data: a code reviewer's checklist means nothing there, and a small model asked
# anyway invents problems. Linters still run on them.
_NOT_CODE = frozenset(
    {
        "markdown", "plaintext", "text", "restructuredtext", "json", "jsonc", "json5",
        "yaml", "toml", "ini", "xml", "html", "css", "scss", "less", "csv", "log",
        "git-commit", "gitignore", "properties", "dotenv", "protobuf", "graphql",
    }
)  # fmt: skip


def model_reviews(language_id: str, path: str) -> bool:
    """Whether the model reviews files of this language (code, not prose or data)."""
    language = chunk_language(language_id, path) or language_id
    return language not in _NOT_CODE and language_id not in _NOT_CODE


@dataclass(frozen=True)
class Snapshot:
    """The chunk structure of one version of a file."""

    lines: tuple[str, ...]
    chunks: tuple[ChunkRecord, ...]
    owner: tuple[int, ...]  # per line: index in ``chunks`` of its innermost chunk, -1 if none
    hashes: frozenset[str]

    def owner_hash(self, row: int) -> str | None:
        index = self.owner[row] if 0 <= row < len(self.owner) else -1
        return self.chunks[index].content_hash if index >= 0 else None

    def rows_of(self, index: int) -> list[int]:
        chunk = self.chunks[index]
        return [r for r in range(chunk.start_line, chunk.end_line + 1) if self.owner[r] == index]


def snapshot(path: str, text: str, language_id: str) -> Snapshot:
    lines = tuple(text.split("\n"))
    chunks = tuple(chunk_file(path, text, chunk_language(language_id, path)))
    owner = [-1] * len(lines)
    # Widest first, so narrower chunks inside (methods in a class) overwrite their lines.
    by_width = sorted(range(len(chunks)), key=lambda i: chunks[i].start_line - chunks[i].end_line)
    for index in by_width:
        chunk = chunks[index]
        for row in range(chunk.start_line, min(chunk.end_line, len(lines) - 1) + 1):
            owner[row] = index
    return Snapshot(lines, chunks, tuple(owner), frozenset(c.content_hash for c in chunks))


@dataclass(frozen=True)
class ReviewScope:
    rows: tuple[int, ...]  # 0-based lines to show the model, ascending
    whole_file: bool
    reviewed: frozenset[str]  # chunk hashes the model has seen once this review is done
    left: int  # unreviewed chunks left for later saves (budget)


def plan_scope(
    current: Snapshot,
    previous: Snapshot | None,
    reviewed: frozenset[str],
    whole_file_max_lines: int,
    budget_chars: int,
) -> ReviewScope:
    before = previous.hashes if previous is not None else frozenset()
    changed = [i for i, c in enumerate(current.chunks) if c.content_hash not in before]
    if len(current.lines) <= whole_file_max_lines:
        if not changed:
            return ReviewScope((), False, reviewed, 0)
        rows = _trim_blank_edges(list(range(len(current.lines))), current.lines)
        return ReviewScope(tuple(rows), True, current.hashes, 0)

    fresh = set(changed)
    unseen = [i for i, c in enumerate(current.chunks) if c.content_hash not in reviewed]
    order = [i for i in unseen if i in fresh] + [i for i in unseen if i not in fresh]
    chosen: set[int] = set()
    seen = set(reviewed)
    spent = 0
    taken = 0
    for index in order:
        rows = current.rows_of(index)
        cost = sum(len(current.lines[r]) + 6 for r in rows)  # 6: the "123| " prefix
        if spent + cost > budget_chars:
            if chosen:
                break
            rows = _within(rows, current.lines, budget_chars)  # one huge chunk: its start
        chosen.update(rows)
        seen.add(current.chunks[index].content_hash)
        spent += cost
        taken += 1
    # Hashes of code that is gone are forgotten: the set stays the size of the file.
    reviewed_now = frozenset(seen) & current.hashes
    return ReviewScope(tuple(sorted(chosen)), False, reviewed_now, len(order) - taken)


def _within(rows: list[int], lines: tuple[str, ...], budget_chars: int) -> list[int]:
    kept: list[int] = []
    spent = 0
    for row in rows:
        spent += len(lines[row]) + 6
        if spent > budget_chars and kept:
            break
        kept.append(row)
    return kept


def _trim_blank_edges(rows: list[int], lines: tuple[str, ...]) -> list[int]:
    while rows and not lines[rows[-1]].strip():
        rows.pop()
    while rows and not lines[rows[0]].strip():
        rows.pop(0)
    return rows
