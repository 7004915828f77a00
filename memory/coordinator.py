"""One store, many windows: the workspace memory as the rest of memlsp sees it.

Two editor windows on one workspace are two server processes, and an embedded store admits one
process (Qdrant Edge and local mode both refuse a second handle on a path); two stores would
embed everything twice. So each workspace store elects an owner: the process holding an
exclusive, non-blocking ``flock`` on a lock file in the store folder. The owner opens the store,
runs the indexer, keeps the lexical index, and answers the other processes (clients) over a Unix
socket beside the lock (newline-delimited JSON; the socket is 0600 and peers of another user are
refused). A client forwards searches, file events and status requests with timeouts, and polls
the lock: when the owner exits or dies, the OS drops its lock, one client takes it and opens the
store, and its indexer resumes from the manifest without embedding anything unchanged.

With a Qdrant server the store itself needs no single owner, but indexing and the lexical index
do, so the same election runs: one code path for both backends.

Nothing here raises into the caller: a disabled or failed memory answers with no results and a
status saying why.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import queue
import socket
import stat
import struct
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from memlsp.base.context import ContextRequest
from memlsp.config.paths import make_private
from memlsp.config.schema import MemoryConfig
from memlsp.memory.embedder import Embedder
from memlsp.memory.filters import FileFilter
from memlsp.memory.indexer import Indexer, IndexProgress, lower_thread_priority, manifest_path
from memlsp.memory.lexical import LexicalIndex
from memlsp.memory.manifest import Manifest
from memlsp.memory.names import SearchNeeds
from memlsp.memory.records import ChunkRecord, Hit, StoreError, StoreLockedError
from memlsp.memory.retrieval import HybridSearch, MemoryContextProvider
from memlsp.memory.store import MemoryStore, default_store_path, load_memos, workspace_key
from memlsp.models.pool import ModelPool

__all__ = ["Role", "WorkspaceMemory"]

log = logging.getLogger(__name__)

Role = Literal["owner", "client", "starting", "disabled"]

PROTOCOL = 1
# Bounds on what crosses the socket: a request names paths or a query, a response carries at
# most MAX_K chunks of a few KB.
MAX_REQUEST_BYTES = 1 << 20
MAX_RESPONSE_BYTES = 16 << 20
MAX_CONNECTIONS = 32
MAX_PATHS = 10000
MAX_PATH_CHARS = 4096
MAX_QUERY_CHARS = 65536
MAX_K = 100
MAX_NAMES = 32  # definitions_of in one search
MAX_NAME_CHARS = 200
MAX_NEEDED = 1024  # names, words or uses in one could_match (beyond: not asked, search)
# A client checks the lock this often: the takeover delay after the owner dies.
POLL_S = 0.5
# Waiting for a store another process still holds (e.g. a dead owner's optimizer child).
LOCKED_RETRY_S = 1.0
# MemOS's import waits at most this long before each module while a completion runs (another
# thread may need a module whose import it has paused).
IMPORT_PAUSE_S = 0.25
# close() gives each part this long; the whole stays under 2 s.
CLOSE_STEP_S = 0.6
# sun_path holds 108 bytes with its NUL; longer store paths put the socket elsewhere.
_MAX_SOCKET_PATH = 100


class _OwnerUnavailable(Exception):
    """No owner answered (none yet, gone, or too slow)."""


# -- where the lock and the socket live ------------------------------------------------------


def _socket_path(store_dir: Path, key: str) -> Path:
    preferred = store_dir / f"memlsp-{key}.sock"
    if len(os.fsencode(preferred)) <= _MAX_SOCKET_PATH:
        return preferred
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())
    private = base / f"memlsp-{os.getuid()}"
    private.mkdir(mode=0o700, exist_ok=True)
    info = private.lstat()
    # A folder someone else made (or could write) in a shared /tmp would let them pose as an
    # owner: refuse it.
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise StoreError(f"socket folder {private} is not private to this user")
    digest = hashlib.sha1(os.fsencode(preferred)).hexdigest()[:16]
    return private / f"{digest}.sock"


class _OwnerLock:
    """The election: an exclusive flock; the OS releases it when the holder dies."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = -1

    @property
    def held(self) -> bool:
        return self._fd >= 0

    def try_acquire(self) -> bool:
        if self._fd >= 0:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


