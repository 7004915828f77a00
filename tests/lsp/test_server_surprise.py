"""Surprise findings through the real server over stdio: a one-line bug gets a finding on its
line whose quick fix restores the original; the clean original gets none.

Only the surprise stage runs (``categories: []`` turns the instruct review off), so a finding
on the bug line can come from nothing else: with ``surprise: false`` these tests fail.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import pytest_lsp
from lsp_helpers import TIMEOUT, apply_edits, initialize, open_doc, server_config, status
from lsprotocol import types as lsp
from pytest_lsp import LanguageClient
from surprise_cases import BUG_LINE, MUTANT, ORIGINAL

pytestmark = pytest.mark.model

CODE = "unusual-code"


@pytest_lsp.fixture(config=server_config(Path("/nonexistent-memlsp-config")))
async def client(lsp_client: LanguageClient, tmp_path: Path):  # type: ignore[no-untyped-def]
    await initialize(
        lsp_client,
        tmp_path,
        pull_diagnostics=False,
        agents={"quality": {"categories": []}},
        memory={"enabled": False},
    )
    yield lsp_client
    await lsp_client.shutdown_session()


async def _reviewed(
    client: LanguageClient, path: Path, text: str
) -> tuple[str, list[lsp.Diagnostic]]:
    """Open and save ``text``; the diagnostics once the review's surprise stage is done."""
    uri = open_doc(client, path, text)
    client.text_document_did_save(
        lsp.DidSaveTextDocumentParams(text_document=lsp.TextDocumentIdentifier(uri=uri))
    )
    deadline = time.monotonic() + TIMEOUT * 5
    while True:
        quality = (await status(client))["quality"]
        stage = quality.get("stages", {}).get("surprise", {})
        if stage.get("runs", 0) >= 1 and uri in client.diagnostics:
            break
        assert time.monotonic() < deadline, quality
        await asyncio.sleep(0.3)
    await asyncio.sleep(0.5)  # the final publication follows the stage's end
    assert quality["stages"]["surprise"]["errors"] == 0, quality
    return uri, list(client.diagnostics[uri])


async def test_a_one_line_bug_gets_a_finding_whose_fix_restores_the_line(
    client: LanguageClient, tmp_path: Path
) -> None:
    uri, diagnostics = await _reviewed(client, tmp_path / "prices.py", MUTANT)
    found = [d for d in diagnostics if d.code == CODE]
    assert [d.range.start.line for d in found] == [BUG_LINE], diagnostics
    assert found[0].source == "memlsp" and "item" in found[0].message
    actions = await asyncio.wait_for(
        client.text_document_code_action_async(
            lsp.CodeActionParams(
                text_document=lsp.TextDocumentIdentifier(uri=uri),
                range=found[0].range,
                context=lsp.CodeActionContext(diagnostics=found),
            )
        ),
        TIMEOUT,
    )
    fixes = [
        a
        for a in actions or []
        if isinstance(a, lsp.CodeAction) and a.kind == lsp.CodeActionKind.QuickFix and a.edit
    ]
    assert fixes, actions
    edit = fixes[0].edit
    assert edit is not None and edit.changes is not None
    assert apply_edits(MUTANT, list(edit.changes[uri])) == ORIGINAL


async def test_the_clean_original_gets_no_finding(client: LanguageClient, tmp_path: Path) -> None:
    _, diagnostics = await _reviewed(client, tmp_path / "prices.py", ORIGINAL)
    assert [d for d in diagnostics if d.code == CODE] == []


async def test_a_file_opened_is_scored_ahead_and_its_first_save_scores_only_the_change(
    client: LanguageClient, tmp_path: Path
) -> None:
    """agents.quality.surprise_ahead: a file opened is scored while the editor is quiet; the
    bug typed into it and saved, the review evaluates only from the change on (the first pass
    of what came before is kept) and still finds it."""
    await _reviewed(client, tmp_path / "warm.py", ORIGINAL)  # work ahead never loads a model
    filler = "".join(
        f"def offset_{i}(values, step):\n    return [value + step * {i} for value in values]\n\n\n"
        for i in range(16)
    )
    path = tmp_path / "ledger.py"
    uri = open_doc(client, path, filler + ORIGINAL)
    deadline = time.monotonic() + TIMEOUT * 5
    while (surprise := (await status(client))["quality"]["surprise"])["ahead"] < 1:
        assert time.monotonic() < deadline, surprise
        await asyncio.sleep(0.3)
    path.write_text(filler + MUTANT)
    client.text_document_did_change(
        lsp.DidChangeTextDocumentParams(
            text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=2),
            content_changes=[lsp.TextDocumentContentChangeWholeDocument(text=filler + MUTANT)],
        )
    )
    before = (await status(client))["quality"]
    client.text_document_did_save(
        lsp.DidSaveTextDocumentParams(text_document=lsp.TextDocumentIdentifier(uri=uri))
    )
    while (after := (await status(client))["quality"])["stages"]["surprise"]["runs"] <= before[
        "stages"
    ]["surprise"]["runs"]:
        assert time.monotonic() < deadline, after
        await asyncio.sleep(0.3)
    await asyncio.sleep(0.5)  # the final publication follows the stage's end
    reused = after["surprise"]["reused_tokens"] - before["surprise"]["reused_tokens"]
    evaluated = after["surprise"]["evaluated_tokens"] - before["surprise"]["evaluated_tokens"]
    assert reused > 400 and evaluated < reused, after["surprise"]
    found = [d for d in client.diagnostics[uri] if d.code == CODE]
    assert [d.range.start.line for d in found] == [filler.count("\n") + BUG_LINE], found
