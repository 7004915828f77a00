"""Token healing: a suggestion for a cursor inside a word the user is still typing.

The prompt is tokenized, and a word cut by the cursor tokenizes unlike the same word whole:
``R = bui`` is ``R`` `` =`` `` bu`` ``i``, while the model learned ``build`` as `` build``. From
``...`` `` bu`` ``i`` the model must go on with pieces it rarely saw follow each other, and the
0.5B then writes ``l_residual_network`` for ``build_residual_network`` (typing ``bui``), or
starts another word. Users pause inside words all the time.

So the prompt ends at the last token boundary before the word (``R =``), and the first
generated tokens are held to the bytes that were taken off (`` bui``): at each step only
tokens that continue them, or that they continue, may be chosen; the best of those by the
model's logits wins. The suggestion is what comes after them. A side effect: every key typed
in one word gives the same prompt, so llama.cpp reuses all of it.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["MAX_HEAL_CHARS", "Vocabulary", "split_for_healing"]

# A longer word at the cursor is left as it is: healing it would regenerate many tokens.
MAX_HEAL_CHARS = 32
_WORD_AT_END = re.compile(r"[\w$]+$")


class Vocabulary:
    """Each token's bytes, searchable by what a healed prompt still has to produce."""

    def __init__(self, pieces: Sequence[bytes]) -> None:
        self.pieces = list(pieces)
        order = sorted((p, i) for i, p in enumerate(self.pieces) if p)
        self._sorted = [p for p, _ in order]
        self._sorted_ids = [i for _, i in order]
        self._by_piece: dict[bytes, list[int]] = {}
        for piece, token in order:
            self._by_piece.setdefault(piece, []).append(token)

    def piece(self, token: int) -> bytes:
        return self.pieces[token]

    def allowed(self, pending: bytes) -> npt.NDArray[np.intp]:
        """Tokens whose bytes start with ``pending`` (they finish it) or that ``pending``
        starts with (they take part of it)."""
        ids: list[int] = []
        at = bisect.bisect_left(self._sorted, pending)
        while at < len(self._sorted) and self._sorted[at].startswith(pending):
            ids.append(self._sorted_ids[at])
            at += 1
        for end in range(1, len(pending)):
            ids += self._by_piece.get(pending[:end], ())
        return np.array(ids, dtype=np.intp)


def split_for_healing(
    prefix: str,
    tokenize: Callable[[str], list[int]],
    piece: Callable[[int], bytes],
    *,
    last_token: bool = False,
) -> tuple[str, bytes]:
    """``prefix`` cut at the token boundary before the word that ends it, and the bytes cut
    off (b"" when the cursor is not at the end of a word, or the word is too long).

    ``last_token``: a line that ends otherwise (a space, an operator) loses its last token
    too. Text the model continues after the middle token is read as its own output, where a
    lone trailing space or a ``+`` cut from ``+=`` never occurs: it then writes a second space
    (``if  x``) or another operator. The 1.5B on 50 HumanEval-FIM lines typed halfway: 68 %
    exact match without this, 88 % with it (86 % with the line at the end of the prefix)."""
    line = prefix[prefix.rfind("\n") + 1 :]
    match = _WORD_AT_END.search(line)
    tokens = tokenize(line)
    if match is not None and len(match.group()) <= MAX_HEAL_CHARS:
        heal_from = len(line[: match.start()].encode("utf-8"))
    elif match is None and last_token and len(tokens) > 1:
        heal_from = len(line.encode("utf-8")) - len(piece(tokens[-1]))
    else:
        return prefix, b""
    encoded = line.encode("utf-8")
    cut = 0
    for token in tokens:
        size = len(piece(token))
        if cut + size > heal_from:
            break
        cut += size
    try:
        kept = encoded[:cut].decode("utf-8")
    except UnicodeDecodeError:  # a token boundary inside a character: leave it be
        return prefix, b""
    return prefix[: len(prefix) - len(line)] + kept, encoded[cut:]
