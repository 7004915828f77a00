"""The next suggestion computed ahead (GeneratorAgent.speculate, agents.generator.speculate) with
the real 0.5B FIM model: it lands in the completion cache with the text a model call there gives,
costs no model call of the request it serves, and gives the model up to a request."""

from __future__ import annotations

import threading
import time

from memlsp.agents.completion.generator import GeneratorAgent, InlineRequest
from memlsp.config.schema import GeneratorConfig
from memlsp.models import ModelPool

FIM = "qwen2.5-coder-0.5b"
ONE_BATCH_S = 1.5  # one 64-token prompt batch or one token, with room for a busy machine
BODY = "".join(
    f"def scale_{i}(values):\n    return [v * {i} for v in values]\n\n\n" for i in range(6)
)
SHOWN = BODY + "def scale_6(values):\n"  # as if the suggestion shown had been accepted


def agent(pool: ModelPool, **settings: int) -> GeneratorAgent:
    config = GeneratorConfig(
        model=FIM, context_tokens=0, suffix_tokens=32, max_tokens=24, max_predict_ms=0, **settings
    )
    return GeneratorAgent(pool, config, FIM)


def request(doc: str, prefix: str, suffix: str = "") -> InlineRequest:
    return InlineRequest(doc, f"{doc}.py", "python", prefix, suffix)


def test_the_next_suggestion_is_in_the_cache_with_the_model_s_text(
    fim_model_pool: ModelPool,
) -> None:
    ahead = agent(fim_model_pool)
    assert ahead.speculate(request("doc", SHOWN), threading.Event())
    served = ahead.cached(request("doc", SHOWN))
    assert served is not None and served.source == "cache"
    stats = ahead.stats()
    assert stats["speculations"] == 1 and stats["speculation_tokens"] > 0
    assert stats["model_calls"] == 0  # the request it serves pays for nothing
    # What a model call at that cursor answers (a fresh agent, the same prompt): the same text.
    fresh = agent(fim_model_pool).complete(request("doc2", SHOWN), threading.Event())
    assert fresh.source == "model" and fresh.text.strip()
    assert served.text == fresh.text
    # Cached already: not computed again.
    assert not ahead.speculate(request("doc", SHOWN), threading.Event())
    assert ahead.stats()["speculations"] == 1


def test_a_request_or_typing_stops_a_speculation(fim_model_pool: ModelPool) -> None:
    generator = agent(fim_model_pool)
    generator.complete(request("warm", "def f(x):\n    "), threading.Event())
    ended: list[float] = []

    def speculate() -> None:
        generator.speculate(request("long", BODY * 4 + SHOWN), threading.Event())
        ended.append(time.monotonic())

    worker = threading.Thread(target=speculate)
    worker.start()
    time.sleep(0.8)  # under way: its prompt takes seconds
    asked = time.monotonic()
    answer = generator.complete(
        request("other", "import os\n\n\ndef cwd():\n    "), threading.Event()
    )
    worker.join(timeout=30)
    assert answer.source == "model"
    assert ended and ended[0] - asked < ONE_BATCH_S, f"gave way after {ended[0] - asked:.2f} s"
    assert generator.stats()["speculations_stopped"] == 1
    assert generator.stats()["speculations"] == 0
    assert not generator.cache.contains(BODY * 4 + SHOWN, "")

    # A keystroke (the work-ahead service cancels the guess) before it starts: nothing computed.
    cancel = threading.Event()
    cancel.set()
    assert not generator.speculate(request("doc", SHOWN), cancel)
    assert generator.stats()["speculations"] == 0


def test_a_request_for_the_speculated_cursor_waits_for_it(fim_model_pool: ModelPool) -> None:
    """Accepting while the next suggestion is under way: the request for it joins the
    speculation instead of stopping it and asking the model again."""
    generator = agent(fim_model_pool)
    generator.complete(request("warm", "def f(x):\n    "), threading.Event())
    text = BODY * 2 + SHOWN
    worker = threading.Thread(
        target=generator.speculate, args=(request("joined", text), threading.Event())
    )
    worker.start()
    time.sleep(0.4)  # under way
    answer = generator.complete(request("joined", text), threading.Event())
    worker.join(timeout=30)
    stats = generator.stats()
    assert answer.source == "cache", answer
    assert stats["joined_speculations"] == 1 and stats["speculations"] == 1, stats
    assert stats["model_calls"] == 1  # the warm-up only
    assert answer.text == generator.cache.get(text, "")
