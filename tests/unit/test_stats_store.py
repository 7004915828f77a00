"""The lasting statistics file: counts that survive, and a file that never stops the server."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import time
from datetime import date, timedelta
from pathlib import Path

import pytest

from memlsp.config import Config
from memlsp.server.lsp import stats_store
from memlsp.server.lsp.completion import _accept_args
from memlsp.server.lsp.lasting_stats import LastingStats
from memlsp.server.lsp.stats_store import StatsStore, median_of, read_weeks

WEDNESDAY = date(2025, 3, 12)  # ISO week 2025-W11


def store_on(path: Path, day: date = WEDNESDAY) -> StatsStore:
    return StatsStore(path, today=lambda: day)


def test_counts_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "stats.sqlite"
    store = store_on(path)
    for _ in range(4):
        store.shown("python", "coder")
    store.accepted("python", "coder", partial=False, latency_ms=120)
    store.accepted("python", "coder", partial=True, latency_ms=80)
    store.shown("rust", "coder")
    assert store.flush() and store.state() == "ok" and store.pending() == 0
    store.close()
    assert (path.stat().st_mode & 0o777) == 0o600

    rows = {r.language: r for r in read_weeks(path, 1, today=WEDNESDAY)}
    python = rows["python"]
    assert (python.week, python.shown, python.accepted, python.partially_accepted) == (
        "2025-W11",
        4,
        1,
        1,
    )
    assert python.acceptance_rate == 0.5 and python.median_latency_ms == 100
    assert rows["rust"].acceptance_rate == 0.0 and rows["rust"].median_latency_ms is None


def test_weekly_totals_and_median_over_days(tmp_path: Path) -> None:
    path = tmp_path / "stats.sqlite"
    days = [WEDNESDAY - timedelta(days=2), WEDNESDAY, WEDNESDAY - timedelta(days=7)]
    latencies = [[100, 300], [200, 1000], [5000]]
    for day, taken in zip(days, latencies, strict=True):
        store = store_on(path, day)
        for ms in taken:
            store.shown("python", "coder")
            store.accepted("python", "coder", partial=False, latency_ms=ms)
        store.shown("python", "coder")
        assert store.flush()
        store.close()

    this_week, last_week = read_weeks(path, 2, today=WEDNESDAY)
    assert (this_week.week, this_week.shown, this_week.accepted) == ("2025-W11", 6, 4)
    assert this_week.median_latency_ms == 250  # of 100, 200, 300, 1000
    assert (last_week.week, last_week.shown, last_week.median_latency_ms) == ("2025-W10", 2, 5000)
    assert [r.week for r in read_weeks(path, 1, today=WEDNESDAY)] == ["2025-W11"]


def test_median_of_a_histogram() -> None:
    assert median_of({}) is None
    assert median_of({7: 3}) == 7
    assert median_of({1: 1, 2: 1, 9: 1}) == 2
    assert median_of({1: 2, 3: 2}) == 2


def test_locked_file_waits_then_flushes(tmp_path: Path) -> None:
    path = tmp_path / "stats.sqlite"
    store = store_on(path)
    store.shown("python", "coder")
    assert store.flush()

    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    store.shown("python", "coder")
    store.accepted("python", "coder", partial=False, latency_ms=50)
    started = time.monotonic()
    assert store.flush() is False  # no exception, and not long on a thread
    assert time.monotonic() - started < 2
    assert store.state().startswith("waiting (locked") and store.pending() == 2
    other.execute("ROLLBACK")
    other.close()

    assert store.flush() and store.state() == "ok"
    (row,) = read_weeks(path, 1, today=WEDNESDAY)
    assert (row.shown, row.accepted) == (2, 1)  # nothing lost, nothing counted twice


def test_corrupt_file_is_moved_aside_and_started_afresh(tmp_path: Path) -> None:
    path = tmp_path / "stats.sqlite"
    path.write_bytes(b"not a database at all, " * 100)
    store = store_on(path)
    store.shown("python", "coder")
    assert store.flush()
    (aside,) = store.moved_aside
    assert aside.name.startswith("stats.sqlite.corrupt-")
    assert aside.read_bytes().startswith(b"not a database")
    (row,) = read_weeks(path, 1, today=WEDNESDAY)
    assert row.shown == 1


def test_file_corrupted_while_open_is_replaced_on_the_next_flush(tmp_path: Path) -> None:
    path = tmp_path / "stats.sqlite"
    store = store_on(path)
    store.shown("python", "coder")
    assert store.flush()
    store.close()  # as after a restart: the garbage is met when the file is opened again
    path.write_bytes(b"\0garbage" * 1000)
    store.shown("python", "coder")
    assert store.flush() and len(store.moved_aside) == 1
    assert read_weeks(path, 1, today=WEDNESDAY)[0].shown == 1


@pytest.mark.skipif(os.getuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_keeps_counts_in_memory(tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        store = store_on(folder / "stats.sqlite")
        store.shown("python", "coder")
        assert store.flush() is False
        assert store.state().startswith("memory only") and store.pending() == 1
        assert store.flush() is False  # and stays quiet
    finally:
        folder.chmod(0o700)


def test_read_only_database_keeps_counts_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's own read-only answer (root ignores file modes, so it is made with query_only)."""
    opener = stats_store._open_for_writing

    def read_only(path: Path, timeout_s: float) -> sqlite3.Connection:
        conn = opener(path, timeout_s)
        conn.execute("PRAGMA query_only = 1")
        return conn

    monkeypatch.setattr(stats_store, "_open_for_writing", read_only)
    store = store_on(tmp_path / "stats.sqlite")
    store.shown("python", "coder")
    assert store.flush() is False
    assert store.state().startswith("memory only (read-only") and store.pending() == 1


