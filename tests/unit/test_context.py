"""The recent-context ring and the composite provider."""

from __future__ import annotations

import threading

import pytest

from memlsp.agents.completion.context import CompositeContextProvider, RecentContextRing
from memlsp.base.context import ContextChunk, ContextProvider, ContextRequest, line_similarity


def numbered(tag: str, n: int) -> str:
    return "\n".join(f"{tag}_{i} = {i}" for i in range(n))


def request(path: str = "/cur.py", prefix: str = "x = ", suffix: str = "") -> ContextRequest:
    return ContextRequest(path=path, prefix=prefix, suffix=suffix, language_id="python")


def test_line_similarity() -> None:
    assert line_similarity("a\nb\nc", "a\nb\nc") == 1.0
    assert line_similarity("a\nb", "b\nc") == pytest.approx(1 / 3)
    assert line_similarity("  a  \n\n", "a") == 1.0
    assert line_similarity("", "a") == 0.0


def test_note_open_keeps_first_64_lines() -> None:
    ring = RecentContextRing()
    ring.note_open("/a.py", numbered("a", 100))
    [chunk] = ring.snapshot()
    assert chunk == ContextChunk("/a.py", numbered("a", 64), 0, "open")


def test_note_edit_centres_window_and_clamps_at_the_end() -> None:
    ring = RecentContextRing()
    text = numbered("a", 200)
    ring.note_edit("/a.py", text, 100)
    ring.note_edit("/b.py", numbered("b", 200), 195)
    a, b = ring.snapshot()
    assert (a.start_line, a.source) == (68, "edit")
    assert a.text.split("\n")[0] == "a_68 = 68"
    assert len(a.text.split("\n")) == 64
    assert b.start_line == 136
    assert b.text.split("\n")[-1] == "b_199 = 199"


def test_blank_documents_add_nothing() -> None:
    ring = RecentContextRing()
    ring.note_open("/a.py", "\n   \n")
    assert len(ring) == 0


def test_ring_keeps_at_most_max_chunks_oldest_evicted() -> None:
    ring = RecentContextRing(max_chunks=3)
    for name in "abcd":
        ring.note_open(f"/{name}.py", numbered(name, 5))
    assert [c.path for c in ring.snapshot()] == ["/b.py", "/c.py", "/d.py"]


def test_similar_chunk_replaces_older_and_goes_last() -> None:
    ring = RecentContextRing()
    base = numbered("v", 30)
    ring.note_open("/a.py", base)
    ring.note_open("/b.py", numbered("b", 10))
    ring.note_open("/copy.py", base + "\nextra = 1")  # 30/31 > 0.9 similar to /a.py
    assert [c.path for c in ring.snapshot()] == ["/b.py", "/copy.py"]


def test_dissimilar_chunks_are_both_kept() -> None:
    ring = RecentContextRing()
    ring.note_open("/a.py", numbered("v", 10))
    ring.note_open("/b.py", numbered("v", 5) + "\n" + numbered("w", 5))
    assert len(ring) == 2


def test_edit_replaces_overlapping_chunk_of_same_file() -> None:
    ring = RecentContextRing()
    text = numbered("a", 300)
    ring.note_open("/a.py", text)
    ring.note_open("/b.py", numbered("b", 10))
    ring.note_edit("/a.py", text, 50)  # lines 18..81 overlap the open chunk 0..63
    ring.note_edit("/a.py", text, 250)  # lines 218..281: a second, separate place
    chunks = ring.snapshot()
    assert [(c.path, c.start_line) for c in chunks] == [("/b.py", 0), ("/a.py", 18), ("/a.py", 218)]


def test_same_chunk_again_keeps_order() -> None:
    ring = RecentContextRing()
    ring.note_open("/a.py", numbered("a", 10))
    ring.note_open("/b.py", numbered("b", 10))
    ring.note_open("/a.py", numbered("a", 10))
    assert [c.path for c in ring.snapshot()] == ["/a.py", "/b.py"]


