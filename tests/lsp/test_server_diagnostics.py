"""Diagnostics on save over stdio: linters and the quality agent, push and pull, stale drops."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import pytest_lsp
from lsp_helpers import TIMEOUT, capabilities, initialize, insert, server_config, status
from lsprotocol import types as lsp
from pytest_lsp import LanguageClient

pytestmark = pytest.mark.model

PLANTED = """import os


def add_item(item, items=[]):
    items.append(item)
    return items


def is_missing(value):
    return value == None


def total(values):
    unused = 0
    result = 0
    for v in values:
        result += v
    return result


def read(path):
    try:
        return open(path).read()
    except:
        return ""
"""
# 0-based lines of the planted problems
UNUSED_IMPORT, MUTABLE_DEFAULT, NONE_COMPARISON, UNUSED_VARIABLE, BARE_EXCEPT = 0, 3, 9, 13, 23


def _save(client: LanguageClient, uri: str) -> None:
    client.text_document_did_save(
        lsp.DidSaveTextDocumentParams(text_document=lsp.TextDocumentIdentifier(uri=uri))
    )


def _open(client: LanguageClient, path: Path, text: str) -> str:
    path.write_text(text)
    uri = path.as_uri()
    client.text_document_did_open(
        lsp.DidOpenTextDocumentParams(
            text_document=lsp.TextDocumentItem(uri=uri, language_id="python", version=1, text=text)
        )
    )
    return uri


async def _diagnostics_for(client: LanguageClient, uri: str) -> list[lsp.Diagnostic]:
    """The first diagnostics published for ``uri`` (pytest-lsp keeps the latest per URI;
    polling, because a cancelled wait_for_notification would swallow the next one)."""
    while uri not in client.diagnostics:
        await asyncio.sleep(0.2)
    return list(client.diagnostics[uri])


@pytest_lsp.fixture(config=server_config(Path("/nonexistent-memlsp-config")))
async def client(lsp_client: LanguageClient, tmp_path: Path):  # type: ignore[no-untyped-def]
    await initialize(lsp_client, tmp_path, pull_diagnostics=False)
    yield lsp_client
    await lsp_client.shutdown_session()


async def test_planted_bugs_are_reported_on_their_lines(
    client: LanguageClient, tmp_path: Path
) -> None:
    uri = _open(client, tmp_path / "planted.py", PLANTED)
    _save(client, uri)
    diagnostics = await asyncio.wait_for(_diagnostics_for(client, uri), TIMEOUT * 5)
    lines = {d.range.start.line for d in diagnostics}
    # ruff's default rules catch these three (E711 and B006 are not in its defaults)...
    for planted in (UNUSED_IMPORT, UNUSED_VARIABLE, BARE_EXCEPT):
        assert planted in lines, f"nothing on line {planted}: {diagnostics}"
    by_line = {d.range.start.line: d for d in diagnostics if d.source == "ruff"}
    assert by_line[UNUSED_IMPORT].code == "F401"
    # ...the model reviewed the file too. Whether it finds the other two is a quality figure
    # (bench_review.py, test_quality.py), not something this plumbing test can pin down.
    quality = (await status(client))["quality"]
    assert quality["model_calls"] >= 1 and quality["model_errors"] == 0, quality
    assert all(0 <= d.range.start.line < PLANTED.count("\n") for d in diagnostics)
    # Model findings are at most warnings.
    assert all(
        d.severity != lsp.DiagnosticSeverity.Error for d in diagnostics if d.source == "memlsp"
    )
    # A review was shown as progress.
    assert any(
        isinstance(v, lsp.WorkDoneProgressEnd)
        for reports in client.progress_reports.values()
        for v in reports
    )


@pytest_lsp.fixture(config=server_config(Path("/nonexistent-memlsp-config")))
async def lint_client(lsp_client: LanguageClient, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Linters only (no model review): for the plumbing tests, fast on any machine."""
    await initialize(
        lsp_client, tmp_path, pull_diagnostics=False, agents={"quality": {"enabled": False}}
    )
    yield lsp_client
    await lsp_client.shutdown_session()


async def test_stale_review_is_dropped(lint_client: LanguageClient, tmp_path: Path) -> None:
    client = lint_client
    uri = _open(client, tmp_path / "stale.py", "import os\n")
    _save(client, uri)
    insert(client, uri, 2, 1, 0, "x = 1\n")  # edited before the review could finish
    await asyncio.sleep(10)
    assert uri not in client.diagnostics  # the review of version 1 was not published
    _save(client, uri)
    diagnostics = await asyncio.wait_for(_diagnostics_for(client, uri), TIMEOUT)
    assert [d.code for d in diagnostics if d.source == "ruff"] == ["F401"]


def _pull_capabilities() -> lsp.ClientCapabilities:
    caps = capabilities()
    assert caps.text_document is not None
    caps.text_document.diagnostic = lsp.DiagnosticClientCapabilities()
    return caps


async def test_pull_diagnostics_without_pushes(tmp_path: Path) -> None:
    config = server_config(Path("/nonexistent-memlsp-config"))
    client = await config.start()
    try:
        await asyncio.wait_for(
            client.initialize_session(
                lsp.InitializeParams(
                    capabilities=_pull_capabilities(),
                    root_uri=tmp_path.as_uri(),
                    initialization_options={"agents": {"quality": {"enabled": False}}},
                )
            ),
            TIMEOUT,
        )
        uri = _open(client, tmp_path / "pulled.py", "import os\n\n\ndef f(x):\n    return x\n")
        _save(client, uri)
        report = await asyncio.wait_for(
            client.text_document_diagnostic_async(
                lsp.DocumentDiagnosticParams(text_document=lsp.TextDocumentIdentifier(uri=uri))
            ),
            TIMEOUT * 2,
        )
        assert isinstance(report, lsp.RelatedFullDocumentDiagnosticReport)
        assert "F401" in [d.code for d in report.items]
        again = await asyncio.wait_for(
            client.text_document_diagnostic_async(
                lsp.DocumentDiagnosticParams(
                    text_document=lsp.TextDocumentIdentifier(uri=uri),
                    previous_result_id=report.result_id,
                )
            ),
            TIMEOUT,
        )
        assert isinstance(again, lsp.RelatedUnchangedDocumentDiagnosticReport)
        assert client.diagnostics == {}  # nothing was pushed
    finally:
        await client.shutdown_session()
        await client.stop()
