"""The bytes of a token, whole.

llama-cpp-python's ``Llama.detokenize`` reads each token into a 32-byte buffer and drops a
piece that does not fit: Qwen2.5's vocabulary has runs of white space (and of ``=``, ``-``)
longer than that, so a line indented by 36 spaces lost its indentation, and the surprise review
could not map a file's tokens to its text (found on a HumanEval docstring). These ask llama.cpp
again with the size it reports; ``install`` makes a loaded model's own ``detokenize`` (and so
``create_completion``'s text, which refactors and the instruct review stream) use them.
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterable
from typing import Any

from memlsp.models.runtime import llama_cpp

__all__ = ["detokenize", "install", "token_bytes", "vocabulary_bytes"]

_FIRST_TRY = 64


def token_bytes(llama: Any, token: int, *, special: bool = False) -> bytes:
    """The bytes of ``token`` in ``llama``'s vocabulary (special tokens as text if ``special``)."""
    lib = llama_cpp()
    vocab = lib.llama_model_get_vocab(llama.model)
    size = _FIRST_TRY
    while True:
        buffer = ctypes.create_string_buffer(size)
        n = int(lib.llama_token_to_piece(vocab, int(token), buffer, size, 0, special))
        if n >= 0:
            return buffer.raw[:n]
        size = -n  # too small: llama.cpp says how many bytes the piece needs


def detokenize(llama: Any, tokens: Iterable[int], *, special: bool = False) -> bytes:
    """The bytes of ``tokens``, each piece whole."""
    return b"".join(token_bytes(llama, t, special=special) for t in tokens)


def vocabulary_bytes(llama: Any) -> list[bytes]:
    """Every token's bytes, by id (one buffer for all: ~150k calls)."""
    lib = llama_cpp()
    vocab = lib.llama_model_get_vocab(llama.model)
    size = 256
    buffer = ctypes.create_string_buffer(size)
    pieces: list[bytes] = []
    for token in range(int(llama.n_vocab())):
        n = int(lib.llama_token_to_piece(vocab, token, buffer, size, 0, False))
        pieces.append(buffer.raw[:n] if n >= 0 else token_bytes(llama, token))
    return pieces


def install(llama: Any) -> None:
    """Give ``llama`` (a llama_cpp.Llama) a tokenizer whose detokenize keeps long pieces."""
    if not hasattr(llama, "tokenizer_"):  # not a llama_cpp.Llama (a test double)
        return
    llama.tokenizer_ = _whole_piece_tokenizer()(llama)


_tokenizer_class: type | None = None


def _whole_piece_tokenizer() -> type:
    """The tokenizer class, made on first use (llama_cpp is imported lazily)."""
    global _tokenizer_class
    if _tokenizer_class is None:
        base = llama_cpp().llama_tokenizer.LlamaTokenizer

        class WholePieceTokenizer(base):  # type: ignore[misc, valid-type]
            def __init__(self, llama: Any) -> None:
                super().__init__(llama)
                self._llama = llama

            def detokenize(
                self, tokens: list[int], prev_tokens: list[int] | None = None, special: bool = False
            ) -> bytes:
                out = detokenize(self._llama, tokens, special=special)
                # As upstream: a leading space after BOS is the tokenizer's, not the text's.
                bos = self._llama.token_bos()
                if tokens and tokens[0] == bos and out[:1] == b" ":
                    return out[1:]
                return out

        _tokenizer_class = WholePieceTokenizer
    return _tokenizer_class