def test_note_close_keeps_chunks() -> None:
    ring = RecentContextRing()
    ring.note_open("/a.py", numbered("a", 10))
    ring.note_close("/a.py")
    assert [c.path for c in ring.context_for(request(), 10_000)] == ["/a.py"]


def test_context_skips_current_file_and_keeps_order() -> None:
    ring = RecentContextRing()
    ring.note_open("/a.py", numbered("a", 10))
    ring.note_open("/cur.py", numbered("c", 10))
    ring.note_open("/b.py", numbered("b", 10))
    chunks = ring.context_for(request("/cur.py"), 10_000)
    assert [c.path for c in chunks] == ["/a.py", "/b.py"]
    # Asking again gives the same list in the same order (stable prompt start).
    assert ring.context_for(request("/cur.py"), 10_000) == chunks


def test_context_drops_chunks_similar_to_the_cursor_area() -> None:
    ring = RecentContextRing()
    ring.note_open("/dup.py", numbered("a", 20))
    ring.note_open("/other.py", numbered("z", 20))
    around = numbered("a", 20).split("\n")
    req = request(prefix="\n".join(around[:12]) + "\n", suffix="\n".join(around[12:]))
    assert [c.path for c in ring.context_for(req, 10_000)] == ["/other.py"]


def test_context_similarity_uses_only_32_lines_around_cursor() -> None:
    ring = RecentContextRing()
    ring.note_open("/dup.py", numbered("a", 20))
    # The copy is more than 32 lines above the cursor, so it does not count.
    prefix = numbered("a", 20) + "\n" + numbered("q", 40) + "\n"
    assert [c.path for c in ring.context_for(request(prefix=prefix), 10_000)] == ["/dup.py"]


def test_budget_drops_oldest_first() -> None:
    ring = RecentContextRing()
    for name in "abc":
        ring.note_open(f"/{name}.py", numbered(name, 10))
    size = len(numbered("a", 10))
    chunks = ring.context_for(request(), 2 * size + 5)
    assert [c.path for c in chunks] == ["/b.py", "/c.py"]
    assert ring.context_for(request(), size - 1) == []
    assert ring.context_for(request(), 0) == []


class _Fixed:
    def __init__(self, chunks: list[ContextChunk]) -> None:
        self.chunks = chunks
        self.budgets: list[int] = []

    def context_for(self, request: ContextRequest, budget_chars: int) -> list[ContextChunk]:
        self.budgets.append(budget_chars)
        return self.chunks


class _Broken:
    def context_for(self, request: ContextRequest, budget_chars: int) -> list[ContextChunk]:
        raise RuntimeError("backend down")


def test_composite_concatenates_within_budget() -> None:
    first = _Fixed([ContextChunk("/m.py", "m" * 40, 0, "memory")])
    second = _Fixed(
        [ContextChunk("/a.py", "a" * 30, 0, "open"), ContextChunk("/b.py", "b" * 30, 0, "open")]
    )
    providers: list[ContextProvider] = [first, second]
    composite = CompositeContextProvider(providers)
    chunks = composite.context_for(request(), 90)
    assert [c.path for c in chunks] == ["/m.py", "/a.py"]  # "/b.py" would overspend
    assert first.budgets == [90]
    assert second.budgets == [50]


def test_composite_skips_failing_provider_and_duplicates() -> None:
    chunk = ContextChunk("/a.py", "same text", 0, "open")
    composite = CompositeContextProvider([_Broken(), _Fixed([chunk]), _Fixed([chunk])])
    assert composite.context_for(request(), 100) == [chunk]


def test_ring_is_a_context_provider_and_thread_safe() -> None:
    ring = RecentContextRing(max_chunks=16)
    provider: ContextProvider = ring

    def work(n: int) -> None:
        for i in range(100):
            ring.note_edit(f"/{n}.py", numbered(f"f{n}", 300), (i * 37) % 300)
            provider.context_for(request(), 5_000)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 1 <= len(ring) <= 16
