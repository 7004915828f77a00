"""Hybrid retrieval over the workspace memory, and the context provider built on it.

``HybridSearch`` fuses the store's vector ranking with the BM25 ranking of ``LexicalIndex`` by
reciprocal rank fusion (k = 60, as Tabby does): ranks, not scores, so two scales that cannot be
compared (cosine, BM25) need no calibration; BM25's ranking is weighted up for code (below).

``MemoryContextProvider`` turns the code before the cursor into a query and the hits into prompt
context for the completion model, under two constraints of inline completion: it must not make a
completion wait (a time budget, a cache per cursor region, at most one search in flight), and it
must keep the prompt's start stable between keystrokes (chunks in the order first shown), so the
model reuses its KV cache.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TypeVar

from memlsp.base.context import ContextChunk, ContextRequest, last_lines, repeats_code_at_cursor
from memlsp.memory.chunker import identifiers
from memlsp.memory.compact import compact_chunk
from memlsp.memory.lexical import PREFIX_MARK, LexicalIndex, symbol_leaf
from memlsp.memory.names import SearchNeeds
from memlsp.memory.records import ChunkRecord, Hit, StoreError
from memlsp.memory.store import MemoryStore
from memlsp.memory.typed_name import typed_name

__all__ = [
    "KEEP_MAX_S",
    "LEXICAL_WEIGHT",
    "RRF_K",
    "HybridSearch",
    "MemoryContextProvider",
    "SearchFn",
    "head",
    "imported_names",
    "query_text",
    "region_key",
    "rrf",
]

log = logging.getLogger(__name__)

RRF_K = 60
# BM25's ranking counts this much against the vectors' (memory.lexical_weight). On 80 networkx
# files, a function's own chunk came first for its (unique) name with vectors 70 % of the time,
# BM25 99 %, plain RRF 76 %, RRF with BM25 x1.5 88 %, x2 89 %, x3 91 %. 1.5 keeps a chunk
# that both rank well above one that only BM25 ranks first.
LEXICAL_WEIGHT = 1.5
# The query: this many lines before the cursor, the cursor's own line included.
QUERY_LINES = 12
# Cursor regions for the cache are this many lines tall.
REGION_LINES = 8
AROUND_LINES = 32
# A file keeps the chunks it last showed while more than this share of a new search's chunks
# are among them: any chunk dropped or added moves everything after it in the prompt, and the
# model then evaluates the whole prompt again (2-4 s on 2 cores) instead of the last keys typed.
KEEP_OVERLAP = 0.5
# ... and for at most this long, so edits elsewhere reach the prompt.
KEEP_MAX_S = 120.0
# No chunk takes more than this share of the context budget: a long one is cut to its head
# (a definition's chunk starts with its signature, which is what a call needs). Whole chunks
# only, on networkx with the default 1,536-character budget, rendered 1.45 chunks per prompt
# and the searched-for definition 2 % of the time although it was among the hits 28 % of the
# time: half the chunks (long docstrings) were bigger than the whole budget and skipped.
CHUNK_SHARE = 3

# Definitions of imported names put first in the hits (each takes a share of the budget).
MAX_DEFINITIONS = 3
# Definitions of the name being typed (``typed_name``) shown at most; each takes a share of
# the budget, the rest is the search's.
TYPED_MAX_DEFINITIONS = 2
# Imported names looked up per search.
MAX_IMPORTED = 16

# (query, k, exclude_path, names whose definitions go first)
SearchFn = Callable[[str, int, str | None, Sequence[str]], list[Hit]]

# `from pkg.mod import a, b as c` (possibly in parentheses over several lines) and
# `import {a, b as c} from "..."` / `import a from "..."` in JavaScript and TypeScript.
_PY_FROM_IMPORT = re.compile(r"^[ \t]*from[ \t]+[\w.]+[ \t]+import[ \t]+(\([^)]*\)|[^\n]*)", re.M)
_JS_IMPORT = re.compile(r"^[ \t]*import[ \t]+(?:type[ \t]+)?([^;\n]*?)[ \t]+from[ \t]+['\"]", re.M)
_NAME = re.compile(r"[A-Za-z_$][\w$]*")


def rrf(
    rankings: Sequence[Sequence[str]],
    k: int = RRF_K,
    weights: Sequence[float] | None = None,
) -> list[tuple[str, float]]:
    """Reciprocal rank fusion: each key scores the sum of ``weight / (k + rank)`` (rank from 1,
    weight 1 unless given per ranking) over the rankings it appears in; best first, ties in
    order of first appearance."""
    scores: dict[str, float] = {}
    for n, ranking in enumerate(rankings):
        weight = 1.0 if weights is None else weights[n]
        for rank, key in enumerate(ranking, 1):
            scores[key] = scores.get(key, 0.0) + weight / (k + rank)
    first = {key: n for n, key in enumerate(scores)}
    return sorted(scores.items(), key=lambda item: (-item[1], first[item[0]]))


class HybridSearch:
    """Vector and BM25 rankings of ``candidates`` chunks each, fused; returns ``Hit``s whose
    score is the fused (RRF) score, not a cosine. ``lexical_weight`` scales BM25's share."""

    def __init__(
        self,
        store: MemoryStore,
        lexical: LexicalIndex,
        candidates: int = 20,
        lexical_weight: float = LEXICAL_WEIGHT,
    ) -> None:
        self.store = store
        self.lexical = lexical
        self.candidates = candidates
        self.lexical_weight = lexical_weight

    def search(
        self,
        query: str,
        k: int,
        exclude_path: str | None = None,
        definitions_of: Sequence[str] = (),
    ) -> list[Hit]:
        """``definitions_of``: names whose defining chunks come first (at most
        MAX_DEFINITIONS), before the fused ranking; a name ending with lexical.PREFIX_MARK
        stands for the names starting with it. An empty ``query`` gives those chunks alone,
        without embedding anything (cheap enough for every keystroke)."""
        if k <= 0:
            return []
        if not query.strip():
            return self._definitions_only(definitions_of, min(k, MAX_DEFINITIONS), exclude_path)
        n = max(self.candidates, k)
        vector_hits = self.store.search_vectors(query, n, exclude_path)
        lexical_hits = self.lexical.search(query, n, exclude_path)
        fused = rrf(
            [[h.record.id for h in vector_hits], [cid for cid, _ in lexical_hits]],
            weights=(1.0, self.lexical_weight),
        )
        if definitions_of:
            first = self.lexical.definitions(definitions_of, exclude_path, MAX_DEFINITIONS)
            top = (fused[0][1] if fused else 0.0) + 1.0
            fused = [(cid, top) for cid in first] + [p for p in fused if p[0] not in first]
        records = {h.record.id: h.record for h in vector_hits}
        # A chunk only BM25 found is read from the store; one that is gone meanwhile (the
        # lexical index may trail the store by a file) is left out.
        wanted = [cid for cid, _ in fused[: 2 * k] if cid not in records]
        try:
            records.update(self.store.records_by_id(wanted))
        except StoreError as exc:
            log.debug("memory: lexical hits unreadable: %s", exc)
        hits = [Hit(records[cid], score) for cid, score in fused if cid in records]
        return hits[:k]

    def _definitions_only(
        self, names: Sequence[str], k: int, exclude_path: str | None
    ) -> list[Hit]:
        if not names:
            return []
        ids = self.lexical.definitions(names, exclude_path, k)
        try:
            records = self.store.records_by_id(ids)
        except StoreError as exc:
            log.debug("memory: definitions unreadable: %s", exc)
            return []
        return [Hit(records[cid], 1.0) for cid in ids if cid in records]


