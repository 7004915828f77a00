"""The LRU completion cache and typed-through reuse."""

from __future__ import annotations

import threading

import pytest

from memlsp.agents.completion.completion_cache import (
    PREFIX_TAIL_CHARS,
    SUFFIX_HEAD_CHARS,
    TYPED_LOOKBACK_CHARS,
    CompletionCache,
)


def test_get_returns_what_put_stored() -> None:
    cache = CompletionCache()
    cache.put("def f():\n    ", "\n", "return 1")
    assert cache.get("def f():\n    ", "\n") == "return 1"
    assert cache.get("def f():\n    ", "") is None
    assert cache.stats == {"hits": 1, "typed_through_hits": 0, "misses": 1}


def test_empty_completion_is_cached_as_nothing_to_suggest() -> None:
    cache = CompletionCache()
    cache.put("x = ", "", "")
    assert cache.get("x = ", "") == ""
    assert len(cache) == 1


def test_lru_evicts_least_recently_used() -> None:
    cache = CompletionCache(capacity=2)
    cache.put("a", "", "1")
    cache.put("b", "", "2")
    assert cache.get("a", "") == "1"  # "a" is now the most recent
    cache.put("c", "", "3")
    assert cache.get("b", "") is None
    assert cache.get("a", "") == "1"
    assert cache.get("c", "") == "3"
    assert len(cache) == 2


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        CompletionCache(capacity=0)


def test_key_uses_only_text_near_the_cursor() -> None:
    cache = CompletionCache()
    near_prefix = "p" * PREFIX_TAIL_CHARS
    near_suffix = "s" * SUFFIX_HEAD_CHARS
    cache.put("OLD" + near_prefix, near_suffix + "OLD", "hit")
    assert cache.get("NEW" + near_prefix, near_suffix + "NEW") == "hit"
    # One character changed inside the window is another key.
    assert cache.get("q" + near_prefix[1:], near_suffix) is None


def test_typed_through_returns_the_rest() -> None:
    cache = CompletionCache()
    cache.put("x = ", "\n", "compute(a, b)")
    assert cache.typed_through("x = comp", "\n") == "ute(a, b)"
    # The remainder is stored for the new position, so a plain get now hits.
    assert cache.get("x = comp", "\n") == "ute(a, b)"
    assert cache.stats["typed_through_hits"] == 1


def test_typed_through_needs_matching_text_and_suffix() -> None:
    cache = CompletionCache()
    cache.put("x = ", "\n", "compute(a, b)")
    assert cache.typed_through("x = cop", "\n") is None  # typed something else
    assert cache.typed_through("x = comp", ")\n") is None  # the suffix changed
    assert cache.stats["typed_through_hits"] == 0


def test_typed_through_needs_something_left() -> None:
    cache = CompletionCache()
    cache.put("x = ", "", "abc")
    assert cache.typed_through("x = abc", "") is None
    assert cache.typed_through("x = ab", "") == "c"


def test_typed_through_prefers_the_nearest_entry() -> None:
    cache = CompletionCache()
    cache.put("x = ", "", "foo_bar")
    cache.put("x = f", "", "oo_baz")  # a newer suggestion after the first keystroke
    assert cache.typed_through("x = foo", "") == "_baz"


def test_typed_through_skips_empty_entries() -> None:
    cache = CompletionCache()
    cache.put("x = ", "", "foo()")
    cache.put("x = f", "", "")  # the model had nothing at this point
    assert cache.typed_through("x = fo", "") == "o()"


def test_typed_through_does_not_cross_a_newline() -> None:
    cache = CompletionCache()
    cache.put("a = 1", "", "\nb = 2")
    assert cache.typed_through("a = 1\n", "") is None
    assert cache.typed_through("a = 1\nb", "") is None


def test_typed_through_looks_back_at_most_128_chars() -> None:
    cache = CompletionCache()
    completion = "y" * 300
    cache.put("x = ", "", completion)
    typed = "y" * TYPED_LOOKBACK_CHARS
    assert cache.typed_through("x = " + typed, "") == "y" * (300 - TYPED_LOOKBACK_CHARS)
    fresh = CompletionCache()
    fresh.put("x = ", "", completion)
    assert fresh.typed_through("x = " + typed + "y", "") is None


def test_typed_through_with_long_prefix() -> None:
    cache = CompletionCache()
    head = "#" * 10_000 + "\n"
    cache.put(head + "x = ", "", "value + 1")
    assert cache.typed_through(head + "x = val", "") == "ue + 1"


def test_lookup_counts_one_outcome_per_call() -> None:
    cache = CompletionCache()
    cache.put("x = ", "", "abc")
    assert cache.lookup("x = ", "") == "abc"
    assert cache.lookup("x = a", "") == "bc"
    assert cache.lookup("y = ", "") is None
    assert cache.stats == {"hits": 1, "typed_through_hits": 1, "misses": 1}


def test_clear_drops_entries_keeps_stats() -> None:
    cache = CompletionCache()
    cache.put("a", "", "1")
    assert cache.get("a", "") == "1"
    cache.clear()
    assert len(cache) == 0
    assert cache.get("a", "") is None
    assert cache.stats == {"hits": 1, "typed_through_hits": 0, "misses": 1}


def test_concurrent_use_keeps_capacity() -> None:
    cache = CompletionCache(capacity=50)

    def work(n: int) -> None:
        for i in range(300):
            cache.put(f"{n}-{i}", "", str(i))
            cache.get(f"{n}-{i // 2}", "")
            cache.typed_through(f"{n}-{i}x", "")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) == 50
    stats = cache.stats
    assert stats["hits"] + stats["misses"] == 8 * 300
