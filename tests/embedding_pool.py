"""The model pool memory tests embed with: the shipped catalogue, MiniLM on one thread."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from memlsp.config import ModelSpec, load_config
from memlsp.models import ModelPool, runtime


def one_thread_llama(**kwargs: Any) -> Any:
    # On a loaded 2-core machine llama.cpp's spinning thread barrier makes an embedding 4-13x
    # slower with 2 threads than with 1; the pool does not pass n_threads_batch.
    kwargs.setdefault("n_threads_batch", kwargs.get("n_threads"))
    return runtime.llama_cpp().Llama(**kwargs)


def embedding_pool() -> ModelPool:
    """A pool over the shipped catalogue (not the developer's config); close it when done."""
    models: dict[str, ModelSpec] = load_config(
        None, user_file=Path("/nonexistent.yaml")
    ).config.models
    models["minilm-l6-v2"] = dataclasses.replace(models["minilm-l6-v2"], n_threads=1)
    return ModelPool(models, llama_factory=one_thread_llama)