def test_cache_folder_that_cannot_exist_keeps_counts_in_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the folder should be")
    store = store_on(blocker / "memlsp" / "stats.sqlite")
    store.accepted("python", "coder", partial=True, latency_ms=10)
    assert store.flush() is False
    assert store.state().startswith("memory only (read-only") and store.pending() == 2


def _config(statistics: bool) -> Config:
    config = Config()
    return dataclasses.replace(
        config, server=dataclasses.replace(config.server, statistics=statistics)
    )


def test_setting_off_creates_no_file(tmp_path: Path) -> None:
    path = tmp_path / "stats.sqlite"
    lasting = LastingStats(lambda: _config(False), path=path)
    lasting.shown("python", "coder")
    lasting.accepted("python", "coder", False, 100.0)
    lasting.shutdown()
    assert not path.exists()
    assert lasting.status()["statistics"]["enabled"] is False


def test_server_side_flushes_at_shutdown(tmp_path: Path) -> None:
    path = tmp_path / "stats.sqlite"
    lasting = LastingStats(lambda: _config(True), path=path, interval_s=3600)
    lasting.shown("python", "coder")
    lasting.accepted("python", "coder", False, 100.0)
    assert lasting.status()["statistics"]["pending"] == 2
    lasting.shutdown()
    (row,) = read_weeks(path, 1)
    assert (row.shown, row.accepted, row.median_latency_ms) == (1, 1, 100)


def test_server_side_flushes_in_the_background(tmp_path: Path) -> None:
    path = tmp_path / "stats.sqlite"
    lasting = LastingStats(lambda: _config(True), path=path, interval_s=0.05)
    lasting.shown("python", "coder")
    deadline = time.monotonic() + 10
    while lasting.status()["statistics"]["pending"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert read_weeks(path, 1)[0].shown == 1
    lasting.shutdown()


def test_accept_command_arguments() -> None:
    assert _accept_args(("python", "coder", 5, "full", 240)) == ("python", "coder", 5, "full", 240)
    assert _accept_args(("python", "coder", 5, "partial")) == (
        "python",
        "coder",
        5,
        "partial",
        None,
    )
    assert _accept_args(("python", "coder", "x", "full", "soon"))[2:] == (0, "full", None)
    assert _accept_args(("python", "coder", 5, "full", -3))[4] is None
