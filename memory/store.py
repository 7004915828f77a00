"""The workspace memory store: code chunks in MemOS's GeneralTextMemory on Qdrant.

Two backends behind ``memory.backend``: ``edge`` (default; an embedded Qdrant Edge shard under the
cache folder, one per workspace) and ``qdrant`` (MemOS's Qdrant server backend, for teams). Every
chunk is a TextualMemoryItem with a deterministic id (uuid5 of path, symbol and start line) and
our fields in its metadata; MemOS's GeneralTextMemory embeds and adds them, and the vector store's
own filters do what GeneralTextMemory cannot (exclude a file, delete a file).

All methods block (MemOS costs seconds to import, embedding costs milliseconds per chunk): call
them from worker threads, never from the event loop.
"""

# MemOS ships no type information (imported lazily below).
# mypy: disable-error-code="import-untyped"

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.abc
import io
import logging
import logging.config
import os
import re
import sys
import threading
import uuid
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from memlsp.config.paths import cache_root, private_folder
from memlsp.config.schema import MemoryConfig
from memlsp.memory.embedder import Embedder
from memlsp.memory.records import (
    ChunkRecord,
    Hit,
    StoreBusyError,
    StoredChunk,
    StoreError,
    StoreFullError,
    StoreUnavailableError,
)

if TYPE_CHECKING:
    from types import TracebackType

log = logging.getLogger(__name__)

FILE_PATH = "metadata.file_path"
CONTENT_HASH = "metadata.content_hash"
SYMBOL = "metadata.symbol"
# Start an index build once this many points are searched by brute force (below that, brute
# force over 384-d vectors is a few milliseconds anyway).
OPTIMIZE_MIN_UNINDEXED = 8000
# Free disk space an Edge store needs to open and write: loading one touches a whole 32 MB WAL
# segment and more (48 MB measured for a small store), and a mapped write the disk cannot back
# is a SIGBUS (the process dies), not an error. Below this the store refuses with StoreFullError.
MIN_FREE_BYTES = 128 << 20

_memos_lock = threading.Lock()
_backend: ModuleType | None = None


class _PausingFinder(importlib.abc.MetaPathFinder):
    """First on ``sys.meta_path`` while MemOS imports: before each module the importing thread
    loads, ``pause`` (waits while a completion runs); finds nothing itself. Other threads pass
    straight through."""

    def __init__(self, pause: Callable[[], None]) -> None:
        self._pause = pause
        self._thread = threading.get_ident()

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> None:
        if threading.get_ident() == self._thread:
            self._pause()


def load_memos(pause: Callable[[], None] | None = None) -> ModuleType:
    """Import MemOS (through our backend module) once, containing its side effects.

    MemOS at import: prints warnings to stdout (ours carries JSON-RPC), replaces the root
    logger's handlers with a stdout and a file handler (dictConfig), writes logs under
    ``$MEMOS_BASE_PATH`` (default: the current directory, i.e. the user's workspace) and loads a
    ``.env`` found from the current directory or above its package. We point MEMOS_BASE_PATH at
    our cache, disable python-dotenv for the process (MemOS also calls it lazily), catch what it
    prints, and never let its logging configuration apply: the import runs in a background
    thread at the lowest priority, seconds to tens of seconds while completions take the cores,
    and every other thread's log records (warnings for the client's window included) went to
    MemOS's handlers meanwhile. Its records reach ours: errors at import, warnings after.

    ``pause``: called before each module the import loads (from this thread only), to wait
    while completions run: 2.2 s of Python beside them cost the session's first cold requests
    1-3 % of their prompt speed and up to 8 % of their decoding speed (the GIL, which the model's
    thread takes back after every token). A module another thread imports meanwhile may be one
    whose import is paused: ``pause`` must return within a bounded time.
    """
    global _backend
    with _memos_lock:
        if _backend is not None:
            return _backend
        base = private_folder(cache_root() / "memos")  # MemOS's logs may quote stored code
        os.environ["MEMOS_BASE_PATH"] = str(base)
        os.environ["PYTHON_DOTENV_DISABLED"] = "1"
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        printed = io.StringIO()
        # At import MemOS warns about optional parts we do not use (a text splitter, a config
        # service); later it logs every embedding request and collection check at INFO.
        memos_log = logging.getLogger("memos")
        memos_log.setLevel(logging.ERROR)
        # memos.log binds dictConfig when it is imported: it keeps this stand-in for good.
        real_dict_config = logging.config.dictConfig
        logging.config.dictConfig = _leave_logging_alone
        finder = _PausingFinder(pause) if pause is not None else None
        if finder is not None:
            sys.meta_path.insert(0, finder)
        try:
            with contextlib.redirect_stdout(printed):
                from memlsp.memory import edge_backend
        finally:
            if finder is not None:
                sys.meta_path.remove(finder)
            logging.config.dictConfig = real_dict_config
            memos_log.setLevel(logging.WARNING)
            # A safety net, should another path of MemOS's reconfigure logging.
            for handler in list(root.handlers):
                if handler not in handlers:
                    root.removeHandler(handler)
                    handler.close()
            for handler in handlers:
                if handler not in root.handlers:
                    root.addHandler(handler)
            root.setLevel(level)
        if printed.getvalue().strip():
            log.debug("MemOS printed at import: %s", printed.getvalue().strip())
        edge_backend.register()
        _backend = edge_backend
        return edge_backend


