"""Saved KV states across document switches, on the real 0.5B model in the real pool."""

from __future__ import annotations

import threading

import numpy as np

from memlsp.models import ModelPool
from memlsp.models.kv_states import KvStates
from memlsp.models.prefill import prefill
from memlsp.models.runtime import llama_cpp

FIM = "qwen2.5-coder-0.5b"
MB = 1 << 20


def _source(name: str, n: int) -> str:
    return "".join(
        f"def {name}_{i}(values):\n    return [v * {i} for v in values if v > {i}]\n\n\n"
        for i in range(n)
    )


def _tokens(llama: object, text: str) -> list[int]:
    return list(llama.tokenize(text.encode(), add_bos=False))  # type: ignore[attr-defined]


def _greedy(llama: object, prompt: list[int], n: int = 8) -> list[int]:
    """Bring the cache to ``prompt`` and decode ``n`` tokens greedily (as the generator does)."""
    assert prefill(llama, prompt, threading.Event(), last_for_logits=True) is not None
    lib = llama_cpp()
    n_vocab = llama.n_vocab()  # type: ignore[attr-defined]
    out = []
    for _ in range(n):
        logits = np.ctypeslib.as_array(
            lib.llama_get_logits_ith(llama.ctx, -1),  # type: ignore[attr-defined]
            shape=(n_vocab,),
        )
        out.append(int(np.argmax(logits)))
        llama.eval([out[-1]])  # type: ignore[attr-defined]
    return out


def test_a_document_switched_back_to_starts_from_its_saved_state(fim_model_pool: ModelPool) -> None:
    states = KvStates(64 * MB)
    with fim_model_pool.acquire(FIM) as model:
        llama = model.llama
        a, b = _tokens(llama, _source("alpha", 10)), _tokens(llama, _source("beta", 10))
        assert len(a) > 200 and len(b) > 200
        assert states.switch_to(llama, "a.py", a) == 0  # nothing saved yet
        _greedy(llama, a)
        assert states.switch_to(llama, "b.py", b) == 0  # a.py's state saved on the way out
        _greedy(llama, b)
        typed = a + _tokens(llama, "def")
        restored = states.switch_to(llama, "a.py", typed)
        assert restored >= len(a)
        # The live cache holds the saved tokens: only what was typed is evaluated.
        assert prefill(llama, typed, threading.Event(), last_for_logits=True) == len(typed) - 1
        warm = _greedy(llama, typed)
        llama.n_tokens = 0  # the same prompt from an empty cache
        assert _greedy(llama, typed) == warm
    stats = states.stats_dict()
    assert stats["restored"] == 1 and stats["restored_tokens"] >= len(a)
    assert stats["documents"] == 2 and 0 < stats["bytes"] <= 64 * MB


def test_saved_states_stay_within_their_budget(fim_model_pool: ModelPool) -> None:
    with fim_model_pool.acquire(FIM) as model:
        llama = model.llama
        docs = {f"d{i}.py": _tokens(llama, _source(f"d{i}", 6)) for i in range(4)}
        probe = KvStates(64 * MB)
        probe.switch_to(llama, "x", docs["d0.py"])
        _greedy(llama, docs["d0.py"], 1)
        probe.switch_to(llama, "y", docs["d1.py"])
        one_state = probe.stats_dict()["bytes"]
        assert one_state > 0
        states = KvStates(int(one_state * 2.5))  # room for two
        for key, tokens in docs.items():
            states.switch_to(llama, key, tokens)
            _greedy(llama, tokens, 1)
        other = _tokens(llama, "class Other:\n    pass\n")
        states.switch_to(llama, "other.py", other)
        _greedy(llama, other, 1)
        stats = states.stats_dict()
        assert stats["documents"] == 2 and stats["bytes"] <= one_state * 2.5
        # The oldest ones went: d0 has no saved state any more, d3 has.
        assert states.switch_to(llama, "d0.py", docs["d0.py"]) == 0
        assert states.switch_to(llama, "d3.py", docs["d3.py"]) >= len(docs["d3.py"])

        off = KvStates(0)
        for key, tokens in docs.items():
            assert off.switch_to(llama, key, tokens) == 0
            _greedy(llama, tokens, 1)
        assert off.stats_dict()["saved"] == 0


def test_a_cache_taken_over_by_another_prompt_is_not_saved(fim_model_pool: ModelPool) -> None:
    states = KvStates(64 * MB)
    with fim_model_pool.acquire(FIM) as model:
        llama = model.llama
        a = _tokens(llama, _source("alpha", 6))
        review = _tokens(llama, "Review this code:\n" + _source("gamma", 6))
        states.switch_to(llama, "a.py", a)
        _greedy(llama, a, 1)
        _greedy(llama, review, 1)  # another agent on the same model, no switch_to
        states.switch_to(llama, "b.py", a[:10])
        assert states.stats_dict()["saved"] == 0


def test_states_of_an_unloaded_model_are_dropped(fim_model_pool: ModelPool) -> None:
    states = KvStates(64 * MB)
    with fim_model_pool.acquire(FIM) as model:
        a = _tokens(model.llama, _source("alpha", 6))
        states.switch_to(model.llama, "a.py", a)
        _greedy(model.llama, a, 1)
        states.switch_to(model.llama, "b.py", a[:10])
        assert states.stats_dict()["documents"] == 1
    assert fim_model_pool.evict(FIM)
    with fim_model_pool.acquire(FIM) as model:  # a new instance: its cache is empty
        assert states.switch_to(model.llama, "a.py", a) == 0
        assert states.stats_dict()["documents"] == 0
