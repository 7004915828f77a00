"""The indexer on small real workspaces: real files, the real Qdrant Edge store, the real
embedding model. Embeddings are counted to prove what is (not) embedded again."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from memlsp.config import MemoryConfig
from memlsp.memory.embedder import Embedder
from memlsp.memory.filters import FileFilter
from memlsp.memory.indexer import Indexer, IndexProgress, lower_thread_priority, manifest_path
from memlsp.memory.retrieval import HybridSearch
from memlsp.memory.store import MemoryStore

SECRET_TOKEN = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
SECRET_PASSWORD = "correct-horse-battery"

FILES: dict[str, str] = {
    "app/config.py": (
        "def load_settings(path):\n"
        '    """Read the YAML configuration file into a dict."""\n'
        "    with open(path) as fh:\n"
        "        return yaml.safe_load(fh)\n"
    ),
    "app/mail.py": (
        "def send_welcome_email(user):\n"
        "    body = render('welcome.txt', name=user.name)\n"
        "    smtp.sendmail(SENDER, user.email, body)\n"
    ),
    "app/geometry.py": (
        "def polygon_area(points):\n"
        "    # shoelace formula\n"
        "    return abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in pairs(points))) / 2\n"
    ),
    "app/settings.py": (
        f'GITHUB_TOKEN = "{SECRET_TOKEN}"\n'
        f'db_password = "{SECRET_PASSWORD}"\n'
        "CACHE_URL = 'redis://localhost:6379/0'\n"
    ),
    ".gitignore": "build_out/\n*.log\n",
    "build_out/generated_client.py": "def generated(): pass\n",
    "trace.log": "GET / 200\n",
    ".env": "DATABASE_URL=postgres://user:pw@db/app\n",
    # Over max_file_kb (4 in these tests).
    "huge.py": "".join(f"def handler_{i}(event):\n    return event + {i}\n\n" for i in range(200)),
}
BINARY = {"logo.png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))}
INDEXED = {"app/config.py", "app/mail.py", "app/geometry.py", "app/settings.py", ".gitignore"}


def make_workspace(root: Path) -> Path:
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    for rel, data in BINARY.items():
        (root / rel).write_bytes(data)
    return root


def config_for(tmp: Path) -> MemoryConfig:
    return MemoryConfig(path=str(tmp / "store"), max_file_kb=4)


class Memory:
    """A store and its indexer, as the coordinator's owner holds them."""

    def __init__(self, root: Path, config: MemoryConfig, embedder: Embedder) -> None:
        self.progress: list[IndexProgress] = []
        self.store = MemoryStore(root, config, embedder)
        self.store.open()
        file_filter = FileFilter(root, max_file_bytes=config.max_file_kb * 1024)
        self.indexer = Indexer(
            root, config, self.store, file_filter, on_progress=self.progress.append
        )
        self.search = HybridSearch(self.store, self.indexer.lexical)

    def start(self) -> Memory:
        self.indexer.start()
        assert self.indexer.wait_idle(180)
        return self

    def close(self) -> None:
        self.indexer.close()
        self.store.close()

    def symbols(self, query: str, k: int = 3) -> list[str]:
        return [h.record.symbol for h in self.search.search(query, k)]

    def paths(self) -> set[str]:
        return {chunk.path for chunk in self.store.stored_chunks()}


@pytest.fixture
def memory(tmp_path: Path, embedder: Embedder) -> Iterator[Memory]:
    root = make_workspace(tmp_path / "ws")
    memory = Memory(root, config_for(tmp_path), embedder).start()
    yield memory
    memory.close()


# -- the first index -------------------------------------------------------------------------


def test_index_search_by_name_and_description(memory: Memory) -> None:
    assert memory.paths() == INDEXED
    assert memory.symbols("send_welcome_email", 1) == ["send_welcome_email"]
    assert memory.symbols("read the yaml config file", 1) == ["load_settings"]
    assert memory.symbols("area of a polygon", 1) == ["polygon_area"]
    status = memory.indexer.status()
    assert status["files_indexed"] == len(INDEXED)
    assert status["chunks"] == memory.store.count() == status["lexical_chunks"]
    assert status["state"] == "idle" and status["lag"] == 0 and status["last_error"] == ""


