"""Diagnostics on save over stdio: linters and the quality agent, push and pull, stale drops."""

from __future__ import annotations

import asyncio
import time
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
FAST = "qwen2.5-coder-0.5b"
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


async def _final_diagnostics(client: LanguageClient, uri: str) -> list[lsp.Diagnostic]:
    """The diagnostics once the first review is over (the linters' come before the model's):
    its progress ends right before its last publication."""
    while not _review_ended(client):
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)
    return await _diagnostics_for(client, uri)


@pytest_lsp.fixture(config=server_config(Path("/nonexistent-memlsp-config")))
async def client(lsp_client: LanguageClient, tmp_path: Path):  # type: ignore[no-untyped-def]
    # Both model stages: surprise (on by default) and the instruct review (off by default).
    await initialize(
        lsp_client, tmp_path, pull_diagnostics=False, agents={"quality": {"instruct": True}}
    )
    yield lsp_client
    await lsp_client.shutdown_session()


async def test_planted_bugs_are_reported_on_their_lines(
    client: LanguageClient, tmp_path: Path
) -> None:
    uri = _open(client, tmp_path / "planted.py", PLANTED)
    _save(client, uri)
    diagnostics = await asyncio.wait_for(_final_diagnostics(client, uri), TIMEOUT * 5)
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


def _review_ended(client: LanguageClient) -> int:
    """How many review progress bars have ended (memory indexing has bars of its own)."""
    return sum(
        isinstance(reports[0], lsp.WorkDoneProgressBegin)
        and reports[0].title == "memlsp review"
        and any(isinstance(v, lsp.WorkDoneProgressEnd) for v in reports)
        for reports in client.progress_reports.values()
        if reports
    )


async def _next_publication(client: LanguageClient, timeout: float) -> lsp.PublishDiagnosticsParams:
    params = await asyncio.wait_for(
        client.wait_for_notification(lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS), timeout
    )
    assert isinstance(params, lsp.PublishDiagnosticsParams)
    return params


async def test_linters_are_published_before_the_model_review(
    client: LanguageClient, tmp_path: Path
) -> None:
    uri = _open(client, tmp_path / "staged.py", PLANTED)
    saved = time.perf_counter()
    _save(client, uri)
    first = await _next_publication(client, TIMEOUT)
    first_s = time.perf_counter() - saved
    # Published while the model was still reviewing: no model call done, the progress open.
    quality = (await status(client))["quality"]
    assert quality["model_calls"] == 0 and quality["partials"] == 1, quality
    assert _review_ended(client) == 0
    assert first.uri == uri and first.version == 1
    assert "F401" in [d.code for d in first.diagnostics if d.source == "ruff"]
    assert all(d.source != "memlsp" for d in first.diagnostics)  # nothing carried yet
    # Then each model stage's findings, merged with the linters' (all of them still there):
    # the surprise stage's (FIM model, fast), then the instruct review's.
    surprise = await _next_publication(client, TIMEOUT * 5)
    surprise_s = time.perf_counter() - saved
    assert surprise.version == 1
    last = await _next_publication(client, TIMEOUT * 5)
    last_s = time.perf_counter() - saved
    quality = (await status(client))["quality"]
    assert quality["model_calls"] == 1 and quality["model_errors"] == 0, quality
    assert quality["partials"] == 2, quality  # the linters', the surprise stage's
    assert [quality["stages"][name]["runs"] for name in ("surprise", "review")] == [1, 1]
    assert _review_ended(client) == 1
    assert last.uri == uri and last.version == 1
    linters = {(d.range.start.line, d.code) for d in first.diagnostics}
    assert linters <= {(d.range.start.line, d.code) for d in last.diagnostics}
    print(
        f"after the save: linters {first_s:.2f} s, surprise {surprise_s:.2f} s, "
        f"review {last_s:.2f} s"
    )


@pytest_lsp.fixture(config=server_config(Path("/nonexistent-memlsp-config")))
async def fast_client(lsp_client: LanguageClient, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Model review with the 0.5B, no surprise stage: one model stage, sooner."""
    await initialize(
        lsp_client,
        tmp_path,
        pull_diagnostics=False,
        agents={"quality": {"model": FAST, "instruct": True, "surprise": False}},
    )
    yield lsp_client
    await lsp_client.shutdown_session()


async def test_a_newer_save_cancels_the_model_stage(
    fast_client: LanguageClient, tmp_path: Path
) -> None:
    client = fast_client
    path = tmp_path / "resaved.py"
    uri = _open(client, path, PLANTED)
    _save(client, uri)
    first = await _next_publication(client, TIMEOUT)
    assert first.version == 1  # the linters' result; the model is reviewing version 1
    edited = "X = 1\n" + PLANTED
    insert(client, uri, 2, 0, 0, "X = 1\n")
    path.write_text(edited)
    _save(client, uri)
    # Everything published from now on is about version 2: the linters', then the model's.
    later = [await _next_publication(client, TIMEOUT * 5) for _ in range(2)]
    assert [p.version for p in later] == [2, 2]
    quality = (await status(client))["quality"]
    assert quality["cancelled"] == 1 and quality["model_calls"] == 1, quality
    assert quality["partials"] == 2  # one per save
    await asyncio.sleep(2)
    assert client.diagnostics[uri] == later[-1].diagnostics  # nothing came after


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


async def test_a_pull_mid_review_gets_the_linters_then_a_refresh(tmp_path: Path) -> None:
    """A client that takes refreshes: its pull answers with the linters' result while the model
    reviews, and a refresh follows when the model's findings are in."""
    caps = _pull_capabilities()
    caps.workspace = lsp.WorkspaceClientCapabilities(
        diagnostics=lsp.DiagnosticWorkspaceClientCapabilities(refresh_support=True)
    )
    config = server_config(Path("/nonexistent-memlsp-config"))
    client = await config.start()
    try:
        await asyncio.wait_for(
            client.initialize_session(
                lsp.InitializeParams(
                    capabilities=caps,
                    root_uri=tmp_path.as_uri(),
                    # One model stage: the refresh after it is the last.
                    initialization_options={
                        "agents": {"quality": {"model": FAST, "instruct": True, "surprise": False}}
                    },
                )
            ),
            TIMEOUT,
        )
        uri = _open(client, tmp_path / "pulled.py", PLANTED)
        _save(client, uri)

        async def pull() -> lsp.RelatedFullDocumentDiagnosticReport:
            report = await asyncio.wait_for(
                client.text_document_diagnostic_async(
                    lsp.DocumentDiagnosticParams(text_document=lsp.TextDocumentIdentifier(uri=uri))
                ),
                TIMEOUT,
            )
            assert isinstance(report, lsp.RelatedFullDocumentDiagnosticReport)
            return report

        early = await pull()
        quality = (await status(client))["quality"]
        assert quality["model_calls"] == 0, quality  # answered before the model was done
        assert "F401" in [d.code for d in early.items]
        assert client.diagnostic_refresh_count >= 1  # for the linters' result

        async def refreshed(count: int) -> None:
            while client.diagnostic_refresh_count < count:
                await asyncio.sleep(0.2)

        await asyncio.wait_for(refreshed(2), TIMEOUT * 5)  # the model's
        assert (await status(client))["quality"]["model_calls"] == 1
        late = await pull()
        assert {d.code for d in early.items} <= {d.code for d in late.items}
        assert client.diagnostics == {}  # nothing was pushed
    finally:
        await client.shutdown_session()
        await client.stop()
