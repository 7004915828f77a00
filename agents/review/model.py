"""One grammar-constrained, cancellable model call for a review.

The caller holds the model (``ModelPool.acquire``). The prompt is evaluated in small batches,
checking ``cancel`` between them (llama.cpp cannot stop inside one evaluation, and a review
prompt takes seconds on a CPU); tokens already in the KV cache from the previous call are kept,
which on a review means the fixed system message and example. Generation streams under a JSON
grammar built from the schema and stops between two tokens when ``cancel`` is set.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from memlsp.agents.review.types import ReviewCancelled
from memlsp.models import LoadedModel
from memlsp.models.prefill import PREFILL_BATCH, prefill
from memlsp.models.priority import BackgroundPacer
from memlsp.models.runtime import llama_cpp

__all__ = ["ModelAnswer", "PromptTooLong", "generate_json"]


class PromptTooLong(Exception):
    """The prompt and the answer budget do not fit the model's context."""


@dataclass(frozen=True)
class ModelAnswer:
    text: str
    prompt_tokens: int
    reused_tokens: int  # prompt tokens found in the KV cache
    generated_tokens: int
    # "stop": the grammar closed the document; "length": cut off at max_tokens; "watch":
    # ended by the caller's watch (a model repeating itself).
    finish_reason: str
    seconds: float


def generate_json(
    model: LoadedModel,
    tokens: Sequence[int],
    schema: dict[str, Any],
    max_tokens: int,
    cancel: threading.Event,
    watch: Callable[[str], str | None] | None = None,
    pacer: BackgroundPacer | None = None,
) -> ModelAnswer:
    """Greedy answer to the ``tokens`` prompt, constrained to ``schema``. ``watch`` sees the
    answer so far each time an object closes; a string it returns ends generation and becomes
    the answer (finish reason "watch"). ``pacer``: background work, each prompt batch and each
    token waits while interactive work runs."""
    started = time.perf_counter()
    llama = model.llama
    if len(tokens) + max_tokens > llama.n_ctx():
        raise PromptTooLong(
            f"prompt of {len(tokens)} tokens + {max_tokens} to answer exceeds "
            f"n_ctx={llama.n_ctx()} of model '{model.name}'"
        )
    # The prompt-sized batches of before: the review's answers were measured with them.
    reused = prefill(llama, tokens, cancel, pacer=pacer, batch=PREFILL_BATCH)
    if reused is None:
        raise ReviewCancelled()
    grammar = llama_cpp().LlamaGrammar.from_json_schema(json.dumps(schema), verbose=False)
    pieces: list[str] = []
    text: str | None = None
    finish = "length"
    stream = llama.create_completion(
        list(tokens),
        max_tokens=max_tokens,
        temperature=0.0,
        grammar=grammar,
        stream=True,
    )
    # Closed here, under the caller's hold on the model: a generator left to the garbage
    # collector would run its cleanup on whatever thread collects it, without the lock.
    with contextlib.closing(stream):
        while True:
            # A token is computed inside next(): that is the step to pace.
            with pacer.step() if pacer else contextlib.nullcontext():
                if cancel.is_set():
                    break
                chunk = next(stream, None)
            if chunk is None:
                break
            choice = chunk["choices"][0]
            pieces.append(choice["text"])
            finish = choice.get("finish_reason") or finish
            if watch is not None and "}" in choice["text"]:
                final = watch("".join(pieces))
                if final is not None:
                    text, finish = final, "watch"
                    break
    if cancel.is_set():
        raise ReviewCancelled()
    return ModelAnswer(
        text="".join(pieces) if text is None else text,
        prompt_tokens=len(tokens),
        reused_tokens=reused,
        # Stream chunks may hold several tokens; the KV cache holds prompt + answer.
        generated_tokens=max(0, int(llama.n_tokens) - len(tokens)),
        finish_reason=finish,
        seconds=time.perf_counter() - started,
    )
