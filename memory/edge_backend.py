"""MemOS backends for memlsp: a vector store over Qdrant Edge, and the two small adapters MemOS
needs around it (our embedder, and a null extractor LLM).

Import this module only through ``memlsp.memory.store.load_memos()``: importing MemOS writes to
stdout, installs root-logger handlers and reads ``.env`` files, and that function contains it.

Everything is registered in MemOS's factories (plain class-level dicts) by :func:`register`; no
MemOS code is patched. Filters are dicts: ``{"metadata.file_path": "a.py"}`` must match (a list
value matches any of its items) and ``{"must_not": {...}}`` must not.

Qdrant Edge facts that shaped this module (measured with qdrant-edge-py 0.9.0):
- A second ``EdgeShard.load`` of an open shard fails on the WAL lock, but before failing it has
  touched the payload index so that the *holder's* next flush fails ("tracker journal is shorter
  than expected"). So a file lock of our own is taken before Edge ever sees the path.
- ``optimize()`` holds the GIL for its whole run (12 s at 20k points): a Python thread would
  freeze the server. It runs in a child process while the shard is closed here.
"""

# MemOS ships no type information; its classes are Any to mypy.
# mypy: disable-error-code="import-untyped"
# mypy: allow-subclassing-any

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import qdrant_edge as qe
from memos.configs.embedder import BaseEmbedderConfig, EmbedderConfigFactory
from memos.configs.llm import BaseLLMConfig, LLMConfigFactory
from memos.configs.vec_db import BaseVecDBConfig, QdrantVecDBConfig, VectorDBConfigFactory
from memos.embedders.base import BaseEmbedder
from memos.embedders.factory import EmbedderFactory
from memos.llms.base import BaseLLM
from memos.llms.factory import LLMFactory
from memos.vec_dbs.base import BaseVecDB
from memos.vec_dbs.factory import VecDBFactory
from memos.vec_dbs.item import VecDBItem
from memos.vec_dbs.qdrant import QdrantVecDB
from pydantic import Field

from memlsp.memory.embedder import Embedder
from memlsp.memory.records import (
    StoreBusyError,
    StoreError,
    StoreLockedError,
    StoreUnavailableError,
)

log = logging.getLogger(__name__)

EDGE_BACKEND = "qdrant_edge"
SERVER_BACKEND = "qdrant_server"
EMBEDDER_BACKEND = "memlsp"
NULL_LLM_BACKEND = "null"

Filter = Mapping[str, Any]

_SCROLL_PAGE = 1000
_DISTANCES = {"cosine": qe.Distance.Cosine, "dot": qe.Distance.Dot, "euclidean": qe.Distance.Euclid}
# The child that optimizes a closed shard: only qdrant_edge, so it starts fast and prints nothing.
_OPTIMIZE_CHILD = (
    "import sys, qdrant_edge\n"
    "shard = qdrant_edge.EdgeShard.load(sys.argv[1])\n"
    "shard.optimize()\n"
    "shard.close()\n"
)
_OPTIMIZE_TIMEOUT_S = 1800.0


# -- embedder and null LLM adapters ----------------------------------------------------------

# MemOS builds embedders from (serialisable) configs: the config names one of these by handle.
_EMBEDDERS: weakref.WeakValueDictionary[str, Embedder] = weakref.WeakValueDictionary()


def register_embedder(handle: str, embedder: Embedder) -> None:
    _EMBEDDERS[handle] = embedder


def unregister_embedder(handle: str) -> None:
    _EMBEDDERS.pop(handle, None)


class MemlspEmbedderConfig(BaseEmbedderConfig):
    handle: str = Field(..., description="key of a memlsp Embedder given to register_embedder")


class MemlspEmbedder(BaseEmbedder):
    """MemOS's view of our :class:`Embedder` (llama.cpp through the model pool)."""

    def __init__(self, config: MemlspEmbedderConfig) -> None:
        self.config = config
        try:
            self._embedder = _EMBEDDERS[config.handle]
        except KeyError:
            raise StoreError(f"no embedder registered under {config.handle!r}") from None

    def embed(self, texts: list[str]) -> list[list[float]]:
        return self._embedder.embed(texts)


class NullLLMConfig(BaseLLMConfig):
    model_name_or_path: str = "none"


