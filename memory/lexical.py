"""BM25 over the identifiers of the stored chunks: the lexical half of retrieval.

MiniLM is a text model and code lives on identifiers: a rare name like
``parse_frame_header`` is found here when the vectors miss it. Terms are ``chunker.identifiers``
(whole identifiers plus their snake/camel parts, lower-cased). The name a chunk defines counts
SYMBOL_BOOST extra times, so a definition outranks the code that merely calls it (on networkx, a
function's own chunk came first for its name 53 % of the time without the boost, 87 % with it).

Kept in memory by the owner process, compactly, so a large workspace costs megabytes, not the
hundreds a dict per chunk would: every chunk is a number, each term's postings an ``array('I')``
of (chunk number, term frequency) pairs, scored with numpy. A removed chunk is only marked dead
(its postings stay until there are as many dead chunks as live ones, then everything is
compacted at once); document frequencies are counted over live postings at query time, so
removal needs no per-chunk term lists. What each chunk defines (a few names) is kept per chunk
(``memory/names.py``), so ``could_match`` can tell, before any embedding, that no chunk could
serve a cursor.
"""

from __future__ import annotations

import bisect
import math
import threading
from array import array
from collections import Counter
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from memlsp.memory.chunker import identifiers
from memlsp.memory.names import DefinedNames, SearchNeeds, definitions_in

__all__ = [
    "PREFIX_MARK",
    "PREFIX_MAX_MATCHES",
    "SYMBOL_BOOST",
    "LexicalIndex",
    "symbol_leaf",
    "terms_of",
]

# Query terms beyond this many add little and cost a postings scan each.
MAX_QUERY_TERMS = 64
# Compact once dead chunks outnumber live ones (and are at least this many).
_COMPACT_MIN_DEAD = 1024
# A term frequency fits in a posting slot; a chunk repeating one name more often is capped.
_MAX_TF = 0xFFFF
# Extra occurrences credited to the terms of the name a chunk defines.
SYMBOL_BOOST = 3
# A name ending with this in ``definitions`` is the start of a name (what the user is typing).
PREFIX_MARK = "*"
# ... and finds nothing when more symbols than this start with it (too short to choose).
PREFIX_MAX_MATCHES = 8


def symbol_leaf(symbol: str) -> str:
    """The last part of a chunk's symbol, the name itself (``Graph.add_edge`` -> add_edge)."""
    return symbol.rsplit(".", 1)[-1]


def terms_of(symbol: str, text: str) -> tuple[Counter[str], int]:
    """A chunk's term frequencies and length. The terms of the last part of its symbol
    (``Graph.add_edge`` -> add_edge, add, edge; ``<module>`` -> none) get SYMBOL_BOOST extra
    occurrences that do not count in the length: a boost, not a longer chunk."""
    words = identifiers(text)
    counts = Counter(words)
    leaf = symbol_leaf(symbol)
    if leaf and not leaf.startswith("<"):
        for term in identifiers(leaf):
            counts[term] += SYMBOL_BOOST
    return counts, len(words)


