"""Where the cursor goes when the user presses Enter at the end of a line: the editor's own
indentation, guessed. A line suggestion mostly ends its line, and at the end of a complete line
the model has nothing to add (single-line mode), so the suggestion worth computing ahead is the
one for the next line (agents.generator.speculate)."""

from __future__ import annotations

import itertools

__all__ = ["next_line_start"]

# Languages whose block openers end a line with ":" (else "{", "(" or "[" open one).
_COLON_BLOCKS = frozenset({"python"})
_OPENERS = ("{", "(", "[")


def next_line_start(prefix: str, suffix: str, language_id: str) -> str | None:
    """The text Enter inserts at the end of ``prefix``'s last line ("\\n" and the indentation
    editors put there), or None when the cursor is not at the end of a line with code."""
    rest_of_line = suffix.split("\n", 1)[0]
    line = prefix.rsplit("\n", 1)[-1]
    if rest_of_line.strip() or not line.strip():
        return None
    indent = line[: len(line) - len(line.lstrip(" \t"))]
    code = line.rstrip()
    opens = code.endswith(":") if language_id in _COLON_BLOCKS else code.endswith(_OPENERS)
    if language_id in _COLON_BLOCKS and code.endswith(_OPENERS):
        opens = True  # an open bracket continues the line one level in, as editors indent it
    return "\n" + indent + (_unit(prefix, indent) if opens else "")


def _unit(prefix: str, indent: str) -> str:
    """One level of indentation as the file writes it: a tab, or its smallest space step."""
    if indent.startswith("\t"):
        return "\t"
    steps = set()
    for line in prefix.split("\n")[-200:]:
        spaces = len(line) - len(line.lstrip(" "))
        if spaces > 0 and line.strip():
            steps.add(spaces)
    if not steps:
        return "    "
    ordered = sorted(steps)
    smallest = min([ordered[0], *(b - a for a, b in itertools.pairwise(ordered))])
    return " " * (smallest if 2 <= smallest <= 8 else 4)
