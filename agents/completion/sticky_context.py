"""Each document keeps the context chunks it was last shown while they still serve.

The context comes first in the prompt, and llama.cpp reuses only the KV cache's common prefix
with a new prompt. Context is 300-500 of a typical 500-800 prompt tokens; if it changes, every
token after the change is evaluated again (seconds on 2 CPU cores). It changes often without
getting better: a save in another file rewrites that file's ring chunk, a search for a slightly
different cursor region reorders the hits. So a document keeps its last chunk list, byte for
byte, while the cursor stays near where the list was chosen and for at most STICKY_MAX_S, and
gives it up at once when a chunk would make the model repeat the code at the cursor or when the
search's best hit is not among the kept chunks (a name typed whose definition it found, or the
first memory hits after indexing). With the saved KV states (``models.kv_states``) a switch
back to a file then reuses its whole prompt.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

from memlsp.base.context import ContextChunk, repeats_code_at_cursor

__all__ = ["STICKY_LINES", "STICKY_MAX_S", "StickyContext"]

log = logging.getLogger(__name__)

# Kept at most this long, so edits elsewhere reach the prompt. Only time spent in the document
# counts: a file switched back to after a while in other files keeps its chunks (and so the
# saved KV state of its prompt, models.kv_states). Counting wall time made every return in the
# 30-minute soak choose the context again and evaluate the whole prompt (600-1,100 tokens).
# What changed elsewhere still comes in when the search's best hit changes.
STICKY_MAX_S = 120.0
# ... and while the cursor stays within this many lines of where the chunks were chosen: far
# away, the code around the cursor (what the search was for) is another subject.
STICKY_LINES = 48
_MAX_DOCS = 64


@dataclass(frozen=True)
class _Shown:
    chunks: list[ContextChunk]
    line: int
    at: float  # when chosen, moved on by the time spent in other documents since
    used: float  # the document's last request


class StickyContext:
    """``max_age_s``: how long a document keeps its chunks (0: context is chosen afresh for
    every request)."""

    def __init__(
        self, max_age_s: float = STICKY_MAX_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.max_age_s = max_age_s
        self._clock = clock
        self._shown: OrderedDict[str, _Shown] = OrderedDict()
        self._lock = threading.Lock()
        self.kept = 0  # answers that kept a document's last chunks
        self._last_doc: str | None = None

    def choose(
        self, doc_key: str, line: int, fresh: list[ContextChunk], around: str
    ) -> list[ContextChunk]:
        """The chunks to show for a request at 0-based ``line``: the document's last ones if
        they still serve, else ``fresh`` (then remembered). ``around``: the code near the
        cursor."""
        now = self._clock()
        with self._lock:
            shown = self._shown.get(doc_key)
            came_back = self._last_doc != doc_key
            self._last_doc = doc_key
        if shown is not None:
            if came_back:  # the time in other documents does not age this one's chunks
                shown = replace(shown, at=shown.at + (now - shown.used))
            why_not = self._why_not_kept(shown, line, fresh, around, now)
            if why_not is None:
                with self._lock:
                    self._shown[doc_key] = replace(shown, used=now)
                    self._shown.move_to_end(doc_key)
                    self.kept += 1
                return shown.chunks
            log.debug("context of %s chosen again: %s", doc_key, why_not)
        with self._lock:
            self._shown[doc_key] = _Shown(list(fresh), line, now, now)
            self._shown.move_to_end(doc_key)
            while len(self._shown) > _MAX_DOCS:
                self._shown.popitem(last=False)
        return fresh

    def forget(self, doc_key: str) -> None:
        with self._lock:
            self._shown.pop(doc_key, None)

    def _why_not_kept(
        self, shown: _Shown, line: int, fresh: list[ContextChunk], around: str, now: float
    ) -> str | None:
        """None when the shown chunks still serve, else why not."""
        if self.max_age_s <= 0 or now - shown.at > self.max_age_s:
            return "too old"
        if abs(line - shown.line) > STICKY_LINES:
            return "the cursor moved away"
        if fresh and not shown.chunks:
            return "context where there was none"  # e.g. the first other file opened
        best = next((c for c in fresh if c.source == "memory"), None)
        if best is not None and all(_where(best) != _where(c) for c in shown.chunks):
            # The search's best hit changed (a name typed whose definition it found, the
            # first hits after indexing): worth one evaluation. Lower hits reordering is not.
            return "a new best memory hit"
        shown_at = {_where(c) for c in shown.chunks}
        if any(c.source == "definition" and _where(c) not in shown_at for c in fresh):
            return "the definition of the name being typed"
        if any(repeats_code_at_cursor(c.text, around) for c in shown.chunks):
            return "a chunk repeats the code at the cursor"
        return None


def _where(chunk: ContextChunk) -> tuple[str, int]:
    return chunk.path, chunk.start_line