# -- the context provider -----------------------------------------------------------------------


def imported_names(prefix: str) -> list[str]:
    """Names the code before the cursor imports from other modules, those it does not use yet
    first (a name imported but not used is likely what comes next), then by how recently they
    were used. What a completion calls is very often one of them, and its definition is
    cheaper to find by name than by meaning."""
    names: list[str] = []
    spans: list[tuple[int, int]] = []
    for match in _PY_FROM_IMPORT.finditer(prefix):
        spans.append(match.span())
        for part in match.group(1).strip("()").replace("\n", " ").split(","):
            words = part.split()
            if words and words[0] != "*":
                names.append(words[0])
    for match in _JS_IMPORT.finditer(prefix):
        spans.append(match.span())
        for part in re.split(r"[{},]", match.group(1)):
            words = part.split()
            if words and words[0] == "type":
                words = words[1:]  # `{ type Shape }`
            if words and words[0] != "*":
                names.append(words[0])
    names = [n for n in dict.fromkeys(names) if _NAME.fullmatch(n)]
    if not names:
        return []
    body, last = [], 0
    for start, end in sorted(spans):
        body.append(prefix[last:start])
        last = end
    body.append(prefix[last:])
    code = "".join(body)
    used_at = {n: _last_use(code, n) for n in names}
    ordered = sorted(names, key=lambda n: (used_at[n] >= 0, -used_at[n]))
    return ordered[:MAX_IMPORTED]


