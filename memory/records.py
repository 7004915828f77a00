"""The unit of workspace memory: one chunk of one file; and what the store returns or raises.

Nothing here imports MemOS or a vector store, so callers can use these types at start-up for free.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ChunkRecord",
    "Hit",
    "StoreBusyError",
    "StoreError",
    "StoreFullError",
    "StoreLockedError",
    "StoreUnavailableError",
    "chunk_id",
    "hash_text",
]

# Fixed namespace: a chunk's id depends only on where it is, so re-indexing overwrites in place.
_CHUNK_NAMESPACE = uuid.UUID("6f1d9a52-3b0e-5c47-9a8e-2d4b7c1e0f93")


def chunk_id(path: str, symbol: str, start_line: int) -> str:
    """Deterministic store id of a chunk: uuid5 of its path, symbol and start line."""
    return str(uuid.uuid5(_CHUNK_NAMESPACE, f"{path}\x00{symbol}\x00{start_line}"))


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

    @property
    def id(self) -> str:
        return chunk_id(self.path, self.symbol, self.start_line)

    def metadata(self) -> dict[str, Any]:
        """The fields stored beside the text (in MemOS's nested ``metadata`` payload)."""
        return {
            "file_path": self.path,
            "symbol": self.symbol,
            "language": self.language,
            "start_line": self.start_line,
            "end_line": self.end_line,
            "content_hash": self.content_hash,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> ChunkRecord:
        """Rebuild a record from a stored MemOS item (``memory`` + nested ``metadata``)."""
        meta = payload.get("metadata") or {}
        return cls(
            path=str(meta.get("file_path", "")),
            symbol=str(meta.get("symbol", "")),
            language=str(meta.get("language", "")),
            start_line=int(meta.get("start_line", 0)),
            end_line=int(meta.get("end_line", 0)),
            text=str(payload.get("memory", "")),
            content_hash=str(meta.get("content_hash", "")),
        )


@dataclass(frozen=True, slots=True)
class Hit:
    """A search result: the stored chunk and its cosine similarity to the query."""

    record: ChunkRecord
    score: float


class StoreError(RuntimeError):
    """Base class of the memory store's errors."""


class StoreLockedError(StoreError):
    """Another memlsp process already has this store open (one store, one process)."""


class StoreUnavailableError(StoreError):
    """The store cannot be reached or opened (Qdrant server down, permissions, ...)."""


class StoreBusyError(StoreError):
    """The store is being optimized in a child process; reads are refused until it is back."""


class StoreFullError(StoreUnavailableError):
    """Too little free disk space at the store to write (or open) it safely: Qdrant Edge maps
    its files into memory, and a write to a mapped page the disk cannot back kills the process
    with SIGBUS instead of raising, so the store refuses before that."""


@dataclass(frozen=True, slots=True)
class StoredChunk:
    """A stored chunk as a scan of the store returns it: no vector, no line numbers."""

    id: str
    path: str
    symbol: str
    content_hash: str
    text: str
