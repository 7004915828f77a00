"""One llama.cpp batch at chosen positions, with logits where asked, on a model the pool shares.

llama-cpp-python's own ``eval`` keeps logits for the last token only (or for every token with
``logits_all``, fixed at load). Checking guessed tokens (completion drafts) and scoring written
code (the surprise review) need logits at several positions of one batch: this evaluates
through the low-level API and keeps the ``Llama`` object's record (``n_tokens``,
``input_ids``) equal to what its KV cache holds, so ``eval`` and the prompt reuse of the next
request on the same instance stay right.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any, Self

import numpy as np

__all__ = ["BatchDecoder"]


class BatchDecoder:
    """Evaluates up to ``capacity`` tokens at a time at a position the cache reaches."""

    def __init__(self, lib: ModuleType, llama: Any, capacity: int) -> None:
        self._lib = lib
        self.llama = llama
        self.capacity = capacity
        self._batch = lib.llama_batch_init(capacity, 0, 1)
        self.n_vocab = int(llama.n_vocab())

    def close(self) -> None:
        if self._batch is not None:
            self._lib.llama_batch_free(self._batch)
            self._batch = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def decode(self, tokens: Sequence[int], start: int, outputs: Sequence[bool]) -> np.ndarray:
        """Evaluate ``tokens`` at positions ``start``... (whatever the cache holds from
        ``start`` on goes first); the logits rows of the positions where ``outputs`` is True,
        in order (a view, valid until the next decode)."""
        lib, llama, batch = self._lib, self.llama, self._batch
        count = len(tokens)
        if not 0 < count <= self.capacity or start > int(llama.n_tokens):
            raise ValueError(f"cannot evaluate {count} tokens at {start}")
        if start + count > llama.n_ctx():
            raise ValueError("the batch does not fit in the context")
        self.truncate(start)
        batch.n_tokens = count
        for i, token in enumerate(tokens):
            batch.token[i] = token
            batch.pos[i] = start + i
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = 0
            batch.logits[i] = 1 if outputs[i] else 0
        status = lib.llama_decode(llama.ctx, batch)
        if status != 0:
            self.truncate(start)
            raise RuntimeError(f"llama_decode returned {status}")
        llama.input_ids[start : start + count] = tokens
        llama.n_tokens = start + count
        wanted = int(sum(bool(o) for o in outputs))
        if wanted == 0:
            return np.zeros((0, self.n_vocab), dtype=np.float32)
        return np.ctypeslib.as_array(lib.llama_get_logits(llama.ctx), shape=(wanted, self.n_vocab))

    def truncate(self, position: int) -> None:
        """Keep the first ``position`` tokens of the cache, drop the rest (record included)."""
        lib = self._lib
        lib.llama_memory_seq_rm(lib.llama_get_memory(self.llama.ctx), -1, position, -1)
        self.llama.n_tokens = position
