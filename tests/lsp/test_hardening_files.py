"""What a cloned repository or another local user can do to the server's files (issue #20).

- A planted ``.memlsp.yaml`` (a link out of the workspace, to ``/dev/zero`` or ``/dev/stdin``, a
  FIFO, a huge file) is refused with a message naming it; ``initialize`` is answered at once
  and the server keeps serving, through configuration changes and a clean exit.
- TCP mode serves only its own user: another uid's connection is closed unanswered and does
  not stop the server; a non-loopback host needs ``--allow-remote``.
- The store, cache and log are the user's alone (0700 folders, 0600 files) under a loose
  umask, and a store left readable is tightened at start.

The server runs as a subprocess over plain pipes and sockets, so timing and process state are
observed directly.
"""

from __future__ import annotations

import json
import os
import queue
import select
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from lsp_helpers import free_port

from memlsp.config.safe_read import RefusedFile, read_regular_file
from memlsp.memory.filters import FileFilter

SERVER = [sys.executable, "-m", "memlsp.server.cli", "serve"]
# Reading the file is refused in microseconds; the bound leaves room for a loaded 2-core
# machine. Before the fix a FIFO or /dev/stdin never let `initialize` be answered at all.
INITIALIZE_BOUND_S = 5.0
START_TIMEOUT_S = 120.0  # interpreter and imports, before the server reads anything
OTHER_UID = 65534  # nobody: any uid other than ours will do


def _frame(payload: dict[str, Any]) -> bytes:
    body = json.dumps(payload).encode()
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def _read_frames(stream: Any, out: queue.Queue[dict[str, Any] | None]) -> None:
    """Parse JSON-RPC frames from ``stream`` into ``out``; None at end of stream."""
    while True:
        length = None
        while True:
            line = stream.readline()
            if not line:
                out.put(None)
                return
            if line in (b"\r\n", b"\n"):
                break
            name, _, value = line.decode("ascii").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        assert length is not None, "a frame without Content-Length"
        out.put(json.loads(stream.read(length)))


