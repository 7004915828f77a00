"""Prompt-lookup drafts for the greedy completion loop.

Code repeats itself: a completion often copies a run of tokens that the prompt already holds
(an argument list, a call written above, the line after the cursor). When the last tokens
decoded also occur earlier in the prompt or the output, the tokens that followed them there are
a cheap guess at what comes next. The guesses go through the model in one batch with the token
just picked; each position's argmax says whether the guess there was right, so the text is the
one plain greedy decoding gives, and each right guess saves one single-token evaluation.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from memlsp.models.batch_decode import BatchDecoder

__all__ = ["DRAFT_MODES", "BatchVerifier", "PromptLookup"]

DRAFT_MODES = ("prompt-lookup", "model", "off")  # agents.generator.draft

# The longest and shortest run of last tokens looked up. A single token matches almost
# anywhere, so its guesses are rarely right and each wrong one costs a bigger batch.
MAX_NGRAM = 4
MIN_NGRAM = 2
# Tokens guessed at once, at most; how many of them are checked is the generator's
# ``DraftPlanner``'s choice (a batch is not free on a CPU: agents/completion/draft_plan.py).
MAX_DRAFT = 6


class PromptLookup:
    """Proposes what followed the most recent earlier occurrence of the last tokens."""

    def __init__(
        self,
        prompt: Sequence[int],
        *,
        capacity: int,
        max_ngram: int = MAX_NGRAM,
        min_ngram: int = MIN_NGRAM,
        max_draft: int = MAX_DRAFT,
    ) -> None:
        """``capacity``: the most tokens the output may add to the prompt."""
        self._tokens = np.zeros(len(prompt) + capacity, dtype=np.int64)
        self._tokens[: len(prompt)] = prompt
        self._length = len(prompt)
        self.max_ngram = max_ngram
        self.min_ngram = min_ngram
        self.max_draft = max_draft
        self.matched = 0  # the length of the run of last tokens the last proposal was found by

    def append(self, token: int) -> None:
        if self._length == len(self._tokens):  # more than announced: grow rather than fail
            self._tokens = np.concatenate([self._tokens, np.zeros_like(self._tokens)])
        self._tokens[self._length] = token
        self._length += 1

    def propose(self, limit: int) -> list[int]:
        """Up to ``limit`` tokens (and ``max_draft``) guessed to follow; [] when nothing
        matches. ``matched`` then tells how long a run of last tokens found them.

        The longest run of last tokens that occurs before wins; among its occurrences the most
        recent (nearest the cursor: the suffix and the output itself, then the prefix)."""
        limit = min(limit, self.max_draft)
        self.matched = 0
        if limit <= 0:
            return []
        tokens = self._tokens[: self._length]
        # Earlier occurrences start before the last token, so each has at least one follower.
        earlier = tokens[:-1]
        for n in range(min(self.max_ngram, len(tokens) - 1), self.min_ngram - 1, -1):
            windows = sliding_window_view(earlier, n)
            starts = np.flatnonzero((windows == tokens[-n:]).all(axis=1))
            if starts.size:
                self.matched = n
                follow = int(starts[-1]) + n
                return [int(t) for t in tokens[follow : follow + limit]]
        return []


class BatchVerifier(BatchDecoder):
    """Evaluates a token and the guesses after it in one batch, with logits at every position,
    after what the cache holds (``models.batch_decode``: the ``Llama`` record stays right)."""

    _start = 0  # where the last batch began

    def argmaxes(self, tokens: Sequence[int]) -> list[int]:
        """Evaluate ``tokens`` after what the cache holds; the argmax after each of them.

        The cache then holds all of ``tokens``: ``keep`` drops the guesses found wrong."""
        if not 0 < len(tokens) <= self.capacity:
            raise ValueError(f"{len(tokens)} tokens for a batch of {self.capacity}")
        # An earlier batch's rejected guesses past the record go with the decode.
        self._start = start = int(self.llama.n_tokens)
        rows = self.decode(tokens, start, [True] * len(tokens))
        return [int(pick) for pick in np.argmax(rows, axis=1)]

    def keep(self, count: int) -> None:
        """Keep the first ``count`` tokens of the last batch in the cache, drop the rest."""
        self.truncate(self._start + count)
