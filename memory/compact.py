"""Chunks made compact for the completion prompt: long doc comments cut to their first line.

The context budget is small (about 1,500 characters by default) and a chunk gets a third of it.
A definition's chunk is cut to its head, and in documented code the head is mostly docstring:
on networkx, the signature and a few lines of prose were all a chunk could show. What a call
needs is the signature and the one-line summary; the body that follows (how the helper is used,
what it returns) is worth more than the docstring's parameter list.

Only what is clearly documentation is shortened: a Python docstring (a triple-quoted string
right after a ``def``/``class`` header or at the chunk's top) and a ``/** ... */`` block. Line
structure beyond that stays as it was.
"""

from __future__ import annotations

import re

__all__ = ["compact_chunk"]

_DOCSTRING_OPEN = re.compile(r"^(\s*)([rRuU]?)(\"\"\"|''')(.*)$")
_BLOCK_DOC_OPEN = re.compile(r"^(\s*)/\*\*(.*)$")


def compact_chunk(text: str, language: str) -> str:
    """``text`` with each multi-line docstring or ``/** */`` comment reduced to one line."""
    if language == "python":
        return _compact_python(text)
    return _compact_block_docs(text)


def _compact_python(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    at_top = True  # the chunk's first statement may be a module or class docstring
    n = 0
    while n < len(lines):
        line = lines[n]
        match = _DOCSTRING_OPEN.match(line)
        follows_header = at_top or (bool(out) and _last_code(out).endswith(":"))
        if match and follows_header:
            indent, prefix, quote, rest = match.groups()
            if quote not in rest:  # a docstring over several lines: find its end
                end = n + 1
                while end < len(lines) and quote not in lines[end]:
                    end += 1
                if end < len(lines):
                    summary = rest.strip() or _first_text(lines[n + 1 : end])
                    out.append(f"{indent}{prefix}{quote}{summary}{quote}")
                    n = end + 1
                    at_top = False
                    continue
        out.append(line)
        if line.strip():
            at_top = False
        n += 1
    return "\n".join(out)


def _compact_block_docs(text: str) -> str:
    lines = text.split("\n")
    out: list[str] = []
    n = 0
    while n < len(lines):
        match = _BLOCK_DOC_OPEN.match(lines[n])
        if match and "*/" not in match.group(2):
            end = n + 1
            while end < len(lines) and "*/" not in lines[end]:
                end += 1
            if end < len(lines):
                body = [match.group(2), *(line.strip().lstrip("*") for line in lines[n + 1 : end])]
                summary = _first_text(body)
                out.append(f"{match.group(1)}/** {summary} */")
                n = end + 1
                continue
        out.append(lines[n])
        n += 1
    return "\n".join(out)


def _last_code(lines: list[str]) -> str:
    """The last non-blank line, stripped (comments included: a header ends in ':' anyway)."""
    for line in reversed(lines):
        if line.strip():
            return line.rstrip()
    return ""


def _first_text(lines: list[str]) -> str:
    for line in lines:
        if line.strip():
            return line.strip()
    return ""