def _last_use(code: str, name: str) -> int:
    """Where ``name`` last occurs as a whole identifier in ``code``, -1 if nowhere: searched
    backwards, since the last use is usually near the cursor (a regex over a long file, once per
    imported name, cost a search more than the rest of it)."""
    end = len(code)
    while (at := code.rfind(name, 0, end)) >= 0:
        after = at + len(name)
        if not (at and _identifier_char(code[at - 1])) and not (
            after < len(code) and _identifier_char(code[after])
        ):
            return at
        end = after - 1
    return -1


def _identifier_char(char: str) -> bool:
    return char.isalnum() or char in "_$"


def _split_prefix(prefix: str) -> tuple[list[str], str]:
    """The complete lines before the cursor (at most QUERY_LINES) and the cursor's line."""
    head, _, current = prefix.rpartition("\n")
    lines = head.split("\n")[-QUERY_LINES:] if head else []
    return lines, current


def query_text(prefix: str) -> str:
    """The search query for a cursor: the last lines of code before it, the cursor's line
    included, then their identifiers split into words (``parseHTTPHeader`` -> parse http
    header), which is how a text embedding model reads them best."""
    lines, current = _split_prefix(prefix)
    code = "\n".join([*lines[-(QUERY_LINES - 1) :], current]).strip("\n")
    words = " ".join(dict.fromkeys(identifiers(code)))
    return f"{code}\n{words}" if words else code


def region_key(path: str, prefix: str) -> tuple[str, int, frozenset[str]]:
    """The cache key of a cursor: its file, its block of REGION_LINES lines, and the
    identifiers of the complete lines before it. Typing on one line keeps the key; finishing
    the line (or moving away) changes it."""
    lines, _ = _split_prefix(prefix)
    return path, prefix.count("\n") // REGION_LINES, frozenset(identifiers("\n".join(lines)))


def head(text: str, max_chars: int) -> str:
    """``text`` if it fits in ``max_chars``, else its longest run of whole first lines that
    does ("" when even the first line is too long)."""
    if len(text) <= max_chars:
        return text
    cut = text.rfind("\n", 0, max_chars + 1)
    return text[:cut].rstrip() if cut > 0 else ""


Key = tuple[str, int, frozenset[str]]
_K = TypeVar("_K")
_V = TypeVar("_V")


