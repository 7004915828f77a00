"""LRU cache of completions, with typed-through reuse.

Editors ask again on every keystroke. When the user types the first characters of the
suggestion on screen, the rest of that suggestion is still the model's answer for the new
position, so it is returned without running the model (the llama.vim idea).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

__all__ = ["PREFIX_TAIL_CHARS", "SUFFIX_HEAD_CHARS", "TYPED_LOOKBACK_CHARS", "CompletionCache"]

# Only the text near the cursor is part of the key, so very long files cost no more to hash.
PREFIX_TAIL_CHARS = 2000
SUFFIX_HEAD_CHARS = 1000
# How many typed characters `typed_through` looks back over.
TYPED_LOOKBACK_CHARS = 128

_Key = tuple[str, str]


class CompletionCache:
    """Thread-safe LRU map from (prefix tail, suffix head) to a cleaned completion.

    The key is the (prefix tail, suffix head) pair itself: the dict hashes it, and the string
    comparison on a hit rules out a wrong suggestion from a hash collision.
    """

    def __init__(self, capacity: int = 256) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self._capacity = capacity
        self._entries: OrderedDict[_Key, str] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._typed_through_hits = 0
        self._misses = 0

    @property
    def capacity(self) -> int:
        return self._capacity

    @staticmethod
    def _key(prefix: str, suffix: str) -> _Key:
        return prefix[-PREFIX_TAIL_CHARS:], suffix[:SUFFIX_HEAD_CHARS]

    def _store(self, key: _Key, completion: str) -> None:
        self._entries[key] = completion
        self._entries.move_to_end(key)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)

    def _get(self, key: _Key) -> str | None:
        completion = self._entries.get(key)
        if completion is not None:
            self._entries.move_to_end(key)
        return completion

    def _typed_through(self, prefix: str, suffix: str) -> str | None:
        # Slice once: prefix[:-k] of a huge file would copy it 128 times.
        tail = prefix[-(PREFIX_TAIL_CHARS + TYPED_LOOKBACK_CHARS) :]
        head = suffix[:SUFFIX_HEAD_CHARS]
        for k in range(1, min(TYPED_LOOKBACK_CHARS, len(tail)) + 1):
            if tail[-k] == "\n":
                break  # typing through is limited to the cursor line
            earlier = self._entries.get((tail[:-k][-PREFIX_TAIL_CHARS:], head))
            if earlier is not None and len(earlier) > k and earlier.startswith(tail[-k:]):
                rest = earlier[k:]
                self._store((tail[-PREFIX_TAIL_CHARS:], head), rest)
                return rest
        return None

    def get(self, prefix: str, suffix: str) -> str | None:
        """The completion stored for exactly this position ("" = nothing to suggest)."""
        with self._lock:
            completion = self._get(self._key(prefix, suffix))
            if completion is None:
                self._misses += 1
            else:
                self._hits += 1
            return completion

    def contains(self, prefix: str, suffix: str) -> bool:
        """Whether an answer is stored for exactly this position (no counting, no reordering)."""
        with self._lock:
            return self._key(prefix, suffix) in self._entries

    def put(self, prefix: str, suffix: str, completion: str) -> None:
        """Store a cleaned completion; "" records that the model had nothing to suggest."""
        with self._lock:
            self._store(self._key(prefix, suffix), completion)

    def typed_through(self, prefix: str, suffix: str) -> str | None:
        """The rest of an earlier suggestion whose first characters the user has typed.

        Looks for an entry at ``prefix[:-k]`` with the same suffix, for k = 1..128 but not
        across a newline, whose completion starts with ``prefix[-k:]`` and has more left.
        The remainder is stored under the new position too. Counts only typed_through_hits.
        """
        with self._lock:
            rest = self._typed_through(prefix, suffix)
            if rest is not None:
                self._typed_through_hits += 1
            return rest

    def lookup(self, prefix: str, suffix: str) -> str | None:
        """`get`, then `typed_through`; ``misses`` counts only when both fail."""
        with self._lock:
            completion = self._get(self._key(prefix, suffix))
            if completion is not None:
                self._hits += 1
                return completion
            rest = self._typed_through(prefix, suffix)
            if rest is not None:
                self._typed_through_hits += 1
            else:
                self._misses += 1
            return rest

    def clear(self) -> None:
        """Drop every entry (e.g. after a model change); the counters are kept."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @property
    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "hits": self._hits,
                "typed_through_hits": self._typed_through_hits,
                "misses": self._misses,
            }
