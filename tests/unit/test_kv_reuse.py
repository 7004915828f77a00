"""Cached KV cells kept across a deletion by shifting them (models.kv_reuse), on the real 0.5B."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest

from memlsp.models import ModelPool
from memlsp.models.kv_states import KvStates
from memlsp.models.prefill import prefill
from memlsp.models.runtime import llama_cpp

FIM = "qwen2.5-coder-0.5b"
MB = 1 << 20
MIN_RUN = 16

_CONTEXT = {
    "util/io.py": "import json\n\n\ndef load(path):\n    with open(path) as fh:\n"
    "        return json.load(fh)\n",
    "util/text.py": "def slug(title):\n    return '-'.join(title.lower().split())\n",
    "models/user.py": "class User:\n    def __init__(self, name, email):\n"
    "        self.name = name\n        self.email = email\n",
}
_LINES = [
    "import os",
    "from util.io import load",
    "",
    "",
    "def read_settings(root):",
    "    path = os.path.join(root, 'settings.json')",
    "    if not os.path.exists(path):",
    "        return {}",
    "    return load(path)",
    "",
    "",
    "def user_names(users):",
    "    names = []",
    "    for user in users:",
    "        names.append(user.name.title())",
    "    return sorted(names)",
    "",
    "",
    "def total_size(paths):",
    "    size = 0",
    "    for path in paths:",
    "        size += os.path.getsize(path)",
    "    return size",
    "",
    "",
    "def main():",
    "    settings = read_settings('.')",
    "    print(",
]
_SUFFIX = ")\n\n\nif __name__ == '__main__':\n    main()\n    print(total_size(['a', 'b']))\n"


def _prompt(llama: Any, lines: list[str], chunks: list[str], suffix: str = _SUFFIX) -> list[int]:
    """Qwen2.5-Coder's repo-level FIM layout, as agents.completion.fim_prompt builds it."""
    context = "".join(f"<|file_sep|>{path}\n{_CONTEXT[path]}" for path in chunks)
    text = (
        f"<|repo_name|>workspace\n{context}<|file_sep|>app/main.py\n"
        f"<|fim_prefix|>{chr(10).join(lines)}<|fim_suffix|>{suffix}<|fim_middle|>"
    )
    return list(llama.tokenize(text.encode(), add_bos=False, special=True))


_ALL = list(_CONTEXT)
# (before, after): edits that delete tokens before the end of the prompt.
_DELETIONS: list[tuple[str, Any]] = [
    (
        "prefix window moved down",
        lambda llama: (_prompt(llama, _LINES, _ALL), _prompt(llama, _LINES[11:], _ALL)),
    ),
    (
        "context chunk dropped",
        lambda llama: (_prompt(llama, _LINES, _ALL), _prompt(llama, _LINES, [_ALL[0], _ALL[2]])),
    ),
    (
        "line deleted above the cursor",
        lambda llama: (
            _prompt(llama, _LINES, _ALL),
            _prompt(llama, _LINES[:20] + _LINES[21:], _ALL),
        ),
    ),
]


def _edit(before: list[int], after: list[int]) -> tuple[int, int]:
    """Where ``after`` leaves ``before``: (common prefix, length of the common tail)."""
    limit = min(len(before), len(after))
    head = next((i for i in range(limit) if before[i] != after[i]), limit)
    tail = next((i for i in range(limit - head) if before[-1 - i] != after[-1 - i]), limit - head)
    return head, tail


def _logits(llama: Any) -> np.ndarray:
    lib = llama_cpp()
    row = lib.llama_get_logits_ith(llama.ctx, -1)
    return np.ctypeslib.as_array(row, shape=(llama.n_vocab(),)).copy()


@contextmanager
def _counting(llama: Any) -> Iterator[list[int]]:
    """Counts the tokens ``llama.eval`` evaluates while inside."""
    evaluated = [0]
    original = llama.eval

    def eval_counted(tokens: list[int]) -> None:
        evaluated[0] += len(tokens)
        original(tokens)

    llama.eval = eval_counted
    try:
        yield evaluated
    finally:
        del llama.eval  # the class's method again


def _fresh_logits(llama: Any, tokens: list[int]) -> np.ndarray:
    llama.n_tokens = 0
    assert prefill(llama, tokens, threading.Event(), last_for_logits=True) == 0
    return _logits(llama)


def _assert_holds(llama: Any, tokens: list[int], n: int) -> None:
    """The token record and the cache's positions both say: the first ``n`` of ``tokens``."""
    lib = llama_cpp()
    assert llama.n_tokens == n
    assert list(llama.input_ids[:n]) == tokens[:n]
    assert lib.llama_memory_seq_pos_max(lib.llama_get_memory(llama.ctx), 0) == n - 1


@pytest.mark.parametrize("name", [name for name, _ in _DELETIONS])
def test_a_deletion_evaluates_only_the_last_token_and_logits_stay_close(
    fim_model_pool: ModelPool, name: str
) -> None:
    with fim_model_pool.acquire(FIM) as model:
        llama = model.llama
        before, after = dict(_DELETIONS)[name](llama)
        head, tail = _edit(before, after)
        assert head + tail == len(after) < len(before)  # a deletion at token level
        llama.n_tokens = 0
        prefill(llama, before, threading.Event(), last_for_logits=True)
        with _counting(llama) as evaluated:
            reused = prefill(
                llama, after, threading.Event(), last_for_logits=True, reuse_min_chunk=MIN_RUN
            )
        assert reused == len(after) - 1  # everything after the deletion moved left over it
        assert evaluated[0] == 1
        _assert_holds(llama, after, len(after))
        shifted = _logits(llama)
        fresh = _fresh_logits(llama, after)
        assert int(np.argmax(shifted)) == int(np.argmax(fresh))
        print(
            f"{name}: {len(after) - head - 1} tokens kept by shifting; "
            f"max abs logit difference vs fresh {np.max(np.abs(shifted - fresh)):.3f}"
        )