def test_skipped_files_are_reported_with_reasons(memory: Memory) -> None:
    status = memory.indexer.status()
    assert status["skipped"] == {"gitignored": 2, "secret": 1, "binary": 1, "too large": 1}
    assert status["files_skipped"] == 5
    examples = status["skipped_examples"]
    assert sorted(examples["gitignored"]) == ["build_out", "trace.log"]
    assert examples["secret"] == [".env"]
    assert examples["binary"] == ["logo.png"]
    assert examples["too large"] == ["huge.py"]
    assert status["store"] == memory.store.location
    json.dumps(status)  # JSON-friendly, for the LSP status command


def test_secrets_are_masked_before_chunking(memory: Memory) -> None:
    texts = {chunk.path: chunk.text for chunk in memory.store.stored_chunks()}
    settings = texts["app/settings.py"]
    assert SECRET_TOKEN not in settings and SECRET_PASSWORD not in settings
    assert 'db_password = "***"' in settings and "CACHE_URL" in settings
    assert not memory.indexer.lexical.search("a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8", 5)


def test_progress_is_monotonic_and_ends_at_the_total(memory: Memory) -> None:
    progress = memory.progress
    assert len(progress) >= 2
    done = [p.files_done for p in progress]
    assert done == sorted(done)
    assert all(p.files_total == len(INDEXED) for p in progress)
    last = progress[-1]
    assert last.done and last.files_done == last.files_total == len(INDEXED)
    assert last.chunks == memory.store.count()
    assert not any(p.done for p in progress[:-1])


# -- incremental updates -----------------------------------------------------------------------


def test_edit_finds_the_new_name_and_forgets_the_old(memory: Memory, embedder: Embedder) -> None:
    root = memory.indexer.root
    count = memory.store.count()
    (root / "app/mail.py").write_text(
        "def send_password_reset(user):\n"
        "    link = reset_link(user)\n"
        "    smtp.sendmail(SENDER, user.email, link)\n"
    )
    texts = embedder.texts_embedded
    started = time.monotonic()
    memory.indexer.update([root / "app/mail.py"])
    assert memory.indexer.wait_idle(60)
    assert time.monotonic() - started < 30
    assert embedder.texts_embedded == texts + 1  # the one changed chunk
    assert memory.symbols("send_password_reset", 1) == ["send_password_reset"]
    assert "send_welcome_email" not in memory.symbols("send_welcome_email", 5)
    assert not memory.indexer.lexical.search("welcome", 5)  # only the old text had it
    assert memory.store.count() == count
    # Saved again unchanged (new mtime, same bytes): nothing to do.
    os.utime(root / "app/mail.py", ns=(time.time_ns(), time.time_ns()))
    texts = embedder.texts_embedded
    memory.indexer.update([str(root / "app/mail.py")])
    assert memory.indexer.wait_idle(60)
    assert embedder.texts_embedded == texts


def test_delete_removes_the_chunks(memory: Memory) -> None:
    root = memory.indexer.root
    (root / "app/geometry.py").unlink()
    memory.indexer.delete([root / "app/geometry.py"])
    assert memory.indexer.wait_idle(60)
    assert "app/geometry.py" not in memory.paths()
    assert "polygon_area" not in memory.symbols("polygon area shoelace", 5)
    assert "app/geometry.py" not in memory.indexer.manifest
    assert memory.indexer.status()["files_indexed"] == len(INDEXED) - 1


def test_rename_moves_chunks_without_embedding(memory: Memory, embedder: Embedder) -> None:
    root = memory.indexer.root
    (root / "app/mail.py").rename(root / "app/email.py")
    texts = embedder.texts_embedded
    memory.indexer.rename(root / "app/mail.py", root / "app/email.py")
    assert memory.indexer.wait_idle(60)
    assert embedder.texts_embedded == texts
    assert memory.paths() == (INDEXED - {"app/mail.py"}) | {"app/email.py"}
    hit = memory.search.search("send_welcome_email", 1)[0]
    assert hit.record.path == "app/email.py"
    assert memory.indexer.manifest.paths().count("app/email.py") == 1