class MemoryContextProvider:
    """A ``ContextProvider`` (agents.context) over a search function, for the FIM prompt.

    ``budget_s``: the longest ``context_for`` waits for a search; past it, the last result for
    the same file is used (or nothing), and the search finishes in the background for the next
    keystroke. ``relative`` maps a request's path to the workspace-relative path the store uses.
    ``needs_of`` and ``could_match``: a search is skipped (nothing found, nothing cached) when
    no stored chunk could serve what the cursor needs; the query is never embedded then.
    """

    def __init__(
        self,
        search: SearchFn,
        *,
        k: int = 8,
        budget_s: float = 0.15,
        relative: Callable[[str], str] | None = None,
        cache_entries: int = 128,
        ttl_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        needs_of: Callable[[ContextRequest], SearchNeeds | None] | None = None,
        could_match: Callable[[SearchNeeds, str | None], bool] | None = None,
    ) -> None:
        self._search = search
        self._needs_of = needs_of
        self._could_match = could_match
        self._k = k
        self._budget_s = budget_s
        self._relative = relative or (lambda path: path)
        self._cache_entries = cache_entries
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: OrderedDict[Key, tuple[float, list[Hit]]] = OrderedDict()
        self._last_for_path: OrderedDict[str, list[Hit]] = OrderedDict()
        self._first_seen: OrderedDict[tuple[str, int, str], int] = OrderedDict()
        # Per file: the chunks last shown and when they were chosen (see KEEP_OVERLAP).
        self._shown: OrderedDict[str, tuple[float, list[ContextChunk]]] = OrderedDict()
        self._seen_counter = 0
        self._inflight: tuple[Key, Future[list[Hit]]] | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memlsp-context")
        # Counters for status and tests.
        self.searches = 0
        self.cache_hits = 0
        self.over_budget = 0
        self.prefetches = 0
        self.kept = 0  # context_for answers that kept the file's last chunks
        self.typed_lookups = 0  # definitions looked up for a name being typed
        self.skipped = 0  # searches skipped: no stored chunk could serve the cursor
        # Per file: the start of the name being typed and the definitions shown for it.
        self._typed: OrderedDict[str, tuple[str, list[ChunkRecord]]] = OrderedDict()

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def context_for(self, request: ContextRequest, budget_chars: int) -> list[ContextChunk]:
        """The search's chunks for the cursor's region, then the definitions of the name being
        typed (``source`` "definition"), last, next to the code that will use them."""
        if budget_chars <= 0:
            return []
        path = self._relative(request.path)
        share = max(1, budget_chars // CHUNK_SHARE)
        typed = []
        for record in self._typed_definitions(path, request):
            text = _shown_text(record, share)
            if text.strip():
                typed.append(ContextChunk(record.path, text, record.start_line, "definition"))
        left = budget_chars - sum(len(c.text) for c in typed)
        key = region_key(path, request.prefix)
        taken = {(c.path, c.start_line) for c in typed}
        hits = [
            h
            for h in self._hits_for(key, path, request)
            if (h.record.path, h.record.start_line) not in taken
        ]
        around = last_lines(request.prefix, AROUND_LINES)
        fresh = self._render(hits, left, around, share)
        return self._keep_or_replace(path, fresh, around, left) + typed

    def _typed_definitions(self, path: str, request: ContextRequest) -> list[ChunkRecord]:
        """Definitions of the names starting with the one being typed (none when too many
        do). The ones shown for a word stay while what is typed still starts one of them, so
        the prompt does not change on every key of the same word."""
        word = typed_name(request.prefix, request.suffix)
        if not word:
            return []
        with self._lock:
            last = self._typed.get(path)
        if (
            last is not None
            and word.startswith(last[0])
            and any(symbol_leaf(r.symbol).startswith(word) for r in last[1])
        ):
            return last[1]
        try:  # no embedding: a symbol lookup (over IPC for a second window)
            hits = self._search("", TYPED_MAX_DEFINITIONS, path, [word + PREFIX_MARK])
        except Exception:
            log.warning("memory definition lookup failed", exc_info=True)
            hits = []
        records = [h.record for h in hits]
        with self._lock:
            self.typed_lookups += 1
            _remember(self._typed, path, (word, records), self._cache_entries)
        return records

    def prefetch(self, request: ContextRequest) -> None:
        """Start the search for ``request``'s region unless it is cached or another search is
        running: the completion that follows (after the debounce, or the first one in a file
        just opened) then finds it done or under way instead of starting it."""
        path = self._relative(request.path)
        key = region_key(path, request.prefix)
        with self._lock:
            if self._fresh_locked(key, self._clock()) is not None:
                return
            if self._inflight is not None and not self._inflight[1].done():
                return
            if self._submit_locked(key, path, request) is not None:
                self.prefetches += 1

    # -- finding hits within the time budget --------------------------------------------------

    def _hits_for(self, key: Key, path: str, request: ContextRequest) -> list[Hit]:
        started = time.monotonic()
        while True:
            with self._lock:
                cached = self._fresh_locked(key, self._clock())
                if cached is not None:
                    self._cache.move_to_end(key)
                    self.cache_hits += 1
                    return cached
                inflight = self._inflight
                if inflight is not None and not inflight[1].done():
                    # One search at a time (the embedder is single-file): when it is another
                    # region's (a file's opening search, the keystroke before), wait for it
                    # within the budget, then search ours. Returning at once would give the
                    # first request in a file just opened no memory at all.
                    future, ours = inflight[1], inflight[0] == key
                else:
                    submitted = self._submit_locked(key, path, request)
                    if submitted is None:
                        return self._last_for_path.get(path, [])
                    future, ours = submitted, True
            left = max(0.0, self._budget_s - (time.monotonic() - started))
            try:
                hits = future.result(timeout=left)
            except FutureTimeout:
                with self._lock:
                    self.over_budget += 1
                    # The other region's search may have finished meanwhile: its hits for
                    # this file are a better fallback than nothing.
                    return self._last_for_path.get(path, [])
            except Exception:
                log.warning("memory context search failed", exc_info=True)
                if ours:
                    with self._lock:
                        return self._last_for_path.get(path, [])
                continue
            if ours:
                return hits

    def _fresh_locked(self, key: Key, now: float) -> list[Hit] | None:
        """The cached hits of ``key`` if still fresh (caller holds the lock)."""
        cached = self._cache.get(key)
        return cached[1] if cached is not None and now - cached[0] <= self._ttl_s else None

    def _submit_locked(
        self, key: Key, path: str, request: ContextRequest
    ) -> Future[list[Hit]] | None:
        """Start the search of ``key`` as the one in flight (caller holds the lock); None once
        the provider is closed."""
        try:
            future = self._executor.submit(self._run_search, key, path, request)
        except RuntimeError:  # closed
            return None
        self._inflight = (key, future)
        self.searches += 1
        return future

    def _run_search(self, key: Key, path: str, request: ContextRequest) -> list[Hit]:
        if self._nothing_could_serve(path, request):
            with self._lock:
                self.skipped += 1
            return []  # not cached: the next keystroke may need something
        prefix = request.prefix
        hits = self._search(query_text(prefix), self._k, path, imported_names(prefix))
        with self._lock:
            _remember(self._cache, key, (self._clock(), hits), self._cache_entries)
            _remember(self._last_for_path, path, hits, self._cache_entries)
        return hits

    def _nothing_could_serve(self, path: str, request: ContextRequest) -> bool:
        """Whether the memory says no stored chunk could serve ``request`` (never when that
        cannot be asked)."""
        if self._needs_of is None or self._could_match is None:
            return False
        try:
            needs = self._needs_of(request)
            return needs is not None and not self._could_match(needs, path)
        except Exception:  # a bonus: never lose the search over it
            log.warning("memory: could not tell what the cursor needs", exc_info=True)
            return False

    # -- rendering ----------------------------------------------------------------------------

    def _render(
        self, hits: list[Hit], budget_chars: int, around: str, share: int
    ) -> list[ContextChunk]:
        """Chunks, best first, each cut to its head when longer than ``share`` (its part of
        the budget), while they fit; then ordered by when each was first shown (ties: rank), so
        chunks kept from the last prompt keep their place at its start."""
        picked: list[tuple[ChunkRecord, str]] = []
        left = budget_chars
        for hit in hits:
            record = hit.record
            text = _shown_text(record, min(share, left))
            if not text.strip():
                continue
            if repeats_code_at_cursor(record.text, around):
                continue
            picked.append((record, text))
            left -= len(text)
        with self._lock:
            order = {id(r): self._seen(r) for r, _ in picked}
        picked.sort(key=lambda pair: order[id(pair[0])])
        return [ContextChunk(r.path, text, r.start_line, "memory") for r, text in picked]

    def _keep_or_replace(
        self, path: str, fresh: list[ContextChunk], around: str, budget_chars: int
    ) -> list[ContextChunk]:
        """The chunks ``path`` showed last if they still serve (most of ``fresh`` among them,
        none repeating the code at the cursor, within the budget, not too old), else ``fresh``,
        remembered."""
        now = self._clock()
        with self._lock:
            shown = self._shown.get(path)
            if shown is not None and now - shown[0] <= KEEP_MAX_S:
                kept = shown[1]
                ids = {(c.path, c.start_line) for c in kept}
                shared = sum((c.path, c.start_line) in ids for c in fresh)
                size = sum(len(c.text) for c in kept)
                if (
                    kept
                    and (shared > KEEP_OVERLAP * len(fresh) or not fresh)
                    and sum(len(c.text) for c in fresh) / 2 <= size <= budget_chars
                    and not any(repeats_code_at_cursor(c.text, around) for c in kept)
                ):
                    self._shown.move_to_end(path)
                    self.kept += 1
                    return kept
            _remember(self._shown, path, (now, fresh), self._cache_entries)
        return fresh

    def _seen(self, record: ChunkRecord) -> int:
        key = (record.path, record.start_line, record.content_hash)
        seq = self._first_seen.get(key)
        if seq is not None:
            self._first_seen.move_to_end(key)
        else:
            self._seen_counter += 1
            seq = self._seen_counter
            _remember(self._first_seen, key, seq, 4096)
        return seq


def _shown_text(record: ChunkRecord, max_chars: int) -> str:
    """A chunk as the prompt shows it: doc comments cut to their summary, then its head."""
    return head(compact_chunk(record.text, record.language), max_chars)


def _remember(cache: OrderedDict[_K, _V], key: _K, value: _V, capacity: int) -> None:
    """Put ``key`` last in the LRU ``cache`` and drop the oldest entries past ``capacity``."""
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > capacity:
        cache.popitem(last=False)