class StdioServer:
    """The real server over its stdin and stdout, as an editor starts it."""

    def __init__(self, home: Path, *, umask: int = 0o022) -> None:
        self.stderr_path = home / "stderr.log"
        self.proc = subprocess.Popen(
            SERVER,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr_path.open("wb"),
            env=_server_env(home),
            umask=umask,
        )
        self.notifications: list[dict[str, Any]] = []
        self._frames: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._next_id = 0
        threading.Thread(
            target=_read_frames, args=(self.proc.stdout, self._frames), daemon=True
        ).start()

    def send(self, method: str, params: Any = None, *, request: bool = True) -> int | None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        if request:
            self._next_id += 1
            message["id"] = self._next_id
        assert self.proc.stdin is not None
        self.proc.stdin.write(_frame(message))
        self.proc.stdin.flush()
        return message.get("id")

    def wait_answer(self, request_id: int | None, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                message = self._frames.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no answer to request {request_id} in {timeout} s") from None
            assert message is not None, f"the server closed its output: {self.stderr()}"
            if message.get("id") == request_id and "method" not in message:
                return message
            if "method" in message and "id" in message:  # a request of ours: answer it
                self._reply(message)
            elif "method" in message:
                self.notifications.append(message)

    def _reply(self, message: dict[str, Any]) -> None:
        result: Any = None
        if message["method"] == "workspace/configuration":
            result = [None] * len(message.get("params", {}).get("items", []))
        assert self.proc.stdin is not None
        self.proc.stdin.write(_frame({"jsonrpc": "2.0", "id": message["id"], "result": result}))
        self.proc.stdin.flush()

    def request(self, method: str, params: Any = None, timeout: float = 30.0) -> dict[str, Any]:
        return self.wait_answer(self.send(method, params), timeout)

    def wait_ready(self) -> None:
        """Any answer (before `initialize`, an error) means the server reads its input."""
        self.request("memlsp/status", {}, timeout=START_TIMEOUT_S)

    def messages(self, method: str) -> list[str]:
        return [str(n["params"]["message"]) for n in self.notifications if n["method"] == method]

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")[-3000:]

    def close(self) -> int | None:
        """`shutdown` and `exit`; the exit code (None: it had to be killed)."""
        try:
            if self.proc.poll() is None:
                self.request("shutdown", timeout=30)
                self.send("exit", request=False)
            return self.proc.wait(timeout=30)
        except (AssertionError, OSError, subprocess.TimeoutExpired):
            return None
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


def _server_env(home: Path) -> dict[str, str]:
    """A private config and cache: memory off unless the test's config file turns it on, no
    model cache (nothing heavy loads)."""
    config = home / "config" / "memlsp" / "config.yaml"
    if not config.exists():
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text("memory: {enabled: false}\n")
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    env |= {"XDG_CONFIG_HOME": str(home / "config"), "MEMLSP_CACHE_DIR": str(home / "cache")}
    return env | {"PYTHONUNBUFFERED": "1"}


def _initialize_params(root: Path) -> dict[str, Any]:
    return {
        "processId": os.getpid(),
        "rootUri": root.as_uri(),
        "workspaceFolders": [{"uri": root.as_uri(), "name": root.name}],
        "capabilities": {},
    }


# -- a planted .memlsp.yaml ---------------------------------------------------------------------


def _plant(kind: str, tmp_path: Path, target: Path) -> str:
    """Plant ``target`` (the workspace's .memlsp.yaml); the words the refusal must hold."""
    if kind == "link out of the workspace":
        outside = tmp_path / "outside.yaml"
        outside.write_text("planted_from_outside: 1\n")  # an unknown key: reported if read
        target.symlink_to(outside)
        return "outside the workspace"
    if kind == "link to /dev/zero":
        target.symlink_to("/dev/zero")  # before the fix: read until MemoryError
        return "outside the workspace"
    if kind == "link to /dev/stdin":
        target.symlink_to("/dev/stdin")  # before the fix: the LSP stream read as YAML
        return "outside the workspace"
    if kind == "fifo":
        os.mkfifo(target)  # before the fix: open() blocked for good
        return "FIFO"
    with target.open("wb") as handle:  # "huge": sparse, so it costs no disk
        handle.truncate(16 << 20)
    return "over the 1,048,576-byte limit"


@pytest.mark.parametrize(
    "kind",
    [
        "link out of the workspace",
        "link to /dev/zero",
        "link to /dev/stdin",
        "fifo",
        "huge file",
    ],
)
def test_planted_workspace_config_is_refused_and_the_server_keeps_serving(
    kind: str, tmp_path: Path
) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    planted = workspace / ".memlsp.yaml"
    reason = _plant(kind, tmp_path, planted)
    server = StdioServer(tmp_path)
    try:
        server.wait_ready()
        started = time.monotonic()
        answer = server.request("initialize", _initialize_params(workspace), timeout=60)
        took = time.monotonic() - started
        assert "result" in answer, answer
        assert took < INITIALIZE_BOUND_S, f"initialize took {took:.1f} s"
        server.send("initialized", {}, request=False)
        # Every configuration change reads the file again: refused again, never blocking.
        settings = {"settings": {"memlsp": {"agents": {"generator": {"debounce_ms": 10}}}}}
        server.send("workspace/didChangeConfiguration", settings, request=False)
        status = server.request("memlsp/status", {})["result"]
        issues = [i for i in status["config_issues"] if str(planted) in i]
        assert issues and all("refused" in i and reason in i for i in issues), issues
        assert not [i for i in status["config_issues"] if "planted_from_outside" in i]
        for method in ("window/showMessage", "window/logMessage"):
            named = [m for m in server.messages(method) if str(planted) in m and "refused" in m]
            assert named, (method, server.messages(method))
    finally:
        code = server.close()
    assert code == 0, f"no clean exit after shutdown and exit: {server.stderr()}"


def test_planted_gitignore_fifo_or_device_does_not_block_the_filter(tmp_path: Path) -> None:
    """The index reads .gitignore files through the same checks (a thread stuck on a FIFO's
    open would stop indexing for good)."""
    os.mkfifo(tmp_path / ".gitignore")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".gitignore").symlink_to("/dev/zero")
    (tmp_path / "sub" / "a.py").write_text("x = 1\n")
    os.mkfifo(tmp_path / "pipe.py")
    done: list[str | None] = []
    worker = threading.Thread(
        target=lambda: done.extend(
            FileFilter(tmp_path).check(tmp_path / p) for p in ("sub/a.py", "pipe.py")
        ),
        daemon=True,
    )
    worker.start()
    worker.join(10)
    assert done == [None, "not a file"]


