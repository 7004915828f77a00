"""Keeps the workspace memory in step with the files: a full index in the background, then
incremental updates.

One worker thread, at low CPU priority, does every store write, so writes never race and a
completion's search only ever waits behind one small batch of embeddings. Files saved while the
full index runs jump the queue. Each file is masked for secrets, chunked, and written: the store
embeds only chunks whose text it has not seen (a moved or renamed chunk reuses its vector), then
the manifest records the file. On start the store is read once to rebuild the lexical index and
to reconcile the manifest, so a crash at any point costs re-chunking, never lost chunks.

All blocking: construct and call from worker threads (``update`` & co. only enqueue).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from memlsp.config.safe_read import RefusedFile
from memlsp.config.schema import MemoryConfig
from memlsp.memory.chunker import chunk_file
from memlsp.memory.filters import (
    NOT_A_FILE,
    SYMLINK_OUTSIDE,
    TOO_LARGE,
    FileFilter,
    mask_secrets,
)
from memlsp.memory.lexical import LexicalIndex
from memlsp.memory.manifest import FileEntry, Manifest
from memlsp.memory.records import ChunkRecord, StoreError, StoreUnavailableError
from memlsp.memory.store import MemoryStore

__all__ = [
    "OVER_LIMIT",
    "IndexProgress",
    "Indexer",
    "manifest_path",
]

log = logging.getLogger(__name__)

# Skip reason of files beyond ``memory.max_files``.
OVER_LIMIT = "over max_files"
# Chunks embedded per store call: the cancellation latency (a chunk costs 50-150 ms on 2 cores).
EMBED_BATCH = 4
# Progress callbacks at most this often (the last one always comes).
PROGRESS_INTERVAL_S = 0.1
# Save the manifest at least this often during a long index (a crash then costs re-chunking
# of the files since, never re-embedding: the store keeps their vectors).
SAVE_INTERVAL_S = 5.0
# Examples of skipped files kept per reason, and failed files kept, for the status.
EXAMPLES_PER_REASON = 3
FAILED_SHOWN = 20
# The lowest priority (19): a background Python thread holds the GIL that a completion's thread
# takes back after each native call (several per token). At nice 10 the holder, preempted by
# the model's threads, was slow to hand it back: measured (0.5B, 2 cores, MemOS's import in a
# niced thread) 85-100 ms a token instead of 40, prompts +20 %; at nice 19 42 ms and +1 %
# (SCHED_IDLE as good, but a thread starved by other processes would hold the GIL for good).
NICENESS = 19
# Prefix of the error shown while the store cannot take writes (cleared by the next full pass).
PAUSED = "indexing paused"

Op = Literal["update", "delete"]


@dataclass(frozen=True, slots=True)
class IndexProgress:
    """Where a full index is: ``files_done`` of ``files_total`` files looked at (unchanged
    files count), chunks in the index, chunks embedded in this run, the file being indexed."""

    files_done: int
    files_total: int
    chunks: int
    embedded: int
    current_file: str
    done: bool
    elapsed_s: float


class _Cancelled(Exception):
    pass


def manifest_path(store: MemoryStore) -> Path:
    return store.path / f"{store.collection}.manifest.json"


def lower_thread_priority() -> None:
    """Nice this thread only (Linux threads have their own nice value and policy): the
    editor's completions run in other threads of this process. And SCHED_IDLE, as file indexers
    do: at nice 19 alone the thread still took a core from a prompt's evaluation now and then,
    and llama.cpp's threads all wait for the slowest (MemOS importing beside the session's first
    cold requests: 60-62 instead of 64-65 prompt tokens a second on the 1.5B). The model threads
    an embedding starts from here inherit it: indexing runs in the idle time of the cores."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICENESS)
    except (OSError, AttributeError):
        log.debug("could not lower the indexer's priority", exc_info=True)
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (OSError, AttributeError):
        log.debug("no idle scheduling for this thread", exc_info=True)


