"""Post-processing of fill-in-the-middle output: mode choice, syntactic trimming, filtering.

Small FIM models (Qwen2.5-Coder 0.5B) rarely stop at the right place and often echo code that
is already in the file. Instead of trusting a stop token we cut by syntax (indentation, block
end, blank lines) and drop suggestions that would only repeat existing text.

Mode rules (`decide_mode`), deliberately few so they stay predictable:

* Non-whitespace text after the cursor on its line (mid-line): single. Only the current line
  can be completed without clobbering what follows.
* Cursor line non-blank before the cursor (end of a statement, inside a comment or a string):
  single. The natural suggestion is the rest of this line.
* Cursor on a blank line whose previous code line opens a block: multi. Comment lines and
  one-line docstrings in between are skipped, so an empty body that holds only a docstring or
  a comment still counts as empty. Comments are removed before testing the line end, so
  ``# Example:`` is not an opener.
* Anything else: single.

Block openers: ``{``, ``(``, ``[`` and ``=>`` in every language, plus ``:`` in Python and YAML.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from memlsp.base.languages import language_by_lsp_id

__all__ = ["FIM_SPECIAL_TOKENS", "CompletionMode", "clean_completion", "decide_mode"]

CompletionMode = Literal["single", "multi"]

# Qwen2.5-Coder's special tokens; any of them in the output means the model ran past the hole.
FIM_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|fim_prefix|>",
    "<|fim_suffix|>",
    "<|fim_middle|>",
    "<|fim_pad|>",
    "<|file_sep|>",
    "<|repo_name|>",
    "<|endoftext|>",
    "<|im_end|>",
)

_COLON_BLOCK_LANGUAGES = frozenset({"python", "yaml"})
_OPENERS = ("{", "(", "[", "=>")
CLOSERS = ")]}"
_PAIRS = {")": "(", "]": "[", "}": "{"}

# Rust's lifetimes ('a) would look like unclosed char literals, so only '"' quotes there.
_DOUBLE_QUOTE_ONLY_LANGUAGES = frozenset({"rust"})
# How far back `decide_mode` walks over blank/comment lines looking for the opener.
_MAX_LOOKBACK_LINES = 50
_TAB_WIDTH = 4


def _comment_markers(language_id: str) -> tuple[str, ...]:
    language = language_by_lsp_id(language_id)
    if language is None or language.line_comments is None:
        # Unknown markers: the two commonest; a false "comment" only makes a line single.
        return ("//", "#")
    return language.line_comments


def _code_end(line: str, language_id: str) -> tuple[int, bool]:
    """Scan one line: return (index where a comment starts or len(line), ends inside a string).

    Quotes are tracked so that ``"#"`` or ``"//"`` inside a string is not taken as a comment.
    """
    markers = _comment_markers(language_id)
    quotes = '"' if language_id in _DOUBLE_QUOTE_ONLY_LANGUAGES else "\"'`"
    triple = language_id == "python"
    quote = ""
    i, n = 0, len(line)
    while i < n:
        ch = line[i]
        if quote:
            if ch == "\\":
                i += 2
            elif line.startswith(quote, i):
                i += len(quote)
                quote = ""
            else:
                i += 1
            continue
        for marker in markers:
            if line.startswith(marker, i):
                return i, False
        if ch in quotes:
            quote = ch * 3 if triple and line.startswith(ch * 3, i) else ch
            i += len(quote)
            continue
        i += 1
    return n, bool(quote)


def _is_one_line_docstring(stripped: str) -> bool:
    for q in ('"""', "'''"):
        if len(stripped) >= 6 and stripped.startswith(q) and stripped.endswith(q):
            return True
    return False


def _opens_block(code: str, language_id: str) -> bool:
    code = code.rstrip()
    if code.endswith(_OPENERS):
        return True
    return language_id in _COLON_BLOCK_LANGUAGES and code.endswith(":")


def _lines_backward(text: str, end: int) -> Iterator[str]:
    """Lines of ``text[:end]``, last first, without splitting the whole (possibly huge) text."""
    while True:
        nl = text.rfind("\n", 0, end)
        yield text[nl + 1 : end]
        if nl < 0:
            return
        end = nl


