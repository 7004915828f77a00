"""Alternatives on an explicit request (agents.generator.alternatives), on the real 0.5B: other
first tokens decoded from the same prompt evaluation, distinct after post-processing."""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import pytest
from fim_pool import FIM

from memlsp.agents.completion import generator
from memlsp.agents.completion.generator import GeneratorAgent, InlineRequest
from memlsp.config import Config
from memlsp.models import ModelPool

# A method name to choose: several continuations are about as likely.
METHOD = (
    "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n\n"
    "    def ",
    "\n",
)


def agent(pool: ModelPool) -> GeneratorAgent:
    # No time cap: a loaded machine must not cut the branches the tests compare.
    config = dataclasses.replace(Config().agents.generator, context_tokens=0, max_predict_ms=0)
    return GeneratorAgent(pool, config, FIM)


def request(prefix: str, suffix: str, alternatives: int) -> InlineRequest:
    return InlineRequest("file:///t.py", "t.py", "python", prefix, suffix, "", alternatives)


def test_the_branches_share_one_prompt_evaluation(
    fim_model_pool: ModelPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefills: list[int] = []
    real_prefill = generator.prefill

    def counting(llama: Any, tokens: Any, *args: Any, **kwargs: Any) -> int | None:
        prefills.append(len(tokens))
        return real_prefill(llama, tokens, *args, **kwargs)

    monkeypatch.setattr(generator, "prefill", counting)
    invoked = agent(fim_model_pool).complete(request(*METHOD, 3), threading.Event())
    texts = [invoked.text, *invoked.alternatives]
    assert len(prefills) == 1, prefills
    assert 2 <= len(texts) <= 3 and len(set(texts)) == len(texts), texts
    assert all(text.strip() for text in texts), texts
    assert invoked.generated_tokens > len(invoked.text) // 8  # every branch was counted

    # The greedy one comes first: an automatic request (another agent, no cache) gives it,
    # from the KV cache the branches left (the prompt is reused, not evaluated again).
    plain = agent(fim_model_pool).complete(request(*METHOD, 1), threading.Event())
    assert plain.text == invoked.text and not plain.alternatives
    assert plain.reused_tokens >= plain.prompt_tokens - 1


@pytest.mark.parametrize(
    ("prefix", "suffix"),
    [
        # A blank line: the newline and indentation are shared, the branches differ after them.
        ("names = ['ann', 'bob']\nfor name in names:\n    ", "\n"),
        # Token healing: every branch retypes "sho" first.
        ("def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\n\ndef sho", "\n"),
    ],
)
def test_alternatives_differ_in_text_not_in_indentation(
    fim_model_pool: ModelPool, prefix: str, suffix: str
) -> None:
    invoked = agent(fim_model_pool).complete(request(prefix, suffix, 3), threading.Event())
    texts = [invoked.text, *invoked.alternatives]
    assert 2 <= len(texts) <= 3, texts
    stripped = {text.strip() for text in texts}
    assert len(stripped) == len(texts) and "" not in stripped, texts
