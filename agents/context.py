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

Similarity is the Jaccard index of the sets of stripped non-blank lines: cheap and good enough
to spot copies.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

__all__ = [
    "REPEAT_SIMILARITY",
    "CompositeContextProvider",
    "ContextChunk",
    "ContextProvider",
    "ContextRequest",
    "ContextSource",
    "PrefetchingProvider",
    "RecentContextRing",
    "code_around_cursor",
    "first_lines",
    "last_lines",
    "line_similarity",
    "prefetch",
    "repeats_code_at_cursor",
]

logger = logging.getLogger(__name__)

ContextSource = Literal["open", "edit", "memory", "definition"]

# A chunk this similar to the code around the cursor makes the model repeat code already there.
REPEAT_SIMILARITY = 0.5


@dataclass(frozen=True)
class ContextChunk:
    """A piece of another file to show the model; ``start_line`` is 0-based."""

    path: str
    text: str
    start_line: int
    source: str  # one of ContextSource; plain str so other providers may add kinds


@dataclass(frozen=True)
class ContextRequest:
    """Where the completion is asked for: ``prefix``/``suffix`` are the text around the cursor."""

    path: str
    prefix: str
    suffix: str
    language_id: str
    uri: str = ""  # the document's URI: lets a multi-root provider pick the right folder


class ContextProvider(Protocol):
    def context_for(self, request: ContextRequest, budget_chars: int) -> list[ContextChunk]:
        """Chunks for the prompt, oldest first, whose texts total at most ``budget_chars``.

        Synchronous: called from a worker thread.
        """
        ...


@runtime_checkable
class PrefetchingProvider(Protocol):
    """A provider whose context takes time to find (a search) can start finding it early."""

    def prefetch(self, request: ContextRequest) -> None:
        """Start finding the context of ``request`` in the background; returns at once (it is
        called on the event loop)."""
        ...


def prefetch(providers: Iterable[ContextProvider], request: ContextRequest) -> None:
    """Ask every provider that can to start on ``request``; a failure only costs the head
    start."""
    for provider in providers:
        if isinstance(provider, PrefetchingProvider):
            try:
                provider.prefetch(request)
            except Exception:
                logger.warning("context prefetch by %r failed", provider, exc_info=True)


def _line_set(text: str) -> frozenset[str]:
    return frozenset(s for s in (line.strip() for line in text.split("\n")) if s)


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    common = len(a & b)
    return common / (len(a) + len(b) - common)


def line_similarity(a: str, b: str) -> float:
    """Jaccard index of the two texts' sets of stripped non-blank lines (0.0 to 1.0)."""
    return _jaccard(_line_set(a), _line_set(b))


def last_lines(text: str, n: int) -> str:
    """The last ``n`` lines of ``text`` (all of it when shorter), without splitting it all."""
    pos = len(text)
    for _ in range(n):
        pos = text.rfind("\n", 0, pos)
        if pos < 0:
            return text
    return text[pos + 1 :]


def repeats_code_at_cursor(text: str, around: str) -> bool:
    """Whether showing ``text`` would make the model repeat the code ``around`` the cursor."""
    return line_similarity(text, around) > REPEAT_SIMILARITY


def code_around_cursor(prefix: str, suffix: str, lines: int = 32) -> str:
    """The ``lines`` lines before the cursor and the ``lines`` after it."""
    return last_lines(prefix, lines) + first_lines(suffix, lines)


def first_lines(text: str, n: int) -> str:
    """The first ``n`` lines of ``text`` (all of it when shorter), without splitting it all."""
    pos = -1
    for _ in range(n):
        pos = text.find("\n", pos + 1)
        if pos < 0:
            return text
    return text[:pos]


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
        new = _Entry(ContextChunk(path, text, start, source), _line_set(text), start + len(lines))
        with self._lock:
            if any(e.chunk == new.chunk for e in self._entries):
                return  # unchanged: keep the order, and with it the prompt, as it is
            self._entries = [
                e
                for e in self._entries
                if not e.overlaps(new) and _jaccard(e.lines, new.lines) <= self._replace_similarity
            ]
            self._entries.append(new)
            del self._entries[: max(0, len(self._entries) - self._max_chunks)]

    def context_for(self, request: ContextRequest, budget_chars: int) -> list[ContextChunk]:
        with self._lock:
            entries = list(self._entries)
        if budget_chars <= 0 or not entries:
            return []
        around = code_around_cursor(request.prefix, request.suffix, self._cursor_window_lines)
        around_lines = _line_set(around)
        picked: list[ContextChunk] = []
        left = budget_chars
        # Over budget, the oldest chunks go first; the result stays oldest first.
        for entry in reversed(entries):
            chunk = entry.chunk
            if chunk.path == request.path or len(chunk.text) > left:
                continue
            if _jaccard(entry.lines, around_lines) > self._exclude_similarity:
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
