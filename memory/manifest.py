"""The manifest of one store: which files are indexed, as what, and with which chunks.

A JSON file next to the store. A restart compares each file's size and mtime (then, if those
moved, its sha256) with its entry, so nothing unchanged is read twice, chunked or embedded.

Crash consistency is one rule: an entry is set only after the store write for that file has
succeeded, and removed before (or with) the store delete. The file on disk may lag the store (it
is saved in batches); ``reconcile`` on start drops every entry that disagrees with the store, and
files the store holds without an entry are indexed again (their vectors are reused by hash).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["FileEntry", "Manifest"]

log = logging.getLogger(__name__)

# Bumped when the format changes: an older or newer manifest is ignored (the store is then
# reconciled against an empty manifest, which re-chunks files but re-embeds nothing).
FORMAT = 1


@dataclass(frozen=True, slots=True)
class FileEntry:
    """An indexed file: its content hash, the stat it was read with, and its chunks as
    ``(chunk id, content hash)`` pairs."""

    sha256: str
    mtime_ns: int
    size: int
    chunks: tuple[tuple[str, str], ...]

    def chunk_map(self) -> dict[str, str]:
        return dict(self.chunks)

    def same_stat(self, stat: os.stat_result) -> bool:
        return self.mtime_ns == stat.st_mtime_ns and self.size == stat.st_size

    def to_json(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "mtime_ns": self.mtime_ns,
            "size": self.size,
            "chunks": [list(c) for c in self.chunks],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FileEntry:
        chunks = tuple((str(i), str(h)) for i, h in data["chunks"])
        return cls(str(data["sha256"]), int(data["mtime_ns"]), int(data["size"]), chunks)


class Manifest:
    """Relative path -> :class:`FileEntry`, thread-safe, saved atomically (temp file + rename)."""

    def __init__(self, path: Path, collection: str = "") -> None:
        self.path = path
        self.collection = collection
        self._files: dict[str, FileEntry] = {}
        self._lock = threading.Lock()
        self._dirty = False

    @classmethod
    def load(cls, path: Path, collection: str = "") -> Manifest:
        """The manifest saved at ``path``; empty when missing, unreadable, of another format
        or of another collection (another embedder's vectors)."""
        manifest = cls(path, collection)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return manifest
        except (OSError, ValueError) as exc:
            log.warning("memory manifest %s unreadable (%s): starting from the store", path, exc)
            return manifest
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            log.info("memory manifest %s has another format: starting from the store", path)
            return manifest
        if raw.get("collection", "") != collection:
            log.info("memory manifest %s belongs to another collection: ignored", path)
            return manifest
        try:
            files = {str(k): FileEntry.from_json(v) for k, v in raw.get("files", {}).items()}
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("memory manifest %s damaged (%s): starting from the store", path, exc)
            return manifest
        manifest._files = files
        return manifest

    # -- reads --------------------------------------------------------------------------------

    def get(self, rel: str) -> FileEntry | None:
        with self._lock:
            return self._files.get(rel)

    def paths(self) -> list[str]:
        with self._lock:
            return list(self._files)

    def items(self) -> list[tuple[str, FileEntry]]:
        with self._lock:
            return list(self._files.items())

    def under(self, folder: str) -> list[str]:
        """Indexed paths inside ``folder`` (a folder deleted or renamed as a whole)."""
        prefix = folder.rstrip("/") + "/"
        with self._lock:
            return [p for p in self._files if p.startswith(prefix)]

    def chunk_count(self) -> int:
        with self._lock:
            return sum(len(e.chunks) for e in self._files.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._files)

    def __contains__(self, rel: object) -> bool:
        with self._lock:
            return rel in self._files

    @property
    def dirty(self) -> bool:
        return self._dirty

    # -- writes -------------------------------------------------------------------------------

    def set(self, rel: str, entry: FileEntry) -> None:
        """Record ``rel`` as indexed: call only after its store write succeeded."""
        with self._lock:
            self._files[rel] = entry
            self._dirty = True

    def remove(self, rel: str) -> None:
        with self._lock:
            if self._files.pop(rel, None) is not None:
                self._dirty = True

    def clear(self) -> None:
        with self._lock:
            self._files.clear()
            self._dirty = True

    def reconcile(self, stored: Mapping[str, Mapping[str, str]]) -> list[str]:
        """Drop entries whose chunks differ from ``stored`` (path -> chunk id -> content hash,
        as read from the store); returns the dropped paths, to be indexed again."""
        dropped = []
        with self._lock:
            for rel, entry in list(self._files.items()):
                if entry.chunk_map() != dict(stored.get(rel, {})):
                    del self._files[rel]
                    dropped.append(rel)
            if dropped:
                self._dirty = True
        return dropped

    def save(self) -> None:
        """Write the manifest atomically: readers see the old file or the new one, never half.
        Raises OSError (the caller logs it: the next reconcile repairs a stale manifest)."""
        with self._lock:
            data = {
                "format": FORMAT,
                "collection": self.collection,
                "files": {rel: e.to_json() for rel, e in self._files.items()},
            }
            self._dirty = False
        try:
            _write_atomic(self.path, json.dumps(data, separators=(",", ":")))
        except BaseException:
            self._dirty = True
            raise

    def save_if_dirty(self) -> None:
        if self._dirty:
            self.save()


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
