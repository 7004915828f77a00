"""Token bytes, whole (models/token_pieces.py), with the real Qwen2.5-Coder tokenizer: pieces
longer than llama-cpp-python's 32-byte buffer come back complete, so a text's tokens spell it."""

from __future__ import annotations

import ctypes
from typing import Any

import pytest

from memlsp.config import load_config
from memlsp.models.assembly import resolve
from memlsp.models.runtime import llama_cpp
from memlsp.models.token_pieces import (
    _token_to_piece,
    detokenize,
    token_bytes,
    vocabulary_bytes,
)

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def vocab() -> Any:
    spec = load_config(None).config.models["qwen2.5-coder-0.5b"]
    return llama_cpp().Llama(model_path=str(resolve(spec)), vocab_only=True, verbose=False)


def test_long_pieces_are_whole_and_texts_spell_themselves(vocab: Any) -> None:
    text = "x = [\n" + " " * 36 + "1,\n]\n# " + "=" * 70 + "\nprint('" + "-" * 64 + "')\n"
    tokens = [int(t) for t in vocab.tokenize(text.encode(), add_bos=False, special=False)]
    pieces = [token_bytes(vocab, t) for t in tokens]
    assert max(len(p) for p in pieces) > 32  # the case the upstream buffer drops
    assert b"".join(pieces) == text.encode()
    assert detokenize(vocab, tokens) == text.encode()


def test_the_vocabulary_table_matches_token_by_token(vocab: Any) -> None:
    table = vocabulary_bytes(vocab)
    assert len(table) == int(vocab.n_vocab())
    long_ones = [t for t, piece in enumerate(table) if len(piece) > 32]
    assert long_ones  # Qwen2.5 has runs of spaces and of = and - beyond 32 bytes
    for t in [*long_ones[:50], *range(0, len(table), 997)]:
        assert table[t] == token_bytes(vocab, t)


def test_a_pooled_model_s_own_detokenize_keeps_long_pieces(fim_model_pool: Any) -> None:
    """The pool installs the whole-piece tokenizer: create_completion's text (refactors, the
    instruct review) and llama.detokenize keep a 36-space indentation."""
    text = "def f(values):\n    return [\n" + " " * 36 + "v for v in values\n    ]\n"
    with fim_model_pool.acquire("qwen2.5-coder-0.5b") as model:
        llama = model.llama
        tokens = llama.tokenize(text.encode(), add_bos=False, special=False)
        assert llama.detokenize(tokens) == text.encode()


def test_pieces_are_read_holding_the_gil_and_equal_the_library_s(vocab: Any) -> None:
    """The vocabulary's 152k reads hold the GIL (a release and retake per call cost a thread
    switch each while another Python thread ran: 2.3 s instead of 0.15, measured) and give
    what the library's own binding gives."""
    read = _token_to_piece()
    assert read._flags_ & ctypes._FUNCFLAG_PYTHONAPI  # type: ignore[attr-defined]
    bindings = llama_cpp().llama_cpp
    lib_vocab = bindings.llama_model_get_vocab(vocab.model)
    buffer = ctypes.create_string_buffer(512)
    for token in range(0, int(vocab.n_vocab()), 1013):
        n = bindings.llama_token_to_piece(lib_vocab, token, buffer, len(buffer), 0, False)
        assert token_bytes(vocab, token) == buffer.raw[:n]