def _lines_forward(text: str, start: int) -> Iterator[str]:
    """Lines of ``text[start:]``, first first."""
    n = len(text)
    while start <= n:
        nl = text.find("\n", start)
        if nl < 0:
            yield text[start:]
            return
        yield text[start:nl]
        start = nl + 1


def _lines_above(prefix: str) -> Iterator[str]:
    """Complete lines above the cursor line, nearest first."""
    nl = prefix.rfind("\n")
    if nl >= 0:
        yield from _lines_backward(prefix, nl)


def _lines_below(suffix: str) -> Iterator[str]:
    """Complete lines below the cursor line, nearest first."""
    nl = suffix.find("\n")
    if nl >= 0:
        yield from _lines_forward(suffix, nl + 1)


def _cursor_line(prefix: str, suffix: str) -> tuple[str, str]:
    """(text before the cursor on its line, text after the cursor on its line)."""
    before = prefix[prefix.rfind("\n") + 1 :]
    nl = suffix.find("\n")
    after = suffix if nl < 0 else suffix[:nl]
    return before, after


def _indent(line: str) -> int:
    stripped = line.lstrip(" \t")
    return len(line[: len(line) - len(stripped)].expandtabs(_TAB_WIDTH))


def _previous_nonblank(prefix: str) -> str | None:
    for line in _lines_above(prefix):
        if line.strip():
            return line
    return None


def decide_mode(prefix: str, suffix: str, language_id: str) -> CompletionMode:
    """Choose single- or multi-line completion from the cursor's syntactic position."""
    before, after = _cursor_line(prefix, suffix)
    if after.strip() or before.strip():
        return "single"
    for count, line in enumerate(_lines_above(prefix)):
        if count >= _MAX_LOOKBACK_LINES:
            break
        stripped = line.strip()
        if not stripped or _is_one_line_docstring(stripped):
            continue
        end, _ = _code_end(line, language_id)
        code = line[:end]
        if not code.strip():
            continue  # comment-only line: look further up
        return "multi" if _opens_block(code, language_id) else "single"
    return "single"


def _cut_special_tokens(text: str) -> str:
    cut = len(text)
    for token in FIM_SPECIAL_TOKENS:
        i = text.find(token, 0, cut)
        if i >= 0:
            cut = i
    return text[:cut]


def _trim_block(lines: list[str], before: str, prefix: str, max_lines: int) -> list[str]:
    """Keep the generated lines that stay inside the block the cursor is in."""
    blank_cursor = not before.strip()
    if blank_cursor:
        # Leading newlines would leave the cursor line empty; move the first code line up to
        # the cursor, removing the indentation that the cursor line already provides.
        i = 0
        while i < len(lines) - 1 and not lines[i].strip():
            i += 1
        if i > 0:
            first = lines[i]
            first = first[len(before) :] if first.startswith(before) else first.lstrip()
            lines = [first, *lines[i + 1 :]]

    # The block's indentation is that of the first generated line that starts a line; when
    # the cursor follows code, line 0 only continues that line and cannot tell.
    block_indent: int | None = None
    if blank_cursor and lines[0].strip():
        block_indent = _indent(before + lines[0])
    else:
        for line in lines[1:]:
            if line.strip():
                block_indent = _indent(line)
                break
    if blank_cursor:
        above = _previous_nonblank(prefix)
        outer_indent = _indent(above) if above is not None else 0
    else:
        outer_indent = _indent(before)

    kept = [lines[0]]
    blank_run = 0
    for line in lines[1:]:
        if len(kept) >= max_lines:
            break
        stripped = line.strip()
        if not stripped:
            blank_run += 1
            if blank_run >= 2:
                break
            kept.append(line)
            continue
        blank_run = 0
        indent = _indent(line)
        if block_indent is not None and indent < block_indent:
            # A closing bracket at the opener's level ends the block: keep it (duplicates of
            # a closer already in the suffix are removed later), then stop.
            if stripped[0] in CLOSERS and outer_indent <= indent and outer_indent < block_indent:
                kept.append(line)
            break
        kept.append(line)
    return kept


def _excess_closers(text: str, closer: str) -> int:
    return text.count(closer) - text.count(_PAIRS[closer])