def test_an_insertion_falls_back_to_the_common_prefix(fim_model_pool: ModelPool) -> None:
    """llama.cpp evaluates new tokens after every cell of the sequence: nothing moves right."""
    with fim_model_pool.acquire(FIM) as model:
        llama = model.llama
        before = _prompt(llama, _LINES, _ALL)
        after = _prompt(llama, [*_LINES[:-1], "    print(settings"], _ALL)
        head, _ = _edit(before, after)
        llama.n_tokens = 0
        prefill(llama, before, threading.Event(), last_for_logits=True)
        reused = prefill(
            llama, after, threading.Event(), last_for_logits=True, reuse_min_chunk=MIN_RUN
        )
        assert reused == head
        _assert_holds(llama, after, len(after))
        assert int(np.argmax(_logits(llama))) == int(np.argmax(_fresh_logits(llama, after)))


def test_cancelled_prefill_leaves_a_valid_prefix(fim_model_pool: ModelPool) -> None:
    with fim_model_pool.acquire(FIM) as model:
        llama = model.llama
        before = _prompt(llama, _LINES, _ALL)
        # A chunk dropped, and a new tail to evaluate after the kept run (several batches).
        extra = "".join(f"def extra_{i}(values):\n    return values[{i}]\n" for i in range(4))
        after = _prompt(llama, _LINES, _ALL[:2], suffix=f")\n\n\n{extra}")
        head, _ = _edit(before, after)

        # Cancelled before the first batch: the moved cells (keys not re-rotated) are dropped.
        llama.n_tokens = 0
        prefill(llama, before, threading.Event(), last_for_logits=True)
        cancel = threading.Event()
        cancel.set()
        assert prefill(llama, after, cancel, reuse_min_chunk=MIN_RUN, batch=8) is None
        _assert_holds(llama, after, head)

        # Cancelled after the first batch: the moved cells and that batch stay.
        llama.n_tokens = 0
        prefill(llama, before, threading.Event(), last_for_logits=True)
        cancel.clear()
        original = llama.eval

        def eval_then_cancel(tokens: list[int]) -> None:
            original(tokens)
            cancel.set()

        llama.eval = eval_then_cancel
        try:
            assert prefill(llama, after, cancel, reuse_min_chunk=MIN_RUN, batch=8) is None
        finally:
            del llama.eval
        held = int(llama.n_tokens)
        assert head + MIN_RUN < held < len(after) - 8
        assert list(llama.input_ids[:held]) == after[:held]
        # The next request continues from there and sees what a fresh evaluation sees.
        assert prefill(llama, after, threading.Event(), last_for_logits=True) == held
        shifted = _logits(llama)
        assert int(np.argmax(shifted)) == int(np.argmax(_fresh_logits(llama, after)))


def test_a_restored_saved_state_can_be_shifted(fim_model_pool: ModelPool) -> None:
    states = KvStates(64 * MB)
    with fim_model_pool.acquire(FIM) as model:
        llama = model.llama
        before, back = dict(_DELETIONS)["prefix window moved down"](llama)
        other = _prompt(llama, ["class Other:", "    pass"] * 40, [])
        states.switch_to(llama, "a.py", before)
        prefill(llama, before, threading.Event(), last_for_logits=True)
        states.switch_to(llama, "b.py", other)  # a.py's state saved on the way out
        prefill(llama, other, threading.Event(), last_for_logits=True)
        assert states.switch_to(llama, "a.py", back) > 0
        with _counting(llama) as evaluated:
            reused = prefill(
                llama, back, threading.Event(), last_for_logits=True, reuse_min_chunk=MIN_RUN
            )
        assert reused == len(back) - 1 and evaluated[0] == 1
        _assert_holds(llama, back, len(back))
        shifted = _logits(llama)
        # Saved again after the shift, restored again: still the same cache.
        states.switch_to(llama, "b.py", other)
        prefill(llama, other, threading.Event(), last_for_logits=True)
        assert states.switch_to(llama, "a.py", back) >= len(back)
        assert prefill(llama, back, threading.Event(), last_for_logits=True) == len(back) - 1
        assert np.allclose(_logits(llama), shifted, atol=1e-3)
        assert int(np.argmax(shifted)) == int(np.argmax(_fresh_logits(llama, back)))


@pytest.mark.parametrize("min_chunk", [0, 10_000])
def test_off_or_no_long_enough_run_is_plain_prefix_reuse(
    fim_model_pool: ModelPool, min_chunk: int
) -> None:
    with fim_model_pool.acquire(FIM) as model:
        llama = model.llama
        before, after = dict(_DELETIONS)["context chunk dropped"](llama)
        head, _ = _edit(before, after)
        llama.n_tokens = 0
        prefill(llama, before, threading.Event(), last_for_logits=True)
        with _counting(llama) as evaluated:
            reused = prefill(
                llama, after, threading.Event(), last_for_logits=True, reuse_min_chunk=min_chunk
            )
        assert reused == head and evaluated[0] == len(after) - head
        _assert_holds(llama, after, len(after))
