"""The 0.5B drafting for the 1.5B (agents/completion/draft_model.py): the text and tokens of
plain greedy decoding on real FIM prompts, the draft model's cache in step with its record
after rejected guesses, and the agent's choice of when to draft."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_draft_decoding import PROMPTS

from memlsp.agents.completion.draft import MAX_DRAFT
from memlsp.agents.completion.draft_model import ModelDraft, same_vocabulary
from memlsp.agents.completion.generator import (
    Cancelled,
    Decoded,
    GeneratorAgent,
    InlineRequest,
    _decode,
)
from memlsp.agents.completion.postprocess import CompletionMode
from memlsp.config import Config, PoolConfig, load_config
from memlsp.models import LoadedModel, ModelPool
from memlsp.models.assembly import assemble
from memlsp.models.kv_states import KvStates
from memlsp.models.runtime import llama_cpp

TARGET = "qwen2.5-coder-1.5b"
DRAFT = "qwen2.5-coder-0.5b"

pytestmark = pytest.mark.model

# More FIM holes (HumanEval-like), with PROMPTS from the prompt-lookup tests.
HOLES: list[tuple[str, str, CompletionMode]] = [
    *PROMPTS,
    (
        "from typing import List\n\n\n"
        "def below_zero(operations: List[int]) -> bool:\n"
        '    """True if the balance falls below zero at some point."""\n'
        "    balance = 0\n    for op in operations:\n",
        "\n    return False\n",
        "multi",
    ),
    (
        "def fib(n: int) -> int:\n"
        '    """Return the n-th Fibonacci number."""\n'
        "    if n < 2:\n        return n\n    ",
        "\n",
        "multi",
    ),
    (
        "def count_vowels(text):\n    return sum(1 for ch in text.lower() if ch in ",
        ")\n",
        "single",
    ),
]


def catalogue() -> dict[str, object]:
    config = Config() if Config().models else load_config(None, user_file=Path("/no.yaml")).config
    for name in (TARGET, DRAFT):
        assemble(config.models[name])
    return dict(config.models)


@pytest.fixture(scope="module")
def pool() -> Iterator[ModelPool]:
    pool = ModelPool(catalogue(), PoolConfig())  # type: ignore[arg-type]
    yield pool
    pool.close()


def special_ids(llama: object) -> frozenset[int]:
    return frozenset(
        int(llama.tokenize(f"<|fim_{name}|>".encode(), add_bos=False, special=True)[0])  # type: ignore[attr-defined]
        for name in ("prefix", "suffix", "middle", "pad")
    )


def fim_tokens(llama: object, prefix: str, suffix: str) -> list[int]:
    text = f"<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>"
    return list(llama.tokenize(text.encode(), add_bos=False, special=True))  # type: ignore[attr-defined]


def decode(
    target: LoadedModel,
    prefix: str,
    suffix: str,
    mode: CompletionMode,
    *,
    draft: str,
    draft_model: LoadedModel | None = None,
    cancel: threading.Event | None = None,
    cap: int = 0,
) -> Decoded:
    llama = target.llama
    tokens = fim_tokens(llama, prefix, suffix)
    llama.n_tokens = 0  # from a cold cache: every way sees the same prefill
    return _decode(
        target,
        KvStates(0),
        "file:///t.py",
        tokens,
        0,
        special_ids(llama),
        mode,
        64,
        8,
        prefix.rsplit("\n", 1)[-1],
        cancel or threading.Event(),
        draft=draft,
        draft_model=draft_model,
        max_predict_ms=cap,
    )


def cache_in_step(llama: object) -> bool:
    """The KV cache holds exactly the positions the ``Llama`` object's record says."""
    lib = llama_cpp()
    memory = lib.llama_get_memory(llama.ctx)  # type: ignore[attr-defined]
    return int(lib.llama_memory_seq_pos_max(memory, 0)) == int(llama.n_tokens) - 1  # type: ignore[attr-defined]


def test_the_model_drafts_give_the_text_and_tokens_of_plain_greedy(pool: ModelPool) -> None:
    drafted = accepted = 0
    with pool.acquire(TARGET) as target, pool.acquire(DRAFT) as draft:
        assert same_vocabulary(target.llama, draft.llama)
        for prefix, suffix, mode in HOLES:
            plain = decode(target, prefix, suffix, mode, draft="off")
            drafting = decode(target, prefix, suffix, mode, draft="model", draft_model=draft)
            assert drafting.tokens == plain.tokens, prefix
            assert drafting.text == plain.text and plain.text.strip(), prefix
            assert drafting.generated == plain.generated
            drafted += drafting.drafted
            accepted += drafting.accepted
            assert cache_in_step(target.llama) and cache_in_step(draft.llama)
    # The guesses were used, and some were wrong (so rejections were handled on the way).
    assert accepted >= 10 and drafted > accepted, (accepted, drafted)