class LexicalIndex:
    """Chunks by id, searchable with Okapi BM25 (``k1``, ``b``) over identifier terms.

    Thread-safe. Chunk ids are unique across files (they include the path).
    """

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b
        self._lock = threading.Lock()
        self._clear()

    def _clear(self) -> None:
        self._postings: dict[str, array[int]] = {}
        self._doc_len: array[int] = array("I")
        self._alive = bytearray()
        self._ids: list[str | None] = []
        self._paths: list[str | None] = []
        self._symbols: list[str | None] = []
        self._defined: list[tuple[str, ...]] = []  # names each chunk defines (for could_match)
        self._defining = DefinedNames()
        self._by_symbol: dict[str, list[str]] = {}  # definition name -> chunk ids
        self._leaves: list[tuple[str, str]] | None = None  # sorted (leaf, symbol); None: stale
        self._doc_of: dict[str, int] = {}
        self._docs_of_path: dict[str, list[int]] = {}
        self._live = 0
        self._total_len = 0

    def clear(self) -> None:
        with self._lock:
            self._clear()

    def __len__(self) -> int:
        with self._lock:
            return self._live

    def paths(self) -> set[str]:
        with self._lock:
            return set(self._docs_of_path)

    def has_path(self, path: str) -> bool:
        with self._lock:
            return path in self._docs_of_path

    # -- writes -------------------------------------------------------------------------------

    def replace_path(self, path: str, chunks: Iterable[tuple[str, str, str]]) -> None:
        """Make ``path``'s chunks exactly ``chunks``: ``(chunk id, symbol, text)`` triples."""
        # Tokenised outside the lock: the regex work is the slow part.
        terms = [
            (cid, symbol, terms_of(symbol, text), definitions_in(text))
            for cid, symbol, text in chunks
        ]
        with self._lock:
            self._remove_path(path)
            for cid, symbol, (counts, length), defined in terms:
                self._add(cid, path, symbol, counts, length, defined)
            self._maybe_compact()

    def add_many(self, chunks: Iterable[tuple[str, str, str, str]]) -> None:
        """Add ``(chunk id, path, symbol, text)`` (a rebuild from the store), replacing ids
        already present."""
        for cid, path, symbol, text in chunks:
            counts, length = terms_of(symbol, text)
            defined = definitions_in(text)
            with self._lock:
                old = self._doc_of.get(cid)
                if old is not None:
                    self._kill(old)
                self._add(cid, path, symbol, counts, length, defined)
        with self._lock:
            self._maybe_compact()

    def remove_path(self, path: str) -> None:
        with self._lock:
            self._remove_path(path)
            self._maybe_compact()

    def _add(
        self,
        cid: str,
        path: str,
        symbol: str,
        counts: Counter[str],
        length: int,
        defined: Iterable[str],
    ) -> None:
        doc = len(self._ids)
        self._ids.append(cid)
        self._paths.append(path)
        self._symbols.append(symbol)
        self._defined.append(tuple(defined))
        self._defining.add(doc, self._defined[doc])
        if symbol:
            if symbol not in self._by_symbol:
                self._leaves = None
            self._by_symbol.setdefault(symbol, []).append(cid)
        self._doc_len.append(min(length, 0xFFFFFFFF))
        self._alive.append(1)
        self._doc_of[cid] = doc
        self._docs_of_path.setdefault(path, []).append(doc)
        self._live += 1
        self._total_len += length
        for term, tf in counts.items():
            postings = self._postings.get(term)
            if postings is None:
                postings = self._postings[term] = array("I")
            postings.append(doc)
            postings.append(min(tf, _MAX_TF))

    def _kill(self, doc: int) -> None:
        if not self._alive[doc]:
            return
        self._alive[doc] = 0
        self._live -= 1
        self._total_len -= self._doc_len[doc]
        cid, path, symbol = self._ids[doc], self._paths[doc], self._symbols[doc]
        self._ids[doc] = self._paths[doc] = self._symbols[doc] = None
        self._defining.remove(doc, self._defined[doc])
        self._defined[doc] = ()
        if cid is not None:
            self._doc_of.pop(cid, None)
            same = self._by_symbol.get(symbol or "")
            if same is not None and cid in same:
                same.remove(cid)
                if not same:
                    del self._by_symbol[symbol or ""]
                    self._leaves = None
        if path is not None:
            docs = self._docs_of_path.get(path)
            if docs is not None:
                docs.remove(doc)
                if not docs:
                    del self._docs_of_path[path]

    def _remove_path(self, path: str) -> None:
        for doc in list(self._docs_of_path.get(path, ())):
            self._kill(doc)

    def _maybe_compact(self) -> None:
        dead = len(self._ids) - self._live
        if dead < _COMPACT_MIN_DEAD or dead < self._live:
            return
        alive = np.frombuffer(self._alive, dtype=np.bool_).copy()
        renumber = np.cumsum(alive, dtype=np.int64) - 1
        postings: dict[str, array[int]] = {}
        for term, old in self._postings.items():
            pairs = np.frombuffer(old, dtype=np.uint32).reshape(-1, 2)
            pairs = pairs[alive[pairs[:, 0]]]
            if len(pairs):
                pairs[:, 0] = renumber[pairs[:, 0]]
                postings[term] = array("I", pairs.astype(np.uint32).tobytes())
        keep = np.flatnonzero(alive)
        doc_len = np.frombuffer(self._doc_len, dtype=np.uint32)[keep]
        self._postings = postings
        self._doc_len = array("I", doc_len.tobytes())
        self._ids = [self._ids[i] for i in keep]
        self._paths = [self._paths[i] for i in keep]
        self._symbols = [self._symbols[i] for i in keep]
        self._defined = [self._defined[i] for i in keep]
        self._defining = DefinedNames()
        for n, names in enumerate(self._defined):
            self._defining.add(n, names)
        self._alive = bytearray(b"\x01" * len(keep))
        self._doc_of = {cid: n for n, cid in enumerate(self._ids) if cid is not None}
        self._docs_of_path = {}
        for n, path in enumerate(self._paths):
            if path is not None:
                self._docs_of_path.setdefault(path, []).append(n)

    # -- search -------------------------------------------------------------------------------

    def definitions(
        self, names: Iterable[str], exclude_path: str | None = None, limit: int = 8
    ) -> list[str]:
        """Ids of the chunks defining ``names`` (their symbol is the name), in the order of
        ``names``; chunks of ``exclude_path`` left out. A name ending with PREFIX_MARK stands
        for the symbols whose last part starts with it (``build_re*`` -> build_residual_network,
        ``Graph.build_report``), shortest first, one chunk each (the one with the signature),
        or none when more than PREFIX_MAX_MATCHES do."""
        found: list[str] = []
        with self._lock:
            for name in names:
                if name.endswith(PREFIX_MARK):
                    ids = self._starting_with(name[: -len(PREFIX_MARK)], exclude_path)
                else:
                    ids = self._by_symbol.get(name, [])
                for cid in ids:
                    doc = self._doc_of.get(cid)
                    if doc is not None and self._paths[doc] != exclude_path and cid not in found:
                        found.append(cid)
                        if len(found) >= limit:
                            return found
        return found

    def _starting_with(self, stem: str, exclude_path: str | None) -> list[str]:
        """First chunks of the symbols whose leaf starts with ``stem`` (caller holds the lock)."""
        if not stem:
            return []
        if self._leaves is None:
            self._leaves = sorted((symbol_leaf(s), s) for s in self._by_symbol)
        leaves = self._leaves
        at = bisect.bisect_left(leaves, (stem, ""))
        firsts: list[tuple[str, str]] = []  # (symbol, its first chunk outside exclude_path)
        while at < len(leaves) and leaves[at][0].startswith(stem):
            symbol = leaves[at][1]
            for cid in self._by_symbol[symbol]:
                if self._paths[self._doc_of[cid]] != exclude_path:
                    firsts.append((symbol, cid))
                    break
            if len(firsts) > PREFIX_MAX_MATCHES:
                return []
            at += 1
        firsts.sort(key=lambda pair: (len(symbol_leaf(pair[0])), pair[0]))
        return [cid for _, cid in firsts]

    def could_match(self, needs: SearchNeeds, exclude_path: str | None = None) -> bool:
        """Whether any chunk outside ``exclude_path`` defines a name ``needs`` asks for (one
        of its names, one starting with its typed stem, one its words describe) or uses one
        of its ``uses`` (as a term: case-insensitive, so at times a chunk that does not)."""
        with self._lock:
            excluded = set(self._docs_of_path.get(exclude_path or "", ()))

            def counts(doc: int) -> bool:
                return doc not in excluded

            return (
                self._defining.any_defines(needs.names, counts)
                or self._defining.any_starting_with(needs.typed, counts)
                or self._defining.any_described(needs.words, counts)
                or any(self._used_outside(name.lower(), excluded) for name in needs.uses)
            )

    def _used_outside(self, term: str, excluded: set[int]) -> bool:
        """Whether a live chunk not in ``excluded`` has ``term`` (caller holds the lock); True
        for a name that is no term (one character, a ``$``): the index cannot tell."""
        if len(term) < 2 or identifiers(term)[:1] != [term]:
            return True
        postings = self._postings.get(term)
        if not postings:
            return False
        docs = np.frombuffer(postings, dtype=np.uint32)[0::2]
        alive = np.frombuffer(self._alive, dtype=np.bool_)
        return any(int(d) not in excluded for d in docs[alive[docs]])

    def defined_names(self) -> int:
        """How many distinct names the chunks define (for status)."""
        with self._lock:
            return len(self._defining)

    def search(
        self, query: str, k: int, exclude_path: str | None = None
    ) -> list[tuple[str, float]]:
        """The ``k`` best ``(chunk id, score)`` for the identifiers in ``query``, best first
        (ties: the chunk added first); chunks of ``exclude_path`` left out."""
        terms = list(dict.fromkeys(identifiers(query)))[:MAX_QUERY_TERMS]
        if k <= 0 or not terms:
            return []
        with self._lock:
            if self._live == 0:
                return []
            # Copies, not views: a view would pin the arrays and block appends.
            alive = np.frombuffer(self._alive, dtype=np.bool_).copy()
            if exclude_path is not None:
                alive[self._docs_of_path.get(exclude_path, [])] = False
            doc_len = np.frombuffer(self._doc_len, dtype=np.uint32).astype(np.float64)
            postings = [
                np.frombuffer(p, dtype=np.uint32).copy()
                for t in terms
                if (p := self._postings.get(t))
            ]
            live, avg_len = self._live, max(self._total_len / self._live, 1.0)
            ids = self._ids
            scores = self._score(postings, alive, doc_len, live, avg_len)
            order = _top(scores, k)
            return [(str(ids[d]), float(scores[d])) for d in order]

    def _score(
        self,
        postings: list[npt.NDArray[np.uint32]],
        alive: npt.NDArray[np.bool_],
        doc_len: npt.NDArray[np.float64],
        live: int,
        avg_len: float,
    ) -> npt.NDArray[np.float64]:
        scores = np.zeros(len(alive), dtype=np.float64)
        norm = self.k1 * (1.0 - self.b + self.b * doc_len / avg_len)
        for flat in postings:
            pairs = flat.reshape(-1, 2)
            pairs = pairs[alive[pairs[:, 0]]]
            df = len(pairs)
            if df == 0:
                continue
            idf = math.log(1.0 + (live - df + 0.5) / (df + 0.5))
            docs = pairs[:, 0]
            tf = pairs[:, 1].astype(np.float64)
            # Each chunk appears once per term's postings: fancy-index += is safe.
            scores[docs] += idf * tf * (self.k1 + 1.0) / (tf + norm[docs])
        return scores


def _top(scores: npt.NDArray[np.float64], k: int) -> list[int]:
    """Indices of the ``k`` highest positive scores, best first, lower index first on ties."""
    positive = np.flatnonzero(scores > 0)
    if len(positive) > k:
        # Everything tied with the k-th best stays in, so ties resolve by index below.
        kth = np.partition(scores[positive], len(positive) - k)[len(positive) - k]
        positive = positive[scores[positive] >= kth]
    # lexsort: the last key is the primary one.
    order = np.lexsort((positive, -scores[positive]))
    return [int(d) for d in positive[order][:k]]
