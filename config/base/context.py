"""What a completion's context is: chunks of other files, the request they are chosen for, the
provider protocol, and the text helpers that decide whether a chunk would make the model repeat
code at the cursor. Shared by the memory (which provides chunks) and the agents (which show them).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

__all__ = [
    "REPEAT_SIMILARITY",
    "ContextChunk",
    "ContextProvider",
    "ContextRequest",
    "ContextSource",
    "PrefetchingProvider",
    "code_around_cursor",
    "first_lines",
    "jaccard",
    "last_lines",
    "line_set",
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


def line_set(text: str) -> frozenset[str]:
    """The stripped non-blank lines of ``text``: what similarity between chunks compares."""
    return frozenset(s for s in (line.strip() for line in text.split("\n")) if s)


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    """The Jaccard index of two line sets (0.0 when either is empty)."""
    if not a or not b:
        return 0.0
    common = len(a & b)
    return common / (len(a) + len(b) - common)


def line_similarity(a: str, b: str) -> float:
    """Jaccard index of the two texts' sets of stripped non-blank lines (0.0 to 1.0)."""
    return jaccard(line_set(a), line_set(b))


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
