"""Sentence embeddings for the workspace memory, from a GGUF model in the shared model pool.

Blocking: callers run it in worker threads. Texts are embedded one per llama.cpp call (faster
than batches of 8 on a 2-core CPU), and the model is taken from the pool for each text, so a
search's query waits behind one chunk at most, never behind a whole file being indexed.

Embedding for the index is background work (``models.priority``): each text is one step, taken
in turn with the other background steps and never beside a completion's compute (two llama.cpp
thread pools on 2 cores made typing while indexing ~10x slower). A search's query is
interactive: it is short, and a completion's context waits for it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from memlsp.models.pool import ModelPool
from memlsp.models.priority import Preempted

DEFAULT_MODEL = "minilm-l6-v2"
DEFAULT_DIMENSION = 384


class EmbedderError(RuntimeError):
    """The model does not produce what the embedder promised (e.g. another dimension)."""


class Embedder:
    """Normalised text embeddings of a fixed dimension from one catalogue model."""

    def __init__(
        self, pool: ModelPool, name: str = DEFAULT_MODEL, dimension: int = DEFAULT_DIMENSION
    ) -> None:
        self.name = name
        self.dimension = dimension
        self._pool = pool
        self._lock = threading.Lock()
        # Background steps wait for interactive work, which always ends: nothing cancels them.
        self._never_cancelled = threading.Event()
        # Counters for tests and status: "a restart re-embeds nothing" is checked with these.
        self.embed_calls = 0
        self.texts_embedded = 0

    def embed(self, texts: Sequence[str], *, interactive: bool = False) -> list[list[float]]:
        """One unit-length vector per text; texts longer than the model's window are cut.

        ``interactive``: someone waits for it (a search's query); else each text waits for its
        turn among background work (``models.priority``)."""
        if not texts:
            return []
        vectors = []
        for text in texts:
            if interactive:
                with self._pool.acquire(self.name, interactive=True) as model:
                    vectors.append(self._embed_one(model.llama, text))
            else:
                vectors.append(self._embed_in_turn(text))
        with self._lock:
            self.embed_calls += 1
            self.texts_embedded += len(texts)
        return vectors

    def _embed_in_turn(self, text: str) -> list[float]:
        """One text as a background step; a query that wants the model goes first (nothing is
        lost: the text has not been started)."""
        priority = self._pool.priority
        while True:
            with self._pool.acquire(self.name) as model:
                # A completion or a query starting stops the embedding in flight (~40-80 ms
                # of a chunk, done again after): typing while the workspace indexes.
                pacer = priority.background(
                    model.name, self._never_cancelled, llama=model.llama, stopped_by_any=True
                )
                try:
                    with pacer.step():
                        return self._embed_one(model.llama, text)
                except Preempted:
                    pass
            priority.wait_unwanted(self.name, self._never_cancelled)

    def _embed_one(self, llama: Any, text: str) -> list[float]:
        window = min(int(llama.n_ctx()), int(llama.n_batch))
        vector = llama.embed(_fit_window(llama, text, window), normalize=True, truncate=True)
        if len(vector) != self.dimension:
            raise EmbedderError(
                f"model '{self.name}' gives {len(vector)}-d vectors, expected {self.dimension}"
            )
        return [float(x) for x in vector]


def _token_count(llama: Any, text: str) -> int:
    # add_bos: count the [CLS]/[SEP] the model adds around every input.
    return len(llama.tokenize(text.encode("utf-8"), add_bos=True, special=False))


def _fit_window(llama: Any, text: str, window: int) -> str:
    """The longest prefix of ``text`` that tokenizes to at most ``window`` tokens.

    Cutting the text rather than the token list (llama-cpp-python's ``truncate``, kept only as a
    backstop) keeps the closing [SEP] the model was trained with. Binary search over characters;
    a WordPiece token spans at least one byte, so short texts skip tokenization entirely.
    """
    if len(text.encode("utf-8")) + 2 <= window or _token_count(llama, text) <= window:
        return text
    lo, hi = 0, len(text)  # invariant: text[:lo] fits, text[:hi] does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _token_count(llama, text[:mid]) <= window:
            lo = mid
        else:
            hi = mid
    return text[:lo]
