"""The name the user is typing at the cursor, for the memory context.

Once a few characters of a name are typed, the workspace's definitions of names starting so
are the most useful context a call can get (memory.retrieval puts them next to the code):
``R = build_re|`` wants ``def build_residual_network(G, capacity)``. Not a name: a keyword
being typed, a name being defined (``def build_re``), a comment, a cursor inside a word.
"""

from __future__ import annotations

import re

__all__ = ["TYPED_MIN_CHARS", "typed_name"]

# A name counts once this much of it is typed (fewer characters start too many names).
TYPED_MIN_CHARS = 3
# Words that start statements, not names of the workspace's own (Python, JS/TS, Go, Rust...).
_KEYWORDS = frozenset(
    [
        "and",
        "as",
        "assert",
        "async",
        "await",
        "break",
        "case",
        "catch",
        "class",
        "const",
        "continue",
        "def",
        "default",
        "del",
        "delete",
        "do",
        "elif",
        "else",
        "enum",
        "except",
        "export",
        "extends",
        "false",
        "finally",
        "fn",
        "for",
        "from",
        "func",
        "function",
        "global",
        "go",
        "if",
        "impl",
        "import",
        "in",
        "interface",
        "let",
        "lambda",
        "loop",
        "match",
        "mod",
        "mut",
        "new",
        "nil",
        "none",
        "nonlocal",
        "not",
        "null",
        "or",
        "package",
        "pass",
        "pub",
        "raise",
        "return",
        "self",
        "static",
        "struct",
        "super",
        "switch",
        "this",
        "throw",
        "true",
        "try",
        "type",
        "typeof",
        "use",
        "var",
        "void",
        "while",
        "with",
        "yield",
    ]
)
_TYPED = re.compile(r"(?<![\w$])[A-Za-z_$][\w$]*$")
_DEFINING = re.compile(r"^\s*(?:async\s+)?(?:def|class|function|func|fn|struct|enum|interface)\s")


def typed_name(prefix: str, suffix: str) -> str:
    """The name the user is typing: the identifier the cursor ends, when it is at least
    TYPED_MIN_CHARS long and not (the start of) a keyword, the cursor is not inside a word,
    and the line is neither a comment nor a definition (a new name has nothing to find);
    else ""."""
    if suffix and (suffix[0].isalnum() or suffix[0] in "_$"):
        return ""
    line = prefix[prefix.rfind("\n") + 1 :]
    match = _TYPED.search(line)
    word = match.group() if match else ""
    # A keyword being typed (``ret`` of ``return``) is not a name either.
    if len(word) < TYPED_MIN_CHARS or any(k.startswith(word) for k in _KEYWORDS):
        return ""
    if _DEFINING.match(line) or line.lstrip().startswith(("#", "//", "/*", "*")):
        return ""
    return word
