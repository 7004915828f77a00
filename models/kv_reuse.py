"""Keeping the cached KV cells that a deletion only moved.

``prefill`` reuses the longest common token prefix and evaluates everything after it. When text
was deleted before the end of the prompt (a backspace before the suffix, the prefix window moving
down, a context chunk dropped), the cache still holds the tokens that follow the deletion, only
at positions too far right. This keeps them: the cells of the deleted tokens are removed
(``llama_memory_seq_rm``) and the run that follows is shifted left over the gap
(``llama_memory_seq_add``; llama.cpp re-rotates the shifted keys at the next decode), as
llama-server's ``--cache-reuse`` does.

Only left shifts are possible: llama.cpp evaluates a sequence's new tokens after every cell the
sequence holds (a batch must start at its highest position + 1), so tokens inserted before a
cached run cannot be evaluated in place with one sequence. Typing before the suffix is such an
insertion and gains nothing here.

Shifted cells were computed with the deleted text before them, so they are close to, not equal
to, what a fresh evaluation gives: only runs of ``min_run`` tokens are kept, and callers enable
this per use (inline completion, when configured).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from memlsp.models.runtime import llama_cpp

__all__ = ["can_shift", "drop_after", "keep_shifted_runs"]


def can_shift(llama: Any) -> bool:
    """Whether the model's memory can move cells (not recurrent state, not every cache type)."""
    lib = llama_cpp()
    return bool(lib.llama_memory_can_shift(lib.llama_get_memory(llama.ctx)))


def keep_shifted_runs(
    llama: Any, tokens: Sequence[int], start: int, *, min_run: int, limit: int
) -> int:
    """Move cached runs of at least ``min_run`` tokens that ``tokens`` still holds, in order,
    after its first ``start`` (already cached) tokens, left over the cells of deleted tokens.

    Returns how many leading ``tokens`` the cache holds then (``start`` when nothing moved),
    never more than ``limit``; ``llama.n_tokens`` and ``llama.input_ids`` describe exactly those.
    Cells past that are stale and go with the next ``eval``. Moved keys are re-rotated by the
    next decode only: until one ran, drop them with ``drop_after`` rather than save the state."""
    n_held = int(llama.n_tokens)
    if min_run <= 0 or limit - start < min_run or n_held - start < min_run:
        return start
    if not can_shift(llama):
        return start
    lib = llama_cpp()
    memory = lib.llama_get_memory(llama.ctx)
    held = np.array(llama.input_ids[:n_held], copy=True)
    wanted = np.asarray(tokens[:limit], dtype=held.dtype)
    kept = searched = start
    while len(wanted) - kept >= min_run:
        found = _find_run(held, searched, wanted[kept : kept + min_run])
        if found is None:
            break
        length = min_run + _run_length(held[found + min_run :], wanted[kept + min_run :])
        if found > kept:
            if not lib.llama_memory_seq_rm(memory, 0, kept, found):
                break
            lib.llama_memory_seq_add(memory, 0, found, found + length, kept - found)
        llama.input_ids[kept : kept + length] = wanted[kept : kept + length]
        kept, searched = kept + length, found + length
        llama.n_tokens = kept
    return kept


def drop_after(llama: Any, n_tokens: int) -> None:
    """Forget every cell from position ``n_tokens`` on (moved ones whose keys await their
    re-rotation included): the cache then holds exactly the first ``n_tokens`` tokens."""
    lib = llama_cpp()
    lib.llama_memory_seq_rm(lib.llama_get_memory(llama.ctx), 0, n_tokens, -1)
    llama.n_tokens = n_tokens


def _find_run(held: np.ndarray, start: int, run: np.ndarray) -> int | None:
    """First position at or after ``start`` where ``held`` continues with ``run``."""
    last = len(held) - len(run)
    if last < start:
        return None
    for at in np.flatnonzero(held[start : last + 1] == run[0]):
        begin = start + int(at)
        if np.array_equal(held[begin : begin + len(run)], run):
            return begin
    return None


def _run_length(held: np.ndarray, wanted: np.ndarray) -> int:
    """How many leading tokens the two agree on."""
    limit = min(len(held), len(wanted))
    mismatch = np.flatnonzero(held[:limit] != wanted[:limit])
    return int(mismatch[0]) if mismatch.size else limit
