"""Retrieval: rank fusion and BM25 as units; hybrid search and the context provider on a real
store with the real embedding model."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from memlsp.agents.completion.relevance import CursorNames
from memlsp.base.context import ContextRequest
from memlsp.config import MemoryConfig
from memlsp.memory import lexical as lexical_module
from memlsp.memory.embedder import Embedder
from memlsp.memory.lexical import LexicalIndex
from memlsp.memory.records import ChunkRecord
from memlsp.memory.retrieval import (
    KEEP_MAX_S,
    HybridSearch,
    MemoryContextProvider,
    head,
    imported_names,
    query_text,
    region_key,
    rrf,
)
from memlsp.memory.store import MemoryStore
from memlsp.memory.typed_name import typed_name

# -- reciprocal rank fusion ----------------------------------------------------------------------


def test_rrf_sums_reciprocal_ranks() -> None:
    fused = dict(rrf([["a", "b", "c"], ["c", "a"]]))
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert fused["b"] == pytest.approx(1 / 62)
    assert [key for key, _ in rrf([["a", "b", "c"], ["c", "a"]])] == ["a", "c", "b"]


def test_rrf_agreement_beats_one_first_place() -> None:
    # x is first in one list only; y is second in both.
    assert rrf([["x", "y"], ["z", "y"]])[0][0] == "y"


def test_rrf_ties_keep_first_appearance_and_k_matters() -> None:
    assert [key for key, _ in rrf([["a", "b"], ["b", "a"]])] == ["a", "b"]
    assert rrf([]) == [] and rrf([[], []]) == []
    assert dict(rrf([["a"]], k=0))["a"] == pytest.approx(1.0)
    # A small k favours the top ranks: the single first place now beats two second places.
    assert rrf([["x", "y"], ["z", "y"], ["x"]], k=0)[0][0] == "x"


def test_rrf_weights_scale_each_ranking() -> None:
    # Vector says v, BM25 says b; each second in the other list: a tie, broken by BM25's weight.
    rankings = [["v", "b"], ["b", "v"]]
    assert rrf(rankings)[0][0] == "v"
    assert rrf(rankings, weights=(1.0, 1.5))[0][0] == "b"
    assert dict(rrf(rankings, weights=(1.0, 2.0)))["b"] == pytest.approx(1 / 62 + 2 / 61)


# -- BM25 ------------------------------------------------------------------------------------------


def test_bm25_ranks_rare_identifiers_first() -> None:
    index = LexicalIndex()
    index.replace_path("a.py", [("a1", "", "def parse_frame_header(buf):\n    return buf[:4]")])
    index.replace_path("b.py", [("b1", "", "def parse_config(text):\n    return parse(text)")])
    index.replace_path("c.py", [("c1", "", "class FrameWriter:\n    def write(self, frame): ...")])
    assert index.search("parse_frame_header(data)", 3)[0][0] == "a1"
    assert [cid for cid, _ in index.search("frame", 3)] == ["c1", "a1"]  # c1 says it twice
    assert index.search("nothing_matches_this", 3) == []
    assert [cid for cid, _ in index.search("parse", 3, exclude_path="a.py")] == ["b1"]
    assert index.search("parse", 0) == []


def test_bm25_a_definition_outranks_its_callers() -> None:
    index = LexicalIndex()
    definition = "def load_graph(path):\n    return read_edges(path)"
    caller = "g = load_graph(a)\nh = load_graph(b)\nk = load_graph(c)"
    index.replace_path("io.py", [("def", "load_graph", definition)])
    index.replace_path("main.py", [("call", "<module>", caller)])
    index.replace_path("graph.py", [("method", "Graph.add_edge", "def add_edge(self, u, v): ...")])
    assert [cid for cid, _ in index.search("x = load_graph(", 2)] == ["def", "call"]
    # Without the name it defines, the caller (three mentions) would come first.
    plain = LexicalIndex()
    plain.replace_path("io.py", [("def", "", definition)])
    plain.replace_path("main.py", [("call", "", caller)])
    assert plain.search("x = load_graph(", 1)[0][0] == "call"
    assert index.search("add_edge", 1)[0][0] == "method"  # the leaf of a dotted symbol


def test_bm25_replace_and_remove() -> None:
    index = LexicalIndex()
    index.replace_path(
        "a.py", [("a1", "", "def fetch_rows(): pass"), ("a2", "", "def helper(): pass")]
    )
    index.replace_path("a.py", [("a3", "", "def store_blob(): pass")])
    assert index.search("fetch_rows helper", 5) == []
    assert [cid for cid, _ in index.search("store_blob", 5)] == ["a3"]
    assert len(index) == 1 and index.paths() == {"a.py"}
    index.remove_path("a.py")
    assert len(index) == 0 and index.search("store_blob", 5) == []


def test_bm25_compaction_changes_nothing_visible(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = {
        f"f{i}.py": f"def handler_{i}(event):\n    return dispatch(event, {i})" for i in range(50)
    }
    reference = LexicalIndex()
    for path, text in texts.items():
        reference.replace_path(path, [(path + "#1", "", text)])
    monkeypatch.setattr(lexical_module, "_COMPACT_MIN_DEAD", 4)
    churned = LexicalIndex()
    for round_ in range(3):  # re-added twice: most chunk numbers die and get compacted away
        for path, text in texts.items():
            churned.replace_path(path, [(path + "#1", "", text)])
        assert len(churned) == 50, round_
    assert len(churned._ids) < 100  # compacted
    for query in ("handler_7", "dispatch event", "handler_42 dispatch"):
        got, expected = churned.search(query, 5), reference.search(query, 5)
        assert [cid for cid, _ in got] == [cid for cid, _ in expected]
        assert [score for _, score in got] == pytest.approx([score for _, score in expected])


def test_bm25_definitions_by_the_start_of_a_name() -> None:
    index = LexicalIndex()
    index.replace_path(
        "flow/utils.py",
        [
            ("u1", "build_residual_network", "def build_residual_network(G, capacity): ..."),
            ("u1b", "build_residual_network", "    # its second window\n    return R"),
            ("u2", "build_flow_dict", "def build_flow_dict(G, R): ..."),
        ],
    )
    index.replace_path("report.py", [("r1", "Report.build_report", "def build_report(self): ...")])
    # Shortest name first, methods by their own name, one chunk (the first) per symbol.
    assert index.definitions(["build_*"]) == ["r1", "u2", "u1"]
    assert index.definitions(["build_re*"]) == ["r1", "u1"]
    assert index.definitions(["build_re*"], exclude_path="report.py") == ["u1"]
    assert index.definitions(["build_re*", "build_flow_dict"], limit=2) == ["r1", "u1"]
    assert index.definitions(["Build*", "zzz*", "*"]) == []
    # Too many names start so: the user has not typed enough to choose.
    index.replace_path("h.py", [(f"h{i}", f"handler_{i}", "def handler(): ...") for i in range(9)])
    assert index.definitions(["handler_*"]) == []
    assert index.definitions(["handler_3*"]) == ["h3"]
    # A removed file's names are gone from the lookup at once.
    index.remove_path("report.py")
    assert index.definitions(["build_re*"]) == ["u1"]


def test_the_name_being_typed() -> None:
    assert typed_name("    R = build_re", "\n") == "build_re"
    assert typed_name("x = nx.dijkstra_p", "") == "dijkstra_p"
    assert typed_name("    R = bu", "\n") == ""  # too short to choose
    assert typed_name("    retu", "\n") == ""  # a keyword being typed
    assert typed_name("    retry_re", "\n") == "retry_re"
    assert typed_name("def build_re", "") == "" and typed_name("class Build", "") == ""
    assert typed_name("    # build_re", "") == ""
    assert typed_name("x = build_re", "sidual(G)") == ""  # inside a word
    assert typed_name("x = (", "") == ""


# -- on a real store -------------------------------------------------------------------------------

CHUNKS: dict[str, tuple[str, str]] = {
    "tls/session.py": (
        "negotiate_session",
        "def negotiate_session(client_hello, psk):\n"
        "    secret = derive_secret(psk, b'derived')\n"
        "    key = hkdf_expand_label(secret, b'key', b'', 16)\n"
        "    iv = hkdf_expand_label(secret, b'iv', b'', 12)\n"
        "    return Session(key=key, iv=iv, cipher=client_hello.cipher)",
    ),
    "ui/labels.py": (
        "expand_label",
        'def expand_label(label, width):\n    """Pad a label to the given width for display."""\n'
        "    return label.ljust(width)",
    ),
    "app/mail.py": (
        "send_welcome_email",
        "def send_welcome_email(user):\n    body = render('welcome.txt', name=user.name)\n"
        "    smtp.sendmail(SENDER, user.email, body)",
    ),
    "app/config.py": (
        "load_settings",
        'def load_settings(path):\n    """Read the YAML configuration file into a dict."""\n'
        "    with open(path) as fh:\n        return yaml.safe_load(fh)",
    ),
    "app/geometry.py": (
        "polygon_area",
        "def polygon_area(points):\n    # shoelace formula\n"
        "    return abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in pairs(points))) / 2",
    ),
    "app/db.py": (
        "connect_database",
        "def connect_database(url):\n    engine = create_engine(url, pool_size=5)\n"
        "    return engine.connect()",
    ),
}


@pytest.fixture(scope="module")
def hybrid(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Iterator[HybridSearch]:
    folder = tmp_path_factory.mktemp("retrieval")
    store = MemoryStore(folder / "ws", MemoryConfig(path=str(folder / "store")), embedder)
    store.open()
    lexical = LexicalIndex()
    for path, (symbol, text) in CHUNKS.items():
        chunk = ChunkRecord.of(path, symbol, "python", 0, text.count("\n"), text)
        store.replace_file(path, [chunk])
        lexical.replace_path(path, [(chunk.id, chunk.symbol, chunk.text)])
    yield HybridSearch(store, lexical)
    store.close()


def symbols(hits: list[Any]) -> list[str]:
    return [h.record.symbol for h in hits]


def test_bm25_finds_an_identifier_the_vectors_miss(hybrid: HybridSearch) -> None:
    query = "hkdf_expand_label"
    # The text model reads "expand label" and picks the UI helper...
    assert symbols(hybrid.store.search_vectors(query, 1)) == ["expand_label"]
    # ...the identifier itself is rare, so BM25 ranks the chunk that calls it first...
    top_id = hybrid.lexical.search(query, 1)[0][0]
    target = next(h.record for h in hybrid.store.search_vectors(query, 6) if h.record.id == top_id)
    assert target.symbol == "negotiate_session"
    # ...and the fused ranking keeps both on top, with the full stored record.
    hits = hybrid.search(query, 2)
    assert set(symbols(hits)) == {"negotiate_session", "expand_label"}
    assert next(h.record for h in hits if h.record.symbol == "negotiate_session") == target
    assert hits[0].score >= hits[1].score


def test_hybrid_search_excludes_a_path_and_finds_by_meaning(hybrid: HybridSearch) -> None:
    assert symbols(hybrid.search("area of a polygon", 1)) == ["polygon_area"]
    assert symbols(hybrid.search("open a connection to the database", 1)) == ["connect_database"]
    hits = hybrid.search("hkdf_expand_label", 6, exclude_path="tls/session.py")
    assert hits and all(h.record.path != "tls/session.py" for h in hits)
    assert hybrid.search("anything", 0) == [] and hybrid.search("   ", 3) == []


# -- the context provider ------------------------------------------------------------------------


def prefix_with(lines: list[str], current: str) -> str:
    return "".join(line + "\n" for line in lines) + current


CODE = [
    "import yaml",
    "from tls import Session",
    "",
    "def rekey(session, transcript):",
    "    secret = session.secret",
]


def request(path: str, prefix: str) -> ContextRequest:
    return ContextRequest(path=path, prefix=prefix, suffix="\n", language_id="python")


def test_query_and_region_key() -> None:
    prefix = prefix_with([f"line_{i} = {i}" for i in range(20)], "    value = comp")
    text = query_text(prefix)
    assert text.startswith("line_9 = 9\n") and "    value = comp\n" in text
    assert {"line", "value", "comp"} <= set(text.split("\n")[-1].split())  # words, split
    key = region_key("a.py", prefix)
    assert key[:2] == ("a.py", 20 // 8)
    assert region_key("a.py", prefix + "ute") == key  # typing on the line
    assert region_key("a.py", prefix + "ute()\n") != key  # the line is complete
    assert region_key("b.py", prefix) != key


def test_context_excludes_the_current_file_and_respects_the_budget(
    hybrid: HybridSearch,
) -> None:
    provider = MemoryContextProvider(hybrid.search, budget_s=30.0)
    prefix = prefix_with(CODE, "    key = hkdf_expand_label(")
    chunks = provider.context_for(request("tls/session.py", prefix), 10_000)
    assert chunks and all(c.path != "tls/session.py" for c in chunks)
    assert all(c.source == "memory" for c in chunks)
    stored = {text for _, text in CHUNKS.values()}
    assert all(c.text in stored for c in chunks)  # short chunks are shown whole
    from_elsewhere = provider.context_for(request("app/other.py", prefix), 10_000)
    assert "tls/session.py" in {c.path for c in from_elsewhere}
    smallest = sorted(len(t) for _, t in CHUNKS.values())
    budget = smallest[0] + smallest[1]
    trimmed = provider.context_for(request("app/other.py", prefix), budget)
    assert trimmed and sum(len(c.text) for c in trimmed) <= budget
    assert provider.context_for(request("app/other.py", prefix), 0) == []
    provider.close()


def test_head_keeps_whole_first_lines() -> None:
    text = "def f(a, b):\n    c = a + b\n    return c"
    assert head(text, 100) == text
    assert head(text, len("def f(a, b):\n    c = a + b")) == "def f(a, b):\n    c = a + b"
    assert head(text, 15) == "def f(a, b):"
    assert head(text, 5) == ""  # not even the signature fits: nothing, never half a line


def test_context_cuts_a_long_chunk_to_its_head_instead_of_dropping_it(
    hybrid: HybridSearch,
) -> None:
    # Long chunks (docstrings) used to be skipped whole when they did not fit: on networkx half
    # the chunks were longer than the whole budget, and the definition a line needed was
    # almost never shown. Now each chunk gets at most a third of the budget, cut to its first
    # lines, so the signature is shown and several chunks fit.
    provider = MemoryContextProvider(hybrid.search, budget_s=30.0)
    session = CHUNKS["tls/session.py"][1]
    budget = 150
    assert len(session) > budget
    prefix = prefix_with(CODE, "    key = hkdf_expand_label(")
    chunks = provider.context_for(request("app/other.py", prefix), budget)
    texts = {c.path: c.text for c in chunks}
    assert texts.get("tls/session.py") == "def negotiate_session(client_hello, psk):"
    assert all(len(c.text) <= budget // 3 for c in chunks)
    stored = [text for _, text in CHUNKS.values()]
    assert all(any(t.startswith(c.text) for t in stored) for c in chunks)  # heads of chunks
    assert sum(len(c.text) for c in chunks) <= budget
    provider.close()


def test_context_is_cached_per_cursor_region(hybrid: HybridSearch, embedder: Embedder) -> None:
    provider = MemoryContextProvider(hybrid.search, budget_s=30.0)
    path = "app/other.py"
    first = provider.context_for(request(path, prefix_with(CODE, "    key = hk")), 4000)
    calls = embedder.embed_calls
    for typed in ("    key = hkdf", "    key = hkdf_expand", "    key = hkdf_expand_label("):
        assert provider.context_for(request(path, prefix_with(CODE, typed)), 4000) == first
    assert embedder.embed_calls == calls  # no search while typing on the line
    assert (provider.searches, provider.cache_hits) == (1, 3)
    provider.context_for(request(path, prefix_with([*CODE, "    key = x"], "    iv = ")), 4000)
    assert provider.searches == 2 and embedder.embed_calls == calls + 1
    provider.close()


def test_context_order_is_stable(hybrid: HybridSearch) -> None:
    provider = MemoryContextProvider(hybrid.search, budget_s=30.0)
    path = "app/other.py"
    first = provider.context_for(request(path, prefix_with(CODE, "    key = hkdf")), 4000)
    again = provider.context_for(request(path, prefix_with(CODE, "    key = hkdf")), 4000)
    assert again == first
    # Another region, another query: chunks shown before keep their relative order, first.
    later = provider.context_for(
        request(path, prefix_with(["def area(shape):"] * 9, "    return polygon_area(")), 4000
    )
    shown = [c.text for c in first]
    kept = [c.text for c in later if c.text in shown]
    assert kept == [t for t in shown if t in kept]
    assert [c.text for c in later][: len(kept)] == kept
    provider.close()


def test_a_file_keeps_its_chunks_while_new_searches_mostly_agree(hybrid: HybridSearch) -> None:
    now = [0.0]
    provider = MemoryContextProvider(hybrid.search, k=3, budget_s=30.0, clock=lambda: now[0])
    path = "app/other.py"
    first = provider.context_for(request(path, prefix_with(CODE, "    key = hkdf_expand")), 4000)
    assert len(first) == 3 and "tls/session.py" in {c.path for c in first}
    # Further down the file, another region and search, the same subject: the prompt's start
    # stays as it was (the model reuses its KV cache) although the ranking may differ.
    moved = prefix_with([*CODE, "    pass"] * 3, "    iv = hkdf_expand_label(secret")
    assert provider.context_for(request(path, moved), 4000) == first
    assert provider.kept == 1 and provider.searches == 2
    # Another subject: the new chunks replace the old.
    db = prefix_with(["import sqlalchemy", "", "def open_db(url):"], "    engine = create_engine(")
    replaced = provider.context_for(request(path, db), 4000)
    assert "app/db.py" in {c.path for c in replaced} and replaced != first
    assert provider.kept == 1
    # Kept, but not forever: edits elsewhere must reach the prompt.
    assert provider.context_for(request(path, db + "url"), 4000) == replaced
    assert provider.kept == 2
    now[0] += KEEP_MAX_S + 1
    provider.context_for(request(path, db + "url, "), 4000)
    assert provider.kept == 2
    # A kept chunk that repeats the code now at the cursor goes (as a new chunk would).
    session = CHUNKS["tls/session.py"][1]
    provider.context_for(request(path, prefix_with(CODE, "    key = hkdf_expand")), 4000)
    repeated = provider.context_for(request(path, session + "\n    "), 4000)
    assert "tls/session.py" not in {c.path for c in repeated}
    provider.close()


def test_context_drops_chunks_that_repeat_the_code_at_the_cursor(hybrid: HybridSearch) -> None:
    provider = MemoryContextProvider(hybrid.search, budget_s=30.0)
    geometry = CHUNKS["app/geometry.py"][1]
    chunks = provider.context_for(request("app/shapes.py", geometry + "\n\n"), 10_000)
    assert chunks and geometry not in [c.text for c in chunks]
    provider.close()


def test_context_over_the_time_budget_falls_back_then_catches_up(
    hybrid: HybridSearch,
) -> None:
    provider = MemoryContextProvider(hybrid.search, budget_s=0.0005)
    path = "app/other.py"
    started = time.monotonic()
    assert provider.context_for(request(path, prefix_with(CODE, "    key = hk")), 4000) == []
    assert time.monotonic() - started < 0.1
    assert provider.over_budget == 1
    # The search went on in the background: the same region gets its result from the cache.
    deadline = time.monotonic() + 60
    chunks: list[Any] = []
    while not chunks and time.monotonic() < deadline:
        time.sleep(0.05)
        chunks = provider.context_for(request(path, prefix_with(CODE, "    key = hkdf")), 4000)
    assert chunks and provider.searches == 1
    # A new region over budget falls back to the file's last result rather than nothing.
    moved = prefix_with([*CODE, "    pass"] * 3, "    x = ")
    assert provider.context_for(request(path, moved), 4000) == chunks
    provider.close()


def wait_idle(provider: MemoryContextProvider) -> None:
    deadline = time.monotonic() + 60
    while provider._inflight is not None and not provider._inflight[1].done():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_prefetch_starts_the_search_that_the_completion_then_finds(hybrid: HybridSearch) -> None:
    # A budget no search meets: without the prefetch, the request would get nothing.
    provider = MemoryContextProvider(hybrid.search, budget_s=0.0005)
    path = "app/other.py"
    cursor = request(path, prefix_with(CODE, "    key = hk"))
    provider.prefetch(cursor)
    provider.prefetch(cursor)  # under way: not searched twice
    assert (provider.prefetches, provider.searches) == (1, 1)
    wait_idle(provider)
    chunks = provider.context_for(cursor, 4000)
    assert chunks and (provider.cache_hits, provider.over_budget) == (1, 0)
    provider.prefetch(cursor)  # cached: no search
    assert provider.searches == 1
    # A file's opening search is the fallback of its other regions while theirs run.
    provider.prefetch(request("app/new.py", "\n".join(CODE)))
    wait_idle(provider)
    far = request("app/new.py", prefix_with(["x = 1"] * 40, "y = "))
    assert provider.context_for(far, 4000) != []
    assert (provider.searches, provider.over_budget) == (3, 1)
    provider.close()


def test_a_request_during_the_files_opening_search_waits_for_it_then_searches(
    hybrid: HybridSearch,
) -> None:
    # The first completion in a file just opened arrives while the opening search runs (a
    # slow machine: each search takes 0.3 s here). It must not go without memory.
    def slow_search(*args: Any) -> Any:
        time.sleep(0.3)
        return hybrid.search(*args)

    provider = MemoryContextProvider(slow_search, budget_s=5.0)
    provider.prefetch(request("app/new.py", "\n".join(CODE)))
    cursor = request("app/new.py", prefix_with(["x = 1"] * 40, "    key = hkdf_expand"))
    chunks = provider.context_for(cursor, 4000)
    assert chunks and "tls/session.py" in {c.path for c in chunks}
    assert (provider.searches, provider.over_budget) == (2, 0)
    provider.close()
    # Within a budget that ends during the other search: that search's hits for the file
    # when it has finished by then, else nothing, and no wait past the budget.
    provider = MemoryContextProvider(slow_search, budget_s=0.05)
    provider.prefetch(request("app/other.py", "\n".join(CODE)))
    started = time.monotonic()
    assert provider.context_for(request("app/other.py", prefix_with(CODE, "y = ")), 4000) == []
    assert time.monotonic() - started < 0.25 and provider.over_budget == 1
    provider.close()


def test_the_definition_of_the_name_being_typed_goes_last_and_stays_while_typing(
    hybrid: HybridSearch,
) -> None:
    provider = MemoryContextProvider(hybrid.search, budget_s=30.0)
    path = "app/other.py"
    lines = ["import os", "", "def main(argv):"]
    chunks = provider.context_for(request(path, prefix_with(lines, "    conf = load_se")), 4000)
    assert chunks[-1].source == "definition" and chunks[-1].path == "app/config.py"
    assert chunks[-1].text.startswith("def load_settings(path):")
    assert [c.path for c in chunks].count("app/config.py") == 1  # not twice
    assert provider.typed_lookups == 1
    # Typing on in the same name: the same chunks, no new lookup.
    more = provider.context_for(request(path, prefix_with(lines, "    conf = load_sett")), 4000)
    assert more == chunks and provider.typed_lookups == 1
    # Another name: its definition replaces the first.
    other = provider.context_for(request(path, prefix_with(lines, "    db = connect_d")), 4000)
    assert other[-1].source == "definition" and other[-1].path == "app/db.py"
    assert "app/config.py" not in {c.path for c in other if c.source == "definition"}
    # No name being typed: no definition chunk.
    plain = provider.context_for(request(path, prefix_with(lines, "    db = ")), 4000)
    assert all(c.source != "definition" for c in plain)
    provider.close()


def test_imported_names_unused_first_then_most_recently_used() -> None:
    prefix = (
        "from app.geometry import polygon_area, pairs as make_pairs\n"
        "from app.db import (\n    connect_database,\n    Session,\n)\n"
        "import os\n"
        "from . import *\n\n"
        "def f(points):\n"
        "    s = Session()\n"
        "    p = pairs(points)\n"
        "    return "
    )
    # polygon_area and connect_database are not used yet; pairs was used after Session.
    assert imported_names(prefix) == ["polygon_area", "connect_database", "pairs", "Session"]
    # Part of a longer identifier is not a use; the last whole use counts, however far back.
    longer = "from app import area, volume\n\nx = area(1)\n" + "y = area_total + volume2\n" * 5000
    assert imported_names(longer) == ["volume", "area"]
    js = 'import { area, type Shape } from "./geometry";\nimport render from "./ui";\nrender('
    assert imported_names(js) == ["area", "Shape", "render"]
    assert imported_names("x = 1\n") == []


def test_lexical_definitions_follow_replacements() -> None:
    index = LexicalIndex()
    index.replace_path("a.py", [("a1", "area", "def area(): ..."), ("a2", "<module>", "x = 1")])
    index.replace_path("b.py", [("b1", "area", "def area(s): ..."), ("b2", "Shape", "class")])
    assert index.definitions(["area"]) == ["a1", "b1"]
    assert index.definitions(["Shape", "area"], exclude_path="a.py") == ["b2", "b1"]
    assert index.definitions(["area", "Shape"], limit=1) == ["a1"]
    index.replace_path("a.py", [("a3", "volume", "def volume(): ...")])
    assert index.definitions(["area", "volume"]) == ["b1", "a3"]
    index.remove_path("b.py")
    assert index.definitions(["area", "Shape"]) == []


def test_search_puts_definitions_of_imported_names_first(hybrid: HybridSearch) -> None:
    query = query_text(prefix_with(CODE, "    key = hk"))
    plain = symbols(hybrid.search(query, 4))
    assert plain[0] != "connect_database"
    first = symbols(hybrid.search(query, 4, definitions_of=["connect_database", "nothing"]))
    assert first[0] == "connect_database" and len(first) == 4
    assert first[1:] == [s for s in plain if s != "connect_database"][:3]
    # Its own file is still left out.
    assert "connect_database" not in symbols(
        hybrid.search(query, 4, "app/db.py", definitions_of=["connect_database"])
    )


def test_a_search_no_stored_chunk_could_serve_is_skipped(hybrid: HybridSearch) -> None:
    """The query is not embedded when the memory knows no chunk would reach the prompt; what
    is skipped is not cached, so the next keystroke asks again."""
    searched: list[str] = []

    def counted(*args: Any) -> Any:
        searched.append(args[0])
        return hybrid.search(*args)

    provider = MemoryContextProvider(
        counted,
        budget_s=30.0,
        needs_of=lambda r: CursorNames.of(r).needs(),
        could_match=hybrid.lexical.could_match,
    )
    path = "app/other.py"
    plain = ["def mean(xs):", "    total = sum(xs)"]
    assert provider.context_for(request(path, prefix_with(plain, "    return ")), 4000) == []
    assert provider.context_for(request(path, prefix_with(plain, "    return t")), 4000) == []
    assert (provider.skipped, searched) == (2, [])
    # A name the workspace defines, used at the cursor: the search runs and finds it.
    wants = ["def fence(points):", "    area = polygon_area(points)"]
    chunks = provider.context_for(request(path, prefix_with(wants, "    return ")), 4000)
    assert "app/geometry.py" in {c.path for c in chunks}
    assert provider.skipped == 2 and len(searched) == 1
    # Defined only in the file itself: nothing elsewhere could serve.
    here = request("app/geometry.py", prefix_with(wants, "    return "))
    assert provider.context_for(here, 4000) == [] and provider.skipped == 3
    provider.close()
