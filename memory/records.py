"""The unit of workspace memory: one chunk of one file."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = ["ChunkRecord", "hash_text"]


def hash_text(text: str) -> str:
    """Hash of a chunk's text alone, so code that moves (or whose file is renamed) keeps its hash
    and need not be embedded again."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class ChunkRecord:
    """A chunk of a workspace file.

    `path` is relative to the workspace root (POSIX separators). `start_line`/`end_line` are
    0-based and inclusive: the range of the file the chunk was taken from (for a class or module
    chunk the text may omit some lines of that range). `content_hash` is `hash_text(text)`.
    """

    path: str
    symbol: str
    language: str
    start_line: int
    end_line: int
    text: str
    content_hash: str

    @classmethod
    def of(
        cls, path: str, symbol: str, language: str, start_line: int, end_line: int, text: str
    ) -> ChunkRecord:
        """Build a record, computing its content hash."""
        return cls(path, symbol, language, start_line, end_line, text, hash_text(text))
