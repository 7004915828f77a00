"""The server's side of the lasting statistics: records into a ``StatsStore`` while
``server.statistics`` is on, and flushes it from a background thread, never from the event loop.

No file is made until something is recorded with the setting on (the client's settings arrive
after the features are built, so the store is created on first use).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memlsp.server.lsp.feature import Feature
from memlsp.server.lsp.stats_store import StatsStore, stats_path

if TYPE_CHECKING:
    from memlsp.config import Config

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 5.0


class LastingStats(Feature):
    name = "statistics"

    def __init__(
        self,
        config: Callable[[], Config],
        path: Path | None = None,
        interval_s: float = FLUSH_INTERVAL_S,
    ) -> None:
        self._config = config
        self._path = path
        self._interval_s = interval_s
        self._store: StatsStore | None = None
        self._flusher: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def enabled(self) -> bool:
        return self._config().server.statistics

    def shown(self, language: str, model: str) -> None:
        store = self._recording()
        if store is not None:
            store.shown(language, model)

    def accepted(self, language: str, model: str, partial: bool, latency_ms: float | None) -> None:
        store = self._recording()
        if store is not None:
            store.accepted(language, model, partial=partial, latency_ms=latency_ms)

    def _recording(self) -> StatsStore | None:
        if not self.enabled() or self._stop.is_set():
            return None
        with self._lock:
            if self._store is None:
                self._store = StatsStore(self._path or stats_path())
                self._flusher = threading.Thread(
                    target=self._flush_now_and_then, name="memlsp-stats", daemon=True
                )
                self._flusher.start()
            return self._store

    def _flush_now_and_then(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._flush()

    def _flush(self) -> None:
        store = self._store
        if store is None or not self.enabled():  # turned off: what waits is not written
            return
        try:
            store.flush()
        except Exception:  # the store catches the file's errors; this is a bug, not the file
            log.exception("statistics: flush failed")

    def status(self) -> dict[str, Any]:
        store = self._store
        report: dict[str, Any] = {
            "enabled": self.enabled(),
            "file": str(self._path or stats_path()),
        }
        if store is not None:
            report |= {"state": store.state(), "pending": store.pending()}
        return {"statistics": report}

    def shutdown(self) -> None:
        self._stop.set()
        flusher = self._flusher
        if flusher is not None:
            flusher.join(timeout=2.0)
        self._flush()
        if self._store is not None:
            self._store.close()