def _trim_same_line_overlap(last: str, line_before: str, after: str) -> str:
    """Remove the tail of ``last`` that the rest of the cursor line already contains.

    A closing bracket is only removed when the resulting line has more closers than openers
    of that kind, so ``print(|)`` + ``x)`` loses its ``)`` but ``print(|)`` + ``f(a)`` keeps it.
    """
    head = after.lstrip()
    line = line_before + last + after
    for k in range(min(len(last), len(head)), 0, -1):
        overlap = head[:k]
        if not last.endswith(overlap):
            continue
        if all(_excess_closers(line, c) >= overlap.count(c) for c in CLOSERS if c in overlap):
            return last[:-k]
    return last


def _is_trivial(stripped: str) -> bool:
    """Lines that legitimately repeat (closing brackets, ``end``)."""
    return stripped == "end" or not any(ch.isalnum() for ch in stripped)


def _repeats_line_above(lines: list[str], before: str, prefix: str) -> bool:
    i = next((n for n, line in enumerate(lines) if line.strip()), -1)
    if i < 0:
        return False
    target = (before + lines[0] if i == 0 else lines[i]).strip()
    if _is_trivial(target):
        return False
    # Lines 1..i-1 are blank, so the line above is the cursor line or, if that is blank, the
    # previous non-blank line of the prefix.
    above = before.strip() if i > 0 else ""
    if not above:
        previous = _previous_nonblank(prefix)
        above = previous.strip() if previous is not None else ""
    return target == above


_CLOSER_LINE_CHARS = ")]};,"


def _trim_following_lines(lines: list[str], before: str, suffix: str) -> list[str]:
    """Drop the generated tail that equals the lines right below the cursor (all of it → [])."""
    generated = [_line_key(before + lines[0]), *(_line_key(line) for line in lines[1:])]
    following: list[str] = []
    wanted = sum(1 for g in generated if g)
    for line in _lines_below(suffix):
        if len(following) >= wanted:
            break
        if line.strip():
            following.append(_line_key(line))
    for start, first in enumerate(generated):
        if not first:
            continue
        tail = [g for g in generated[start:] if g]
        if tail == following[: len(tail)]:
            return lines[:start]
    return lines


def _line_key(line: str) -> str:
    """A line as compared with the lines below the cursor: its code, and for a line of closing
    brackets its indentation too; nested blocks end in a column of closers (``    }`` above
    ``}``), and the inner one is not a repeat of the outer (on HumanEval-FIM Java and JavaScript
    such closers were dropped as duplicates of the suffix)."""
    code = line.strip()
    return line.rstrip() if code and not code.strip(_CLOSER_LINE_CHARS) else code


def _drop_repeated_indent(text: str, before: str, prefix: str) -> str:
    """The model sometimes writes the indentation the user already typed (seen at the end of a
    file): strip it when that would put the line deeper than the block the user is in."""
    if not before or before.strip() or not text.startswith(before):
        return text
    previous = _previous_nonblank(prefix)
    if previous is None or _indent(previous) >= len(before):
        return text  # the user has not indented past the line above: the model's indent counts
    return text[len(before) :]


def clean_completion(
    text: str, *, prefix: str, suffix: str, mode: CompletionMode, max_lines: int = 8
) -> str:
    """Trim raw model output to what should be shown; "" means drop the suggestion."""
    text = _cut_special_tokens(text).replace("\r\n", "\n")
    before, after = _cursor_line(prefix, suffix)
    text = _drop_repeated_indent(text, before, prefix)
    if mode == "single":
        parts = text.split("\n")
        first = parts[0]
        if not first.strip() and not before.strip() and not after.strip():
            # On an empty line the model may first end that line and write the code on the
            # next one (seen often at column 0): show that code here, minus the indentation
            # the cursor line already has.
            first = next((p for p in parts[1:] if p.strip()), "")
            first = first[len(before) :] if first.startswith(before) else first.lstrip()
        lines = [first]
    else:
        lines = _trim_block(text.split("\n"), before, prefix, max(1, max_lines))
    lines = [line.rstrip() for line in lines]
    while len(lines) > 1 and not lines[-1]:
        lines.pop()

    if after.strip():
        lines[-1] = _trim_same_line_overlap(lines[-1], before if len(lines) == 1 else "", after)
    else:
        lines = _trim_following_lines(lines, before, suffix)
        while len(lines) > 1 and not lines[-1].strip():
            lines.pop()

    if not lines or not "".join(lines).strip():
        return ""
    if _repeats_line_above(lines, before, prefix):
        return ""
    return "\n".join(line.rstrip() for line in lines)
