"""Prompt evaluation that can stop: llama.cpp evaluates a prompt in one blocking call, so a
long prompt (a review, a refactor) would hold the model for seconds after its request was
cancelled. Only what the KV cache does not hold already is evaluated; an interactive prompt
whose cancel flag is a ``models.abort.Cancel`` goes in large batches that the flag aborts
mid-graph (``abort``), others in small batches with the flag checked between them. With
``reuse_min_chunk``, cached runs that a deletion only moved are kept too (``kv_reuse``)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import Any

from memlsp.models import abort
from memlsp.models.kv_reuse import drop_after, keep_shifted_runs
from memlsp.models.kv_states import common_prefix
from memlsp.models.priority import BackgroundPacer, Preempted

__all__ = ["BACKGROUND_BATCH", "PREFILL_BATCH", "prefill"]

# Prompt tokens evaluated between two cancellation checks (~0.3 s on 2 cores with the 0.5B).
PREFILL_BATCH = 64
# Background prefills (work-ahead, speculation, reviews) give the model up between batches: a
# request that arrives waits for the batch in flight, so theirs are smaller. Measured: a cold
# request after a speculation in a 64-token batch took ~0.2-0.4 s longer than alone.
BACKGROUND_BATCH = 32


def prefill(
    llama: Any,
    tokens: Sequence[int],
    cancel: threading.Event,
    *,
    last_for_logits: bool = False,
    batch: int | None = None,
    pacer: BackgroundPacer | None = None,
    reuse_min_chunk: int = 0,
) -> int | None:
    """Bring ``llama``'s KV cache to ``tokens``; returns how many were reused from it, or
    None when ``cancel`` was set (the cache then holds a valid prefix of ``tokens``).

    ``last_for_logits``: evaluate the last token even when cached, for a caller that samples
    from the logits itself (llama-cpp-python's own completion replays it when it needs to).
    ``pacer``: background work; each batch waits while interactive work runs (``priority``).
    ``reuse_min_chunk``: past the common prefix, also keep cached runs of at least this many
    tokens by shifting them over deleted ones (``kv_reuse``); 0: off. ``batch``: tokens per
    evaluation (default: the model's own batch when ``cancel`` can abort a computation in
    flight, else PREFILL_BATCH, BACKGROUND_BATCH with a pacer)."""
    stopper = None
    if batch is None and pacer is None and isinstance(cancel, abort.Cancel):
        stopper = abort.for_model(llama)
    if batch is None:
        batch = PREFILL_BATCH if pacer is None else BACKGROUND_BATCH
    common = common_prefix(llama, tokens)
    if last_for_logits:
        common = min(common, len(tokens) - 1)
    elif common == len(tokens):
        return common
    kept = common
    if reuse_min_chunk > 0:  # one token left to evaluate: its decode applies the shift
        kept = keep_shifted_runs(
            llama, tokens, common, min_run=reuse_min_chunk, limit=len(tokens) - 1
        )
    llama.n_tokens = kept  # eval() drops the KV cache past this point
    if stopper is not None:
        assert isinstance(cancel, abort.Cancel)
        return kept if _evaluate_abortable(llama, tokens, kept, common, cancel, stopper) else None
    for start in range(kept, len(tokens), batch):
        # Shifted keys are re-rotated by the first decode: stopping before it leaves no state.
        unrotated = start == kept > common
        try:
            step = pacer.step() if pacer else contextlib.nullcontext()
            with step:
                if cancel.is_set():  # also set while the pacer waited
                    if unrotated:
                        drop_after(llama, common)
                    return None
                llama.eval(list(tokens[start : start + batch]))
        except Preempted:
            if unrotated:
                drop_after(llama, common)
            raise
    return kept


def _evaluate_abortable(
    llama: Any,
    tokens: Sequence[int],
    kept: int,
    common: int,
    cancel: abort.Cancel,
    stopper: abort.ComputeAbort,
) -> bool:
    """Evaluate ``tokens[kept:]`` in the model's own batches (llama-cpp-python splits them by
    ``n_batch``); False when ``cancel`` stopped it, the cache then holding a prefix."""
    if cancel.is_set():
        if kept > common:
            drop_after(llama, common)
        return False
    try:
        with stopper.armed(cancel):
            llama.eval(list(tokens[kept:]))
    except RuntimeError:
        if not cancel.is_set():
            raise
        # llama.cpp removed the aborted batch's cells; eval() counts only whole batches done.
        # A shift not yet applied by a finished decode must not stay either (see above).
        drop_after(llama, common if llama.n_tokens == kept > common else llama.n_tokens)
        return False
    return True