def test_gitignore_change_rescans(memory: Memory) -> None:
    root = memory.indexer.root
    (root / ".gitignore").write_text("build_out/\n*.log\napp/geometry.py\n")
    memory.indexer.update([root / ".gitignore"])
    assert memory.indexer.wait_idle(60)
    assert "app/geometry.py" not in memory.paths()
    assert memory.indexer.status()["skipped"]["gitignored"] == 3


# -- restarts and crashes --------------------------------------------------------------------


def test_restart_re_embeds_nothing_unchanged(
    tmp_path: Path, memory: Memory, embedder: Embedder
) -> None:
    root = memory.indexer.root
    memory.close()
    # While we were away: one file edited, one touched.
    (root / "app/config.py").write_text(
        FILES["app/config.py"] + "\n\ndef dump_settings(s):\n    return yaml.safe_dump(s)\n"
    )
    os.utime(root / "app/geometry.py", ns=(time.time_ns(), time.time_ns()))
    calls = embedder.embed_calls
    texts = embedder.texts_embedded
    again = Memory(root, config_for(tmp_path), embedder).start()
    try:
        assert embedder.texts_embedded == texts + 1  # dump_settings only
        assert embedder.embed_calls <= calls + 1
        assert again.indexer.status()["last_run"]["embedded"] == 1
        assert again.symbols("dump_settings", 1) == ["dump_settings"]
        assert again.paths() == INDEXED
    finally:
        again.close()


def test_reconcile_after_a_crash(tmp_path: Path, memory: Memory, embedder: Embedder) -> None:
    """The manifest on disk disagrees with the store both ways; a restart repairs both."""
    root = memory.indexer.root
    memory.store.delete_file("app/geometry.py")  # chunks gone, manifest entry kept
    memory.close()
    path = manifest_path(memory.store)
    data = json.loads(path.read_text())
    assert "app/geometry.py" in data["files"]
    del data["files"]["app/mail.py"]  # chunks stored, no entry (crash before the save)
    path.write_text(json.dumps(data))
    texts = embedder.texts_embedded
    again = Memory(root, config_for(tmp_path), embedder).start()
    try:
        assert embedder.texts_embedded == texts + 1  # polygon_area; mail.py reused its vector
        assert again.paths() == INDEXED
        assert set(again.indexer.manifest.paths()) == INDEXED
        assert again.symbols("area of a polygon", 1) == ["polygon_area"]
    finally:
        again.close()


def test_close_cancels_promptly_and_a_restart_resumes(tmp_path: Path, embedder: Embedder) -> None:
    root = tmp_path / "ws"
    for i in range(24):
        (root / f"pkg/mod_{i}.py").parent.mkdir(parents=True, exist_ok=True)
        (root / f"pkg/mod_{i}.py").write_text(
            f"def compute_{i}(value):\n    return value * {i} + offset_{i}\n"
        )
    config = config_for(tmp_path)
    first = Memory(root, config, embedder)
    first.indexer.start()
    deadline = time.monotonic() + 120
    while not any(p.files_done >= 3 for p in first.progress) and time.monotonic() < deadline:
        time.sleep(0.02)
    started = time.monotonic()
    first.close()
    assert time.monotonic() - started < 2.0
    done_before = len(first.indexer.manifest)
    assert 0 < done_before < 24
    texts = embedder.texts_embedded
    again = Memory(root, config, embedder).start()
    try:
        assert len(again.indexer.manifest) == 24
        # Files finished before the close are not embedded again.
        assert embedder.texts_embedded - texts <= 24 - done_before
        assert again.symbols("compute_17", 1) == ["compute_17"]
    finally:
        again.close()


def test_background_threads_run_only_when_the_cores_are_idle() -> None:
    """The indexer and MemOS's import lower their own thread, not the process: at nice 19
    alone a thread still took the cores from a prompt's evaluation now and then (the session's
    first cold requests evaluated 60 instead of 65 tokens a second while MemOS imported)."""
    seen: list[tuple[int, int]] = []

    def background() -> None:
        lower_thread_priority()
        seen.append((os.sched_getscheduler(0), os.getpriority(os.PRIO_PROCESS, 0)))

    thread = threading.Thread(target=background)
    thread.start()
    thread.join()
    assert seen == [(os.SCHED_IDLE, 19)]
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # this thread is untouched
