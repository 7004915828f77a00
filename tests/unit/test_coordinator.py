"""One store, many windows: WorkspaceMemory across real processes (a second Python process plays
the other editor window), with the real store and the real embedding model."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from memlsp.base.context import ContextRequest
from memlsp.config import MemoryConfig
from memlsp.memory.coordinator import MAX_REQUEST_BYTES, WorkspaceMemory
from memlsp.memory.indexer import IndexProgress
from memlsp.memory.names import SearchNeeds
from memlsp.models import ModelPool

FILES = {
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
    "app/config.py": (
        "def load_settings(path):\n"
        '    """Read the YAML configuration file into a dict."""\n'
        "    with open(path) as fh:\n"
        "        return yaml.safe_load(fh)\n"
    ),
}

# The other window. Prints one JSON line per event on stdout (a test helper, not the server).
CHILD = textwrap.dedent(
    """
    import dataclasses, json, logging, os, sys, time
    from pathlib import Path
    from memlsp.config import MemoryConfig, load_config
    from memlsp.memory.coordinator import WorkspaceMemory
    from memlsp.models import ModelPool, runtime

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    # Our own handle on stdout, as the server keeps one: MemOS's import (a client preloads it
    # in a thread) swaps sys.stdout for a while.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    mode, root, store = sys.argv[1], Path(sys.argv[2]), sys.argv[3]

    def one_thread_llama(**kwargs):
        kwargs.setdefault("n_threads_batch", kwargs.get("n_threads"))
        return runtime.llama_cpp().Llama(**kwargs)

    models = load_config(None, user_file=Path("/nonexistent.yaml")).config.models
    models["minilm-l6-v2"] = dataclasses.replace(models["minilm-l6-v2"], n_threads=1)
    pool = ModelPool(models, llama_factory=one_thread_llama)
    memory = WorkspaceMemory(root, MemoryConfig(path=store), pool)
    memory.start()
    memory.wait_idle(300)

    def say(**fields):
        out.write(json.dumps(fields) + "\\n")

    if mode == "owner":
        say(role=memory.role, status=memory.status())
        sys.stdin.read()  # until the test kills us (or closes our stdin)
    else:
        hits = memory.search("send_welcome_email", 3)
        status = memory.status()
        new = root / "app" / "ledger.py"
        new.write_text("def reconcile_ledger_entries(ledger):\\n    return ledger.balance()\\n")
        memory.file_changed([new])
        time.sleep(1.0)  # the forwarder sends it
        say(
            role=memory.role,
            symbols=[h.record.symbol for h in hits],
            texts_embedded=memory.embedder.texts_embedded,
            status=status,
        )
    memory.close()
    pool.close()
    """
)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    for rel, text in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def child(tmp_path: Path, mode: str, root: Path, config: MemoryConfig) -> subprocess.Popen[str]:
    script = tmp_path / "window.py"
    script.write_text(CHILD)
    with (tmp_path / f"window-{mode}.log").open("w") as log:
        return subprocess.Popen(
            [sys.executable, str(script), mode, str(root), config.path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )


def read_json_line(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(proc.stdout.readline()))  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    if not (result and result[0]):
        logs = "".join(p.read_text()[-3000:] for p in Path(proc.args[1]).parent.glob("*.log"))
        raise AssertionError(f"no answer from the other window (exit {proc.poll()}):\n{logs}")
    return dict(json.loads(result[0]))


def wait_for(condition: Any, timeout: float) -> float:
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, "timed out"
        time.sleep(0.05)
    return time.monotonic() - started


def test_two_windows_share_one_store(
    tmp_path: Path, workspace: Path, embedding_model_pool: ModelPool
) -> None:
    config = MemoryConfig(path=str(tmp_path / "store"))
    owner = WorkspaceMemory(workspace, config, embedding_model_pool)
    owner.start()
    try:
        assert owner.wait_idle(180) and owner.role == "owner"
        embedded = owner.status()["embedded"]
        assert embedded == len(FILES)
        other = child(tmp_path, "client", workspace, config)
        answer = read_json_line(other, 180)
        assert other.wait(60) == 0
        assert answer["role"] == "client"
        assert answer["symbols"][0] == "send_welcome_email"
        assert answer["texts_embedded"] == 0  # it embedded nothing, not even its query
        status = answer["status"]
        assert status["owner_pid"] == os.getpid() and status["last_error"] == ""
        assert status["files_indexed"] == len(FILES)
        assert status["store"] == str(tmp_path / "store")
        # Its file event reached the owner, which indexed the new file once.
        assert owner.wait_idle(60)
        wait_for(lambda: owner.status()["files_indexed"] == len(FILES) + 1, 30)
        assert owner.wait_idle(60)
        assert owner.status()["embedded"] == embedded + 1
        hits = owner.search("reconcile_ledger_entries", 1)
        assert hits[0].record.path == "app/ledger.py"
    finally:
        owner.close()


def test_owner_killed_the_other_window_takes_over(
    tmp_path: Path, workspace: Path, embedding_model_pool: ModelPool
) -> None:
    config = MemoryConfig(path=str(tmp_path / "store"))
    other = child(tmp_path, "owner", workspace, config)
    me: WorkspaceMemory | None = None
    try:
        ready = read_json_line(other, 180)
        assert ready["role"] == "owner" and ready["status"]["files_indexed"] == len(FILES)
        me = WorkspaceMemory(workspace, config, embedding_model_pool)
        me.start()
        wait_for(lambda: me is not None and me.role == "client", 60)
        assert me.search("send_welcome_email", 1)[0].record.symbol == "send_welcome_email"
        # Names whose definitions come first travel to the owner too.
        first = me.search("send_welcome_email", 2, definitions_of=["polygon_area"])
        assert [h.record.symbol for h in first][:1] == ["polygon_area"]
        # Whether any chunk could serve a cursor is the owner's answer too.
        area = SearchNeeds(frozenset({"polygon_area"}), "", frozenset(), frozenset())
        assert me.could_match(area, str(workspace / "app/other.py"))
        assert not me.could_match(area, str(workspace / "app/geometry.py"))
        assert me.could_match(SearchNeeds(frozenset(), "load_se", frozenset(), frozenset()))
        assert not me.could_match(SearchNeeds(frozenset({"nowhere"}), "", frozenset(), frozenset()))
        assert me.status()["owner_pid"] == other.pid
        assert me.embedder.texts_embedded == 0
        other.send_signal(signal.SIGKILL)
        other.wait(10)
        took = wait_for(lambda: me is not None and me.role == "owner", 15)
        hits = me.search("area of a polygon", 1)
        assert hits and hits[0].record.symbol == "polygon_area"
        assert took < 5, f"takeover took {took:.1f} s"
        assert me.wait_idle(120)
        status = me.status()
        assert status["role"] == "owner" and status["last_error"] == ""
        assert status["files_indexed"] == len(FILES)
        assert status["last_run"]["embedded"] == 0  # resumed from the manifest
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()
        if me is not None:
            me.close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_qdrant_server_degrades_to_no_memory(
    tmp_path: Path, workspace: Path, embedding_model_pool: ModelPool
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    config = MemoryConfig(backend="qdrant", url=url, path=str(tmp_path / "store"))
    memory = WorkspaceMemory(workspace, config, embedding_model_pool)
    memory.start()
    try:
        started = time.monotonic()
        assert memory.search("send_welcome_email", 3) == []
        assert time.monotonic() - started < 0.2
        wait_for(lambda: memory.role == "disabled", 60)
        status = memory.status()
        assert status["role"] == "disabled" and status["store"] == url
        assert url in status["last_error"] and "not reachable" in status["last_error"]
        started = time.monotonic()
        assert memory.search("send_welcome_email", 3) == []
        request = ContextRequest("app/x.py", "def f():\n    send_", "", "python")
        assert memory.context_provider().context_for(request, 2000) == []
        assert time.monotonic() - started < 0.2
        memory.file_changed([workspace / "app/mail.py"])  # no exception either
    finally:
        started = time.monotonic()
        memory.close()
        assert time.monotonic() - started < 2


def test_a_corrupt_store_is_rebuilt_and_said_so(
    tmp_path: Path, workspace: Path, embedding_model_pool: ModelPool
) -> None:
    config = MemoryConfig(path=str(tmp_path / "store"))
    first = WorkspaceMemory(workspace, config, embedding_model_pool)
    first.start()
    assert first.wait_idle(180) and first.role == "owner"
    first.close()
    shards = [p for p in (tmp_path / "store").iterdir() if p.is_dir()]
    assert len(shards) == 1
    for file in shards[0].rglob("*"):
        if file.is_file():
            file.write_bytes(os.urandom(max(64, file.stat().st_size)))
    second = WorkspaceMemory(workspace, config, embedding_model_pool)
    second.start()
    try:
        assert second.wait_idle(180) and second.role == "owner"
        status = second.status()
        assert "corrupt" in status["notice"] and "moved it to" in status["notice"]
        assert status["files_indexed"] == len(FILES) and status["last_run"]["embedded"] == 3
        assert second.search("area of a polygon", 1)[0].record.symbol == "polygon_area"
    finally:
        second.close()


def test_disabled_in_config(
    tmp_path: Path, workspace: Path, embedding_model_pool: ModelPool
) -> None:
    memory = WorkspaceMemory(workspace, MemoryConfig(enabled=False), embedding_model_pool)
    memory.start()
    assert memory.role == "disabled"
    status = memory.status()
    assert status["enabled"] is False and "disabled" in status["last_error"]
    assert memory.search("anything", 3) == []
    memory.reindex(rebuild=True)
    memory.close()


def test_socket_is_private_and_requests_are_bounded(
    tmp_path: Path, workspace: Path, embedding_model_pool: ModelPool
) -> None:
    config = MemoryConfig(path=str(tmp_path / "store"))
    memory = WorkspaceMemory(workspace, config, embedding_model_pool)
    memory.start()
    try:
        assert memory.wait_idle(180) and memory.role == "owner"
        server = memory._server
        assert server is not None
        assert stat.S_IMODE(server.path.stat().st_mode) == 0o600

        def exchange(payload: bytes, done: bool = True) -> tuple[dict[str, Any], bytes]:
            """The reply, and what follows it until the server hangs up."""
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(10)
                sock.connect(str(server.path))
                sock.sendall(payload)
                if done:
                    sock.shutdown(socket.SHUT_WR)
                reader = sock.makefile("rb")
                reply = json.loads(reader.readline())
                try:
                    rest = reader.read()
                except ConnectionResetError:  # it hung up on data we had sent
                    rest = b""
                return reply, rest

        reply, _ = exchange(b'{"id": 1, "op": "frobnicate"}\n')
        assert not reply["ok"] and "unknown op" in reply["error"]
        reply, _ = exchange(b'{"id": 2, "op": "search", "query": "x", "k": 100000}\n')
        assert not reply["ok"] and "k:" in reply["error"]
        reply, _ = exchange(b"not json\n")
        assert not reply["ok"]
        reply, rest = exchange(b"x" * (MAX_REQUEST_BYTES + 10) + b"\n", done=False)
        assert not reply["ok"] and "over" in reply["error"] and rest == b""
        reply, _ = exchange(b'{"id": 3, "op": "search", "query": "polygon area", "k": 1}\n')
        assert reply["ok"] and reply["result"]["hits"][0]["symbol"] == "polygon_area"
        ask: dict[str, Any] = {
            "id": 4,
            "op": "could_match",
            "names": ["polygon_area"],
            "typed": "",
            "words": [],
            "uses": [],
        }
        reply, _ = exchange(json.dumps(ask).encode() + b"\n")
        assert reply["ok"] and reply["result"] == {"could": True}
        reply, _ = exchange(json.dumps({**ask, "names": ["x"] * 5000}).encode() + b"\n")
        assert not reply["ok"] and "names:" in reply["error"]
        reply, _ = exchange(json.dumps({**ask, "typed": 3}).encode() + b"\n")
        assert not reply["ok"] and "typed:" in reply["error"]
    finally:
        memory.close()
    assert not server.path.exists()


def test_close_while_indexing_is_prompt_and_frees_the_store(
    tmp_path: Path, embedding_model_pool: ModelPool
) -> None:
    root = tmp_path / "ws"
    for i in range(30):
        (root / f"pkg/mod_{i}.py").parent.mkdir(parents=True, exist_ok=True)
        (root / f"pkg/mod_{i}.py").write_text(f"def compute_{i}(v):\n    return v * {i}\n")
    config = MemoryConfig(path=str(tmp_path / "store"))
    progress: list[IndexProgress] = []
    first = WorkspaceMemory(root, config, embedding_model_pool, on_progress=progress.append)
    first.start()
    wait_for(lambda: any(p.files_done >= 2 for p in progress), 180)
    started = time.monotonic()
    first.close()
    assert time.monotonic() - started < 2
    assert first.role == "disabled"
    # The lock and the store are free: the next window owns them at once and finishes the job.
    second = WorkspaceMemory(root, config, embedding_model_pool)
    second.start()
    try:
        assert second.wait_idle(180) and second.role == "owner"
        status = second.status()
        assert status["files_indexed"] == 30 and status["last_error"] == ""
    finally:
        second.close()