def _leave_logging_alone(config: Any) -> None:
    """What MemOS calls to configure logging: the server's configuration stays."""
    log.debug("MemOS's logging configuration left out")


_P = ParamSpec("_P")
_R = TypeVar("_R")
# Where a Qdrant server's client errors come from (HTTP or gRPC transport, or the client).
_SERVER_ERROR_MODULES = ("qdrant_client", "httpx", "httpcore", "grpc")


def _server_errors(
    method: Callable[Concatenate[MemoryStore, _P], _R],
) -> Callable[Concatenate[MemoryStore, _P], _R]:
    """A Qdrant server that went away mid-session: its client's errors become
    StoreUnavailableError, which callers treat as "no memory for now" (the indexer pauses and
    retries; searches return nothing). The client reconnects by itself once it is back."""

    @functools.wraps(method)
    def wrapper(self: MemoryStore, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        except StoreError:
            raise
        except Exception as exc:
            origin = type(exc).__module__.split(".")[0]
            if self._config.backend == "qdrant" and (
                origin in _SERVER_ERROR_MODULES or isinstance(exc, OSError)
            ):
                raise StoreUnavailableError(
                    f"Qdrant server {self._config.url}: {type(exc).__name__}: {exc}"
                ) from exc
            raise

    return wrapper


def workspace_key(workspace_root: Path | str) -> str:
    """Short stable id of a workspace: the first 16 hex digits of sha1(resolved root)."""
    resolved = str(Path(workspace_root).expanduser().resolve())
    return hashlib.sha1(resolved.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def default_store_path(workspace_root: Path | str, config: MemoryConfig) -> Path:
    if config.path:
        return Path(config.path).expanduser()
    return cache_root() / workspace_key(workspace_root) / "store"


def collection_name(workspace_root: Path | str, embedder: Embedder) -> str:
    """Names the workspace (a Qdrant server holds many), the embedder and its dimension
    (vectors of another model must never mix with these)."""
    model = re.sub(r"[^a-z0-9-]+", "-", embedder.name.lower()).strip("-")
    return f"memlsp-{workspace_key(workspace_root)}-{model}-{embedder.dimension}"


class MemoryStore:
    """Code chunks of one workspace, searchable by meaning.

    ``open()`` raises StoreLockedError (another process has the Edge store open) or
    StoreUnavailableError (Qdrant server unreachable, store not accessible).
    """

    def __init__(
        self, workspace_root: Path | str, config: MemoryConfig, embedder: Embedder
    ) -> None:
        self._config = config
        self._embedder = embedder
        self.collection = collection_name(workspace_root, embedder)
        self.path = default_store_path(workspace_root, config)
        self._handle = f"{self.collection}-{uuid.uuid4().hex[:8]}"
        self._memory: Any = None
        self._db: Any = None
        self._write_lock = threading.RLock()

    @property
    def location(self) -> str:
        """Where the data lives: the Edge store folder, or the Qdrant server URL."""
        return self._config.url if self._config.backend == "qdrant" else str(self.path)

    @property
    def is_open(self) -> bool:
        return self._memory is not None

    @property
    def optimizing(self) -> bool:
        """True while a child process builds the index: searches return nothing meanwhile,
        and writes, ``count`` and ``file_hashes`` wait for it."""
        return bool(getattr(self._db, "optimizing", False))

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        if self._memory is not None:
            return
        try:
            backend = load_memos()
        except ImportError as exc:
            raise StoreUnavailableError(f"MemOS could not be imported: {exc}") from exc
        from memos.configs.memory import GeneralTextMemoryConfig
        from memos.memories.textual.general import GeneralTextMemory

        vector_db = self._vector_db_config(backend)
        backend.register_embedder(self._handle, self._embedder)
        config = GeneralTextMemoryConfig(
            extractor_llm={"backend": backend.NULL_LLM_BACKEND, "config": {}},
            embedder={
                "backend": backend.EMBEDDER_BACKEND,
                "config": {
                    "model_name_or_path": self._embedder.name,
                    "embedding_dims": self._embedder.dimension,
                    "handle": self._handle,
                },
            },
            vector_db=vector_db,
        )
        try:
            with warnings.catch_warnings():
                # MemOS's factories keep a typed config in a dict-typed field: pydantic warns
                # about it on every model_dump, for MemOS's own backends as much as ours.
                warnings.filterwarnings("ignore", "Pydantic serializer warnings", UserWarning)
                memory = GeneralTextMemory(config)
            memory.vector_db.ensure_payload_indexes([FILE_PATH, CONTENT_HASH])
        except StoreError:
            backend.unregister_embedder(self._handle)
            raise
        except Exception as exc:
            backend.unregister_embedder(self._handle)
            raise StoreUnavailableError(f"memory store at {self.location}: {exc}") from exc
        self._memory, self._db = memory, memory.vector_db
        log.info(
            "memory store %s open at %s (%d chunks)", self.collection, self.location, self.count()
        )

    def _vector_db_config(self, backend: ModuleType) -> dict[str, Any]:
        common = {
            "collection_name": self.collection,
            "vector_dimension": self._embedder.dimension,
            "distance_metric": "cosine",
        }
        if self._config.backend == "qdrant":
            url = self._config.url
            if not url:
                raise StoreUnavailableError("memory.backend is qdrant but memory.url is empty")
            api_key = None
            if self._config.api_key_env:
                api_key = os.environ.get(self._config.api_key_env)
                if not api_key:
                    raise StoreUnavailableError(
                        f"memory.api_key_env names {self._config.api_key_env}, which is not set"
                    )
            backend.check_reachable(url)
            return {
                "backend": backend.SERVER_BACKEND,
                "config": {**common, "url": url, "api_key": api_key},
            }
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.check_free_space()
        return {"backend": backend.EDGE_BACKEND, "config": {**common, "path": str(self.path)}}

    def check_free_space(self) -> None:
        """Raise StoreFullError when the Edge store's disk is nearly full (no-op for a server)."""
        if self._config.backend == "qdrant":
            return
        try:
            fs = os.statvfs(self.path)
        except OSError:
            return  # unknown: the write itself will tell
        free = fs.f_bavail * fs.f_frsize
        if free < MIN_FREE_BYTES:
            raise StoreFullError(
                f"disk nearly full at {self.path}: {free >> 20} MB free, the memory store needs "
                f"{MIN_FREE_BYTES >> 20} MB; free some space (memory resumes by itself)"
            )

    def close(self) -> None:
        db, self._db, self._memory = self._db, None, None
        if db is not None:
            try:
                db.close()
            finally:
                load_memos().unregister_embedder(self._handle)

    def __enter__(self) -> MemoryStore:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _open_db(self) -> Any:
        if self._db is None:
            raise StoreError("the memory store is not open")
        return self._db

    # -- writes ------------------------------------------------------------------------------

    @_server_errors
    def upsert(self, chunks: Sequence[ChunkRecord]) -> int:
        """Store chunks; returns how many had to be embedded.

        Chunks already stored with the same content are skipped; a chunk whose text is stored
        under another id (code that moved, e.g. below a new import line) reuses that vector.
        """
        from memos.memories.textual.item import (
            TextualMemoryItem,
            TextualMemoryMetadata,
        )
        from memos.vec_dbs.item import VecDBItem

        db = self._open_db()
        unique = {chunk.id: chunk for chunk in chunks}
        with self._write_lock:
            stored = {item.id: _hash_of(item.payload) for item in db.get_by_ids(list(unique))}
            changed = [c for i, c in unique.items() if stored.get(i) != c.content_hash]
            if not changed:
                return 0
            self.check_free_space()
            known = self._vectors_by_hash({c.content_hash for c in changed})
            items = {
                c.id: TextualMemoryItem(
                    id=c.id,
                    memory=c.text,
                    metadata=TextualMemoryMetadata(source="file", **c.metadata()),
                )
                for c in changed
            }
            reused = [
                VecDBItem(id=c.id, vector=known[c.content_hash], payload=items[c.id].model_dump())
                for c in changed
                if c.content_hash in known
            ]
            fresh = [items[c.id] for c in changed if c.content_hash not in known]
            if reused:
                db.add(reused)
            if fresh:
                self._memory_or_fail().add(fresh)
            return len(fresh)

    def _vectors_by_hash(self, hashes: set[str]) -> dict[str, list[float]]:
        if not hashes:
            return {}
        items = self._open_db().scroll({CONTENT_HASH: sorted(hashes)}, [CONTENT_HASH], True)
        return {_hash_of(i.payload): i.vector for i in items if i.vector}

    @_server_errors
    def replace_file(self, path: str, chunks: Sequence[ChunkRecord]) -> int:
        """Make ``path``'s stored chunks exactly ``chunks``; returns how many were embedded."""
        wanted = {chunk.id for chunk in chunks if chunk.path == path}
        if len(wanted) != len(chunks):
            raise ValueError(f"replace_file({path!r}) got chunks of other files")
        db = self._open_db()
        with self._write_lock:
            embedded = self.upsert(chunks)
            stale = [
                i.id for i in db.scroll({FILE_PATH: path}, [FILE_PATH], False) if i.id not in wanted
            ]
            db.delete(stale)
            return embedded

    @_server_errors
    def delete_file(self, path: str) -> None:
        with self._write_lock:
            self._open_db().delete_by_filter({FILE_PATH: path})

    def optimize_in_background(self, min_unindexed: int = OPTIMIZE_MIN_UNINDEXED) -> bool:
        """Start an index build in a child process when enough points are unindexed (Edge).

        Returns whether one started. Meanwhile ``search_vectors`` returns nothing and writes
        wait; call it when indexing goes idle.
        """
        db = self._open_db()
        if db.unindexed_count() < min_unindexed:
            return False
        return bool(db.optimize_in_background())

    # -- reads -------------------------------------------------------------------------------

    @_server_errors
    def search_vectors(self, query: str, k: int, exclude_path: str | None = None) -> list[Hit]:
        """The ``k`` chunks nearest to ``query`` in meaning, best first, optionally leaving out
        one file (usually the one being edited: its text is already in the prompt)."""
        db = self._open_db()
        if k <= 0:
            return []
        vector = self._embedder.embed([query], interactive=True)[0]
        selector = {"must_not": {FILE_PATH: exclude_path}} if exclude_path else None
        try:
            items = db.search(vector, k, selector)
        except StoreBusyError:
            return []  # being optimized: no memory for a little while beats waiting
        hits = [
            Hit(ChunkRecord.from_payload(i.payload or {}), float(i.score or 0.0)) for i in items
        ]
        return sorted(hits, key=lambda h: h.score, reverse=True)

    @_server_errors
    def records_by_id(self, ids: Sequence[str]) -> dict[str, ChunkRecord]:
        """Stored chunks by id; none while the store is being optimized (the read would wait
        for the index build, and callers are completions that cannot)."""
        if not ids or self.optimizing:
            return {}
        items = self._open_db().get_by_ids(list(ids))
        return {str(i.id): ChunkRecord.from_payload(i.payload or {}) for i in items}

    @_server_errors
    def stored_chunks(self) -> list[StoredChunk]:
        """Every stored chunk's id, path, symbol, content hash and text (no vectors)."""
        items = self._open_db().scroll(None, ["memory", FILE_PATH, SYMBOL, CONTENT_HASH], False)
        out = []
        for item in items:
            payload = item.payload or {}
            meta = payload.get("metadata") or {}
            out.append(
                StoredChunk(
                    id=str(item.id),
                    path=str(meta.get("file_path", "")),
                    symbol=str(meta.get("symbol", "")),
                    content_hash=str(meta.get("content_hash", "")),
                    text=str(payload.get("memory", "")),
                )
            )
        return out

    @_server_errors
    def count(self) -> int:
        return int(self._open_db().count())

    @_server_errors
    def file_hashes(self) -> dict[str, set[str]]:
        """Content hashes stored per file path: what an incremental re-index compares against."""
        result: dict[str, set[str]] = {}
        for item in self._open_db().scroll(None, [FILE_PATH, CONTENT_HASH], False):
            meta = (item.payload or {}).get("metadata") or {}
            result.setdefault(str(meta.get("file_path", "")), set()).add(
                str(meta.get("content_hash", ""))
            )
        return result

    def _memory_or_fail(self) -> Any:
        if self._memory is None:
            raise StoreError("the memory store is not open")
        return self._memory


def _hash_of(payload: dict[str, Any] | None) -> str:
    meta = (payload or {}).get("metadata") or {}
    return str(meta.get("content_hash", ""))
