"""Statistics that last: suggestions shown / accepted / partially accepted per day, language and
model, and the latency of the accepted ones, in a small SQLite file in the cache folder.

On this machine only: nothing here is ever sent anywhere. `memlsp stats` reads the file.

Recording only touches memory; ``flush`` (a background thread every few seconds, and shutdown)
writes what is pending in one short transaction. The file never stops the server: when locked,
the counts wait for the next flush; when corrupt, it is moved aside and a fresh one started; when
read-only or impossible to create, the counts stay in memory for the session.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from memlsp.config.paths import cache_root, make_private, private_folder

log = logging.getLogger(__name__)

FILE_NAME = "stats.sqlite"
WRITE_TIMEOUT_S = 0.1  # a locked file costs a flush at most this long; the counts just wait
READ_TIMEOUT_S = 2.0  # `memlsp stats` may wait a little for a flush in progress
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS daily (
    day TEXT NOT NULL,
    language TEXT NOT NULL,
    model TEXT NOT NULL,
    shown INTEGER NOT NULL DEFAULT 0,
    accepted INTEGER NOT NULL DEFAULT 0,
    partially_accepted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (day, language, model)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS accepted_latency (
    day TEXT NOT NULL,
    language TEXT NOT NULL,
    model TEXT NOT NULL,
    ms INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (day, language, model, ms)
) WITHOUT ROWID;
"""

_ADD_COUNTS = """
INSERT INTO daily (day, language, model, shown, accepted, partially_accepted)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (day, language, model) DO UPDATE SET
    shown = shown + excluded.shown,
    accepted = accepted + excluded.accepted,
    partially_accepted = partially_accepted + excluded.partially_accepted
"""

_ADD_LATENCY = """
INSERT INTO accepted_latency (day, language, model, ms, count) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (day, language, model, ms) DO UPDATE SET count = count + excluded.count
"""

# What an sqlite3 error means for the store (primary result codes, the low byte).
_TRANSIENT = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL}
_CORRUPT = {sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB}
_READ_ONLY = {sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM}

_NAME_MAX = 100
DayKey = tuple[str, str, str]  # (ISO day, language, model)


def stats_path() -> Path:
    return cache_root() / FILE_NAME


def latency_bucket(ms: float) -> int:
    """Whole milliseconds, tens above a second: a histogram small enough to keep per day."""
    whole = max(0, round(ms))
    return whole if whole < 1000 else round(whole, -1)