# -- the wire ----------------------------------------------------------------------------------


def _peer_uid(sock: socket.socket) -> int:
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def _read_line(reader: Any, limit: int) -> bytes:
    """One newline-terminated message of at most ``limit`` bytes; b"" at EOF."""
    line = bytes(reader.readline(limit + 1))
    if line and not line.endswith(b"\n"):
        if len(line) > limit:
            raise ValueError(f"message over {limit} bytes")
        return b""  # EOF inside a message
    return line


def _hit_to_json(hit: Hit) -> dict[str, Any]:
    r = hit.record
    return {
        "path": r.path,
        "symbol": r.symbol,
        "language": r.language,
        "start_line": r.start_line,
        "end_line": r.end_line,
        "text": r.text,
        "content_hash": r.content_hash,
        "score": hit.score,
    }


def _hit_from_json(data: dict[str, Any]) -> Hit:
    record = ChunkRecord(
        path=str(data["path"]),
        symbol=str(data["symbol"]),
        language=str(data["language"]),
        start_line=int(data["start_line"]),
        end_line=int(data["end_line"]),
        text=str(data["text"]),
        content_hash=str(data["content_hash"]),
    )
    return Hit(record, float(data["score"]))


def _paths_arg(args: dict[str, Any], name: str) -> list[str]:
    value = args.get(name)
    if not isinstance(value, list) or len(value) > MAX_PATHS:
        raise ValueError(f"{name}: a list of at most {MAX_PATHS} paths")
    return [_path_arg(v, name) for v in value]


