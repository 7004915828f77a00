"""Draft-model guesses for the greedy completion loop: a smaller model of the same family
(agents.generator.draft_model, the 0.5B for the 1.5B) decodes a few tokens greedily, and the
completion model checks them in one batch (agents/completion/draft.py's ``BatchVerifier``), so
the text is the one plain greedy decoding gives.

``ModelDraft`` has ``PromptLookup``'s interface (``append``, ``propose``): the
greedy loop stays one loop. The draft model's KV cache follows the same token sequence as the
completion model's (the prompt, then every token picked): each ``propose`` brings it up to that
sequence with ``prefill``, which keeps the common prefix (an earlier request's prompt while
typing, the guesses found right) and drops the rest (rejected guesses) before evaluating what is
new, so the ``Llama`` object's record (``n_tokens``, ``input_ids``) always equals its cache.
Both models run in the caller's thread, one after the other: never two thread pools at once.

Not the default (tests/benchmarks/bench_draft.py, 1.5B on 2 CPU cores, 10 HumanEval-FIM
holes, warm caches): 64 % of its guesses were right (prompt-lookup: 44 %) and 58 % of the tokens
came from right guesses (prompt-lookup: 19 %), yet it decoded 8.3 tokens/s against 11.9 plain or
with prompt-lookup. A 0.5B token costs about half a 1.5B token here, so the guesses cost about
what they save, and a cold prompt costs the draft model ~2 s more. It may pay where the
completion model is much bigger than the draft model, or on a GPU.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from memlsp.agents.completion.draft import MAX_DRAFT
from memlsp.models.prefill import prefill
from memlsp.models.token_pieces import token_bytes

__all__ = ["MODEL_MAX_DRAFT", "MODEL_P_MIN", "ModelDraft", "same_vocabulary"]

log = logging.getLogger(__name__)

# Tokens guessed at once, at most: each costs one draft-model evaluation.
MODEL_MAX_DRAFT = MAX_DRAFT
# Guessing stops at the first token the draft model gives less than this probability (a wrong
# guess costs its evaluation and a bigger verification batch); 0: always ``max_draft`` tokens.
MODEL_P_MIN = 0.75

# Code with the FIM tokens, to compare how two models tokenize.
_PROBE = (
    "<|fim_prefix|>def mean(values: list[float]) -> float:\n"
    '    """Average; 0.0 for [] (naïve)."""\n    <|fim_suffix|>\n'
    "    return total / len(values)\n<|fim_middle|>"
)


def same_vocabulary(target: Any, draft: Any) -> bool:
    """Whether two ``Llama`` objects share a tokenizer: one vocabulary size, the same ids for a
    probe text with special tokens, and the same bytes for a spread of token ids."""
    n_vocab = int(target.n_vocab())
    if n_vocab != int(draft.n_vocab()):
        return False
    probe = _PROBE.encode("utf-8")
    if list(target.tokenize(probe, add_bos=False, special=True)) != list(
        draft.tokenize(probe, add_bos=False, special=True)
    ):
        return False
    ids = list(range(0, n_vocab, max(1, n_vocab // 997)))
    return all(
        token_bytes(target, i, special=True) == token_bytes(draft, i, special=True) for i in ids
    )


class ModelDraft:
    """Proposes the draft model's greedy continuation of the tokens so far."""

    def __init__(
        self,
        lib: Any,
        llama: Any,
        prompt: Sequence[int],
        cancel: threading.Event,
        *,
        stops: frozenset[int] = frozenset(),
        max_draft: int = MODEL_MAX_DRAFT,
        p_min: float = MODEL_P_MIN,
    ) -> None:
        """``llama``: the draft model, held by the caller while this is used; ``stops``: tokens
        that end an answer (guessing ends at one)."""
        self._lib = lib
        self._llama = llama
        self._vocab = lib.llama_model_get_vocab(llama.model)
        self._n_vocab = int(llama.n_vocab())
        self._tokens = list(prompt)
        self._cancel = cancel
        self._stops = stops
        self.max_draft = max_draft
        self.p_min = p_min
        self.evaluations = 0  # draft-model decodes (batches), for measurements

    @property
    def tokens(self) -> list[int]:
        """The sequence the draft follows: the prompt and the tokens appended."""
        return list(self._tokens)

    def append(self, token: int) -> None:
        self._tokens.append(token)

    def propose(self, limit: int) -> list[int]:
        """Up to ``limit`` tokens the draft model picks greedily after the tokens so far; fewer
        where it is unsure (``p_min``) or picks a stop; [] when cancelled or out of room."""
        limit = min(limit, self.max_draft)
        llama = self._llama
        if limit <= 0 or len(self._tokens) + limit > llama.n_ctx():
            return []
        # The cache keeps what it shares with the sequence, rejected guesses go; at least the
        # last token is evaluated, for its logits.
        if prefill(llama, self._tokens, self._cancel, last_for_logits=True) is None:
            return []  # cancelled: the greedy loop's own check ends the answer
        self.evaluations += 1
        guesses: list[int] = []
        while True:
            logits = np.ctypeslib.as_array(
                self._lib.llama_get_logits_ith(llama.ctx, -1), shape=(self._n_vocab,)
            )
            best = int(np.argmax(logits))
            if self.p_min > 0:
                top = logits[best]
                probability = 1.0 / float(np.exp(logits - top).sum())
                if probability < self.p_min:
                    break
            guesses.append(best)
            if (
                len(guesses) == limit
                or best in self._stops
                or self._lib.llama_vocab_is_eog(self._vocab, best)
                or self._cancel.is_set()
            ):
                break
            llama.eval([best])
            self.evaluations += 1
        return guesses
