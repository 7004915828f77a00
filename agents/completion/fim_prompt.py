"""Fill-in-the-middle prompts as token lists, shaped for llama.cpp's KV-cache reuse.

On CPU the cost of a suggestion is prompt evaluation, and llama.cpp only reuses the longest common
token prefix with the previous call. So the prompt is laid out to change as late as possible while
the user types:

- workspace context first, in a stable order (it changes when the user switches files, not per
  keystroke);
- the prefix window starts at a *sticky* line per document: it moves only when the window no
  longer fits its token budget, then jumps back far enough to leave room to grow, so the
  window's start rarely changes what follows it;
- the cursor line's text can go after the middle token, as the start of the answer
  (``middle``): FIM training cuts a middle anywhere, so a middle that starts at a line start
  with text the model then continues is one it learned. Typing then only appends to the
  prompt, and the suffix stays in the KV cache for the whole line; with the cursor line at the
  end of the prefix instead, everything after the cursor is evaluated again on every keystroke,
  so that suffix must stay short.

Code is tokenized with ``special=False``: a literal ``<|endoftext|>`` in user code stays text. The
format is Qwen2.5-Coder's (repo-level with ``<|repo_name|>`` / ``<|file_sep|>`` when there is
context), with the token strings taken from the model catalogue.

Credential values in every piece (prefix, suffix, context chunks) are masked before
tokenizing (``redaction``); masking keeps line counts, so the prefix window's lines stay right.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from memlsp.agents.redaction import mask_credentials
from memlsp.base.context import ContextChunk
from memlsp.config.schema import FimTokens

log = logging.getLogger(__name__)

Tokenize = Callable[[str], list[int]]

# Lines the prefix window gives up when it must move: room to grow before it moves again.
_SLACK = 0.25
# A moved window starts on a multiple of this line count, so nearby cursors share a start.
_SNAP_LINES = 16
_MAX_DOCS = 64


@dataclass(frozen=True)
class FimSpecialIds:
    prefix: int
    suffix: int
    middle: int
    repo_name: int
    file_sep: int
    stops: frozenset[int]

    @classmethod
    def from_tokens(cls, fim: FimTokens, special_id: Callable[[str], int]) -> FimSpecialIds:
        ids = {
            name: special_id(getattr(fim, name))
            for name in ("prefix", "suffix", "middle", "pad", "repo_name", "file_sep")
        }
        return cls(
            prefix=ids["prefix"],
            suffix=ids["suffix"],
            middle=ids["middle"],
            repo_name=ids["repo_name"],
            file_sep=ids["file_sep"],
            stops=frozenset(ids.values()),
        )


@dataclass(frozen=True)
class FimPrompt:
    tokens: list[int]
    prefix_start_line: int  # first document line in the prefix window
    prefix_tokens: int
    suffix_tokens: int
    context_tokens: int
    middle_tokens: int = 0  # the start of the answer, after the middle token


class FimPromptBuilder:
    """Builds prompts for one model; remembers each document's prefix window start."""

    def __init__(
        self,
        ids: FimSpecialIds,
        *,
        prefix_budget: int,
        suffix_budget: int,
        context_budget: int,
    ) -> None:
        self.ids = ids
        self.prefix_budget = prefix_budget
        self.suffix_budget = suffix_budget
        self.context_budget = context_budget
        self._anchors: OrderedDict[str, int] = OrderedDict()
        self._lock = threading.Lock()

    def build(
        self,
        tokenize: Tokenize,
        *,
        doc_key: str,
        path: str,
        prefix: str,
        suffix: str,
        repo_name: str = "",
        chunks: Sequence[ContextChunk] = (),
        suffix_budget: int | None = None,
        middle: str = "",
    ) -> FimPrompt:
        """``suffix_budget``: this prompt's, instead of the builder's. ``middle``: text the
        answer starts with (after the middle token; the prefix then ends before it)."""
        suffix_budget = self.suffix_budget if suffix_budget is None else suffix_budget
        # The suffix window reads at most ~8 characters a token: mask that much (and a margin,
        # so a token cut at the end is still recognised), not a whole long file.
        prefix = mask_credentials(prefix)
        suffix = mask_credentials(suffix[: suffix_budget * 8 + 256])
        start_line, prefix_ids = self._prefix_window(tokenize, doc_key, prefix)
        suffix_ids = self._suffix_window(tokenize, suffix, suffix_budget)
        middle_ids = tokenize(mask_credentials(middle))
        fim = [
            self.ids.prefix,
            *prefix_ids,
            self.ids.suffix,
            *suffix_ids,
            self.ids.middle,
            *middle_ids,
        ]
        context = self._context(tokenize, path, repo_name, chunks)
        return FimPrompt(
            tokens=context + fim,
            prefix_start_line=start_line,
            prefix_tokens=len(prefix_ids),
            suffix_tokens=len(suffix_ids),
            context_tokens=len(context),
            middle_tokens=len(middle_ids),
        )

    def forget(self, doc_key: str) -> None:
        with self._lock:
            self._anchors.pop(doc_key, None)

    # -- pieces --------------------------------------------------------------------------

    def _prefix_window(
        self, tokenize: Tokenize, doc_key: str, prefix: str
    ) -> tuple[int, list[int]]:
        lines = prefix.split("\n")
        cursor_line = len(lines) - 1
        with self._lock:
            anchor = self._anchors.get(doc_key)
        if anchor is not None and anchor <= cursor_line:
            ids = tokenize("\n".join(lines[anchor:]))
            if len(ids) <= self.prefix_budget:
                self._remember(doc_key, anchor)
                return anchor, ids
        moved_from = anchor
        anchor = self._choose_anchor(tokenize, lines)
        ids = tokenize("\n".join(lines[anchor:]))
        while len(ids) > self.prefix_budget and anchor < cursor_line:
            anchor += max(1, (cursor_line - anchor) // 8)
            ids = tokenize("\n".join(lines[anchor:]))
        if len(ids) > self.prefix_budget:  # one giant line: keep its end
            ids = ids[-self.prefix_budget :]
        if moved_from is not None and moved_from != anchor:  # what follows is evaluated again
            log.debug("prefix window of %s: line %d -> %d", doc_key, moved_from, anchor)
        self._remember(doc_key, anchor)
        return anchor, ids

    def _choose_anchor(self, tokenize: Tokenize, lines: list[str]) -> int:
        """Earliest line such that the window uses about (1 - slack) of the budget."""
        target = int(self.prefix_budget * (1 - _SLACK))
        used = 0
        start = len(lines) - 1
        while start > 0:
            cost = len(tokenize(lines[start - 1])) + 1
            if used + cost > target:
                break
            used += cost
            start -= 1
        if start > 0:
            start = min(len(lines) - 1, -(-start // _SNAP_LINES) * _SNAP_LINES)
        return start

    def _remember(self, doc_key: str, anchor: int) -> None:
        with self._lock:
            self._anchors[doc_key] = anchor
            self._anchors.move_to_end(doc_key)
            while len(self._anchors) > _MAX_DOCS:
                self._anchors.popitem(last=False)

    def _suffix_window(self, tokenize: Tokenize, suffix: str, budget: int) -> list[int]:
        """Whole lines of the suffix within budget; the current line's rest always goes in."""
        if budget <= 0 or not suffix:
            return []
        # Bounded scan: a budget of N tokens never needs more than ~8N characters.
        lines = suffix[: budget * 8].split("\n")
        ids = tokenize(lines[0])
        for line in lines[1:]:
            more = tokenize("\n" + line)
            if len(ids) + len(more) > budget:
                break
            ids += more
        return ids[:budget]

    def _context(
        self, tokenize: Tokenize, path: str, repo_name: str, chunks: Sequence[ContextChunk]
    ) -> list[int]:
        if not chunks or self.context_budget <= 0:
            return []
        ids = [self.ids.repo_name, *tokenize(f"{repo_name or 'workspace'}\n")]
        for chunk in chunks:
            text = mask_credentials(chunk.text).rstrip()
            piece = [self.ids.file_sep, *tokenize(f"{chunk.path}\n{text}\n")]
            if len(ids) + len(piece) > self.context_budget:
                break
            ids += piece
        return [*ids, self.ids.file_sep, *tokenize(f"{path}\n")]
