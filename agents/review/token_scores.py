"""Low-level pieces of the surprise reviewer (``surprise``): which tokens of a Python file the
model can be asked about, where each model token sits in the text, log-probabilities from a
logits row, and the differing span of a rewritten line.

Which tokens count: the model cannot know a name that the file has not used yet (a new
variable, a parameter), the contents of strings and comments, or the numbers in data. A model
token counts when its first non-space character is code that the file's earlier text could have
predicted: keywords, operators, brackets, builtins and names seen before (Python's
``tokenize`` gives the spans).
"""

from __future__ import annotations

import builtins
import difflib
import io
import keyword
import re
import tokenize
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "differing_span",
    "line_starts",
    "log_softmax_at",
    "python_unknowable",
    "token_spans",
]

_ALWAYS_KNOWN = frozenset(dir(builtins)) | frozenset(keyword.kwlist) | {"self", "cls"}
_SKIPPED_KINDS = frozenset({tokenize.STRING, tokenize.COMMENT, tokenize.NUMBER})


def line_starts(text: str) -> list[int]:
    """Character offset of each line's start (lines as ``splitlines`` and ``tokenize`` cut
    them), plus the text's length at the end."""
    starts = [0]
    for line in text.splitlines(keepends=True):
        starts.append(starts[-1] + len(line))
    if starts[-1] != len(text):  # cannot happen; keeps the invariant obvious
        starts.append(len(text))
    return starts


def python_unknowable(text: str) -> np.ndarray:
    """Per character of ``text``: True where the model cannot be expected to predict the code
    (inside strings, comments and numbers, and names the file has not used before there).
    Past a point ``tokenize`` cannot read, everything counts as knowable."""
    mask = np.zeros(len(text), dtype=bool)
    starts = line_starts(text)
    seen: set[str] = set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            skip = tok.type in _SKIPPED_KINDS
            if tok.type == tokenize.NAME:
                skip = tok.string not in _ALWAYS_KNOWN and tok.string not in seen
                seen.add(tok.string)
            if skip:
                (r0, c0), (r1, c1) = tok.start, tok.end
                if r0 - 1 < len(starts) and r1 - 1 < len(starts):
                    mask[starts[r0 - 1] + c0 : starts[r1 - 1] + c1] = True
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass
    return mask


@dataclass(frozen=True)
class TokenSpans:
    """Where each model token of a text sits: its first character, and the first character
    that is not white space (-1 for a token of white space only)."""

    start: np.ndarray  # character offset where the token's bytes begin
    first_code: np.ndarray  # character offset of its first non-space character, or -1


def token_spans(text: str, tokens: Sequence[int], piece: Callable[[int], bytes]) -> TokenSpans:
    """Spans of ``tokens`` (the tokenization of ``text``) from each token's bytes; a token
    that starts inside a multi-byte character starts at that character."""
    data = text.encode("utf-8")
    # byte offset -> character offset
    char_of_byte = np.zeros(len(data) + 1, dtype=np.int64)
    offset = 0
    for index, char in enumerate(text):
        size = len(char.encode("utf-8"))
        char_of_byte[offset : offset + size] = index
        offset += size
    char_of_byte[len(data)] = len(text)
    start = np.zeros(len(tokens), dtype=np.int64)
    first_code = np.full(len(tokens), -1, dtype=np.int64)
    at = 0
    for i, token in enumerate(tokens):
        raw = piece(token)
        start[i] = char_of_byte[min(at, len(data))]
        stripped = len(raw) - len(raw.lstrip())
        if stripped < len(raw) and at + stripped <= len(data):
            first_code[i] = char_of_byte[at + stripped]
        at += len(raw)
    if at != len(data):
        raise ValueError("the tokens do not spell the text")
    return TokenSpans(start, first_code)


def log_softmax_at(row: np.ndarray, ids: Sequence[int]) -> tuple[np.ndarray, int, float]:
    """Log-probabilities of ``ids`` under a logits row, the argmax and its log-probability."""
    top = int(np.argmax(row))
    peak = float(row[top])
    lse = peak + float(np.log(np.sum(np.exp(row - peak))))
    return np.asarray([float(row[i]) - lse for i in ids]), top, peak - lse


_LEXEME = re.compile(r"\w+|\s+|//=?|\*\*=?|<<=?|>>=?|[<>=!]=|->|:=|[-+*/%&|^@]=|.")


def differing_span(written: str, proposed: str) -> tuple[int, int, str, str]:
    """The part of ``written`` that ``proposed`` changes, in whole lexemes: (start, end) in
    ``written``, the old text and the new. An insertion or deletion takes the neighbouring
    lexeme along so that both sides show code."""
    old = _LEXEME.findall(written)
    new = _LEXEME.findall(proposed)
    head = 0
    while head < min(len(old), len(new)) and old[head] == new[head]:
        head += 1
    tail = 0
    while tail < min(len(old), len(new)) - head and old[-1 - tail] == new[-1 - tail]:
        tail += 1

    def code(parts: list[str]) -> bool:
        return any(p.strip() for p in parts)

    lo_old, hi_old, lo_new, hi_new = head, len(old) - tail, head, len(new) - tail
    # Widen over white space, then by one lexeme of code, until both sides show code.
    while not (code(old[lo_old:hi_old]) and code(new[lo_new:hi_new])):
        if lo_old > 0 and lo_new > 0:
            lo_old, lo_new = lo_old - 1, lo_new - 1
        elif hi_old < len(old) and hi_new < len(new):
            hi_old, hi_new = hi_old + 1, hi_new + 1
        else:
            break
    while lo_old < hi_old and not old[lo_old].strip():
        lo_old += 1
    while hi_old > lo_old and not old[hi_old - 1].strip():
        hi_old -= 1
    start = sum(map(len, old[:lo_old]))
    end = start + sum(map(len, old[lo_old:hi_old]))
    return start, end, "".join(old[lo_old:hi_old]).strip(), "".join(new[lo_new:hi_new]).strip()


def code_lexemes(text: str) -> int:
    """Lexemes of code in ``text`` (white space aside), as ``changed_lexemes`` counts them."""
    return sum(1 for part in _LEXEME.findall(text) if part.strip())


def changed_lexemes(written: str, proposed: str) -> int:
    """How many lexemes of code (white space aside) ``proposed`` replaces, inserts or deletes
    in ``written``: 1 for a swapped operator or name, more for a rewrite."""
    old = [part for part in _LEXEME.findall(written) if part.strip()]
    new = [part for part in _LEXEME.findall(proposed) if part.strip()]
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    return sum(
        max(i2 - i1, j2 - j1) for op, i1, i2, j1, j2 in matcher.get_opcodes() if op != "equal"
    )
