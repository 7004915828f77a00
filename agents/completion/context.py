"""Cross-file context for the FIM prompt: a ring of chunks from open and recently edited files.

Design (after llama.vim's ring buffer):

* Chunks are windows of up to 64 lines; at most 16 are kept, oldest evicted first.
* A new chunk replaces existing ones that are more than 0.9 similar, or that come from the
  same file and overlap its line range (so editing one place does not fill the ring with
  shifted copies of the same window). The new chunk goes to the end.
* Order is insertion order and is never changed by a query: the prompt's start must stay the
  same between keystrokes so the model can reuse its KV cache.
* At query time chunks from the current file are skipped (its text is already in the prompt),
  and so are chunks more than 0.5 similar to the lines around the cursor, because they make
  the model repeat existing code.

The generator then keeps only the chunks the code at the cursor needs (agents/completion/
relevance.py): the ring offers what is recent, not what is relevant.

Similarity is the Jaccard index of the sets of stripped non-blank lines: cheap and good enough
to spot copies.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from memlsp.base.context import (
    REPEAT_SIMILARITY,
    ContextChunk,
    ContextProvider,
    ContextRequest,
    ContextSource,
    code_around_cursor,
    jaccard,
    line_set,
)

__all__ = ["CompositeContextProvider", "RecentContextRing"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Entry:
    chunk: ContextChunk
    lines: frozenset[str]
    end_line: int  # exclusive

    def overlaps(self, other: _Entry) -> bool:
        return (
            self.chunk.path == other.chunk.path
            and self.chunk.start_line < other.end_line
            and other.chunk.start_line < self.end_line
        )


class RecentContextRing:
    """Chunks from open and recently edited documents, oldest first (a `ContextProvider`)."""

    def __init__(
        self,
        *,
        max_chunks: int = 16,
        chunk_lines: int = 64,
        replace_similarity: float = 0.9,
        exclude_similarity: float = REPEAT_SIMILARITY,
        cursor_window_lines: int = 32,
    ) -> None:
        if max_chunks < 1 or chunk_lines < 1:
            raise ValueError("max_chunks and chunk_lines must be at least 1")
        self._max_chunks = max_chunks
        self._chunk_lines = chunk_lines
        self._replace_similarity = replace_similarity
        self._exclude_similarity = exclude_similarity
        self._cursor_window_lines = cursor_window_lines
        self._entries: list[_Entry] = []
        self._lock = threading.Lock()

    def note_open(self, path: str, text: str) -> None:
        """A document was opened: keep its first lines (imports and top definitions)."""
        lines = text.split("\n", self._chunk_lines)[: self._chunk_lines]
        self._add(path, lines, 0, "open")

    def note_edit(self, path: str, text: str, line: int) -> None:
        """A document was edited at 0-based ``line``: keep the window centred on it."""
        lines = text.split("\n")
        start = max(0, min(line - self._chunk_lines // 2, len(lines) - self._chunk_lines))
        self._add(path, lines[start : start + self._chunk_lines], start, "edit")

    def note_close(self, path: str) -> None:
        """Chunks of closed documents stay: the code is still relevant to what is being written."""

    def snapshot(self) -> list[ContextChunk]:
        """All chunks, oldest first."""
        with self._lock:
            return [entry.chunk for entry in self._entries]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def _add(self, path: str, lines: list[str], start: int, source: ContextSource) -> None:
        text = "\n".join(line.rstrip("\r") for line in lines).rstrip("\n")
        if not text.strip():
            return
        new = _Entry(ContextChunk(path, text, start, source), line_set(text), start + len(lines))
        with self._lock:
            if any(e.chunk == new.chunk for e in self._entries):
                return  # unchanged: keep the order, and with it the prompt, as it is
            self._entries = [
                e
                for e in self._entries
                if not e.overlaps(new) and jaccard(e.lines, new.lines) <= self._replace_similarity
            ]
            self._entries.append(new)
            del self._entries[: max(0, len(self._entries) - self._max_chunks)]

    def context_for(self, request: ContextRequest, budget_chars: int) -> list[ContextChunk]:
        with self._lock:
            entries = list(self._entries)
        if budget_chars <= 0 or not entries:
            return []
        around = code_around_cursor(request.prefix, request.suffix, self._cursor_window_lines)
        around_lines = line_set(around)
        picked: list[ContextChunk] = []
        left = budget_chars
        # Over budget, the oldest chunks go first; the result stays oldest first.
        for entry in reversed(entries):
            chunk = entry.chunk
            if chunk.path == request.path or len(chunk.text) > left:
                continue
            if jaccard(entry.lines, around_lines) > self._exclude_similarity:
                continue
            picked.append(chunk)
            left -= len(chunk.text)
        picked.reverse()
        return picked


class CompositeContextProvider:
    """Several providers' chunks, first provider first, within one budget.

    A failing provider is logged and skipped, so a broken memory backend never costs the
    completion itself. Chunks with the same text as one already taken are dropped.
    """

    def __init__(self, providers: Iterable[ContextProvider]) -> None:
        self._providers = tuple(providers)

    def context_for(self, request: ContextRequest, budget_chars: int) -> list[ContextChunk]:
        result: list[ContextChunk] = []
        seen: set[str] = set()
        left = budget_chars
        for provider in self._providers:
            if left <= 0:
                break
            try:
                chunks = provider.context_for(request, left)
            except Exception:
                logger.warning("context provider %r failed", provider, exc_info=True)
                continue
            for chunk in chunks:
                # Re-check: a provider may overspend its share.
                if chunk.text in seen or len(chunk.text) > left:
                    continue
                seen.add(chunk.text)
                result.append(chunk)
                left -= len(chunk.text)
        return result
