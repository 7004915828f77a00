"""Code actions over stdio: a quick fix from a linter finding, refactors listed without a model
call and resolved by the refactor agent into an edit that applies and parses."""

from __future__ import annotations

import ast
import asyncio
import time
from pathlib import Path

import pytest
import pytest_lsp
from lsp_helpers import TIMEOUT, apply_edits, initialize, server_config, status
from lsprotocol import types as lsp
from pytest_lsp import LanguageClient

pytestmark = pytest.mark.model

SOURCE = "import os\n\n\ndef scale(values, factor):\n    return [v * factor for v in values]\n"


@pytest_lsp.fixture(config=server_config(Path("/nonexistent-memlsp-config")))
async def client(lsp_client: LanguageClient, tmp_path: Path):  # type: ignore[no-untyped-def]
    await initialize(lsp_client, tmp_path, pull_diagnostics=False)
    yield lsp_client
    await lsp_client.shutdown_session()


def _open(client: LanguageClient, path: Path) -> str:
    path.write_text(SOURCE)
    uri = path.as_uri()
    client.text_document_did_open(
        lsp.DidOpenTextDocumentParams(
            text_document=lsp.TextDocumentItem(
                uri=uri, language_id="python", version=1, text=SOURCE
            )
        )
    )
    return uri


def _open_and_save(client: LanguageClient, path: Path) -> str:
    uri = _open(client, path)
    client.text_document_did_save(
        lsp.DidSaveTextDocumentParams(text_document=lsp.TextDocumentIdentifier(uri=uri))
    )
    return uri


async def _actions(
    client: LanguageClient, uri: str, span: lsp.Range, diagnostics: list[lsp.Diagnostic]
) -> list[lsp.CodeAction]:
    result = await asyncio.wait_for(
        client.text_document_code_action_async(
            lsp.CodeActionParams(
                text_document=lsp.TextDocumentIdentifier(uri=uri),
                range=span,
                context=lsp.CodeActionContext(diagnostics=diagnostics),
            )
        ),
        TIMEOUT,
    )
    return [a for a in result or [] if isinstance(a, lsp.CodeAction)]


async def test_quick_fix_applies_and_parses(client: LanguageClient, tmp_path: Path) -> None:
    uri = _open_and_save(client, tmp_path / "fixme.py")
    deadline = time.monotonic() + TIMEOUT * 5
    while uri not in client.diagnostics:
        assert time.monotonic() < deadline, "no diagnostics after save"
        await asyncio.sleep(0.2)
    unused = [d for d in client.diagnostics[uri] if d.code == "F401"]
    assert unused
    actions = await _actions(client, uri, unused[0].range, unused)
    fixes = [a for a in actions if a.kind == lsp.CodeActionKind.QuickFix and a.edit]
    assert fixes, actions
    edit = fixes[0].edit
    assert edit is not None and edit.changes is not None
    fixed = apply_edits(SOURCE, list(edit.changes[uri]))
    assert "import os" not in fixed
    ast.parse(fixed)


async def test_refactors_are_listed_instantly_and_resolve_to_a_valid_edit(
    client: LanguageClient, tmp_path: Path
) -> None:
    uri = _open_and_save(client, tmp_path / "refactor.py")
    cursor = lsp.Range(start=lsp.Position(4, 8), end=lsp.Position(4, 8))
    started = time.perf_counter()
    actions = await _actions(client, uri, cursor, [])
    listed_in = time.perf_counter() - started
    refactors = {a.title: a for a in actions if a.kind and a.kind.startswith("refactor")}
    assert refactors, actions
    assert listed_in < 5  # generous for a loaded CI machine; no model is involved
    docstring = next(a for t, a in refactors.items() if "docstring" in t.lower())
    assert docstring.edit is None and docstring.data  # resolved lazily
    resolved = await asyncio.wait_for(client.code_action_resolve_async(docstring), TIMEOUT * 5)
    assert resolved.edit is not None and resolved.edit.changes is not None, client.messages
    rewritten = apply_edits(SOURCE, list(resolved.edit.changes[uri]))
    assert rewritten != SOURCE
    tree = ast.parse(rewritten)
    function = next(n for n in tree.body if isinstance(n, ast.FunctionDef))
    assert ast.get_docstring(function)
    assert rewritten.startswith("import os\n")  # nothing outside the function was touched
    assert (await status(client))["pool"]["models"]["qwen2.5-coder-1.5b"]["loads"] == 1


async def test_cancel_request_stops_a_resolve_and_frees_the_model(
    client: LanguageClient, tmp_path: Path
) -> None:
    uri = _open(client, tmp_path / "cancel.py")  # not saved: no review competes for the model
    cursor = lsp.Range(start=lsp.Position(4, 8), end=lsp.Position(4, 8))
    actions = await _actions(client, uri, cursor, [])
    docstring = next(a for a in actions if a.kind and "docstring" in a.title.lower())
    msg_id = "resolve-to-cancel"
    pending = asyncio.wrap_future(
        client.protocol.send_request(lsp.CODE_ACTION_RESOLVE, docstring, msg_id=msg_id)
    )

    def refactor_started() -> bool:
        return any(
            isinstance(r, lsp.WorkDoneProgressBegin) and r.title == "memlsp refactor"
            for reports in client.progress_reports.values()
            for r in reports
        )

    deadline = time.monotonic() + TIMEOUT
    while not refactor_started() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert refactor_started(), client.progress_reports
    await asyncio.sleep(0.5)  # into the model call (or its load): the cancel must reach it there
    client.protocol.notify(lsp.CANCEL_REQUEST, lsp.CancelParams(id=msg_id))
    # An answered resolve means the cancel was ignored: the request must end in an error.
    with pytest.raises(Exception, match="cancel"):
        await asyncio.wait_for(pending, TIMEOUT)
    counts = (await status(client))["requests"]["counts"]
    assert counts["code_action_resolve"].get("cancelled") == 1, counts
    # The model's lock was released: the same action now resolves to an edit.
    resolved = await asyncio.wait_for(client.code_action_resolve_async(docstring), TIMEOUT * 5)
    assert resolved.edit is not None and resolved.edit.changes, client.messages
    ast.parse(apply_edits(SOURCE, list(resolved.edit.changes[uri])))