def test_read_regular_file_refuses_what_is_not_a_plain_file_inside(tmp_path: Path) -> None:
    inside = tmp_path / "ws"
    inside.mkdir()
    (inside / "ok.txt").write_bytes(b"fine")
    assert read_regular_file(inside / "ok.txt", max_bytes=4, inside=inside) == b"fine"
    cases: dict[str, tuple[str, Callable[[Path], object]]] = {
        "folder": ("not a regular file", lambda p: p.mkdir()),
        "fifo": ("not a regular file", os.mkfifo),
        "out": ("outside", lambda p: p.symlink_to(tmp_path)),
        "zero": ("outside", lambda p: p.symlink_to("/dev/zero")),
        "big": ("too large", lambda p: p.write_bytes(b"12345")),
    }
    for name, (kind, make) in cases.items():
        make(inside / name)
        with pytest.raises(RefusedFile) as caught:
            read_regular_file(inside / name, max_bytes=4, inside=inside)
        assert caught.value.kind == kind and str(inside / name) in str(caught.value)
    with pytest.raises(FileNotFoundError):
        read_regular_file(inside / "missing", max_bytes=4, inside=inside)


# -- TCP mode: only this user -----------------------------------------------------------------


def _listening(port: int) -> bool:
    wanted = f":{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as rows:
            for row in rows.readlines()[1:]:
                fields = row.split()
                if fields[1].endswith(wanted) and fields[3] == "0A":  # LISTEN
                    return True
    return False


def _as_other_user(port: int) -> str:
    """Connect and send `initialize` from a forked child running as another uid; what it saw:
    'refused' (no connection), 'closed' (no answer) or 'answered'."""
    "localhost".encode("idna")  # the child cannot read the stdlib to load this codec
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: socket calls only, then _exit
        outcome = b"error"
        try:
            os.setgroups([])
            os.setgid(OTHER_UID)
            os.setuid(OTHER_UID)
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=10)
            except OSError:
                outcome = b"refused"
            else:
                with conn:
                    message = {"jsonrpc": "2.0", "id": 1, "method": "initialize"}
                    message["params"] = {"processId": None, "rootUri": None, "capabilities": {}}
                    conn.sendall(_frame(message))
                    try:
                        outcome = b"answered" if conn.recv(65536) else b"closed"
                    except OSError:  # reset, or nothing within the timeout
                        outcome = b"closed"
        except BaseException as exc:
            outcome = f"error: {exc!r}".encode()
        finally:
            os.write(write_end, outcome)
            os._exit(0)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], 30)
        return os.read(read_end, 1000).decode() if ready else "child hung"
    finally:
        os.close(read_end)
        os.waitpid(pid, 0)


def _session_over(conn: socket.socket, root: Path) -> dict[Any, dict[str, Any]]:
    """initialize, status and shutdown over ``conn``; the answers by id."""
    for message in (
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": _initialize_params(root)},
        {"jsonrpc": "2.0", "method": "initialized", "params": {}},
        {"jsonrpc": "2.0", "id": 2, "method": "memlsp/status", "params": {}},
        {"jsonrpc": "2.0", "id": 3, "method": "shutdown"},
    ):
        conn.sendall(_frame(message))
    frames: queue.Queue[dict[str, Any] | None] = queue.Queue()
    reader = conn.makefile("rb")
    threading.Thread(target=_read_frames, args=(reader, frames), daemon=True).start()
    answers: dict[Any, dict[str, Any]] = {}
    while 3 not in answers:
        answer = frames.get(timeout=60)
        assert answer is not None, f"connection closed; answered {sorted(answers)}"
        if "id" in answer and "method" not in answer:
            answers[answer["id"]] = answer
    return answers