class StatsStore:
    """Pending counts in memory, flushed to the SQLite file; every method is thread-safe and
    none raises because of the file."""

    def __init__(
        self,
        path: Path | None = None,
        *,
        timeout_s: float = WRITE_TIMEOUT_S,
        today: Callable[[], date] = date.today,
    ) -> None:
        self.path = path or stats_path()
        self._timeout_s = timeout_s
        self._today = today
        self._lock = threading.Lock()  # the pending counts (recorded from any thread)
        self._flush_lock = threading.Lock()  # one flush at a time; holds the connection
        self._counts: dict[DayKey, list[int]] = defaultdict(lambda: [0, 0, 0])
        self._latencies: dict[tuple[DayKey, int], int] = defaultdict(int)
        self._conn: sqlite3.Connection | None = None
        self.memory_only: str | None = None  # why the file is not used, for the session
        self.waiting: str | None = None  # the problem the last flush met (logged once)
        self.moved_aside: list[Path] = []
        self.flushed = 0  # successful flushes that wrote something

    # -- recording (memory only: cheap on the event loop) ------------------------------------

    def shown(self, language: str, model: str) -> None:
        with self._lock:
            self._counts[self._key(language, model)][0] += 1

    def accepted(
        self, language: str, model: str, *, partial: bool, latency_ms: float | None = None
    ) -> None:
        key = self._key(language, model)
        with self._lock:
            self._counts[key][2 if partial else 1] += 1
            if latency_ms is not None and latency_ms >= 0:
                self._latencies[(key, latency_bucket(latency_ms))] += 1

    def _key(self, language: str, model: str) -> DayKey:
        # Names come from the editor's command: capped, so a stray one cannot bloat the file.
        return (self._today().isoformat(), language[:_NAME_MAX] or "?", model[:_NAME_MAX] or "?")

    def pending(self) -> int:
        """Rows waiting to be written."""
        with self._lock:
            return len(self._counts) + len(self._latencies)

    # -- writing ----------------------------------------------------------------------------

    def flush(self) -> bool:
        """Write what is pending; True when nothing is left waiting. Never raises."""
        with self._flush_lock:
            if self.memory_only is not None:
                return False
            counts, latencies = self._take()
            if not counts and not latencies:
                return True
            for first_try in (True, False):  # a corrupt file is set aside, then written afresh
                try:
                    self._write(counts, latencies)
                except (sqlite3.Error, OSError) as exc:
                    self._disconnect()
                    kind = _kind(exc)
                    if kind == "corrupt" and first_try and self._move_aside(exc):
                        continue
                    self._put_back(counts, latencies)
                    self._trouble(kind, exc)
                    return False
                break
            if self.waiting is not None:
                log.info("statistics: %s is writable again", self.path)
                self.waiting = None
            self.flushed += 1
            return True

    def close(self) -> None:
        with self._flush_lock:
            self._disconnect()

    def state(self) -> str:
        if self.memory_only is not None:
            return f"memory only ({self.memory_only})"
        return f"waiting ({self.waiting})" if self.waiting else "ok"

    def _take(self) -> tuple[dict[DayKey, list[int]], dict[tuple[DayKey, int], int]]:
        with self._lock:
            counts, latencies = dict(self._counts), dict(self._latencies)
            self._counts.clear()
            self._latencies.clear()
        return counts, latencies

    def _put_back(
        self, counts: dict[DayKey, list[int]], latencies: dict[tuple[DayKey, int], int]
    ) -> None:
        with self._lock:
            for key, values in counts.items():
                mine = self._counts[key]
                for i, value in enumerate(values):
                    mine[i] += value
            for bucket, n in latencies.items():
                self._latencies[bucket] += n

    def _write(
        self, counts: dict[DayKey, list[int]], latencies: dict[tuple[DayKey, int], int]
    ) -> None:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")  # takes the write lock now, or fails within the timeout
        try:
            conn.executemany(_ADD_COUNTS, [(*key, *values) for key, values in counts.items()])
            conn.executemany(_ADD_LATENCY, [(*k, ms, n) for (k, ms), n in latencies.items()])
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):  # the connection is dropped next anyway
                    conn.execute("ROLLBACK")
            raise

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = _open_for_writing(self.path, self._timeout_s)
        return self._conn

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _trouble(self, kind: str, exc: BaseException) -> None:
        """Log the first of a streak of problems, not one line per flush."""
        if kind == "read-only" or kind == "corrupt":  # corrupt again right after a fresh start
            self.memory_only = f"{kind}: {exc}"
            log.warning("statistics: %s is %s (%s); kept in memory only", self.path, kind, exc)
            return
        reason = f"{kind}: {exc}"
        if self.waiting is None:
            log.info("statistics: %s is %s (%s); will retry", self.path, kind, exc)
        self.waiting = reason

    def _move_aside(self, exc: BaseException) -> bool:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        try:
            os.replace(self.path, target)
            for suffix in (
                "-journal",
                "-wal",
                "-shm",
            ):  # a stale journal must not touch the new one
                extra = self.path.with_name(self.path.name + suffix)
                if extra.exists():
                    os.replace(extra, target.with_name(target.name + suffix))
        except OSError as move_error:
            log.warning(
                "statistics: %s is corrupt (%s), cannot move it: %s", self.path, exc, move_error
            )
            return False
        log.warning("statistics: %s was corrupt (%s); moved to %s", self.path, exc, target)
        self.moved_aside.append(target)
        return True


