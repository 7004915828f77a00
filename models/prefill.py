"""Prompt evaluation that can stop: llama.cpp evaluates a prompt in one blocking call, so a
long prompt (a review, a refactor) would hold the model for seconds after its request was
cancelled. Only what the KV cache does not hold already is evaluated; an interactive prompt
whose cancel flag is a ``models.abort.Cancel`` goes in large batches that the flag aborts
mid-graph (``abort``), others in small batches with the flag checked between them. With
``reuse_min_chunk``, cached runs that a deletion only moved are kept too (``kv_reuse``).

With ``logits_for`` a caller gets the logits after each of the last tokens, not just the last:
tokens it expects the answer to start with go in the prompt's batch, and the logits say whether
the model would have picked them (a right guess then costs a prompt token, ~15 ms for the 1.5B
on 2 cores, not a single-token evaluation, ~80 ms)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import Any

from memlsp.models import abort, runtime
from memlsp.models.batch_decode import BatchDecoder
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
    logits_for: int = 0,
    batch: int | None = None,
    pacer: BackgroundPacer | None = None,
    reuse_min_chunk: int = 0,
) -> int | None:
    """Bring ``llama``'s KV cache to ``tokens``; returns how many were reused from it, or
    None when ``cancel`` was set (the cache then holds a valid prefix of ``tokens``).

    ``last_for_logits``: evaluate the last token even when cached, for a caller that samples
    from the logits itself (llama-cpp-python's own completion replays it when it needs to).
    ``logits_for``: the same for the last this many tokens, all in the last batch, each with
    its logits (``llama_get_logits``: one row per token, in order).
    ``pacer``: background work; each batch waits while interactive work runs (``priority``).
    ``reuse_min_chunk``: past the common prefix, also keep cached runs of at least this many
    tokens by shifting them over deleted ones (``kv_reuse``); 0: off. ``batch``: tokens per
    evaluation (default: the model's own batch when ``cancel`` can abort a computation in
    flight, else PREFILL_BATCH, BACKGROUND_BATCH with a pacer)."""
    tail = max(logits_for, int(last_for_logits))
    if tail > len(tokens):
        raise ValueError(f"logits for {tail} of {len(tokens)} tokens")
    stopper = None
    if batch is None and pacer is None and isinstance(cancel, abort.Cancel):
        stopper = abort.for_model(llama)
    if batch is None:
        batch = PREFILL_BATCH if pacer is None else BACKGROUND_BATCH
    common = common_prefix(llama, tokens)
    if tail:
        common = min(common, len(tokens) - tail)
    elif common == len(tokens):
        return common
    kept = common
    if reuse_min_chunk > 0:  # one token left to evaluate: its decode applies the shift
        kept = keep_shifted_runs(
            llama, tokens, common, min_run=reuse_min_chunk, limit=len(tokens) - max(tail, 1)
        )
    llama.n_tokens = kept  # eval() drops the KV cache past this point
    with _Evaluator(llama, tokens, tail) as evaluator:
        if stopper is not None:
            assert isinstance(cancel, abort.Cancel)
            done = _evaluate_abortable(evaluator, kept, common, cancel, stopper)
            return kept if done else None
        for start, end in evaluator.chunks(kept, batch):
            # Shifted keys are re-rotated by the first decode: stopping before it leaves no
            # state.
            unrotated = start == kept > common
            try:
                step = pacer.step() if pacer else contextlib.nullcontext()
                with step:
                    if cancel.is_set():  # also set while the pacer waited
                        if unrotated:
                            drop_after(llama, common)
                        return None
                    evaluator.evaluate(start, end)
            except Preempted:
                if unrotated:
                    drop_after(llama, common)
                raise
    return kept


class _Evaluator:
    """Evaluates runs of ``tokens``: with llama-cpp-python's ``eval`` (logits for the last
    token), or with the last ``tail`` tokens' logits kept when ``tail`` is above one."""

    def __init__(self, llama: Any, tokens: Sequence[int], tail: int) -> None:
        self.llama = llama
        self.tokens = tokens
        self.tail = tail
        self._decoder: BatchDecoder | None = None

    def __enter__(self) -> _Evaluator:
        return self

    def __exit__(self, *_: object) -> None:
        if self._decoder is not None:
            self._decoder.close()

    def chunks(self, start: int, size: int) -> list[tuple[int, int]]:
        """Runs of at most ``size`` from ``start`` to the end, the last holding the tail."""
        ends = [*range(start + size, len(self.tokens), size), len(self.tokens)]
        if self.tail > 1 and len(ends) > 1 and ends[-1] - ends[-2] < self.tail:
            ends[-2] = ends[-1] - self.tail  # the run before gives the tail tokens up
        return list(zip([start, *ends[:-1]], ends, strict=True))

    def evaluate(self, start: int, end: int) -> None:
        """Evaluate ``tokens[start:end]`` after the ``start`` tokens the cache holds."""
        if self.tail <= 1:
            self.llama.eval(list(self.tokens[start:end]))
            return
        if self._decoder is None or self._decoder.capacity < end - start:
            if self._decoder is not None:
                self._decoder.close()
            self._decoder = BatchDecoder(runtime.llama_cpp(), self.llama, end - start)
        first_out = len(self.tokens) - self.tail
        outputs = [i >= first_out for i in range(start, end)]
        self._decoder.decode(self.tokens[start:end], start, outputs)


def _evaluate_abortable(
    evaluator: _Evaluator,
    kept: int,
    common: int,
    cancel: abort.Cancel,
    stopper: abort.ComputeAbort,
) -> bool:
    """Evaluate ``tokens[kept:]`` in the model's own batches (llama-cpp-python splits them by
    ``n_batch`` in ``eval``; with a tail, ``chunks`` does); False when ``cancel`` stopped it,
    the cache then holding a prefix."""
    llama = evaluator.llama
    if cancel.is_set():
        if kept > common:
            drop_after(llama, common)
        return False
    end = len(evaluator.tokens)
    runs = evaluator.chunks(kept, int(llama.n_batch)) if evaluator.tail > 1 else [(kept, end)]
    try:
        with stopper.armed(cancel):
            for start, stop in runs:
                evaluator.evaluate(start, stop)
    except RuntimeError:
        if not cancel.is_set():
            raise
        # llama.cpp removed the aborted batch's cells; eval() counts only whole batches done.
        # A shift not yet applied by a finished decode must not stay either (see above).
        drop_after(llama, common if llama.n_tokens == kept > common else llama.n_tokens)
        return False
    return True