@pytest.mark.skipif(os.getuid() != 0, reason="acting as a second local user needs root")
def test_tcp_serves_only_its_own_user(tmp_path: Path) -> None:
    port = free_port()
    stderr = tmp_path / "stderr.log"
    proc = subprocess.Popen(
        [*SERVER, "--tcp", f"127.0.0.1:{port}"],
        env=_server_env(tmp_path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=stderr.open("wb"),
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _listening(port):
            assert proc.poll() is None and time.monotonic() < deadline, "no listener"
            time.sleep(0.2)
        # Another user: no LSP answer, and its end does not end the server.
        assert _as_other_user(port) in ("refused", "closed")
        time.sleep(0.5)
        assert proc.poll() is None, "another user's connection stopped the server"
        assert f"uid {OTHER_UID}" in stderr.read_text(), stderr.read_text()
        # The same user gets a full session.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            answers = _session_over(conn, tmp_path)
        assert "capabilities" in answers[1]["result"]
        assert "config_issues" in answers[2]["result"]
    finally:
        proc.kill()
        proc.wait()


def test_tcp_beyond_loopback_needs_allow_remote(tmp_path: Path) -> None:
    run = subprocess.run(
        [*SERVER, "--tcp", f"0.0.0.0:{free_port()}"],
        env=_server_env(tmp_path),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
    )
    assert run.returncode == 2
    assert "--allow-remote" in run.stderr and "0.0.0.0" in run.stderr


# -- the store, cache and log are private ----------------------------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _private_tree(root: Path) -> list[str]:
    """Entries under ``root`` (itself included) that others can use; links aside, and files
    the store replaced meanwhile (its atomic writes rename temporary files)."""
    loose = []
    for path in [root, *root.rglob("*")]:
        try:
            if not path.is_symlink() and _mode(path) & 0o077:
                loose.append(f"{path} {oct(_mode(path))}")
        except FileNotFoundError:
            continue
    return loose


def _memory_indexed(server: StdioServer) -> bool:
    """The memory owns its store and has indexed the workspace (its files are all written)."""
    folders = server.request("memlsp/status", {})["result"].get("memory", {}).get("folders", [])
    return bool(folders) and folders[0].get("state") == "idle" and folders[0].get("lag") == 0


def _start_with_memory(tmp_path: Path, store: Path, log_file: Path) -> StdioServer:
    config = tmp_path / "config" / "memlsp" / "config.yaml"
    config.parent.mkdir(parents=True)
    config.write_text(
        f"memory: {{enabled: true, path: {json.dumps(str(store))}}}\n"
        f"server: {{log_file: {json.dumps(str(log_file))}}}\n"
    )
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "a.py").write_text("def f():\n    return 1\n")
    server = StdioServer(tmp_path, umask=0o022)
    server.wait_ready()
    server.request("initialize", _initialize_params(workspace), timeout=60)
    server.send("initialized", {}, request=False)
    server.request("memlsp/status", {})
    return server


def _wait_for(condition: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def test_store_cache_and_log_are_created_private_under_a_loose_umask(tmp_path: Path) -> None:
    store, log_file = tmp_path / "store", tmp_path / "logs" / "memlsp.log"
    server = _start_with_memory(tmp_path, store, log_file)
    try:
        _wait_for(lambda: any(store.glob("*.lock")), "the store was never created")
        # Its collection, segments and manifest too, not only the lock (MemOS is imported
        # before the lock is taken).
        _wait_for(lambda: _memory_indexed(server), "the workspace was never indexed", 120)
        assert _mode(log_file) == 0o600 and _mode(log_file.parent) == 0o700
        assert _mode(tmp_path / "cache") == 0o700
        assert _mode(store) == 0o700
        assert not _private_tree(store)
    finally:
        assert server.close() == 0


def test_a_loose_existing_store_is_tightened_at_start(tmp_path: Path) -> None:
    store, log_file = tmp_path / "store", tmp_path / "memlsp.log"
    (store / "segments").mkdir(parents=True)
    (store / "segments" / "payload.dat").write_text("def secret_code(): ...\n")
    someone_elses = tmp_path / "not-ours.txt"
    someone_elses.write_text("a file the store links to, left as it is\n")
    (store / "link").symlink_to(someone_elses)
    log_file.write_text("an older log\n")
    for path in (store, store / "segments", store / "segments" / "payload.dat", log_file):
        path.chmod(0o755 if path.is_dir() else 0o644)
    someone_elses.chmod(0o644)
    server = _start_with_memory(tmp_path, store, log_file)
    try:
        _wait_for(lambda: _mode(store) == 0o700, "the store folder was not tightened")
        assert not _private_tree(store)
        assert _mode(store / "segments" / "payload.dat") == 0o600
        assert _mode(someone_elses) == 0o644  # a link is not followed
        assert _mode(log_file) == 0o600
    finally:
        assert server.close() == 0
