"""`memlsp stats`: counts that outlive the server, read without one, past a corrupt file.

No model: the accept command is what the editor sends, so it is sent here directly.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsp_helpers import SERVER, TIMEOUT, initialize, status
from lsprotocol import types as lsp
from pytest_lsp import ClientServerConfig, LanguageClient

from memlsp.server.lsp.stats_store import StatsStore

# The server's cache folder is fixed when the fixture is declared: one per module run.
SERVER_HOME = Path(tempfile.mkdtemp(prefix="memlsp-stats-test-"))


@pytest.fixture(scope="module", autouse=True)
def _remove_server_home() -> Iterator[None]:
    yield
    shutil.rmtree(SERVER_HOME, ignore_errors=True)


def isolated_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MEMLSP_CACHE_DIR"}
    return env | {
        "XDG_CACHE_HOME": str(home / "cache"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "PYTHONUNBUFFERED": "1",
    }


def stats_json(home: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = subprocess.run(
        [sys.executable, "-m", "memlsp.server.cli", "stats", "--json", *args],
        capture_output=True,
        text=True,
        env=isolated_env(home),
        timeout=120,
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, json.loads(result.stdout)


def test_stats_cli_adds_up_across_restarts_and_survives_a_corrupt_file(tmp_path: Path) -> None:
    file = tmp_path / "cache" / "memlsp" / "stats.sqlite"
    code, report = stats_json(tmp_path)
    assert code == 0 and report["exists"] is False and report["rows"] == []

    first = StatsStore(file)  # a server's session
    for _ in range(3):
        first.shown("python", "coder")
    first.accepted("python", "coder", partial=False, latency_ms=200)
    assert first.flush()
    first.close()
    code, report = stats_json(tmp_path)
    assert code == 0
    (row,) = report["rows"]
    assert (row["shown"], row["accepted"], row["median_latency_ms"]) == (3, 1, 200)

    second = StatsStore(file)  # after a restart
    second.shown("python", "coder")
    second.accepted("python", "coder", partial=True, latency_ms=400)
    assert second.flush()
    second.close()
    (row,) = stats_json(tmp_path)[1]["rows"]
    assert (row["shown"], row["accepted"], row["partially_accepted"]) == (4, 1, 1)
    assert row["acceptance_rate"] == 0.5 and row["median_latency_ms"] == 300

    file.write_bytes(b"garbage " * 512)
    code, report = stats_json(tmp_path)
    assert code == 1 and "error" in report  # said, not a traceback

    third = StatsStore(file)  # the next server sets the bad file aside
    third.shown("python", "coder")
    assert third.flush() and third.moved_aside
    (row,) = stats_json(tmp_path)[1]["rows"]
    assert row["shown"] == 1


@pytest_lsp.fixture(
    config=ClientServerConfig(server_command=SERVER, server_env=isolated_env(SERVER_HOME))
)
async def client(lsp_client: LanguageClient, tmp_path: Path):  # type: ignore[no-untyped-def]
    options = {"agents": {"quality": {"enabled": False}}, "memory": {"enabled": False}}
    await initialize(lsp_client, tmp_path, **options)
    yield lsp_client  # the test shuts the server down itself, to read what it left


async def accept(client: LanguageClient, *arguments: Any) -> None:
    params = lsp.ExecuteCommandParams(command="memlsp.accepted", arguments=list(arguments))
    await asyncio.wait_for(client.workspace_execute_command_async(params), TIMEOUT)


async def test_server_writes_accepted_suggestions_past_a_corrupt_file(
    client: LanguageClient,
) -> None:
    file = SERVER_HOME / "cache" / "memlsp" / "stats.sqlite"
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_bytes(b"garbage " * 512)  # met at the server's first flush

    await accept(client, "python", "coder", 12, "full", 150)
    await accept(client, "python", "coder", 3, "partial", 250)
    report = (await status(client))["statistics"]
    assert report["enabled"] is True and report["file"] == str(file)
    await asyncio.wait_for(client.shutdown_session(), TIMEOUT)  # flushes on the way out

    assert list(file.parent.glob("stats.sqlite.corrupt-*"))
    code, stats = stats_json(SERVER_HOME)
    assert code == 0
    (row,) = stats["rows"]
    assert (row["language"], row["accepted"], row["partially_accepted"]) == ("python", 1, 1)
    assert row["median_latency_ms"] == 200
