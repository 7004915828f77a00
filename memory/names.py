"""Names that chunks define, and whether any stored chunk could serve what a cursor needs.

The completion prompt keeps another file's chunk only when the code at the cursor asks for it
by name (agents/completion/relevance.py). The memory search for a cursor embeds its query
(50-140 ms on 2 cores, before the prompt can start) and, in code that needs nothing from other
files, every hit is then dropped. ``DefinedNames`` lets the owner of the memory answer first,
without embedding, whether any chunk at all could pass that filter: one defining a name the
cursor needs, one defining a name starting with what is typed, one defining a name that the
words near the cursor describe, or (from the lexical index's terms) one using a name the file
imports from the workspace or a package. When none could, the search is skipped.

The rules here are the filter's own (the filter imports them), so the answer is exact for the
chunks as stored: a chunk the filter would keep is never missed, and the search runs whenever
one exists (whether it then ranks among the hits is the search's business).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = [
    "ASSIGNMENT",
    "DEFINITION",
    "DESCRIBED_MIN_WORDS",
    "DefinedNames",
    "SearchNeeds",
    "definitions_in",
    "described_by",
    "name_words",
    "split_names",
]

# Definitions (any indentation: a method is what ``obj.method`` needs).
DEFINITION = re.compile(
    r"^[ \t]*(?:export[ \t]+)?(?:default[ \t]+)?(?:pub(?:\([\w ]*\))?[ \t]+)?(?:async[ \t]+)?"
    r"(?:def|class|function\*?|func|fn|struct|enum|interface|trait|type|const|let|var)"
    r"[ \t]+(?:\([^)]*\)[ \t]*)?([A-Za-z_$][\w$]*)",
    re.M,
)
# Assignments at the start of a line: ``x = ...``, ``x: int = ...``, ``a, b = ...`` (Python).
ASSIGNMENT = re.compile(
    r"^[ \t]*([A-Za-z_][\w]*(?:[ \t]*,[ \t]*[A-Za-z_][\w]*)*)[ \t]*(?::[^=\n]*)?=(?!=)", re.M
)

# A defined name counts as described by the words near the cursor when at least this many of
# its words (of WORD_MIN_CHARS or more) are among them, and at least half of its words.
DESCRIBED_MIN_WORDS = 2
WORD_MIN_CHARS = 3
# ``any_described`` gives up (answers yes) past this many (word, name) pairs: the words near a
# cursor in a large workspace (110k distinct names: 106 words, ~100k pairs) cost 13-30 ms to
# rule out, for every keystroke; this bounds it to a few milliseconds.
MAX_DESCRIBED_VISITS = 20_000
_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")


def split_names(group: str) -> list[str]:
    """``a, b`` (an assignment's or a loop's targets) -> [a, b]."""
    return [w for w in (part.strip().split(" ")[0] for part in group.split(",")) if w]


def definitions_in(text: str) -> frozenset[str]:
    """Names a chunk defines: its definitions at any depth, and assignments at its top level
    (module constants)."""
    names = set(DEFINITION.findall(text))
    for match in ASSIGNMENT.finditer(text):
        if not match.group(0)[:1].isspace():
            names.update(split_names(match.group(1)))
    return frozenset(names)


def name_words(name: str) -> frozenset[str]:
    """The lower-case words of an identifier (snake_case and camelCase parts) long enough to
    mean something."""
    return frozenset(
        w.lower() for w in _WORD.findall(name) if len(w) >= WORD_MIN_CHARS and not w.isdigit()
    )


def described_by(name: str, words: frozenset[str]) -> bool:
    """Whether ``words`` (near the cursor) hold most of ``name``'s words, and at least two
    (``apply_loyalty_discount`` for "after the loyalty discount")."""
    own = name_words(name)
    common = len(own & words)
    return common >= DESCRIBED_MIN_WORDS and 2 * common >= len(own)


@dataclass(frozen=True)
class SearchNeeds:
    """What the code at a cursor could use from other files (relevance.CursorNames.needs):
    ``names`` a chunk would have to define (wanted names and attributes), ``typed`` the start
    of a name being typed ("" for none), ``words`` the words near the cursor, ``uses`` names a
    chunk could show in use (imported from the workspace or a package)."""

    names: frozenset[str]
    typed: str
    words: frozenset[str]
    uses: frozenset[str]


class DefinedNames:
    """Which stored chunks (by number) define each name, kept as chunks come and go; not
    thread-safe (the lexical index holds its lock around every call)."""

    def __init__(self) -> None:
        self._docs: dict[str, list[int]] = {}  # name -> chunks defining it
        self._by_word: dict[str, set[str]] = {}  # word -> names having it
        self._word_count: dict[str, int] = {}  # name -> how many words it has
        self._sorted: list[str] | None = None  # for prefixes; None: stale

    def add(self, doc: int, names: Iterable[str]) -> None:
        for name in names:
            docs = self._docs.get(name)
            if docs is None:
                self._docs[name] = [doc]
                self._sorted = None
                words = name_words(name)
                self._word_count[name] = len(words)
                for word in words:
                    self._by_word.setdefault(word, set()).add(name)
            else:
                docs.append(doc)

    def remove(self, doc: int, names: Iterable[str]) -> None:
        for name in names:
            docs = self._docs.get(name)
            if docs is None:
                continue
            try:
                docs.remove(doc)  # one scan (a name like __init__ has thousands of chunks)
            except ValueError:
                continue
            if not docs:
                del self._docs[name]
                del self._word_count[name]
                self._sorted = None
                for word in name_words(name):
                    having = self._by_word.get(word)
                    if having is not None:
                        having.discard(name)
                        if not having:
                            del self._by_word[word]

    def __len__(self) -> int:
        return len(self._docs)

    def any_defines(self, names: Iterable[str], counts: Callable[[int], bool]) -> bool:
        """Whether a chunk that ``counts`` defines one of ``names``."""
        return any(any(map(counts, self._docs.get(name, ()))) for name in names)

    def any_starting_with(self, stem: str, counts: Callable[[int], bool]) -> bool:
        """Whether a chunk that ``counts`` defines a name starting with ``stem`` (not ``stem``
        itself)."""
        if not stem:
            return False
        if self._sorted is None:
            self._sorted = sorted(self._docs)
        names = self._sorted
        at = bisect.bisect_right(names, stem)
        while at < len(names) and names[at].startswith(stem):
            if any(map(counts, self._docs[names[at]])):
                return True
            at += 1
        return False

    def any_described(self, words: frozenset[str], counts: Callable[[int], bool]) -> bool:
        """Whether a chunk that ``counts`` defines a name ``words`` describe (``described_by``:
        the words a name shares with ``words`` are counted here, word by word); also yes when
        ruling it out would take more than MAX_DESCRIBED_VISITS steps."""
        shared: dict[str, int] = {}
        visits = 0
        for word in words:
            having = self._by_word.get(word, ())
            visits += len(having)
            if visits > MAX_DESCRIBED_VISITS:
                return True  # too costly to rule out for every keystroke: let the search run
            for name in having:
                n = shared[name] = shared.get(name, 0) + 1
                if (
                    n >= DESCRIBED_MIN_WORDS
                    and 2 * n >= self._word_count[name]
                    and any(map(counts, self._docs[name]))
                ):
                    return True
        return False
