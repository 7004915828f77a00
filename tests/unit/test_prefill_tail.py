"""Prefill with the logits of its last tokens (models.prefill ``logits_for``), on the real 0.5B:
the rows are those of evaluating the tokens one by one, in the small-batch and the abortable
paths, and a cached prompt evaluates only its tail again."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from memlsp.models import ModelPool, abort
from memlsp.models.prefill import _Evaluator, prefill
from memlsp.models.runtime import llama_cpp

FIM = "qwen2.5-coder-0.5b"
SOURCE = b"".join(
    b"def scale_%d(value, factor=%d):\n    return value * factor + %d\n\n" % (i, i, i)
    for i in range(12)
)


def test_the_last_run_holds_the_whole_tail() -> None:
    chunks = _Evaluator(None, list(range(130)), 4).chunks
    assert chunks(0, 64) == [(0, 64), (64, 126), (126, 130)]  # not (128, 130): 2 < 4
    assert chunks(100, 64) == [(100, 130)]
    assert _Evaluator(None, list(range(130)), 1).chunks(0, 64) == [(0, 64), (64, 128), (128, 130)]


def _rows(llama: Any, count: int) -> np.ndarray:
    lib = llama_cpp()
    n_vocab = int(llama.n_vocab())
    return np.stack(
        [
            np.ctypeslib.as_array(lib.llama_get_logits_ith(llama.ctx, i - count), shape=(n_vocab,))
            for i in range(count)
        ]
    )


def _one_by_one(llama: Any, tokens: list[int], count: int) -> np.ndarray:
    llama.reset()
    llama.eval(tokens[:-count])
    rows = []
    for token in tokens[-count:]:
        llama.eval([token])
        rows.append(_rows(llama, 1)[0].copy())
    return np.stack(rows)


@pytest.mark.model
@pytest.mark.parametrize("abortable", [False, True], ids=["small-batches", "abortable"])
def test_the_tail_rows_are_the_logits_after_each_token(
    fim_model_pool: ModelPool, abortable: bool
) -> None:
    with fim_model_pool.acquire(FIM) as model:
        llama = model.llama
        tokens = list(llama.tokenize(SOURCE, add_bos=False))[:150]
        expected = _one_by_one(llama, tokens, 4)
        llama.reset()
        cancel = abort.Cancel() if abortable else threading.Event()
        assert prefill(llama, tokens, cancel, logits_for=4) == 0
        assert llama.n_tokens == 150
        rows = _rows(llama, 4)
        _assert_close(rows, expected)
        # Cached already: only the tail is evaluated again, its rows the same.
        assert prefill(llama, tokens, cancel, logits_for=4) == 146
        _assert_close(_rows(llama, 4), expected)


def _assert_close(rows: np.ndarray, expected: np.ndarray) -> None:
    """Other batch shapes, other rounding (quantized matrix products): the same picks, the
    logits a little apart; a row of another position would be far apart."""
    assert (rows.argmax(axis=1) == expected.argmax(axis=1)).all()
    apart = float(np.abs(rows - expected).mean())
    misplaced = float(np.abs(rows[1:] - expected[:-1]).mean())
    assert apart < 0.15 and misplaced > 0.5, (apart, misplaced)