class NullLLM(BaseLLM):
    """GeneralTextMemory insists on an extractor LLM; we add items directly and never extract."""

    def __init__(self, config: NullLLMConfig) -> None:
        self.config = config

    def generate(self, messages: Any, **kwargs: Any) -> str:
        raise RuntimeError("memlsp adds memories directly: the extractor LLM is never called")

    def generate_stream(self, messages: Any, **kwargs: Any) -> Iterator[str]:
        raise RuntimeError("memlsp adds memories directly: the extractor LLM is never called")


# -- the store lock ----------------------------------------------------------------------------


class StoreLock:
    """An exclusive, non-blocking flock on ``<shard>.lock``; the OS releases it if we die.

    Taken before Edge opens the shard (see the module docstring). Two opens in one process
    conflict too: flock locks belong to an open file description, not to a process.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            raise StoreLockedError(
                f"memory store {path.with_suffix('')} is already open in another memlsp "
                f"process{f' (pid {holder})' if holder else ''}: one store, one process"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the last descriptor drops the flock
            self.fd = -1


def _unused_path(path: Path) -> Path:
    candidate, n = path, 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}-{n}")
    return candidate


def _read_pid(fd: int) -> str:
    try:
        return os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return ""


# -- filters ---------------------------------------------------------------------------------


def _edge_condition(key: str, value: Any) -> qe.FieldCondition:
    if isinstance(value, list | tuple | set | frozenset):
        return qe.FieldCondition(key=key, match=qe.MatchAny(list(value)))
    return qe.FieldCondition(key=key, match=qe.MatchValue(value))


def edge_filter(spec: Filter | None) -> qe.Filter | None:
    """Our filter dict as an Edge filter (None when there is nothing to filter)."""
    if not spec:
        return None
    must: list[qe.ConditionType] = [
        _edge_condition(k, v) for k, v in spec.items() if k != "must_not"
    ]
    must_not: list[qe.ConditionType] = [
        _edge_condition(k, v) for k, v in (spec.get("must_not") or {}).items()
    ]
    return qe.Filter(must=must or None, must_not=must_not or None)


def _item(point: Any, score: float | None = None) -> VecDBItem:
    return VecDBItem(id=str(point.id), vector=point.vector, payload=point.payload, score=score)


def _vector_item(data: VecDBItem | dict[str, Any]) -> VecDBItem:
    return VecDBItem.from_dict(dict(data)) if isinstance(data, dict) else data


# -- Qdrant Edge -------------------------------------------------------------------------------


class EdgeVecDBConfig(BaseVecDBConfig):
    path: str = Field(..., description="store folder; the shard lives in <path>/<collection>")
    payload_indexes: list[str] = Field(
        default_factory=list, description="payload keys to index (keyword) at open"
    )


class EdgeVecDB(BaseVecDB):
    """A MemOS vector store on an embedded Qdrant Edge shard (one collection = one shard).

    Blocking and thread-safe: every shard call is serialised (Edge holds the GIL anyway).
    """

    def __init__(self, config: EdgeVecDBConfig) -> None:
        self.config = config
        self.root = Path(config.path)
        self.shard_path = self.root / config.collection_name
        self._cv = threading.Condition()
        self._closed = False
        self._optimizer: threading.Thread | None = None
        self._child: subprocess.Popen[bytes] | None = None
        self._lock = StoreLock(self.shard_path.with_name(self.shard_path.name + ".lock"))
        try:
            self._shard: qe.EdgeShard | None = self._open_or_rebuild()
            self.ensure_payload_indexes(list(config.payload_indexes))
        except BaseException:
            self._lock.release()
            raise

    # -- opening -------------------------------------------------------------------------

    def _edge_config(self) -> qe.EdgeConfig:
        metric = self.config.distance_metric or "cosine"
        if not self.config.vector_dimension:
            raise StoreError("vector_dimension is required for a new Qdrant Edge collection")
        params = qe.EdgeVectorParams(size=self.config.vector_dimension, distance=_DISTANCES[metric])
        return qe.EdgeConfig(vectors=params)

    def _open_or_rebuild(self) -> qe.EdgeShard:
        path = self.shard_path
        if not path.is_dir() or not any(path.iterdir()):
            return qe.EdgeShard.create(str(path), self._edge_config())
        shard = None
        try:
            shard = qe.EdgeShard.load(str(path))
            shard.count(qe.CountRequest())  # a cheap read: some damage only shows on use
            return shard
        except BaseException as exc:  # Rust panics arrive as pyo3's PanicException(BaseException)
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            if shard is not None:
                with contextlib.suppress(BaseException):
                    shard.close()
            return self._rebuild(exc)

    def _rebuild(self, exc: BaseException) -> qe.EdgeShard:
        text = str(exc)
        if "WouldBlock" in text:  # a foreign process holds Edge's own lock
            raise StoreLockedError(f"memory store {self.shard_path} is in use: {text}") from exc
        if isinstance(exc, PermissionError) or "Permission denied" in text:
            raise StoreUnavailableError(f"memory store {self.shard_path}: {text}") from exc
        aside = _unused_path(
            self.shard_path.with_name(f"{self.shard_path.name}.corrupt-{int(time.time())}")
        )
        log.warning(
            "memory store %s is corrupt (%s: %s); moved it to %s and started an empty one: the "
            "workspace will be indexed again",
            self.shard_path,
            type(exc).__name__,
            text[:300],
            aside,
        )
        self.shard_path.rename(aside)
        return qe.EdgeShard.create(str(self.shard_path), self._edge_config())

    @contextlib.contextmanager
    def _use(self, wait: bool = True) -> Iterator[qe.EdgeShard]:
        """The open shard, held exclusively; while a child optimizes it, reads that cannot
        wait get StoreBusyError and the rest wait for it to come back."""
        with self._cv:
            while self._shard is None and self._optimizer is not None and not self._closed:
                if not wait:
                    raise StoreBusyError(f"memory store {self.shard_path} is being optimized")
                self._cv.wait()
            if self._shard is None:
                state = "closed" if self._closed else "not open (collection deleted?)"
                raise StoreError(f"memory store {self.shard_path} is {state}")
            yield self._shard

    # -- collections (one shard per collection folder) -----------------------------------

    def create_collection(self) -> None:
        with self._cv:
            if self._shard is None and not self._closed and self._optimizer is None:
                self._shard = qe.EdgeShard.create(str(self.shard_path), self._edge_config())
                self._cv.notify_all()

    def list_collections(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if p.is_dir() and ".corrupt-" not in p.name and (p / "edge_config.json").exists()
        )

    def delete_collection(self, name: str) -> None:
        if name != self.config.collection_name:
            raise StoreError(f"collection {name} belongs to another store handle")
        with self._cv:
            if self._optimizer is not None:
                raise StoreBusyError(f"memory store {self.shard_path} is being optimized")
            if self._shard is not None:
                self._shard.close()
                self._shard = None
            shutil.rmtree(self.shard_path, ignore_errors=True)

    def collection_exists(self, name: str) -> bool:
        return name in self.list_collections()

    # -- reads -----------------------------------------------------------------------------

    def search(
        self, query_vector: list[float], top_k: int, filter: Filter | None = None
    ) -> list[VecDBItem]:
        request = qe.QueryRequest(
            limit=top_k,
            query=qe.Query.Nearest(list(query_vector)),
            filter=edge_filter(filter),
            with_payload=True,
            with_vector=False,
        )
        with self._use(wait=False) as shard:
            points = shard.query(request)
        return [_item(p, p.score) for p in points]

    def get_by_id(self, id: str) -> VecDBItem | None:
        items = self.get_by_ids([id])
        return items[0] if items else None

    def get_by_ids(self, ids: list[str]) -> list[VecDBItem]:
        if not ids:
            return []
        with self._use() as shard:
            records = shard.retrieve(list(ids), True, True)
        return [_item(r) for r in records]

    def scroll(
        self,
        filter: Filter | None = None,
        fields: Sequence[str] | None = None,
        vectors: bool = True,
    ) -> list[VecDBItem]:
        """Every point matching ``filter``; ``fields`` limits the payload to those keys."""
        payload: Any = qe.PayloadSelector.Include(list(fields)) if fields is not None else True
        items: list[VecDBItem] = []
        offset: Any = None
        while True:
            request = qe.ScrollRequest(
                offset=offset,
                limit=_SCROLL_PAGE,
                filter=edge_filter(filter),
                with_payload=payload,
                with_vector=vectors,
            )
            with self._use() as shard:
                records, offset = shard.scroll(request)
            items.extend(_item(r) for r in records)
            if offset is None or not records:
                return items

    def get_by_filter(self, filter: dict[str, Any]) -> list[VecDBItem]:
        return self.scroll(filter)

    def get_all(self) -> list[VecDBItem]:
        return self.scroll(None)

    def count(self, filter: dict[str, Any] | None = None) -> int:
        with self._use() as shard:
            return int(shard.count(qe.CountRequest(exact=True, filter=edge_filter(filter))))

    def unindexed_count(self) -> int:
        """Points not yet in an HNSW index (searched by brute force until optimized)."""
        with self._use() as shard:
            info = shard.info()
        return max(0, int(info.points_count) - int(info.indexed_vectors_count))

    # -- writes ----------------------------------------------------------------------------

    def add(self, data: list[VecDBItem | dict[str, Any]]) -> None:
        points = []
        for raw in data:
            item = _vector_item(raw)
            if item.vector is None:
                raise StoreError(f"item {item.id} has no vector")
            points.append(qe.Point(item.id, list(item.vector), item.payload or {}))
        if points:
            with self._use() as shard:
                shard.update(qe.UpdateOperation.upsert_points(points))

    def upsert(self, data: list[VecDBItem | dict[str, Any]]) -> None:
        self.add(data)  # Edge's upsert_points already inserts or replaces by id

    def update(self, id: str, data: VecDBItem | dict[str, Any]) -> None:
        item = _vector_item(data)
        if item.vector:
            self.add([VecDBItem(id=id, vector=item.vector, payload=item.payload)])
            return
        with self._use() as shard:
            shard.update(qe.UpdateOperation.set_payload([id], item.payload or {}))

    def delete(self, ids: list[str]) -> None:
        if ids:
            with self._use() as shard:
                shard.update(qe.UpdateOperation.delete_points(list(ids)))

    def delete_by_filter(self, filter: Filter) -> None:
        selector = edge_filter(filter)
        if selector is None:
            raise StoreError("delete_by_filter needs a non-empty filter")
        with self._use() as shard:
            shard.update(qe.UpdateOperation.delete_points_by_filter(selector))

    def ensure_payload_indexes(self, fields: list[str]) -> None:
        with self._use() as shard:
            for name in fields:  # creating an existing index is a no-op in Edge
                shard.update(
                    qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Keyword)
                )

    def flush(self) -> None:
        with self._use() as shard:
            shard.flush()

    # -- optimizing in a child process -----------------------------------------------------

    @property
    def optimizing(self) -> bool:
        return self._optimizer is not None

    def optimize_in_background(self) -> bool:
        """Build the HNSW index / vacuum in a child process; False if one is already running.

        The shard is closed here meanwhile: searches get StoreBusyError, writes wait.
        """
        with self._cv:
            if self._closed or self._optimizer is not None or self._shard is None:
                return False
            self._optimizer = threading.Thread(
                target=self._optimize, name="memlsp-edge-optimize", daemon=True
            )
            self._optimizer.start()
            return True

    def wait_optimized(self, timeout: float | None = None) -> bool:
        thread = self._optimizer
        if thread is not None:
            thread.join(timeout)
        return self._optimizer is None

    def _optimize(self) -> None:
        started = time.monotonic()
        try:
            with self._cv:
                shard, self._shard = self._shard, None
                if shard is not None:
                    try:
                        shard.flush()
                    finally:
                        shard.close()  # the child cannot load it while we hold Edge's WAL lock
                # The child inherits our lock's descriptor: should we die, the store stays
                # locked until the child is done with it.
                self._child = subprocess.Popen(
                    [sys.executable, "-c", _OPTIMIZE_CHILD, str(self.shard_path)],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,  # never our stdout: it carries JSON-RPC
                    stderr=subprocess.PIPE,
                    pass_fds=(self._lock.fd,),
                )
            child = self._child
            try:
                _, err = child.communicate(timeout=_OPTIMIZE_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                child.kill()
                _, err = child.communicate()
            if self._closed:
                log.info("stopped optimizing memory store %s: it is closing", self.shard_path)
            elif child.returncode == 0:
                log.info(
                    "optimized memory store %s in %.1f s",
                    self.shard_path,
                    time.monotonic() - started,
                )
            else:
                log.warning(
                    "optimizing memory store %s failed (exit %s): %s",
                    self.shard_path,
                    child.returncode,
                    err.decode(errors="replace")[-500:].strip(),
                )
        except Exception:
            log.exception("optimizing memory store %s failed", self.shard_path)
        finally:
            with self._cv:
                self._child = None
                try:
                    if not self._closed:
                        self._shard = self._open_or_rebuild()
                except Exception:
                    log.exception("could not reopen memory store %s", self.shard_path)
                self._optimizer = None
                self._cv.notify_all()

    # -- closing ---------------------------------------------------------------------------

    def close(self, timeout: float = 10.0) -> None:
        """Flush and release the shard and the lock. An optimizing child gets ``timeout``
        seconds to finish, then is killed (Qdrant's optimizer is crash-safe: it swaps in new
        segments only when they are complete)."""
        with self._cv:
            if self._closed:
                return
            self._closed = True
            thread = self._optimizer
        if thread is not None:
            thread.join(timeout)
            child = self._child
            if thread.is_alive() and child is not None:
                child.kill()
            thread.join()
        with self._cv:
            shard, self._shard = self._shard, None
            try:
                if shard is not None:
                    try:
                        shard.flush()
                    finally:
                        shard.close()
            finally:
                self._lock.release()
                self._cv.notify_all()


# -- MemOS's own Qdrant backend, with our filters ----------------------------------------------


class QdrantServerVecDB(QdrantVecDB):
    """MemOS's Qdrant (server) backend plus what we need on top: ``must_not`` and any-of
    filters, delete by filter, payload-only scrolls and close. Everything else is MemOS's."""

    def _dict_to_filter(self, filter_dict: Filter) -> Any:
        from qdrant_client.http import models

        def condition(key: str, value: Any) -> Any:
            if isinstance(value, list | tuple | set | frozenset):
                return models.FieldCondition(key=key, match=models.MatchAny(any=list(value)))
            return models.FieldCondition(key=key, match=models.MatchValue(value=value))

        must = [condition(k, v) for k, v in filter_dict.items() if k != "must_not"]
        must_not = [condition(k, v) for k, v in (filter_dict.get("must_not") or {}).items()]
        return models.Filter(must=must or None, must_not=must_not or None)

    def scroll(
        self,
        filter: Filter | None = None,
        fields: Sequence[str] | None = None,
        vectors: bool = True,
    ) -> list[VecDBItem]:
        from qdrant_client.http import models

        payload: Any = models.PayloadSelectorInclude(include=list(fields)) if fields else True
        items: list[VecDBItem] = []
        offset: Any = None
        while True:
            points, offset = self.client.scroll(
                collection_name=self.config.collection_name,
                scroll_filter=self._dict_to_filter(filter) if filter else None,
                limit=_SCROLL_PAGE,
                offset=offset,
                with_payload=payload,
                with_vectors=vectors,
            )
            items.extend(_item(p) for p in points)
            if offset is None or not points:
                return items

    def delete_by_filter(self, filter: Filter) -> None:
        from qdrant_client.http import models

        if not filter:
            raise StoreError("delete_by_filter needs a non-empty filter")
        self.client.delete(
            collection_name=self.config.collection_name,
            points_selector=models.FilterSelector(filter=self._dict_to_filter(filter)),
        )

    def unindexed_count(self) -> int:
        return 0  # the server indexes in its own background threads

    def optimize_in_background(self) -> bool:
        return False

    def close(self, timeout: float = 10.0) -> None:
        self.client.close()