def test_the_draft_cache_follows_the_sequence_after_rejections(pool: ModelPool) -> None:
    lib = llama_cpp()
    prefix, suffix, _ = HOLES[4]
    with pool.acquire(TARGET) as target, pool.acquire(DRAFT) as draft:
        llama = draft.llama
        prompt = fim_tokens(target.llama, prefix, suffix)
        never = threading.Event()
        llama.n_tokens = 0
        proposer = ModelDraft(lib, llama, prompt, never, p_min=0.0, max_draft=4)
        sequence = list(prompt)
        for step in range(4):
            guesses = proposer.propose(4)
            assert guesses  # 4, or fewer up to a stop token
            # The record (and the cache) hold the sequence and the guesses evaluated: all but
            # the last.
            assert list(llama.input_ids[: llama.n_tokens]) == sequence + guesses[:-1]
            assert cache_in_step(llama)
            # Keep `step` right guesses (step 0: all wrong), then a token not guessed.
            right = guesses[: min(step, len(guesses) - 1)]
            wrong = (guesses[len(right)] + 1) % int(llama.n_vocab())
            for token in [*right, wrong]:
                proposer.append(token)
            sequence += [*right, wrong]
            assert proposer.tokens == sequence
        again = proposer.propose(3)
        assert again
        assert list(llama.input_ids[: llama.n_tokens]) == sequence + again[:-1]
        assert cache_in_step(llama)
        # What a cold cache proposes after the same sequence: the rejected guesses left nothing.
        llama.n_tokens = 0
        assert ModelDraft(lib, llama, sequence, never, p_min=0.0).propose(3) == again


class CancelAfter(threading.Event):
    """Set once it has been asked ``times`` times: a cancel that comes in the middle."""

    def __init__(self, times: int) -> None:
        super().__init__()
        self._left = times

    def is_set(self) -> bool:
        self._left -= 1
        if self._left < 0:
            self.set()
        return super().is_set()


def test_a_cancel_and_the_time_cap_still_end_drafted_decoding(pool: ModelPool) -> None:
    prefix, suffix, mode = HOLES[1]
    with pool.acquire(TARGET) as target, pool.acquire(DRAFT) as draft:
        # Past the prompt's batches (~6 checks), in the middle of drafting.
        with pytest.raises(Cancelled):
            decode(
                target, prefix, suffix, mode, draft="model", draft_model=draft,
                cancel=CancelAfter(12),
            )  # fmt: skip
        assert cache_in_step(target.llama) and cache_in_step(draft.llama)
        whole = decode(target, prefix, suffix, mode, draft="off")
        cut = decode(target, prefix, suffix, mode, draft="off", cap=1)
        drafted = decode(target, prefix, suffix, mode, draft="model", draft_model=draft, cap=1)
    assert len(whole.text.strip().split("\n")) >= 2
    assert cut.timed_out and drafted.timed_out and drafted.text == cut.text


def agent(pool: ModelPool, **changes: object) -> GeneratorAgent:
    config = dataclasses.replace(Config().agents.generator, context_tokens=0, **changes)
    return GeneratorAgent(pool, config, TARGET)


def test_the_agent_drafts_with_the_small_model_for_the_same_text(pool: ModelPool) -> None:
    prefix, suffix, _ = HOLES[4]
    request = InlineRequest("file:///t.py", "t.py", "python", prefix, suffix)
    plain = agent(pool, draft="off", max_predict_ms=0).complete(request, threading.Event())
    drafting = agent(pool, draft="model", max_predict_ms=0)
    assert drafting.complete(request, threading.Event()).text == plain.text and plain.text
    assert drafting.stats()["accepted_drafts"] >= 1
    assert pool.is_loaded(DRAFT)


def test_no_draft_model_where_it_would_unload_another(caplog: pytest.LogCaptureFixture) -> None:
    # A budget the 1.5B fits in, but not the 0.5B beside it: prompt-lookup drafts instead.
    models = catalogue()
    probe = ModelPool(models, PoolConfig())  # type: ignore[arg-type]
    need = probe.estimate(TARGET) >> 20
    small = ModelPool(models, PoolConfig(memory_budget_mb=need + 64))  # type: ignore[arg-type]
    try:
        prefix, suffix, _ = HOLES[0]
        request = InlineRequest("file:///t.py", "t.py", "python", prefix, suffix)
        generator = agent(small, draft="model", max_predict_ms=0)
        # As measured where batches cost about one evaluation: prompt-lookup's guesses pay.
        for size in range(1, MAX_DRAFT + 2):
            for _ in range(3):
                generator._planner(TARGET).timed(size, 0.01)
        with caplog.at_level(logging.INFO, logger="memlsp.agents.completion.generator"):
            assert generator.complete(request, threading.Event()).text
            generator.complete(
                dataclasses.replace(request, prefix=prefix + "\n"), threading.Event()
            )
        assert not small.is_loaded(DRAFT) and small.is_loaded(TARGET)
        notes = [r for r in caplog.records if "would unload another model" in r.getMessage()]
        assert len(notes) == 1  # logged once
        assert generator.stats()["accepted_drafts"] >= 1  # prompt-lookup's, on this prompt
    finally:
        small.close()
        probe.close()