class Indexer:
    """Indexes ``root`` into ``store`` (opened by the caller), keeping ``manifest`` and
    ``lexical`` in step. ``start()`` spawns the worker; ``close()`` stops it."""

    def __init__(
        self,
        root: Path,
        config: MemoryConfig,
        store: MemoryStore,
        file_filter: FileFilter,
        *,
        manifest: Manifest | None = None,
        lexical: LexicalIndex | None = None,
        on_progress: Callable[[IndexProgress], None] | None = None,
    ) -> None:
        self.root = file_filter.root
        if Path(os.path.abspath(root)) != self.root:
            raise ValueError(f"file filter root {self.root} is not the workspace root {root}")
        self.config = config
        self.store = store
        self.filter = file_filter
        self.manifest = manifest or Manifest.load(manifest_path(store), store.collection)
        self.lexical = lexical if lexical is not None else LexicalIndex()
        # Set once ``lexical`` holds what the store held at the start: until then it cannot
        # say that no stored chunk matches (memory/names.py).
        self.lexical_loaded = threading.Event()
        self._on_progress = on_progress
        self._cv = threading.Condition()
        self._pending: OrderedDict[str, Op] = OrderedDict()
        # None: no full pass due; False: a pass is due; True: a rebuild (drop all first) is due.
        self._scan: bool | None = None
        self._cancel = threading.Event()
        # Set by the user cancelling the progress bar: ends the current full pass only; what is
        # indexed stays, and the next pass (restart or reindex) resumes via the manifest.
        self._stop_pass = threading.Event()
        self._idle = threading.Event()
        self._thread: threading.Thread | None = None
        self._state_lock = threading.Lock()
        self._state = "not started"
        self._skipped: dict[str, str] = {}
        self._failed: dict[str, str] = {}
        self._last_error = ""
        self._manifest_error = ""  # the last manifest save failure, logged once
        self._embedded_total = 0
        self._stored_paths: set[str] = set()
        self._progress: IndexProgress | None = None
        self._last_run: dict[str, Any] = {}

    # -- control ------------------------------------------------------------------------------

    def start(self) -> None:
        """Load (read the store, reconcile the manifest), then index everything: in a thread."""
        if self._thread is not None:
            return
        with self._cv:
            self._scan = False
            self._idle.clear()
        self._thread = threading.Thread(target=self._run, name="memlsp-indexer", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 1.0) -> None:
        """Stop the worker (within ``timeout`` unless it is inside one store call) and save
        the manifest. The store stays open: it is the caller's."""
        self._cancel.set()
        with self._cv:
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.info("memory indexer still finishing a batch; leaving it to stop on its own")
        self._save_manifest()

    def cancel_pass(self) -> None:
        """Stop the full pass in progress (saved-file updates still go on)."""
        self._stop_pass.set()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is queued or running (for tests, benchmarks and the CLI)."""
        return self._idle.wait(timeout)

    @property
    def idle(self) -> bool:
        return self._idle.is_set()

    def update(self, paths: Iterable[Path | str]) -> None:
        """Files created or changed (saved): index them again. A folder means "look through
        it": the next full pass, which skips unchanged files cheaply."""
        ops: list[tuple[str, Op]] = []
        rescan = False
        for path in paths:
            rel = self._relative(path)
            if rel is None:
                continue
            if rel.rsplit("/", 1)[-1] == ".gitignore" or (self.root / rel).is_dir():
                rescan = True
                continue
            ops.append((rel, "update"))
        self._enqueue(ops, rescan)

    def delete(self, paths: Iterable[Path | str]) -> None:
        """Files or folders deleted: their chunks go."""
        ops: list[tuple[str, Op]] = []
        for path in paths:
            rel = self._relative(path)
            if rel is None:
                continue
            ops.extend((p, "delete") for p in self.manifest.under(rel))
            ops.append((rel, "delete"))
        self._enqueue(ops, False)

    def rename(self, old: Path | str, new: Path | str) -> None:
        """A file or folder moved. The new path is indexed before the old one is dropped, so
        its chunks reuse the old vectors (nothing is embedded for a pure rename)."""
        rel_old, rel_new = self._relative(old), self._relative(new)
        if rel_new is not None and (self.root / rel_new).is_dir():
            # A full pass indexes the new paths before it drops the vanished ones.
            self._enqueue([], True)
            return
        ops: list[tuple[str, Op]] = []
        if rel_new is not None:
            ops.append((rel_new, "update"))
        if rel_old is not None and rel_old != rel_new:
            ops.append((rel_old, "delete"))
        self._enqueue(ops, False)

    def reindex(self, rebuild: bool = False) -> None:
        """A full pass (unchanged files cost a stat); ``rebuild``: drop everything first and
        embed it all again."""
        self.filter.invalidate()
        with self._cv:
            self._scan = bool(self._scan) or rebuild
            self._idle.clear()
            self._cv.notify_all()

    def _relative(self, path: Path | str) -> str | None:
        rel = self.filter.relative(Path(path))
        return None if rel in (None, ".") else rel

    def _enqueue(self, ops: list[tuple[str, Op]], rescan: bool) -> None:
        if rescan:
            self.filter.invalidate()
        with self._cv:
            for rel, op in ops:
                self._pending.pop(rel, None)  # re-insert at the end: the latest event wins
                self._pending[rel] = op
            if rescan and self._scan is None:
                self._scan = False
            if ops or rescan:
                self._idle.clear()
                self._cv.notify_all()

    # -- status -------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        with self._state_lock:
            skipped = dict(self._skipped)
            failed = dict(self._failed)
            state, last_error, progress = self._state, self._last_error, self._progress
            last_run = dict(self._last_run)
        reasons = Counter(skipped.values())
        examples: dict[str, list[str]] = {}
        for rel, reason in skipped.items():
            shown = examples.setdefault(reason, [])
            if len(shown) < EXAMPLES_PER_REASON:
                shown.append(rel)
        with self._cv:
            queued = len(self._pending)
        remaining = 0
        if progress is not None and not progress.done:
            remaining = progress.files_total - progress.files_done
        return {
            "state": state,
            "store": self.store.location,
            "optimizing": self.store.optimizing,
            "files_indexed": len(self.manifest),
            "chunks": self.manifest.chunk_count(),
            "lexical_chunks": len(self.lexical),
            "files_skipped": len(skipped),
            "skipped": dict(reasons.most_common()),
            "skipped_examples": examples,
            "files_failed": len(failed),
            "failed": dict(list(failed.items())[:FAILED_SHOWN]),
            "lag": queued + remaining,
            "embedded": self._embedded_total,
            "progress": dataclasses.asdict(progress) if progress else None,
            "last_run": last_run,
            "last_error": last_error,
        }

    def _set_state(self, state: str) -> None:
        with self._state_lock:
            self._state = state

    def _error(self, message: str) -> None:
        log.warning("memory: %s", message)
        with self._state_lock:
            self._last_error = message

    # -- the worker ---------------------------------------------------------------------------

    def _run(self) -> None:
        lower_thread_priority()
        try:
            self._set_state("loading")
            self._load()
            self.lexical_loaded.set()
            while True:
                job = self._next_job()
                if job is None:
                    break
                try:
                    if job == "scan":
                        self._full_index(rebuild=False)
                    elif job == "rebuild":
                        self._full_index(rebuild=True)
                    else:
                        self._apply(*job)
                except StoreUnavailableError as exc:
                    self._pause(exc)
        except _Cancelled:
            pass
        except StoreError as exc:
            if not self._cancel.is_set():
                self._error(f"indexing stopped: {exc}")
        except Exception as exc:  # a bug must not take the server down with it
            log.exception("memory indexer failed")
            self._error(f"indexing stopped: {type(exc).__name__}: {exc}")
        finally:
            self._set_state("stopped")
            self._save_manifest()

    def _pause(self, exc: StoreUnavailableError) -> None:
        """The disk is (nearly) full or the Qdrant server is gone: stop writing, keep what is
        stored, and try again after ``memory.retry_s``. A full pass then resumes through the
        manifest (the job that hit the limit is in it: a pass looks at every file)."""
        self._save_manifest()
        self._error(f"{PAUSED}: {exc}")
        self._set_state("paused")
        self._idle.set()  # nothing can progress meanwhile: `memlsp index` and tests stop waiting
        if self._cancel.wait(self.config.retry_s):
            raise _Cancelled
        with self._cv:
            self._scan = bool(self._scan)
            self._idle.clear()

    def _next_job(self) -> str | tuple[str, Op] | None:
        """The next queued file, else a due full pass; waits (idle) when there is neither.
        None when cancelled."""
        while True:
            with self._cv:
                if self._cancel.is_set():
                    return None
                if self._pending:
                    return self._pending.popitem(last=False)
                if self._scan is not None:
                    rebuild, self._scan = self._scan, None
                    return "rebuild" if rebuild else "scan"
            self._on_idle()  # outside the lock: it saves and may start an optimize
            with self._cv:
                while not (self._pending or self._scan is not None or self._cancel.is_set()):
                    self._idle.set()
                    self._cv.wait()

    def _on_idle(self) -> None:
        self._set_state("idle")
        self._save_manifest()
        try:
            if not self.store.optimizing and self.store.optimize_in_background():
                log.info("memory: building the vector index in the background")
        except StoreError as exc:
            log.debug("optimize not started: %s", exc)

    def _check_cancel(self) -> None:
        if self._cancel.is_set():
            raise _Cancelled

    def _save_manifest(self) -> None:
        try:
            self.manifest.save_if_dirty()
        except OSError as exc:
            message = f"could not save the manifest {self.manifest.path}: {exc}"
            if message != self._manifest_error:  # a full disk fails every save: say it once
                self._manifest_error = message
                self._error(message)
            return
        self._manifest_error = ""

    # -- loading ------------------------------------------------------------------------------

    def _load(self) -> None:
        started = time.monotonic()
        chunks = self.store.stored_chunks()
        self._check_cancel()
        stored: dict[str, dict[str, str]] = {}
        for chunk in chunks:
            stored.setdefault(chunk.path, {})[chunk.id] = chunk.content_hash
        self.lexical.clear()
        self.lexical.add_many((c.id, c.path, c.symbol, c.text) for c in chunks)
        known = len(self.manifest)
        dropped = self.manifest.reconcile(stored)
        self._stored_paths = set(stored)
        log.info(
            "memory: loaded %d chunks of %d files from the store in %.2f s; manifest: %d files, "
            "%d to index again (they disagree with the store)",
            len(chunks),
            len(stored),
            time.monotonic() - started,
            known,
            len(dropped),
        )

    # -- full index ---------------------------------------------------------------------------

    def _walk(self) -> tuple[list[str], dict[str, str]]:
        files: list[str] = []
        skipped: dict[str, str] = {}
        for path, reason in self.filter.walk():
            self._check_cancel()
            rel = self.filter.relative(path)
            if rel is None:
                continue
            if reason is not None:
                skipped[rel] = reason
            elif len(files) >= self.config.max_files:
                skipped[rel] = OVER_LIMIT
            else:
                files.append(rel)
        return files, skipped

    def _full_index(self, rebuild: bool) -> None:
        started = time.monotonic()
        self._set_state("indexing")
        embedded_before = self._embedded_total
        if rebuild:
            for rel in set(self.manifest.paths()) | self._stored_paths | self.lexical.paths():
                self.store.delete_file(rel)
            self.manifest.clear()
            self.lexical.clear()
            self._stored_paths = set()
        files, skipped = self._walk()
        with self._state_lock:
            self._skipped = skipped
        present = set(files)
        vanished = (set(self.manifest.paths()) | self._stored_paths) - present
        progress = _ProgressReporter(self, len(files), started)
        progress.report(0, "", force=True)
        last_save = time.monotonic()
        self._stop_pass.clear()
        for done, rel in enumerate(files, 1):
            if self._stop_pass.is_set():
                log.info("memory: full pass cancelled after %d of %d files", done - 1, len(files))
                self._save_manifest()
                progress.report(done - 1, "", finished=True)
                return
            try:
                self._drain_pending()
                self._index_file(rel, checked=True)
            except StoreUnavailableError:
                progress.report(done - 1, "", finished=True)  # ends the editor's progress bar
                raise
            progress.report(done, rel)
            if time.monotonic() - last_save > SAVE_INTERVAL_S:
                self._save_manifest()
                last_save = time.monotonic()
        # Last, so that renamed files were indexed under their new paths (reusing the vectors)
        # before the old paths go.
        for rel in sorted(vanished):
            self._check_cancel()
            self._drain_pending()
            if self.filter.check(self.root / rel) is None and rel in self.manifest:
                continue  # came back meanwhile (an update indexed it)
            self._remove(rel)
        self._stored_paths = set()
        self._save_manifest()
        with self._state_lock:
            if self._last_error.startswith(PAUSED):  # the store is back: a pass went through
                self._last_error = ""
        progress.report(len(files), "", finished=True)
        elapsed = time.monotonic() - started
        embedded = self._embedded_total - embedded_before
        with self._state_lock:
            self._last_run = {
                "files": len(self.manifest),
                "chunks": self.manifest.chunk_count(),
                "embedded": embedded,
                "seconds": round(elapsed, 3),
            }
            failed = len(self._failed)
        log.info("memory: %s", self._summary(elapsed, embedded, skipped, failed))

    def _summary(self, elapsed: float, embedded: int, skipped: dict[str, str], failed: int) -> str:
        reasons = ", ".join(f"{n} {r}" for r, n in Counter(skipped.values()).most_common())
        line = (
            f"indexed {len(self.manifest)} files ({self.manifest.chunk_count()} chunks, "
            f"{embedded} embedded) in {elapsed:.1f} s; skipped {len(skipped)}"
        )
        if reasons:
            line += f": {reasons}"
        if failed:
            line += f"; failed {failed}"
        return line

    def _drain_pending(self) -> None:
        """Saved files first: one waiting behind a full index would be a stale memory."""
        while True:
            self._check_cancel()
            with self._cv:
                if not self._pending:
                    return
                rel, op = self._pending.popitem(last=False)
            self._apply(rel, op)

    # -- one file -----------------------------------------------------------------------------

    def _apply(self, rel: str, op: Op) -> None:
        if op == "delete" and not (self.root / rel).exists():
            self._skip(rel, "", gone=True)
        else:  # an update, or a delete whose file is back (events can arrive late)
            self._index_file(rel, checked=False)

    def _index_file(self, rel: str, checked: bool) -> None:
        """Bring one file's chunks up to date; failures are recorded, not raised (store
        errors aside when closing)."""
        full = self.root / rel
        try:
            if not checked:
                reason = self.filter.check(full)
                if reason is not None:
                    self._skip(rel, reason, gone=reason == NOT_A_FILE and not full.exists())
                    return
            self._index_checked(rel, full)
        except (_Cancelled, StoreUnavailableError):
            raise
        except FileNotFoundError:
            self._skip(rel, NOT_A_FILE, gone=True)
        except StoreError as exc:
            self._check_cancel()
            self._fail(rel, exc)
        except Exception as exc:
            self._fail(rel, exc)

    def _index_checked(self, rel: str, full: Path) -> None:
        stat = full.stat()
        entry = self.manifest.get(rel)
        if entry is not None and entry.same_stat(stat):
            return
        try:  # it may have changed since the filter looked: grown, or swapped for a FIFO or link
            data = self.filter.read(full)
        except RefusedFile as exc:
            reason = {"too large": TOO_LARGE, "outside": SYMLINK_OUTSIDE}.get(exc.kind, NOT_A_FILE)
            self._skip(rel, reason, gone=False)
            return
        sha = hashlib.sha256(data).hexdigest()
        if entry is not None and entry.sha256 == sha:
            # Touched, not changed: remember the new stat so the next start skips it again.
            touched = dataclasses.replace(entry, mtime_ns=stat.st_mtime_ns, size=stat.st_size)
            self.manifest.set(rel, touched)
            return
        text = mask_secrets(data.decode("utf-8", errors="replace"))
        chunks = chunk_file(rel, text)
        self._write(rel, chunks)
        self.manifest.set(
            rel,
            FileEntry(
                sha, stat.st_mtime_ns, stat.st_size, tuple((c.id, c.content_hash) for c in chunks)
            ),
        )
        with self._state_lock:
            self._failed.pop(rel, None)
            self._skipped.pop(rel, None)

    def _write(self, rel: str, chunks: list[ChunkRecord]) -> None:
        embedded = 0
        # Small batches: cancellation and a waiting search see the embedder between them.
        for start in range(0, len(chunks), EMBED_BATCH):
            self._check_cancel()
            embedded += self.store.upsert(chunks[start : start + EMBED_BATCH])
        self._check_cancel()
        embedded += self.store.replace_file(rel, chunks)  # nothing left to embed: drops stale
        self.lexical.replace_path(rel, [(c.id, c.symbol, c.text) for c in chunks])
        self._embedded_total += embedded

    def _remove(self, rel: str) -> None:
        known = rel in self.manifest or rel in self._stored_paths
        if known or self.lexical.has_path(rel):
            self.store.delete_file(rel)
            self.lexical.remove_path(rel)
            self.manifest.remove(rel)
            self._stored_paths.discard(rel)

    def _skip(self, rel: str, reason: str, gone: bool) -> None:
        self._remove(rel)
        with self._state_lock:
            self._failed.pop(rel, None)
            if gone:
                self._skipped.pop(rel, None)
            else:
                self._skipped[rel] = reason

    def _fail(self, rel: str, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {exc}"
        log.warning("memory: could not index %s: %s", rel, message)
        with self._state_lock:
            self._failed[rel] = message
            self._last_error = f"{rel}: {message}"


class _ProgressReporter:
    """Throttled, monotonic progress callbacks for one full index."""

    def __init__(self, indexer: Indexer, total: int, started: float) -> None:
        self._indexer = indexer
        self._total = total
        self._started = started
        self._embedded_at_start = indexer._embedded_total
        self._last = 0.0

    def report(self, done: int, current: str, force: bool = False, finished: bool = False) -> None:
        now = time.monotonic()
        due = force or finished or now - self._last >= PROGRESS_INTERVAL_S
        progress = IndexProgress(
            files_done=done,
            files_total=self._total,
            chunks=self._indexer.manifest.chunk_count() if due else 0,
            embedded=self._indexer._embedded_total - self._embedded_at_start,
            current_file=current,
            done=finished,
            elapsed_s=round(now - self._started, 3),
        )
        with self._indexer._state_lock:
            self._indexer._progress = progress
        if not due:
            return
        self._last = now
        callback = self._indexer._on_progress
        if callback is None:
            return
        try:
            callback(progress)
        except Exception:
            log.exception("memory progress callback failed")
