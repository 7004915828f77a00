"""A cancel stops a llama.cpp computation in flight (models.abort), on the real 0.5B."""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
import pytest

from memlsp.models import ModelPool, abort
from memlsp.models.prefill import prefill
from memlsp.models.priority import Preempted
from memlsp.models.runtime import llama_cpp, supports_gpu_offload

FIM = "qwen2.5-coder-0.5b"
_SOURCE = b"".join(
    b"def step_%d(value, scale=%d):\n    return value * scale + %d\n\n" % (i, i, i)
    for i in range(40)
)


def test_hooks_run_when_set_at_once_when_already_set_and_not_after_leaving() -> None:
    cancel = abort.Cancel()
    calls: list[str] = []
    with cancel.hooked(lambda: calls.append("first")):
        assert calls == []
        cancel.set()
        assert calls == ["first"]
    with cancel.hooked(lambda: calls.append("second")):
        assert calls == ["first", "second"]
    cancel.set()
    assert calls == ["first", "second"]
    assert cancel.is_set()


def _held(llama: Any) -> int:
    lib = llama_cpp()
    return int(lib.llama_memory_seq_pos_max(lib.llama_get_memory(llama.ctx), 0)) + 1


def _last_logits(llama: Any) -> np.ndarray:
    row = llama_cpp().llama_get_logits_ith(llama.ctx, -1)
    return np.ctypeslib.as_array(row, shape=(int(llama.n_vocab()),)).copy()


@pytest.mark.skipif(
    supports_gpu_offload(), reason="a 380-token batch takes milliseconds on a GPU: nothing to stop"
)
def test_a_cancel_stops_the_prompt_inside_its_batch(
    fim_model_pool: ModelPool, caplog: pytest.LogCaptureFixture
) -> None:
    """The prompt goes in one large batch; a cancel while it computes ends it there, keeping
    none of it (with 64-token batches checked in between, the batch in flight would finish
    and stay). The cache then holds what the model's record says, and evaluating again gives
    the logits of an uninterrupted evaluation."""
    with fim_model_pool.acquire(FIM) as model:
        llama = model.llama
        tokens = llama.tokenize(_SOURCE, add_bos=False)[:400]
        assert len(tokens) == 400
        caplog.set_level(logging.DEBUG, logger="memlsp.llama_cpp")
        llama.reset()
        prefill(llama, tokens[:20], abort.Cancel())
        assert llama.n_tokens == _held(llama) == 20

        cancel = abort.Cancel()
        timer = threading.Timer(0.3, cancel.set)  # the 380 tokens take seconds on a CPU
        timer.start()
        assert prefill(llama, tokens, cancel) is None
        timer.join()
        assert llama.n_tokens == _held(llama) == 20
        assert abort.for_model(llama) is not None
        # llama.cpp reports the stop as a failed computation: ours, not an error to show.
        stopped = [
            r
            for r in caplog.records
            if r.name == "memlsp.llama_cpp" and "ret = 2" in r.msg % r.args
        ]
        assert stopped and all(r.levelno == logging.DEBUG for r in stopped)
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]

        assert prefill(llama, tokens, abort.Cancel()) == 20
        assert llama.n_tokens == _held(llama) == 400
        resumed = _last_logits(llama)

        llama.reset()  # the same batches uninterrupted, without a cancel armed
        llama.eval(tokens[:20])
        llama.eval(tokens[20:])  # a flag left set would abort this
        assert llama.n_tokens == 400
        np.testing.assert_allclose(resumed, _last_logits(llama), atol=1e-4)


def test_a_cancel_after_the_evaluation_aborts_nothing_later(fim_model_pool: ModelPool) -> None:
    with fim_model_pool.acquire(FIM) as model:
        llama = model.llama
        tokens = llama.tokenize(_SOURCE, add_bos=False)[:80]
        llama.reset()
        cancel = abort.Cancel()
        assert prefill(llama, tokens[:40], cancel) == 0
        cancel.set()  # late: the request was answered already
        llama.eval(tokens[40:])
        assert llama.n_tokens == _held(llama) == 80


def _twenty_evaluated(llama: Any) -> list[int]:
    """400 tokens of source, the cache holding the first 20: the next batch has 380 (seconds
    of a CPU's time), so a stop 0.3 s in lands inside it."""
    tokens = llama.tokenize(_SOURCE, add_bos=False)[:400]
    llama.reset()
    prefill(llama, tokens[:20], abort.Cancel())
    assert llama.n_tokens == _held(llama) == 20
    return [int(t) for t in tokens]


@pytest.mark.skipif(
    supports_gpu_offload(), reason="a 380-token batch takes milliseconds on a GPU: nothing to stop"
)
def test_a_request_wanting_the_model_stops_the_background_step_in_flight(
    fim_model_pool: ModelPool,
) -> None:
    """A background prefill's batch is stopped when a request wants the model (it used to run
    to its end while the request waited): Preempted, nothing of that batch kept."""
    priority = fim_model_pool.priority
    with fim_model_pool.acquire(FIM) as model:
        llama = model.llama
        tokens = _twenty_evaluated(llama)
        pacer = priority.background(model.name, threading.Event(), llama=llama)
        aborted = priority.stats()["background_aborted"]

        def want() -> None:
            with priority.wanting(model.name):
                pass

        timer = threading.Timer(0.3, want)  # the 380-token batch takes seconds on a CPU
        timer.start()
        with pytest.raises(Preempted):
            prefill(llama, tokens, threading.Event(), pacer=pacer, batch=400)
        timer.join()
        assert llama.n_tokens == _held(llama) == 20
        assert priority.stats()["background_aborted"] == aborted + 1
        assert prefill(llama, tokens, abort.Cancel()) == 20  # and the model works on


@pytest.mark.skipif(
    supports_gpu_offload(), reason="a 380-token batch takes milliseconds on a GPU: nothing to stop"
)
@pytest.mark.parametrize("stopped_by_any", [True, False])
def test_a_request_on_another_model_stops_only_steps_that_ask_for_it(
    fim_model_pool: ModelPool, stopped_by_any: bool
) -> None:
    """Indexing embeddings (cheap to do again) end when a completion starts computing on
    another model; a work-ahead on the completion model does not end for a memory query."""
    priority = fim_model_pool.priority
    with fim_model_pool.acquire(FIM) as model:
        llama = model.llama
        tokens = _twenty_evaluated(llama)
        pacer = priority.background(
            model.name, threading.Event(), llama=llama, stopped_by_any=stopped_by_any
        )

        def other_model_request() -> None:
            with priority.wanting("another-model"), priority.running("another-model"):
                pass

        timer = threading.Timer(0.3, other_model_request)
        timer.start()
        try:
            if stopped_by_any:
                with pytest.raises(Preempted):
                    prefill(llama, tokens, threading.Event(), pacer=pacer, batch=400)
                assert llama.n_tokens == _held(llama) == 20
            else:
                assert prefill(llama, tokens, threading.Event(), pacer=pacer, batch=400) == 20
                assert llama.n_tokens == _held(llama) == 400
        finally:
            timer.join()
