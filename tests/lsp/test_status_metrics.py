"""Status, acceptance statistics and metrics of a live server."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import pytest_lsp
from lsp_helpers import TIMEOUT, free_port, initialize, inline, open_doc, server_config, status
from lsprotocol import types as lsp
from pytest_lsp import LanguageClient

METRICS_PORT = free_port()


@pytest_lsp.fixture(
    config=server_config(Path("/nonexistent-memlsp-config"), "--metrics-port", str(METRICS_PORT))
)
async def client(lsp_client: LanguageClient, tmp_path: Path):  # type: ignore[no-untyped-def]
    await initialize(lsp_client, tmp_path, agents={"generator": {"model": "qwen2.5-coder-0.5b"}})
    yield lsp_client
    await lsp_client.shutdown_session()


async def _completion_and_acceptance(client: LanguageClient, tmp_path: Path) -> None:
    uri = open_doc(client, tmp_path / "a.py", "def add(a, b):\n    ")
    result = await asyncio.wait_for(
        client.text_document_inline_completion_async(
            lsp.InlineCompletionParams(
                text_document=lsp.TextDocumentIdentifier(uri=uri),
                position=lsp.Position(line=1, character=4),
                context=lsp.InlineCompletionContext(
                    trigger_kind=lsp.InlineCompletionTriggerKind.Invoked
                ),
            )
        ),
        TIMEOUT,
    )
    assert isinstance(result, lsp.InlineCompletionList) and result.items
    command = result.items[0].command
    assert command is not None and command.command == "memlsp.accepted"
    # The editor runs the item's command when the user accepts the suggestion.
    await asyncio.wait_for(
        client.workspace_execute_command_async(
            lsp.ExecuteCommandParams(command=command.command, arguments=command.arguments)
        ),
        TIMEOUT,
    )
    await asyncio.wait_for(
        client.workspace_execute_command_async(
            lsp.ExecuteCommandParams(
                command="memlsp.accepted", arguments=["python", "qwen2.5-coder-0.5b", 3, "partial"]
            )
        ),
        TIMEOUT,
    )


async def test_acceptance_statistics(client: LanguageClient, tmp_path: Path) -> None:
    await _completion_and_acceptance(client, tmp_path)
    rows = (await status(client))["acceptance"]
    assert rows == [
        {
            "language": "python",
            "model": "qwen2.5-coder-0.5b",
            "shown": 1,
            "accepted": 1,
            "partially_accepted": 1,
            "accepted_chars": rows[0]["accepted_chars"],
            "acceptance_rate": 2.0,
        }
    ]
    assert rows[0]["accepted_chars"] > 3


async def test_status_command_finds_the_live_server(client: LanguageClient, tmp_path: Path) -> None:
    await inline(client, open_doc(client, tmp_path / "b.py", "def sub(a, b):\n    "), 1, 4)
    env = {**os.environ, "XDG_CONFIG_HOME": "/nonexistent-memlsp-config"}
    out = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "memlsp.server.cli", "status", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    replies = json.loads(out.stdout)
    ours = [r for r in replies if r.get("status", {}).get("workspace") == str(tmp_path)]
    assert len(ours) == 1
    models = {m["name"]: m for m in ours[0]["status"]["pool"]["models"]}
    assert models["qwen2.5-coder-0.5b"]["loaded"] is True
    human = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "memlsp.server.cli", "status"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert f"workspace: {tmp_path}" in human.stdout
    assert "qwen2.5-coder-0.5b" in human.stdout and "loaded" in human.stdout


async def test_metrics_endpoint(client: LanguageClient, tmp_path: Path) -> None:
    await _completion_and_acceptance(client, tmp_path)

    def fetch() -> str:
        url = f"http://127.0.0.1:{METRICS_PORT}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())

    text = await asyncio.to_thread(fetch)
    assert 'memlsp_requests_total{feature="inline_completion",outcome="model"} 1.0' in text
    assert 'memlsp_request_seconds_count{feature="inline_completion"} 1.0' in text
    assert 'memlsp_model_loaded{model="qwen2.5-coder-0.5b"} 1.0' in text
    assert "memlsp_pool_reserved_bytes" in text
    # Indexing this workspace is background work now: it may have paused for the completion.
    assert re.search(r"^memlsp_background_paused_seconds_total \d+(\.\d+)?$", text, re.M)


def test_metrics_bind_to_loopback_by_default() -> None:
    from memlsp.server.cli.commands import build_parser

    args = build_parser().parse_args(["serve", "--metrics-port", "9100"])
    assert args.metrics_host == "127.0.0.1"
    assert build_parser().parse_args(["serve"]).metrics_port == 0


pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"), pytest.mark.model]
