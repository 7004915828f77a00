"""The cursor line after the FIM middle token (agents.generator.typed_line), with the real 0.5B:
typing on a line evaluates only what it adds, where the cursor line at the end of the prefix
evaluates the suffix again on every keystroke."""

from __future__ import annotations

import threading

from memlsp.agents.completion.generator import GeneratorAgent, InlineRequest
from memlsp.config.schema import GeneratorConfig
from memlsp.models import ModelPool

FIM = "qwen2.5-coder-0.5b"
ABOVE = 'def mean(values):\n    """The average of values."""\n'
# ~60 tokens after the cursor's line: what each layout does with it shows.
BELOW = "\n".join(
    f"\n\ndef scaled_{i}(values, factor):\n    return [v * factor for v in values]"
    for i in range(3)
)


def agent(pool: ModelPool, typed_line: str) -> GeneratorAgent:
    config = GeneratorConfig(
        model=FIM, context_tokens=0, max_tokens=8, max_predict_ms=0, typed_line=typed_line
    )
    return GeneratorAgent(pool, config, FIM)


def ask(generator: GeneratorAgent, typed: str) -> tuple[str, int, int]:
    """(suggestion, prompt tokens, of which evaluated) with ``typed`` on the cursor's line; the
    suggestion cache is cleared first, so the model answers."""
    generator.cache.clear()
    request = InlineRequest("doc", "doc.py", "python", ABOVE + "    " + typed, "\n" + BELOW)
    answer = generator.complete(request, threading.Event())
    assert answer.source == "model"
    return answer.text, answer.prompt_tokens, answer.prompt_tokens - answer.reused_tokens


def test_typing_on_a_line_evaluates_only_what_it_adds(fim_model_pool: ModelPool) -> None:
    generator = agent(fim_model_pool, "middle")
    ask(generator, "")  # the blank line first, as the editor asks when the line opens
    _, prompt, evaluated = ask(generator, "r")
    assert prompt > 80
    assert evaluated <= 3, f"{evaluated} of {prompt} prompt tokens evaluated"
    _, _, evaluated = ask(generator, "return sum(")
    assert evaluated <= 8, f"{evaluated} of {prompt} prompt tokens evaluated"


def test_at_the_end_of_the_prefix_each_keystroke_evaluates_the_suffix_again(
    fim_model_pool: ModelPool,
) -> None:
    generator = agent(fim_model_pool, "prefix")
    ask(generator, "")
    ask(generator, "r")
    _, prompt, evaluated = ask(generator, "return sum(")
    assert evaluated > 40, f"{evaluated} of {prompt} prompt tokens evaluated"


def test_the_suggestion_continues_the_typed_text(fim_model_pool: ModelPool) -> None:
    generator = agent(fim_model_pool, "middle")
    text, _, _ = ask(generator, "retu")  # inside a word: healed, then continued
    assert text.startswith("rn "), text
    text, _, _ = ask(generator, "return sum(values) / ")
    assert text.startswith("len(values)"), text
