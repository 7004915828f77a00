"""The memory store on real stores in temporary folders, with the real embedding model through a
real model pool. No mocks: Qdrant Edge, MemOS and llama.cpp all run."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memlsp.config import MemoryConfig
from memlsp.memory.embedder import Embedder
from memlsp.memory.records import ChunkRecord, StoreLockedError, StoreUnavailableError, chunk_id
from memlsp.memory.store import MemoryStore, load_memos

FILES: dict[str, list[tuple[str, str]]] = {
    "app/config.py": [
        (
            "load_settings",
            "def load_settings(path):\n"
            '    """Read the YAML configuration file into a dict."""\n'
            "    with open(path) as fh:\n"
            "        return yaml.safe_load(fh)",
        ),
        (
            "Settings",
            "class Settings:\n    debug: bool = False\n    log_level: str = 'info'",
        ),
    ],
    "app/mail.py": [
        (
            "send_welcome_email",
            "def send_welcome_email(user):\n"
            "    body = render('welcome.txt', name=user.name)\n"
            "    smtp.sendmail(SENDER, user.email, body)",
        ),
    ],
    "app/geometry.py": [
        (
            "polygon_area",
            "def polygon_area(points):\n"
            "    # shoelace formula\n"
            "    return abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in pairs(points))) / 2",
        ),
    ],
    "app/db.py": [
        (
            "connect_database",
            "def connect_database(url):\n"
            "    engine = create_engine(url, pool_size=5)\n"
            "    return engine.connect()",
        ),
    ],
}


def chunks_of(path: str, shift: int = 0) -> list[ChunkRecord]:
    out, line = [], shift
    for symbol, text in FILES[path]:
        end = line + text.count("\n")
        out.append(ChunkRecord.of(path, symbol, "python", line, end, text))
        line = end + 2
    return out


def all_chunks() -> list[ChunkRecord]:
    return [c for path in FILES for c in chunks_of(path)]


# Stores in these tests all belong to one (imaginary) workspace: its path only names the collection.
WORKSPACE = Path("/nonexistent/memlsp-test-workspace")


def edge_config(tmp_path: Path) -> MemoryConfig:
    return MemoryConfig(path=str(tmp_path / "store"))


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    """A closed store holding all_chunks(), embedded once for the module: tests copy it (the
    embedding model is the slow part; the copies are real stores all the same)."""
    folder = tmp_path_factory.mktemp("seed")
    with MemoryStore(WORKSPACE, edge_config(folder), embedder) as store:
        store.upsert(all_chunks())
    return folder / "store"


def seeded_config(seeded: Path, tmp_path: Path) -> MemoryConfig:
    shutil.copytree(seeded, tmp_path / "store")
    return edge_config(tmp_path)


@pytest.fixture
def store(seeded: Path, tmp_path: Path, embedder: Embedder) -> Iterator[MemoryStore]:
    store = MemoryStore(WORKSPACE, seeded_config(seeded, tmp_path), embedder)
    store.open()
    yield store
    store.close()


def symbols(hits: list[Any]) -> list[str]:
    return [h.record.symbol for h in hits]


# -- search --------------------------------------------------------------------------------------


def test_finds_a_function_by_name_and_by_description(store: MemoryStore) -> None:
    assert store.count() == 5
    assert symbols(store.search_vectors("send_welcome_email", 1)) == ["send_welcome_email"]
    assert symbols(store.search_vectors("read the yaml config file", 1)) == ["load_settings"]
    assert symbols(store.search_vectors("area of a polygon", 1)) == ["polygon_area"]
    hit = store.search_vectors("open a connection to the database", 1)[0]
    assert hit.record == chunks_of("app/db.py")[0]  # every field round-trips through MemOS
    hits = store.search_vectors("configuration", 5)
    assert len(hits) == 5
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert store.search_vectors("anything", 0) == []


def test_exclude_path_leaves_that_file_out(store: MemoryStore) -> None:
    hits = store.search_vectors(
        "load settings from the yaml config", 5, exclude_path="app/config.py"
    )
    assert len(hits) == 3
    assert all(h.record.path != "app/config.py" for h in hits)
    assert "load_settings" in symbols(store.search_vectors("load settings", 5))


def test_delete_file(store: MemoryStore) -> None:
    store.delete_file("app/config.py")
    assert store.count() == 3
    assert "app/config.py" not in store.file_hashes()
    assert all(h.record.path != "app/config.py" for h in store.search_vectors("settings", 5))
    store.delete_file("no/such/file.py")
    assert store.count() == 3


# -- ids, hashes and incremental updates -------------------------------------------------------


def test_ids_are_deterministic_and_unchanged_chunks_are_not_embedded(
    store: MemoryStore, embedder: Embedder
) -> None:
    chunk = chunks_of("app/mail.py")[0]
    assert chunk.id == chunk_id("app/mail.py", "send_welcome_email", 0)
    texts = embedder.texts_embedded
    assert store.upsert(all_chunks()) == 0
    assert store.count() == 5
    assert embedder.texts_embedded == texts
    # Same place, new text: overwritten in place and embedded again.
    edited = ChunkRecord.of(chunk.path, chunk.symbol, "python", 0, 3, chunk.text + "\n    log()")
    assert edited.id == chunk.id
    assert store.upsert([edited]) == 1
    assert store.count() == 5
    assert store.search_vectors("send_welcome_email", 1)[0].record.text.endswith("log()")


def test_file_hashes_and_moved_code_reuse_vectors(store: MemoryStore, embedder: Embedder) -> None:
    expected = {path: {c.content_hash for c in chunks_of(path)} for path in FILES}
    assert store.file_hashes() == expected
    # A line inserted at the top shifts every chunk: new ids, same texts, no embedding.
    texts = embedder.texts_embedded
    moved = chunks_of("app/config.py", shift=1)
    assert store.replace_file("app/config.py", moved) == 0
    assert embedder.texts_embedded == texts
    assert store.count() == 5
    hit = store.search_vectors("read the yaml config file", 1)[0]
    assert hit.record == moved[0]
    # A chunk removed from the file disappears from the store.
    assert store.replace_file("app/config.py", moved[:1]) == 0
    assert store.file_hashes()["app/config.py"] == {moved[0].content_hash}
    assert store.count() == 4
    with pytest.raises(ValueError):
        store.replace_file("app/config.py", chunks_of("app/db.py"))


def test_restart_keeps_data_and_re_embeds_nothing(
    seeded: Path, tmp_path: Path, embedder: Embedder
) -> None:
    config = seeded_config(seeded, tmp_path)
    with MemoryStore(WORKSPACE, config, embedder) as first:
        assert first.upsert(all_chunks()) == 0
        first.delete_file("app/db.py")
        location = first.location
    calls = embedder.embed_calls
    with MemoryStore(WORKSPACE, config, embedder) as second:
        assert second.location == location == str(tmp_path / "store")
        assert second.count() == 4
        assert second.upsert(all_chunks()[:4]) == 0
        assert embedder.embed_calls == calls  # nothing embedded for the upsert
        assert symbols(second.search_vectors("polygon area", 1)) == ["polygon_area"]


# -- one store, one process; damage; unreachable server -----------------------------------------


def test_second_open_of_the_same_store_is_refused(
    seeded: Path, tmp_path: Path, embedder: Embedder
) -> None:
    config = seeded_config(seeded, tmp_path)
    first = MemoryStore(WORKSPACE, config, embedder)
    first.open()
    second = MemoryStore(WORKSPACE, config, embedder)
    with pytest.raises(StoreLockedError, match="already open"):
        second.open()
    assert not second.is_open
    # The refused open must not have disturbed the holder (Edge's own lock check does: a
    # failed EdgeShard.load breaks the holder's next flush of a payload index).
    first.delete_file("app/config.py")
    first.upsert(chunks_of("app/config.py", shift=1))
    first.close()
    second.open()
    assert second.count() == 5
    assert second.file_hashes()["app/config.py"] == {
        c.content_hash for c in chunks_of("app/config.py")
    }
    second.close()


def test_second_process_is_refused_too(seeded: Path, tmp_path: Path, embedder: Embedder) -> None:
    """The lock is an OS lock, seen by other processes (and dropped by the OS if we die)."""
    with MemoryStore(WORKSPACE, seeded_config(seeded, tmp_path), embedder) as store:
        lock = store.path / f"{store.collection}.lock"
        script = textwrap.dedent(
            """
            import fcntl, os, sys
            fd = os.open(sys.argv[1], os.O_RDWR)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SystemExit(0 if os.pread(fd, 32, 0).decode().strip() == sys.argv[2] else 2)
            raise SystemExit(1)
            """
        )
        args = [sys.executable, "-c", script, str(lock), str(os.getpid())]
        assert subprocess.run(args, timeout=60).returncode == 0
    assert subprocess.run(args, timeout=60).returncode == 1  # closed: free again


def test_corrupt_store_is_moved_aside_and_rebuilt(
    seeded: Path, tmp_path: Path, embedder: Embedder, caplog: pytest.LogCaptureFixture
) -> None:
    config = seeded_config(seeded, tmp_path)
    store = MemoryStore(WORKSPACE, config, embedder)
    shard = store.path / store.collection
    assert (shard / "edge_config.json").is_file()
    for file in shard.rglob("*"):
        if file.is_file():
            file.write_bytes(os.urandom(max(64, file.stat().st_size)))
    caplog.set_level(logging.WARNING, logger="memlsp")
    with MemoryStore(WORKSPACE, config, embedder) as store:
        assert store.count() == 0
        store.upsert(all_chunks()[:1])
        assert store.count() == 1
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "corrupt" in warnings[0].getMessage()
    aside = [p for p in shard.parent.iterdir() if p.name.startswith(shard.name + ".corrupt-")]
    assert len(aside) == 1 and aside[0].is_dir()
    assert aside[0].name in warnings[0].getMessage()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_qdrant_server_fails_fast_naming_the_url(
    tmp_path: Path, embedder: Embedder
) -> None:
    load_memos()  # the one-off import is not what this measures
    url = f"http://127.0.0.1:{_closed_port()}"
    store = MemoryStore(tmp_path / "ws", MemoryConfig(backend="qdrant", url=url), embedder)
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError, match=url):
        store.open()
    assert time.monotonic() - started < 5
    assert store.location == url
    missing_key = MemoryConfig(backend="qdrant", url=url, api_key_env="MEMLSP_TEST_NO_SUCH_KEY")
    with pytest.raises(StoreUnavailableError, match="MEMLSP_TEST_NO_SUCH_KEY"):
        MemoryStore(tmp_path / "ws", missing_key, embedder).open()


# -- optimizing in a child process --------------------------------------------------------------


def test_optimize_runs_in_a_child_and_the_store_comes_back(store: MemoryStore) -> None:
    db = store._db
    assert not store.optimize_in_background()  # far below the threshold
    assert store.optimize_in_background(min_unindexed=0)
    assert not db.optimize_in_background()  # one at a time
    assert db.wait_optimized(timeout=120)
    assert store.count() == 5
    assert symbols(store.search_vectors("polygon area", 1)) == ["polygon_area"]
    store.upsert([ChunkRecord.of("new.py", "f", "python", 0, 1, "def f(): pass")])
    assert store.count() == 6


def test_close_while_optimizing(seeded: Path, tmp_path: Path, embedder: Embedder) -> None:
    config = seeded_config(seeded, tmp_path)
    store = MemoryStore(WORKSPACE, config, embedder)
    store.open()
    assert store.optimize_in_background(min_unindexed=0)
    store.close()
    with MemoryStore(WORKSPACE, config, embedder) as again:
        assert again.count() == 5


# -- the MemOS vector-store contract on both backends -------------------------------------------


@pytest.fixture(params=["qdrant_edge", "qdrant_server"])
def vector_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    load_memos()
    from memos.configs.vec_db import VectorDBConfigFactory
    from memos.vec_dbs.factory import VecDBFactory

    # The server backend runs against qdrant-client's local mode: the same client API.
    config = {"collection_name": "c", "vector_dimension": 3, "distance_metric": "cosine"}
    config["path"] = str(tmp_path / "db")
    db = VecDBFactory.from_config(VectorDBConfigFactory(backend=request.param, config=config))
    yield db
    db.close()


def test_vector_db_contract(vector_db: Any) -> None:
    ids = [chunk_id(f"f{i % 2}.py", "s", i) for i in range(4)]
    vector_db.add(
        [
            {"id": ids[i], "vector": [1.0, float(i), 0.0], "payload": {"metadata": meta}}
            for i, meta in enumerate({"file_path": f"f{i % 2}.py", "n": i} for i in range(4))
        ]
    )
    assert vector_db.count() == 4
    assert vector_db.count({"metadata.file_path": "f0.py"}) == 2
    hits = vector_db.search([1.0, 0.0, 0.0], 4)
    assert hits[0].id == ids[0] and hits[0].score == pytest.approx(1.0)
    not_f0 = vector_db.search([1.0, 0.0, 0.0], 4, {"must_not": {"metadata.file_path": "f0.py"}})
    assert [h.id for h in not_f0] == [ids[1], ids[3]]
    either = vector_db.count({"metadata.n": [0, 3]})
    assert either == 2
    assert vector_db.get_by_id(ids[2]).payload["metadata"]["n"] == 2
    assert vector_db.get_by_id(chunk_id("none", "", 0)) is None
    assert {i.id for i in vector_db.get_by_ids(ids[:2])} == set(ids[:2])
    partial = vector_db.scroll({"metadata.file_path": "f1.py"}, ["metadata.n"], False)
    assert sorted(i.payload["metadata"]["n"] for i in partial) == [1, 3]
    assert all(i.vector is None and "file_path" not in i.payload["metadata"] for i in partial)
    vector_db.update(ids[0], {"id": ids[0], "payload": {"metadata": {"file_path": "g.py"}}})
    assert vector_db.get_by_id(ids[0]).payload["metadata"] == {"file_path": "g.py"}
    vector_db.delete_by_filter({"metadata.file_path": "f1.py"})
    assert vector_db.count() == 2
    vector_db.delete([ids[0]])
    assert [i.id for i in vector_db.get_all()] == [ids[2]]


# -- MemOS import hygiene ------------------------------------------------------------------------


def test_memos_import_is_silent_and_leaves_logging_and_env_alone(tmp_path: Path) -> None:
    """In a fresh interpreter, from a workspace holding a .env: nothing on stdout, no .env read,
    no .memos folder in the working directory, root logger as it was."""
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / ".env").write_text("MEMLSP_DOTENV_PROBE=leaked\n")
    script = textwrap.dedent(
        """
        import logging, os, sys, threading, time
        mine = logging.StreamHandler(sys.stderr)
        root = logging.getLogger()
        root.addHandler(mine)
        root.setLevel(logging.ERROR)
        # The import runs beside the server's other threads: their records must reach our
        # handlers all along, not only once it is over.
        seen, importing = set(), threading.Event()
        def watch():
            while importing.is_set():
                seen.add(tuple(root.handlers))
                time.sleep(0.0005)
        importing.set()
        watcher = threading.Thread(target=watch)
        watcher.start()
        from memlsp.memory.store import load_memos
        paused = []  # the thread each pause came from (one per module MemOS imports)
        load_memos(pause=lambda: paused.append(threading.get_ident()))
        importing.clear()
        watcher.join()
        import memos.log
        memos.log.configure_logging(force=True)  # as MemOS may again, later
        problems = []
        if len(paused) < 50 or set(paused) != {threading.get_ident()}:
            problems.append(f"paused {len(paused)} times, from {len(set(paused))} threads")
        if any(type(f).__name__ == "_PausingFinder" for f in sys.meta_path):
            problems.append("the pausing finder stayed")
        if seen != {(mine,)}:
            problems.append(f"root handlers during the import: {seen}")
        if "MEMLSP_DOTENV_PROBE" in os.environ:
            problems.append(".env was loaded")
        if root.handlers != [mine] or root.level != logging.ERROR:
            problems.append(f"root logger changed: {root.handlers} {root.level}")
        if os.path.exists(".memos"):
            problems.append(".memos written to the working directory")
        sys.stderr.write("; ".join(problems))
        raise SystemExit(1 if problems else 0)
        """
    )
    env = {**os.environ, "MEMLSP_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("MEMLSP_DOTENV_PROBE", None)
    env.pop("PYTHON_DOTENV_DISABLED", None)
    done = subprocess.run(
        [sys.executable, "-c", script],  # -c: python-dotenv then searches the working directory
        cwd=workspace,
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert done.stdout == b""
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert (tmp_path / "cache" / "memos" / ".memos").is_dir()  # MemOS's files went to our cache
