"""A markdown fence at a line start ends a suggestion in code (agents/fences.py), on the real 0.5B
with the soak's workspace: the state where the soak showed "```" as the suggestion."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from fim_pool import FIM
from soak_driver import SNIPPETS, WORKSPACE

from memlsp.agents.completion.fences import opens_fence
from memlsp.agents.completion.generator import GeneratorAgent, InlineRequest
from memlsp.base.context import ContextChunk, ContextRequest
from memlsp.config import load_config
from memlsp.models import ModelPool


@pytest.mark.parametrize(
    ("line", "piece", "fence"),
    [
        (b"", b"```", True),
        (b"    ", b"```python", True),
        (b"", b"``", True),
        (b"", b"`", False),  # a JavaScript template literal may start a line
        (b"x = ", b"```", False),  # not at a line start
        (b"return x", b"\n```", True),
        (b"return x", b"\n    ``", True),
        (b"", b"def", False),
        (b"", b"\n\n", False),
    ],
)
def test_what_opens_a_fence(line: bytes, piece: bytes, fence: bool) -> None:
    assert opens_fence(line, piece) is fence


class OtherFiles:
    """The start of every other workspace file as context, as the memory would give it."""

    def __init__(self, texts: dict[str, str]) -> None:
        self.texts = texts

    def context_for(self, request: ContextRequest, budget_chars: int) -> list[ContextChunk]:
        chunks, used = [], 0
        for rel, text in self.texts.items():
            if rel == request.path or not text.strip():
                continue
            if used + min(600, len(text)) > budget_chars:
                break
            chunks.append(ContextChunk(rel, text[:600], 0, "memory"))
            used += min(600, len(text))
        return chunks


def test_a_fence_after_a_finished_function_is_not_the_suggestion(fim_model_pool: ModelPool) -> None:
    texts = dict(WORKSPACE)
    for turn in range(2):  # two functions typed into every file, as in the soak
        for rel, snippets in SNIPPETS.items():
            texts[rel] += snippets[turn % len(snippets)].format(n=f"1_{turn}")
    config = load_config(None, user_file=Path("/no.yaml")).config
    agent = GeneratorAgent(fim_model_pool, config.agents.generator, FIM, OtherFiles(texts))
    rel = "billing/report.py"

    def suggest(language_id: str) -> str:
        request = InlineRequest(rel + language_id, rel, language_id, texts[rel], "", "ws")
        return agent.complete(request, threading.Event()).text

    # The cut prompt's answer is a fence: it ends there, the prompt at the cursor is asked.
    text = suggest("python")
    assert "`" not in text, text
    assert agent.stats()["ended_at_fence"] >= 1
    # In prose the fence is the answer.
    assert suggest("markdown").startswith("```")
