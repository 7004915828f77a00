"""Work-ahead prefills (GeneratorAgent.work_ahead) with the real 0.5B FIM model: the next request
pays only for what changed, and a request or a cancel stops a prefill within one prompt batch."""

from __future__ import annotations

import threading
import time

from memlsp.agents.completion.generator import GeneratorAgent, InlineRequest
from memlsp.config.schema import GeneratorConfig
from memlsp.models import ModelPool

FIM = "qwen2.5-coder-0.5b"
# One 64-token prompt batch of the 0.5B takes ~0.3 s on 2 idle cores: room for a busy machine.
ONE_BATCH_S = 1.5
BODY = "".join(
    f"def helper_{i}(values):\n    return sum(v * {i} for v in values)\n\n\n" for i in range(20)
)


def agent(pool: ModelPool) -> GeneratorAgent:
    config = GeneratorConfig(
        model=FIM,
        context_tokens=0,
        suffix_tokens=32,
        blank_line_suffix_tokens=32,
        max_tokens=4,
        max_predict_ms=0,
    )
    return GeneratorAgent(pool, config, FIM)


def request(doc: str, prefix: str, suffix: str = "") -> InlineRequest:
    return InlineRequest(doc, f"{doc}.py", "python", prefix, suffix)


def test_the_request_after_a_work_ahead_evaluates_only_the_change(
    fim_model_pool: ModelPool,
) -> None:
    generator = agent(fim_model_pool)
    generator.complete(request("warm", "def f(x):\n    "), threading.Event())
    # As on didOpen: the cursor guessed at the end of the document.
    evaluated = generator.work_ahead(request("doc", BODY), threading.Event())
    assert evaluated > 300
    cursor = BODY.index("def helper_18") + len("def helper_18(values):\n    return sum(v")
    answer = generator.complete(request("doc", BODY[:cursor], BODY[cursor:]), threading.Event())
    # The suffix (32 tokens) and the word at the cursor, of ~400.
    assert answer.prompt_tokens > 300
    assert answer.prompt_tokens - answer.reused_tokens < 60, answer
    stats = generator.stats()
    assert stats["work_ahead"] == 1 and stats["work_ahead_stopped"] == 0


def test_a_request_stops_a_work_ahead_within_one_batch(fim_model_pool: ModelPool) -> None:
    generator = agent(fim_model_pool)
    generator.complete(request("warm", "def f(x):\n    "), threading.Event())
    ended: list[float] = []

    def work_ahead() -> None:
        generator.work_ahead(request("long", BODY * 2), threading.Event())
        ended.append(time.monotonic())

    worker = threading.Thread(target=work_ahead)
    worker.start()
    time.sleep(0.6)  # under way: the whole prompt takes seconds
    asked = time.monotonic()
    answer = generator.complete(
        request("other", "import os\n\n\ndef cwd():\n    "), threading.Event()
    )
    worker.join(timeout=30)
    assert answer.source == "model"
    assert ended and ended[0] - asked < ONE_BATCH_S, f"gave way after {ended[0] - asked:.2f} s"
    stats = generator.stats()
    assert stats["work_ahead_stopped"] == 1
    assert fim_model_pool.priority.stats()["background_preempted"] >= 1


def test_a_cancel_stops_a_work_ahead_within_one_batch(fim_model_pool: ModelPool) -> None:
    generator = agent(fim_model_pool)
    cancel = threading.Event()
    worker = threading.Thread(
        target=generator.work_ahead, args=(request("cancelled", BODY * 2 + "# end\n"), cancel)
    )
    worker.start()
    time.sleep(0.6)
    cancel.set()
    asked = time.monotonic()
    worker.join(timeout=30)
    assert time.monotonic() - asked < ONE_BATCH_S
    assert generator.stats()["work_ahead_stopped"] == 1


def test_background_prefills_step_in_small_batches(fim_model_pool: ModelPool) -> None:
    """A request waits for the background batch in flight: those are BACKGROUND_BATCH tokens,
    not a request's PREFILL_BATCH."""
    import contextlib

    from memlsp.models.prefill import BACKGROUND_BATCH, PREFILL_BATCH, prefill

    class CountingPacer:
        steps = 0

        def step(self) -> contextlib.AbstractContextManager[None]:
            CountingPacer.steps += 1
            return contextlib.nullcontext()

    assert BACKGROUND_BATCH < PREFILL_BATCH
    with fim_model_pool.acquire(FIM) as model:
        llama = model.llama
        tokens = llama.tokenize(BODY.encode(), add_bos=False)[:100]
        llama.n_tokens = 0
        prefill(llama, tokens, threading.Event(), pacer=CountingPacer())  # type: ignore[arg-type]
    assert CountingPacer.steps == -(-100 // BACKGROUND_BATCH)