def check_reachable(url: str, timeout: float = 3.0) -> None:
    """Fail fast, naming the URL, when nothing listens there (qdrant-client would retry or
    wait for its own, longer timeouts)."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    host = parts.hostname or "localhost"
    port = parts.port or (443 if parts.scheme == "https" else 6333)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return
    except OSError as exc:
        raise StoreUnavailableError(f"Qdrant server at {url} is not reachable: {exc}") from exc


def register() -> None:
    """Add our backends to MemOS's factories (idempotent)."""
    EmbedderConfigFactory.backend_to_class[EMBEDDER_BACKEND] = MemlspEmbedderConfig
    EmbedderFactory.backend_to_class[EMBEDDER_BACKEND] = MemlspEmbedder
    LLMConfigFactory.backend_to_class[NULL_LLM_BACKEND] = NullLLMConfig
    LLMFactory.backend_to_class[NULL_LLM_BACKEND] = NullLLM
    VectorDBConfigFactory.backend_to_class[EDGE_BACKEND] = EdgeVecDBConfig
    VecDBFactory.backend_to_class[EDGE_BACKEND] = EdgeVecDB
    VectorDBConfigFactory.backend_to_class[SERVER_BACKEND] = QdrantVecDBConfig
    VecDBFactory.backend_to_class[SERVER_BACKEND] = QdrantServerVecDB
