"""Every llama.cpp graph computation runs on one thread (models.compute_thread)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

import pytest

from memlsp.models import ModelPool, compute_thread
from memlsp.models.runtime import llama_cpp


def _in_thread(fn: Callable[[], Any]) -> Any:
    out: list[Any] = []
    worker = threading.Thread(target=lambda: out.append(fn()))
    worker.start()
    worker.join(30)
    return out[0]


def test_calls_from_any_thread_run_on_the_one_compute_thread() -> None:
    idents = {_in_thread(lambda: compute_thread.run(threading.get_ident)) for _ in range(3)}
    idents.add(compute_thread.run(threading.get_ident))
    assert len(idents) == 1
    assert threading.get_ident() not in idents


def test_errors_reach_the_caller_and_the_thread_goes_on() -> None:
    with pytest.raises(ZeroDivisionError):
        compute_thread.run(lambda: 1 // 0)
    assert compute_thread.run(lambda: 41 + 1) == 42


def test_a_call_made_on_the_compute_thread_runs_at_once() -> None:
    # A nested call would wait forever for the thread that makes it, were it queued.
    assert compute_thread.run(lambda: compute_thread.run(compute_thread.on_compute_thread))


def _threads() -> int:
    return len(os.listdir("/proc/self/task"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="counts threads in /proc")
def test_decodes_from_two_threads_make_one_team_of_workers(fim_model_pool: ModelPool) -> None:
    """llama.cpp's OpenMP build gives each thread that decodes its own worker threads; a second
    team makes libgomp stop spinning for all of them (decoding ~25 % slower, measured). Routed,
    a second caller adds no workers: only itself."""
    assert llama_cpp().llama_decode is llama_cpp().llama_cpp.llama_decode
    with fim_model_pool.acquire("qwen2.5-coder-0.5b") as model:
        llama = model.llama
        if llama.context_params.n_threads < 2:
            pytest.skip("one compute thread: no OpenMP workers to count")
        tokens = llama.tokenize(b"def add(a, b):\n    return a + b\n", add_bos=False)
        calls = compute_thread.calls()
        _in_thread(lambda: llama.eval(tokens[:4]))  # the compute thread and its team start
        parked = threading.Event()
        decoded = threading.Event()

        def second() -> None:
            llama.eval(tokens[4:8])
            decoded.set()
            parked.wait(30)  # alive: a team of its own would live as long as it does

        before = _threads()
        worker = threading.Thread(target=second)
        worker.start()
        try:
            assert decoded.wait(30)
            assert _threads() == before + 1  # the second caller itself, no workers of its own
        finally:
            parked.set()
            worker.join(30)
        assert compute_thread.calls() >= calls + 2
