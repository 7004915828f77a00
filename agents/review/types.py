"""What the quality agent takes and gives: requests, findings, results.

Positions are 0-based lines and columns counting Unicode code points (as the tool parsers give
them); converting to the client's position encoding (UTF-16 by default) needs the line's text
and is the server's job.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Literal

from memlsp.agents.review.tool_parsers import Severity
from memlsp.base.edits import TextEdit

__all__ = [
    "Origin",
    "ReviewCancelled",
    "ReviewFinding",
    "ReviewRequest",
    "ReviewResult",
    "ReviewStage",
    "check_cancelled",
    "is_stale",
]

Origin = Literal["llm", "tool"]
LLM_SOURCE = "memlsp"
# The stage a result ends with: "lint" (the linters, plus model findings carried over from
# earlier saves), a model stage's name ("review" for the instruct model), or "cache".
ReviewStage = str


class ReviewCancelled(Exception):
    """The review was cancelled (a newer save of the document arrived); nothing to publish."""


def check_cancelled(cancel: threading.Event) -> None:
    """Raise :class:`ReviewCancelled` once ``cancel`` is set (between steps of a review)."""
    if cancel.is_set():
        raise ReviewCancelled()


@dataclass(frozen=True)
class ReviewRequest:
    uri: str  # the document's key: per-document state (previous review, cache)
    path: str  # absolute path of the saved file on disk (what the tools read)
    relative_path: str  # shown to the model and given to the context provider
    language_id: str  # the LSP language id
    text: str  # the document as saved; tools read the disk, so the two should agree
    version: int


@dataclass(frozen=True)
class ReviewFinding:
    line: int
    column: int
    end_line: int
    end_column: int
    severity: Severity
    code: str  # our code for LLM findings ("mutable-default"), the tool's rule id otherwise
    message: str
    source: str  # "memlsp" for the model, the tool's name for tools
    origin: Origin
    replacement: str | None = None  # text replacing exactly the range (LLM quick fix)
    fix: tuple[TextEdit, ...] = ()  # a tool's own fix: edits that apply together
    fix_title: str = ""


@dataclass(frozen=True)
class ReviewResult:
    """Every finding that currently holds for the document: this save's tool findings, new
    model findings, and earlier model findings on code unchanged since (publish them all).

    A partial result (``final`` False) is what holds once the stages up to ``stage`` are done
    (the linters first, then each model stage): publish it at once; the next one replaces it."""

    version: int  # the request's: compare with the document's current version
    findings: tuple[ReviewFinding, ...]
    from_cache: bool = False
    seconds: float = 0.0
    notes: tuple[str, ...] = field(default=())
    final: bool = True  # False: model stages are still to come
    stage: ReviewStage = ""


def is_stale(result: ReviewResult, current_version: int | None) -> bool:
    """Whether a result no longer describes the document (it was edited since the request):
    the server drops such results instead of publishing them. None: the document is closed."""
    return current_version is None or result.version != current_version