def _kind(exc: BaseException) -> str:
    if isinstance(exc, OSError):  # creating the folder or the file
        return "read-only"
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    if primary in _CORRUPT:
        return "corrupt"
    if primary in _READ_ONLY:
        return "read-only"
    if primary in _TRANSIENT:
        return "locked" if primary in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) else "failing"
    return "failing"


def _open_for_writing(path: Path, timeout_s: float) -> sqlite3.Connection:
    private_folder(path.parent)
    # Created 0600 before SQLite opens it (its journals take the file's mode).
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    os.close(fd)
    make_private(path, recursive=False)
    conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
    try:
        conn.executescript(_SCHEMA)
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version == 0:
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.close()
        raise
    return conn


# -- reading (`memlsp stats`) ----------------------------------------------------------------


class StatsUnreadable(Exception):
    """The file exists but cannot be read (corrupt, locked too long, not ours)."""


@dataclass(frozen=True)
class WeekRow:
    week: str  # ISO week, "2025-W07"
    language: str
    model: str
    shown: int
    accepted: int
    partially_accepted: int
    acceptance_rate: float | None  # (accepted + partial) / shown
    median_latency_ms: float | None  # of accepted suggestions (full or partial)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def iso_week(day: date) -> str:
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def first_day(weeks: int, today: date) -> date:
    """The Monday that starts the oldest of the last ``weeks`` ISO weeks (this one included)."""
    return today - timedelta(days=today.weekday(), weeks=max(1, weeks) - 1)


def median_of(histogram: dict[int, int]) -> float | None:
    total = sum(histogram.values())
    if total == 0:
        return None
    wanted = {(total - 1) // 2, total // 2}  # one or two middle positions
    found: list[int] = []
    seen = 0
    for value, n in sorted(histogram.items()):
        for position in sorted(wanted):
            if seen <= position < seen + n:
                found.append(value)
        seen += n
    return sum(found) / len(found)


def read_weeks(path: Path, weeks: int = 4, today: date | None = None) -> list[WeekRow]:
    """Weekly totals per language and model, newest week first. Raises FileNotFoundError when
    there is no file and StatsUnreadable when it cannot be read; never writes."""
    if not path.is_file():
        raise FileNotFoundError(path)
    since = first_day(weeks, today or date.today()).isoformat()
    uri = f"{path.resolve().as_uri()}?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=READ_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise StatsUnreadable(str(exc)) from exc
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"daily", "accepted_latency"} <= tables:
            return []  # created, never written
        daily = conn.execute(
            "SELECT day, language, model, shown, accepted, partially_accepted FROM daily "
            "WHERE day >= ?",
            (since,),
        ).fetchall()
        latencies = conn.execute(
            "SELECT day, language, model, ms, count FROM accepted_latency WHERE day >= ?",
            (since,),
        ).fetchall()
    except sqlite3.Error as exc:
        raise StatsUnreadable(str(exc)) from exc
    finally:
        conn.close()
    return _weekly(daily, latencies)


def _weekly(daily: list[Any], latencies: list[Any]) -> list[WeekRow]:
    totals: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    histograms: dict[tuple[str, str, str], dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for day, language, model, shown, accepted, partial in daily:
        row = totals[(_week_of(day), language, model)]
        row[0] += shown
        row[1] += accepted
        row[2] += partial
    for day, language, model, ms, count in latencies:
        histograms[(_week_of(day), language, model)][ms] += count
    keys = sorted(set(totals) | set(histograms), key=lambda k: (k[1], k[2]))
    rows = []
    for key in sorted(keys, key=lambda k: k[0], reverse=True):  # newest week first
        shown, accepted, partial = totals.get(key, [0, 0, 0])
        rows.append(
            WeekRow(
                *key,
                shown=shown,
                accepted=accepted,
                partially_accepted=partial,
                acceptance_rate=round((accepted + partial) / shown, 3) if shown else None,
                median_latency_ms=median_of(histograms.get(key, {})),
            )
        )
    return rows


def _week_of(day: str) -> str:
    try:
        return iso_week(date.fromisoformat(day))
    except ValueError:  # not a day we wrote: shown apart rather than dropped
        return str(day)