def _path_arg(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_PATH_CHARS or "\0" in value:
        raise ValueError(f"{name}: a path of at most {MAX_PATH_CHARS} characters")
    return value


def _fits(needs: SearchNeeds) -> bool:
    """Whether ``needs`` crosses the socket whole (a part left out could be the match)."""
    return len(needs.typed) <= MAX_NAME_CHARS and all(
        len(group) <= MAX_NEEDED and all(len(n) <= MAX_NAME_CHARS for n in group)
        for group in (needs.names, needs.words, needs.uses)
    )


def _needs_to_json(needs: SearchNeeds) -> dict[str, Any]:
    return {
        "names": sorted(needs.names),
        "typed": needs.typed,
        "words": sorted(needs.words),
        "uses": sorted(needs.uses),
    }


def _needs_from_json(request: dict[str, Any]) -> SearchNeeds:
    groups: list[frozenset[str]] = []
    for key in ("names", "words", "uses"):
        value = request.get(key)
        if (
            not isinstance(value, list)
            or len(value) > MAX_NEEDED
            or not all(isinstance(n, str) and len(n) <= MAX_NAME_CHARS for n in value)
        ):
            raise ValueError(f"{key}: at most {MAX_NEEDED} names of {MAX_NAME_CHARS} characters")
        groups.append(frozenset(value))
    typed = request.get("typed")
    if not isinstance(typed, str) or len(typed) > MAX_NAME_CHARS:
        raise ValueError(f"typed: a name of at most {MAX_NAME_CHARS} characters")
    return SearchNeeds(groups[0], typed, groups[1], groups[2])


def _owner_could_match(owned: _Owned, needs: SearchNeeds, exclude_path: str | None) -> bool:
    """The owner's answer: unknown (True) until the lexical index holds the stored chunks."""
    if not owned.indexer.lexical_loaded.is_set():
        return True
    return owned.search.lexical.could_match(needs, exclude_path)


class _Server:
    """The owner's socket: a thread per connected window, one request at a time each."""

    def __init__(self, path: Path, handle: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.path = path
        self._handle = handle
        self._sock: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        self._inode = 0

    def start(self) -> None:
        # We hold the owner lock: a socket file left here is a dead owner's.
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(self.path))
            # Other users could connect before the chmod; their requests are refused by uid.
            os.chmod(self.path, 0o600)
            sock.listen(8)
        except OSError:
            sock.close()
            raise
        self._inode = self.path.stat().st_ino
        self._sock = sock
        threading.Thread(target=self._accept, name="memlsp-memory-server", daemon=True).start()

    def _accept(self) -> None:
        sock = self._sock
        while sock is not None and not self._closed:
            try:
                conn, _ = sock.accept()
            except OSError:
                return  # closed
            try:
                if _peer_uid(conn) != os.getuid():
                    raise PermissionError("peer of another user")
            except OSError:
                conn.close()
                continue
            with self._lock:
                if self._closed or len(self._conns) >= MAX_CONNECTIONS:
                    conn.close()
                    continue
                self._conns.add(conn)
            threading.Thread(
                target=self._serve, args=(conn,), name="memlsp-memory-conn", daemon=True
            ).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            with conn, conn.makefile("rb") as reader:
                while not self._closed:
                    try:
                        line = _read_line(reader, MAX_REQUEST_BYTES)
                    except ValueError as exc:
                        conn.sendall(_encode({"ok": False, "error": str(exc)}))
                        return
                    if not line:
                        return
                    conn.sendall(_encode(self._answer(line)))
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns.discard(conn)

    def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            if not isinstance(request, dict) or not isinstance(request.get("op"), str):
                raise ValueError("a request is an object with an 'op'")
        except ValueError as exc:
            return {"ok": False, "error": f"bad request: {exc}"}
        try:
            result = self._handle(request)
        except ValueError as exc:
            return {"id": request.get("id"), "ok": False, "error": f"bad request: {exc}"}
        except Exception as exc:
            log.warning("memory request %s failed", request.get("op"), exc_info=True)
            return {"id": request.get("id"), "ok": False, "error": f"{type(exc).__name__}: {exc}"}
        return {"id": request.get("id"), "ok": True, "result": result}

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns = list(self._conns)
        for sock in [self._sock, *conns]:
            if sock is None:
                continue
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked on it
            sock.close()
        self._sock = None
        with contextlib.suppress(OSError):
            if self.path.stat().st_ino == self._inode:  # not a successor's socket
                self.path.unlink()


def _encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


class _Client:
    """One connection to the owner, re-made after any failure; requests one at a time."""

    def __init__(self, path: Path, key: str) -> None:
        self.path = path
        self._key = key
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._reader: Any = None
        self._next_id = 0
        self.owner_pid = 0

    def request(self, op: str, timeout: float, **args: Any) -> Any:
        with self._lock:
            try:
                if self._sock is None:
                    self._connect(timeout)
                return self._exchange(op, args, timeout)
            except (OSError, ValueError, KeyError) as exc:
                self._drop()
                raise _OwnerUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def _connect(self, timeout: float) -> None:
        info = self.path.stat()
        if info.st_uid != os.getuid():
            raise PermissionError(f"{self.path} belongs to another user")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(str(self.path))
            if _peer_uid(sock) != os.getuid():
                raise PermissionError("the owner runs as another user")
        except OSError:
            sock.close()
            raise
        self._sock, self._reader = sock, sock.makefile("rb")
        hello = self._exchange("hello", {}, timeout)
        if hello.get("key") != self._key or hello.get("protocol") != PROTOCOL:
            raise ValueError(f"the socket's owner serves another workspace or protocol: {hello}")
        self.owner_pid = int(hello.get("pid", 0))

    def _exchange(self, op: str, args: dict[str, Any], timeout: float) -> Any:
        sock = self._sock
        if sock is None:
            raise ConnectionError("not connected")
        self._next_id += 1
        sock.settimeout(timeout)
        sock.sendall(_encode({"id": self._next_id, "op": op, **args}))
        line = _read_line(self._reader, MAX_RESPONSE_BYTES)
        if not line:
            raise ConnectionError("the owner closed the connection")
        reply = json.loads(line)
        if not isinstance(reply, dict):
            raise ValueError("a reply is an object")
        if reply.get("id") != self._next_id:
            raise ValueError("reply out of step")
        if not reply.get("ok"):
            raise ValueError(str(reply.get("error")))
        return reply.get("result")

    def _drop(self) -> None:
        sock, reader, self._sock, self._reader = self._sock, self._reader, None, None
        if reader is not None:
            with contextlib.suppress(OSError):
                reader.close()
        if sock is not None:
            sock.close()

    def close(self) -> None:
        with self._lock:
            self._drop()


# -- the owner's parts ---------------------------------------------------------------------------


@dataclass
class _Owned:
    store: MemoryStore
    indexer: Indexer
    search: HybridSearch


class _Notices(logging.Handler):
    """Catches the store's warning when it moved a corrupt store aside, for the status."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "corrupt" in message:
            self.messages.append(message)


# -- the facade ----------------------------------------------------------------------------------


class WorkspaceMemory:
    """The memory of one workspace for one server process, whichever role it gets.

    ``start()`` returns at once; the election, the store and indexing happen in background
    threads. ``search`` blocks (it embeds the query): call it from a worker thread. File events
    only enqueue. Nothing raises: failures show in ``status()`` and as empty results.
    """

    def __init__(
        self,
        root: Path,
        config: MemoryConfig,
        pool: ModelPool,
        on_progress: Callable[[IndexProgress], None] | None = None,
        needs_of: Callable[[ContextRequest], SearchNeeds | None] | None = None,
    ) -> None:
        """``needs_of``: what a cursor could use from the memory, when only chunks that serve
        it would reach the prompt (the completion's relevance filter): a search then waits
        for ``could_match`` and is skipped when no stored chunk could."""
        self.root = Path(os.path.abspath(root))
        self._needs_of = needs_of
        self.config = config
        self.embedder = Embedder(pool)
        self._priority = pool.priority
        self._on_progress = on_progress
        self._key = workspace_key(self.root)
        self.store_dir = default_store_path(self.root, config)
        self._lock = threading.RLock()
        self._closing = threading.Event()
        self._role: Role = "starting" if config.enabled else "disabled"
        self._last_error = "" if config.enabled else "memory is disabled (memory.enabled: false)"
        self._notice = ""
        self._ipc_error = ""  # the last client request's failure; cleared by a success
        self._owned: _Owned | None = None
        self._server: _Server | None = None
        self._client: _Client | None = None
        self._owner_lock: _OwnerLock | None = None
        self._provider: MemoryContextProvider | None = None
        self._outbox: queue.SimpleQueue[tuple[str, dict[str, Any]]] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    # -- public API ---------------------------------------------------------------------------

    @property
    def role(self) -> Role:
        return self._role

    @property
    def location(self) -> str:
        """The store folder, or the Qdrant server URL."""
        return self.config.url if self.config.backend == "qdrant" else str(self.store_dir)

    def start(self) -> None:
        if not self.config.enabled or self._threads or self._closing.is_set():
            return
        try:
            self.store_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Its payloads hold the workspace's code: a store left readable (an older memlsp, a
            # loose umask) is made the user's alone before anything more is written to it.
            tightened = make_private(self.store_dir)
            if tightened:
                log.info("memory store %s: made %d entries private", self.store_dir, tightened)
            socket_path = _socket_path(self.store_dir, self._key)
        except (OSError, StoreError) as exc:
            self._disable(f"memory store folder {self.store_dir}: {exc}")
            return
        self._owner_lock = _OwnerLock(self.store_dir / f"memlsp-{self._key}.owner.lock")
        self._client = _Client(socket_path, self._key)
        for target, name in ((self._supervise, "supervisor"), (self._forward, "forwarder")):
            thread = threading.Thread(target=target, name=f"memlsp-memory-{name}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def file_changed(self, paths: Iterable[Path | str]) -> None:
        self._mutate("changed", {"paths": [str(p) for p in paths]})

    def file_deleted(self, paths: Iterable[Path | str]) -> None:
        self._mutate("deleted", {"paths": [str(p) for p in paths]})

    def file_renamed(self, old: Path | str, new: Path | str) -> None:
        self._mutate("renamed", {"old": str(old), "new": str(new)})

    def cancel_indexing(self) -> None:
        """Stop the current full pass (the user cancelled its progress); owner only."""
        owned = self._owned
        if owned is not None:
            owned.indexer.cancel_pass()

    def reindex(self, rebuild: bool = False) -> None:
        self._mutate("reindex", {"rebuild": bool(rebuild)})

    def search(
        self,
        query: str,
        k: int,
        exclude_path: str | None = None,
        definitions_of: Sequence[str] = (),
    ) -> list[Hit]:
        """The ``k`` chunks best matching ``query`` (vectors and BM25 fused), best first,
        after the chunks defining ``definitions_of`` (names, e.g. imported ones), leaving out
        ``exclude_path`` (absolute, or relative to the root). [] when there is no memory
        (yet)."""
        exclude = self._relative_or_none(exclude_path)
        k = min(k, MAX_K)
        query = query[-MAX_QUERY_CHARS:]
        names = [n for n in definitions_of if len(n) <= MAX_NAME_CHARS][:MAX_NAMES]
        try:
            owned = self._owned
            if self._role == "owner" and owned is not None:
                return owned.search.search(query, k, exclude, names)
            if self._role == "client" and self._client is not None:
                raw = self._client.request(
                    "search",
                    self.config.ipc_timeout_ms / 1000,
                    query=query,
                    k=k,
                    exclude_path=exclude,
                    definitions_of=names,
                )
                self._ipc_error = ""
                return [_hit_from_json(h) for h in raw["hits"]]
        except _OwnerUnavailable as exc:
            self._ipc_failed(exc)
        except Exception as exc:
            if self._closing.is_set():  # a late guess (work-ahead) as the session ends
                log.debug("memory search after close: %s", exc)
                return []
            log.warning("memory search failed", exc_info=True)
            self._set_error(f"search failed: {type(exc).__name__}: {exc}")
        return []

    def could_match(self, needs: SearchNeeds, exclude_path: str | None = None) -> bool:
        """Whether a stored chunk outside ``exclude_path`` could serve ``needs``
        (memory/names.py); True whenever that cannot be told (no memory yet, the lexical index
        still loading, a failure, an owner too old to know): then the search runs."""
        if not _fits(needs):
            return True
        exclude = self._relative_or_none(exclude_path)
        try:
            owned = self._owned
            if self._role == "owner" and owned is not None:
                return _owner_could_match(owned, needs, exclude)
            if self._role == "client" and self._client is not None:
                raw = self._client.request(
                    "could_match",
                    self.config.ipc_timeout_ms / 1000,
                    exclude_path=exclude,
                    **_needs_to_json(needs),
                )
                return raw.get("could") is not False
        except _OwnerUnavailable as exc:
            self._ipc_failed(exc)
        except Exception:
            log.debug("memory could_match failed; searching", exc_info=True)
        return True

    def context_provider(self) -> MemoryContextProvider:
        with self._lock:
            if self._provider is None:
                self._provider = MemoryContextProvider(
                    self.search,
                    k=self.config.search_k,
                    budget_s=self.config.context_budget_ms / 1000,
                    relative=self._relative,
                    could_match=self.could_match,
                    needs_of=self._needs_of,
                )
            return self._provider

    def status(self) -> dict[str, Any]:
        """JSON-friendly: role, store, counts, skipped reasons, lag, last error. A client shows
        the owner's figures (``owner_pid``) or why it cannot."""
        base: dict[str, Any] = {
            "role": self._role,
            "enabled": self.config.enabled,
            "backend": self.config.backend,
            "workspace": str(self.root),
            "store": self.location,
            "pid": os.getpid(),
            "notice": self._notice,
            "last_error": self._last_error or self._ipc_error,
        }
        provider = self._provider
        if provider is not None:  # this window's completion context
            base["retrieval"] = {
                "searches": provider.searches,
                "prefetches": provider.prefetches,
                "cache_hits": provider.cache_hits,
                "over_budget": provider.over_budget,
                "kept": provider.kept,
                "typed_lookups": provider.typed_lookups,
                "skipped": provider.skipped,
            }
        try:
            if self._role == "owner":
                base.update(self._owner_status())
            elif self._role == "client" and self._client is not None:
                remote = self._client.request("status", self.config.ipc_timeout_ms / 1000)
                base.update({k: v for k, v in remote.items() if k not in ("role", "pid")})
                base["owner_pid"] = remote.get("pid", self._client.owner_pid)
                base["last_error"] = self._last_error or remote.get("last_error", "")
                self._ipc_error = ""
        except _OwnerUnavailable as exc:
            self._ipc_failed(exc)
            base["last_error"] = self._ipc_error
        except Exception as exc:
            log.warning("memory status failed", exc_info=True)
            base["last_error"] = f"status failed: {type(exc).__name__}: {exc}"
        return base

    def wait_idle(self, timeout: float) -> bool:
        """Until the role is settled and, for the owner, indexing has nothing left to do."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            owned = self._owned
            if self._role == "owner" and owned is not None:
                return owned.indexer.wait_idle(max(0.0, deadline - time.monotonic()))
            if self._role in ("client", "disabled"):
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        """Release the store and the lock: within about 2 s, whatever is running."""
        self._closing.set()
        provider = self._provider
        if provider is not None:
            provider.close()
        self._teardown_owner()
        client = self._client
        if client is not None:
            client.close()
        with self._lock:
            self._role = "disabled"
            if not self._last_error:
                self._last_error = "closed"

    # -- roles --------------------------------------------------------------------------------

    def _set_role(self, role: Role) -> None:
        with self._lock:
            if not self._closing.is_set() and role != self._role:
                log.info("memory of %s: %s -> %s", self.root, self._role, role)
                self._role = role

    def _set_error(self, message: str) -> None:
        with self._lock:
            self._last_error = message

    def _ipc_failed(self, exc: Exception) -> None:
        self._ipc_error = f"the indexing window did not answer: {exc}"

    def _disable(self, message: str) -> None:
        log.warning("memory of %s unavailable: %s", self.root, message)
        with self._lock:
            self._last_error = message
            self._role = "disabled"

    def _supervise(self) -> None:
        """Elect, and stay a client until the lock comes free (or take it at once).

        At normal priority: opening the store is short, and a niced thread starved for
        minutes on a busy machine while holding the owner lock (a second window then waited
        on an owner that served nothing). The indexer's passes run niced, and so does MemOS's
        import, before the election, holding no lock (``_import_niced``)."""
        self._import_niced()
        preloaded = False
        lock = self._owner_lock
        assert lock is not None
        while not self._closing.is_set():
            try:
                acquired = lock.try_acquire()
            except OSError as exc:
                self._disable(f"cannot use the lock {lock.path}: {exc}")
                self._closing.wait(self.config.retry_s)
                continue
            if acquired:
                if self._become_owner():
                    return
                self._closing.wait(self.config.retry_s)
                continue
            self._set_role("client")
            if not preloaded and self.config.standby_preload:
                preloaded = True
                # Taking over then costs an open (0.1-0.2 s), not MemOS's import (5-9 s).
                with contextlib.suppress(Exception):
                    load_memos()
            self._closing.wait(POLL_S)

    def _import_niced(self) -> None:
        """Import MemOS in a niced thread of its own and wait for it (or for a close). The
        import is 5-9 s of CPU in the first seconds of a session, when the editor asks its first
        completions: at normal priority it took a share of the 2 cores from the model's threads
        (the session's first cold request up to ~1 s slower, bench_vs_llama_server). It also
        waits between modules while a completion runs (``load_memos``'s ``pause``)."""

        def load() -> None:
            lower_thread_priority()
            with contextlib.suppress(Exception):  # the store's own open reports a failure
                load_memos(pause=lambda: self._priority.wait_quiet(IMPORT_PAUSE_S))

        loader = threading.Thread(target=load, name="memlsp-memory-import", daemon=True)
        loader.start()
        while loader.is_alive() and not self._closing.is_set():
            loader.join(POLL_S)

    def _become_owner(self) -> bool:
        """Open the store and start serving and indexing; False (lock released) on failure.
        Closing meanwhile: tears down what it made (close() may have run before it existed)."""
        self._set_role("starting")
        client = self._client
        assert client is not None
        client.close()
        store: MemoryStore | None = None
        try:
            server = _Server(client.path, self._handle)
            with self._lock:
                self._server = server
            server.start()
            store = self._open_store()
            if store is None:
                self._teardown_owner()
                return True
            self._own(store)
            if self._closing.is_set():
                self._teardown_owner()
                return True
            self._set_role("owner")
            return True
        except Exception as exc:
            if store is not None and self._owned is None:
                store.close()
            self._teardown_owner()
            self._disable(
                str(exc) if isinstance(exc, StoreError) else f"{type(exc).__name__}: {exc}"
            )
            return False

    def _own(self, store: MemoryStore) -> None:
        """Wire the indexer and the search to the opened store, and start indexing."""
        lexical = LexicalIndex()
        file_filter = FileFilter(
            self.root,
            include=self.config.include,
            exclude=self.config.exclude,
            max_file_bytes=self.config.max_file_kb * 1024,
        )
        indexer = Indexer(
            self.root,
            self.config,
            store,
            file_filter,
            manifest=Manifest.load(manifest_path(store), store.collection),
            lexical=lexical,
            on_progress=self._progress,
        )
        with self._lock:
            search = HybridSearch(store, lexical, lexical_weight=self.config.lexical_weight)
            self._owned = _Owned(store, indexer, search)
            self._last_error = ""
        if not self._closing.is_set():
            indexer.start()

    def _open_store(self) -> MemoryStore | None:
        """The opened store; waits while another process still holds it (a dead owner's
        optimizer child finishing). None if closing meanwhile."""
        notices = _Notices()
        backend_log = logging.getLogger("memlsp.memory.edge_backend")
        while True:
            store = MemoryStore(self.root, self.config, self.embedder)
            backend_log.addHandler(notices)
            try:
                store.open()
            except StoreLockedError as exc:
                self._set_error(f"waiting for the store: {exc}")
                if self._closing.wait(LOCKED_RETRY_S):
                    return None
                continue
            finally:
                backend_log.removeHandler(notices)
            if notices.messages:
                self._notice = notices.messages[-1]
            if self._closing.is_set():
                store.close()
                return None
            return store

    def _teardown_owner(self) -> None:
        """Stop serving, stop indexing, close the store, release the lock: each step bounded."""
        with self._lock:
            owned, self._owned = self._owned, None
            server, self._server = self._server, None
        if server is not None:
            server.close()
        if owned is not None:
            owned.indexer.close(timeout=CLOSE_STEP_S)
            # An optimizing store waits for its child: never hold the caller for it.
            closer = threading.Thread(target=owned.store.close, name="memlsp-store-close")
            closer.daemon = True
            closer.start()
            closer.join(CLOSE_STEP_S)
        lock = self._owner_lock
        if lock is not None:
            lock.release()

    def _progress(self, progress: IndexProgress) -> None:
        callback = self._on_progress
        if callback is not None and not self._closing.is_set():
            callback(progress)

    # -- requests -----------------------------------------------------------------------------

    def _mutate(self, op: str, args: dict[str, Any]) -> None:
        """File events: applied here by the owner, forwarded by a client (from a thread: the
        caller may be the event loop), dropped otherwise (the owner's next full pass, which
        compares every file with its manifest entry, catches up)."""
        try:
            if self._role == "owner":
                self._apply(op, args)
            elif self._role == "client":
                self._outbox.put((op, args))
        except Exception:
            log.warning("memory %s failed", op, exc_info=True)

    def _forward(self) -> None:
        while not self._closing.is_set():
            try:
                op, args = self._outbox.get(timeout=POLL_S)
            except queue.Empty:
                continue
            try:
                if self._role == "owner":
                    self._apply(op, args)
                elif self._role == "client" and self._client is not None:
                    self._client.request(op, self.config.ipc_timeout_ms / 1000, **args)
            except _OwnerUnavailable as exc:
                self._ipc_failed(exc)
                log.info("memory: %s not forwarded (%s); the owner's next pass catches up", op, exc)
            except Exception:
                log.warning("memory %s failed", op, exc_info=True)

    def _apply(self, op: str, args: dict[str, Any]) -> None:
        owned = self._owned
        if owned is None:
            return  # starting: the first full pass sees the change
        indexer = owned.indexer
        if op == "changed":
            indexer.update(_paths_arg(args, "paths"))
        elif op == "deleted":
            indexer.delete(_paths_arg(args, "paths"))
        elif op == "renamed":
            indexer.rename(_path_arg(args.get("old"), "old"), _path_arg(args.get("new"), "new"))
        elif op == "reindex":
            indexer.reindex(rebuild=args.get("rebuild") is True)
        else:
            raise ValueError(f"unknown op {op!r}")

    def _handle(self, request: dict[str, Any]) -> dict[str, Any]:
        """A client's request, in the owner (a connection thread)."""
        op = request["op"]
        if op == "hello":
            return {"pid": os.getpid(), "key": self._key, "protocol": PROTOCOL}
        if op == "status":
            return self.status()
        if op == "search":
            query, k = request.get("query"), request.get("k")
            exclude = request.get("exclude_path")
            if not isinstance(query, str) or len(query) > MAX_QUERY_CHARS:
                raise ValueError(f"query: a string of at most {MAX_QUERY_CHARS} characters")
            if not isinstance(k, int) or not 0 <= k <= MAX_K:
                raise ValueError(f"k: an integer from 0 to {MAX_K}")
            if exclude is not None:
                exclude = _path_arg(exclude, "exclude_path")
            names = request.get("definitions_of", [])  # absent from older peers
            if (
                not isinstance(names, list)
                or len(names) > MAX_NAMES
                or not all(isinstance(n, str) and len(n) <= MAX_NAME_CHARS for n in names)
            ):
                raise ValueError(
                    f"definitions_of: at most {MAX_NAMES} names of {MAX_NAME_CHARS} characters"
                )
            owned = self._owned
            hits = owned.search.search(query, k, exclude, names) if owned is not None else []
            return {"hits": [_hit_to_json(h) for h in hits]}
        if op == "could_match":
            exclude = request.get("exclude_path")
            if exclude is not None:
                exclude = _path_arg(exclude, "exclude_path")
            needs = _needs_from_json(request)
            owned = self._owned
            return {"could": owned is None or _owner_could_match(owned, needs, exclude)}
        if op in ("changed", "deleted", "renamed", "reindex"):
            self._apply(op, request)
            return {}
        raise ValueError(f"unknown op {op!r}")

    def _owner_status(self) -> dict[str, Any]:
        owned = self._owned
        if owned is None:
            return {}
        status = owned.indexer.status()
        indexer_error = status.pop("last_error", "")
        status["last_error"] = self._last_error or indexer_error
        return status

    # -- paths --------------------------------------------------------------------------------

    def _relative(self, path: str) -> str:
        """A request's path as the store spells it: relative to the root, POSIX."""
        full = Path(os.path.abspath(self.root / path))
        try:
            return full.relative_to(self.root).as_posix()
        except ValueError:
            return path

    def _relative_or_none(self, path: str | None) -> str | None:
        return None if path is None else self._relative(path)
