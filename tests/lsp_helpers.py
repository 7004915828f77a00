"""Shared helpers for tests that drive the real server over stdio with pytest-lsp."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

SERVER = [sys.executable, "-m", "memlsp.server.cli", "serve"]
TIMEOUT = 120.0


def server_config(config_home: Path, *extra_args: str) -> ClientServerConfig:
    """The real server, isolated from the developer's own config (not from the model cache)."""
    env = {**os.environ, "XDG_CONFIG_HOME": str(config_home), "PYTHONUNBUFFERED": "1"}
    return ClientServerConfig(server_command=[*SERVER, *extra_args], server_env=env)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def capabilities() -> lsp.ClientCapabilities:
    caps = client_capabilities("neovim@0.11")
    assert caps.text_document is not None
    caps.text_document.inline_completion = lsp.InlineCompletionClientCapabilities()
    return caps


async def initialize(
    client: LanguageClient, root: Path, *, pull_diagnostics: bool = True, **init_options: Any
) -> lsp.InitializeResult:
    caps = capabilities()
    if not pull_diagnostics:  # Neovim 0.11 pulls; some tests need a client that takes pushes
        assert caps.text_document is not None
        caps.text_document.diagnostic = None
    return await asyncio.wait_for(
        client.initialize_session(
            lsp.InitializeParams(
                capabilities=caps,
                root_uri=root.as_uri(),
                workspace_folders=[lsp.WorkspaceFolder(uri=root.as_uri(), name=root.name)],
                initialization_options=init_options or None,
            )
        ),
        TIMEOUT,
    )


def open_doc(client: LanguageClient, path: Path, text: str, language: str = "python") -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    uri = path.as_uri()
    client.text_document_did_open(
        lsp.DidOpenTextDocumentParams(
            text_document=lsp.TextDocumentItem(uri=uri, language_id=language, version=1, text=text)
        )
    )
    return uri


def insert(client: LanguageClient, uri: str, version: int, line: int, char: int, text: str) -> None:
    here = lsp.Position(line=line, character=char)
    client.text_document_did_change(
        lsp.DidChangeTextDocumentParams(
            text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=version),
            content_changes=[
                lsp.TextDocumentContentChangePartial(
                    range=lsp.Range(start=here, end=here), text=text
                )
            ],
        )
    )


def inline_params(uri: str, line: int, char: int) -> lsp.InlineCompletionParams:
    return lsp.InlineCompletionParams(
        text_document=lsp.TextDocumentIdentifier(uri=uri),
        position=lsp.Position(line=line, character=char),
        context=lsp.InlineCompletionContext(trigger_kind=lsp.InlineCompletionTriggerKind.Automatic),
    )


async def inline(client: LanguageClient, uri: str, line: int, char: int) -> str | None:
    """The first inline item's text, or None when there is none."""
    result = await asyncio.wait_for(
        client.text_document_inline_completion_async(inline_params(uri, line, char)), TIMEOUT
    )
    items = result.items if isinstance(result, lsp.InlineCompletionList) else (result or [])
    if not items:
        return None
    text = items[0].insert_text
    return text if isinstance(text, str) else text.value


async def status(client: LanguageClient) -> dict[str, Any]:
    result = await asyncio.wait_for(
        client.protocol.send_request_async("memlsp/status", {}), TIMEOUT
    )
    answer = plain(result)
    if answer.get("pool"):  # index models by name for the tests
        answer["pool"]["models"] = {m["name"]: m for m in answer["pool"]["models"]}
    return answer  # type: ignore[no-any-return]


def plain(value: Any) -> Any:
    """pygls hands custom results back as namedtuple-like objects: make plain dicts."""
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def apply_edits(text: str, edits: list[lsp.TextEdit]) -> str:
    """Apply LSP edits (ASCII text: UTF-16 units equal code points) from last to first."""
    lines = text.splitlines(True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))

    def offset(p: lsp.Position) -> int:
        return offsets[min(p.line, len(lines))] + p.character

    for edit in sorted(edits, key=lambda e: offset(e.range.start), reverse=True):
        text = text[: offset(edit.range.start)] + edit.new_text + text[offset(edit.range.end) :]
    return text
