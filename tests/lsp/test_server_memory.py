"""Workspace memory through the real server: background indexing with progress, retrieval in
the completion prompt, re-index on save, a closed Qdrant URL leaving completions working."""

from __future__ import annotations

import asyncio
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsp_helpers import TIMEOUT, initialize, inline, open_doc, server_config, status
from lsprotocol import types as lsp
from pytest_lsp import LanguageClient

pytestmark = pytest.mark.model

MODELS_PY = textwrap.dedent(
    '''
    """Billing records."""
    from dataclasses import dataclass


    @dataclass
    class Invoice:
        """An invoice sent to a customer."""

        invoice_number: str
        customer_email: str
        amount_due_cents: int
        is_paid: bool = False


    def overdue_invoices(invoices):
        """Invoices still unpaid."""
        return [i for i in invoices if not i.is_paid]
    '''
)


async def _memory_folder(client: LanguageClient, deadline_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + deadline_s
    while True:
        folders = (await status(client))["memory"]["folders"]
        if folders and folders[0].get("chunks", 0) > 0 and folders[0].get("lag", 1) == 0:
            return folders[0]  # type: ignore[no-any-return]
        if time.monotonic() > deadline:
            raise AssertionError(f"memory not ready: {folders}")
        await asyncio.sleep(0.5)


async def _ask_once_indexed(
    client: LanguageClient, path: Path, first_line: str, line: str
) -> tuple[str | None, dict[str, Any]]:
    """Once the memory is ready: a new file of ``first_line`` and ``line``, one inline
    completion at the end of ``line``; the suggestion and the server's status after it."""
    await _memory_folder(client, TIMEOUT * 2)
    uri = open_doc(client, path, f"{first_line}\n{line}\n")
    text = await inline(client, uri, 1, len(line))
    return text, await status(client)


@pytest_lsp.fixture(config=server_config(Path("/nonexistent-memlsp-config")))
async def client(lsp_client: LanguageClient, tmp_path: Path):  # type: ignore[no-untyped-def]
    (tmp_path / "billing").mkdir()
    (tmp_path / "billing" / "models.py").write_text(MODELS_PY)
    (tmp_path / ".env").write_text("API_TOKEN=secret-value-123\n")
    (tmp_path / ".gitignore").write_text("build/\n")
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "generated.py").write_text("x = 1\n")
    await initialize(lsp_client, tmp_path, agents={"generator": {"model": "qwen2.5-coder-0.5b"}})
    yield lsp_client
    await lsp_client.shutdown_session()


async def test_indexes_in_background_with_progress_and_uses_memory(
    client: LanguageClient, tmp_path: Path
) -> None:
    folder = await _memory_folder(client, TIMEOUT * 2)
    assert folder["role"] == "owner"
    assert folder["files_indexed"] >= 2  # models.py and .gitignore
    skipped = folder["skipped"]
    assert skipped.get("secret", 0) >= 1  # .env never indexed
    titles = [
        v.title
        for reports in client.progress_reports.values()
        for v in reports
        if isinstance(v, lsp.WorkDoneProgressBegin)
    ]
    assert any("indexing" in t for t in titles), titles

    source = (
        "from billing.models import Invoice\n\n\n"
        'def reminder(invoice: Invoice) -> str:\n    return f"Dear {invoice.'
    )
    uri = open_doc(client, tmp_path / "notify.py", source + '}"\n')
    text = await inline(client, uri, 4, len('    return f"Dear {invoice.'))
    now = await status(client)
    assert ["memory", "billing/models.py"] in now["generator"]["last_context"], now["generator"]
    assert text is not None
    # The search began when the document opened (and again when the request came, before
    # the debounce), not when the prompt was built.
    retrieval = now["memory"]["folders"][0]["retrieval"]
    assert retrieval["prefetches"] >= 1 and retrieval["searches"] >= retrieval["prefetches"]


async def test_the_definition_of_a_name_being_typed_reaches_the_prompt(
    client: LanguageClient, tmp_path: Path
) -> None:
    line = "    late = overdue_"
    text, now = await _ask_once_indexed(
        client, tmp_path / "report.py", "def remind_all(invoices):", line
    )
    # Found by the start of its name (no import names it), last in the context.
    assert now["generator"]["last_context"][-1] == ["definition", "billing/models.py"], now
    assert now["memory"]["folders"][0]["retrieval"]["typed_lookups"] >= 1
    assert text is not None and text.startswith("invoices("), text


async def test_a_cursor_needing_nothing_from_the_workspace_skips_the_search(
    client: LanguageClient, tmp_path: Path
) -> None:
    line = "    return sum(xs) / "
    _, now = await _ask_once_indexed(client, tmp_path / "stats.py", "def mean(xs):", line)
    # No stored chunk defines or uses a name this code needs: the query was not embedded.
    assert now["memory"]["folders"][0]["retrieval"]["skipped"] >= 1, now["memory"]
    assert now["generator"]["last_context"] == [], now["generator"]


async def test_saved_file_is_reindexed(client: LanguageClient, tmp_path: Path) -> None:
    await _memory_folder(client, TIMEOUT * 2)
    before = (await status(client))["memory"]["folders"][0]["chunks"]
    extra = tmp_path / "billing" / "tax.py"
    uri = open_doc(client, extra, "def vat_rate(country_code):\n    return 0.2\n")
    client.text_document_did_save(
        lsp.DidSaveTextDocumentParams(text_document=lsp.TextDocumentIdentifier(uri=uri))
    )
    deadline = time.monotonic() + TIMEOUT
    while (await status(client))["memory"]["folders"][0]["chunks"] <= before:
        assert time.monotonic() < deadline, "saved file was not indexed"
        await asyncio.sleep(0.5)


async def test_a_request_as_the_file_opens_replaces_the_opening_search(
    client: LanguageClient, tmp_path: Path
) -> None:
    """The opening search waits a moment (session.OPEN_PREFETCH_QUIET_S): the editor asking
    at once gets its own region searched, not queued behind the file's first lines; a file
    opened and left alone is still searched for its first lines."""
    await _memory_folder(client, TIMEOUT * 2)

    async def opening() -> tuple[int, int]:
        counts = (await status(client))["opening_searches"]
        return int(counts["started"]), int(counts["superseded"])

    before = await opening()
    body = "from billing.models import Invoice\n\n\ndef total(invoices):\n    "
    uri = open_doc(client, tmp_path / "report.py", body + "\n")
    await inline(client, uri, 4, 4)
    await asyncio.sleep(0.5)  # past the quiet wait: a dropped opening search stays dropped
    asked = await opening()
    assert asked == (before[0], before[1] + 1)

    open_doc(client, tmp_path / "idle.py", "import os\n\n\ndef home():\n    return os.getcwd()\n")
    deadline = time.monotonic() + TIMEOUT
    while (now := await opening()) == asked:
        assert time.monotonic() < deadline, "the opening search of a quiet file never ran"
        await asyncio.sleep(0.1)
    assert now == (asked[0] + 1, asked[1])
