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
from collections.abc import Callable, Iterable
from typing import Any

from memlsp.models.runtime import llama_cpp

__all__ = ["detokenize", "install", "token_bytes", "vocabulary_bytes"]


_to_piece: Callable[..., int] | None = None


def _token_to_piece() -> Callable[..., int]:
    """llama.cpp's ``llama_token_to_piece``, called *holding* the GIL (``ctypes.PyDLL``): it
    copies a few bytes, and ctypes' usual release and retake of the GIL around each call costs
    a thread switch whenever another Python thread runs. Measured: the vocabulary's 152k pieces
    in 0.15 s either way alone, but 2.3 s instead of 0.15 while MemOS imported in a niced
    thread (a session's first completion waited for that)."""
    global _to_piece
    if _to_piece is None:
        bindings = llama_cpp().llama_cpp
        function: Callable[..., int] = bindings.llama_token_to_piece
        native = getattr(bindings, "_lib", None)
        if isinstance(native, ctypes.CDLL):
            holding = ctypes.PyDLL(native._name, handle=native._handle).llama_token_to_piece
            holding.argtypes = function.argtypes  # type: ignore[attr-defined]
            holding.restype = function.restype  # type: ignore[attr-defined]
            function = holding
        _to_piece = function
    return _to_piece


def _reader(llama: Any, special: bool) -> Callable[[int], bytes]:
    """Token id -> its bytes, one buffer reused, grown to the size llama.cpp reports."""
    lib = llama_cpp()
    vocab = lib.llama_model_get_vocab(llama.model)
    to_piece = _token_to_piece()
    buffer = ctypes.create_string_buffer(64)

    def read(token: int) -> bytes:
        nonlocal buffer
        while True:
            n = int(to_piece(vocab, int(token), buffer, len(buffer), 0, special))
            if n >= 0:
                return buffer.raw[:n]
            buffer = ctypes.create_string_buffer(-n)  # too small: -n bytes are needed

    return read


def token_bytes(llama: Any, token: int, *, special: bool = False) -> bytes:
    """The bytes of ``token`` in ``llama``'s vocabulary (special tokens as text if ``special``)."""
    return _reader(llama, special)(token)


def detokenize(llama: Any, tokens: Iterable[int], *, special: bool = False) -> bytes:
    """The bytes of ``tokens``, each piece whole."""
    read = _reader(llama, special)
    return b"".join(read(t) for t in tokens)


def vocabulary_bytes(llama: Any) -> list[bytes]:
    """Every token's bytes, by id (~150k pieces through one buffer)."""
    read = _reader(llama, False)
    return [read(t) for t in range(int(llama.n_vocab()))]


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
