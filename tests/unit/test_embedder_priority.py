"""Embeddings for the index are background work (memory/embedder.py, models/priority.py): with the
real MiniLM model, not one embedding computes while an interactive completion holds the compute
turn, and indexing resumes once it ends."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from memlsp.memory.embedder import Embedder
from memlsp.models import ModelPool

COMPLETION_S = 0.8  # how long the stand-in completion decodes


def test_indexing_embeddings_wait_for_a_completion_and_resume_after(
    embedding_model_pool: ModelPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedder = Embedder(embedding_model_pool)
    embedder.embed(["warm the model up"])  # its load is not what this measures
    spans: list[tuple[float, float]] = []
    embed_one = Embedder._embed_one

    def timed(self: Embedder, llama: Any, text: str) -> list[float]:
        started = time.monotonic()
        vector = embed_one(self, llama, text)  # one stopped by the completion raises: redone
        spans.append((started, time.monotonic()))
        return vector

    monkeypatch.setattr(Embedder, "_embed_one", timed)
    texts = [f"def chunk_{i}(x):\n    return x * {i}\n" for i in range(40)]
    indexing = threading.Thread(target=embedder.embed, args=(texts,))
    indexing.start()
    while not spans:  # indexing is under way
        time.sleep(0.005)
    priority = embedding_model_pool.priority
    # A completion on the FIM model: it holds the compute turn from when it holds its model.
    with priority.wanting("qwen2.5-coder-0.5b"), priority.running("qwen2.5-coder-0.5b"):
        decode_started = time.monotonic()
        time.sleep(COMPLETION_S)
        decode_ended = time.monotonic()
    indexing.join(timeout=60)
    assert not indexing.is_alive() and len(spans) == len(texts)
    overlapping = [s for s in spans if s[0] < decode_ended and s[1] > decode_started]
    assert overlapping == [], "an embedding computed while the completion decoded"
    assert any(s[0] >= decode_ended for s in spans), "indexing did not resume"
    assert any(s[1] <= decode_started for s in spans)  # it was under way before
    assert priority.stats()["background_pauses"] >= 1


def test_a_search_query_goes_before_indexing(embedding_model_pool: ModelPool) -> None:
    """A query (interactive) wanting the embedder takes it between two indexing texts."""
    embedder = Embedder(embedding_model_pool)
    embedder.embed(["warm"])
    preempted_before = embedding_model_pool.priority.stats()["background_preempted"]
    texts = [f"class Thing{i}:\n    value = {i}\n" * 20 for i in range(30)]
    indexing = threading.Thread(target=embedder.embed, args=(texts,))
    indexing.start()
    time.sleep(0.1)
    started = time.monotonic()
    (vector,) = embedder.embed(["where is the config parsed"], interactive=True)
    waited = time.monotonic() - started
    indexing.join(timeout=60)
    assert len(vector) == embedder.dimension
    assert waited < 2.0, f"the query waited {waited:.2f} s behind indexing"
    assert indexing.is_alive() is False
    assert embedding_model_pool.priority.stats()["background_preempted"] >= preempted_before
