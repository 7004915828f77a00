"""The pygls language server: thin handlers translating LSP to session and agent calls."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from lsprotocol import types as lsp
from pygls.lsp.server import LanguageServer

from . import logs
from .session import VERSION, CursorText, Session, uri_to_path

log = logging.getLogger(__name__)

CONFIG_SECTION = "memlsp"
_LOG_TYPES = {
    logging.ERROR: lsp.MessageType.Error,
    logging.WARNING: lsp.MessageType.Warning,
    logging.INFO: lsp.MessageType.Info,
}


class MemlspServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("memlsp", VERSION, max_workers=4)
        self.session = Session(notify_user=self.notify_user)
        self._loop: asyncio.AbstractEventLoop | None = None

    def notify_user(self, message: str) -> None:
        """window/showMessage, safe from any thread: for things the user must act on."""
        self._call_soon(
            lambda: self.window_show_message(
                lsp.ShowMessageParams(type=lsp.MessageType.Warning, message=message)
            )
        )

    def send_log(self, level: int, message: str) -> None:
        kind = next((t for lvl, t in _LOG_TYPES.items() if level >= lvl), lsp.MessageType.Log)
        self._call_soon(
            lambda: self.window_log_message(lsp.LogMessageParams(type=kind, message=message))
        )

    def _call_soon(self, action: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            action()
        else:
            loop.call_soon_threadsafe(action)


def _cursor(ls: MemlspServer, uri: str, position: lsp.Position) -> CursorText | None:
    try:
        doc = ls.workspace.get_text_document(uri)
        source = doc.source
        offset = min(doc.offset_at_position(position), len(source))
    except Exception:  # unknown document or nonsense position: nothing to suggest
        log.debug("no text at %s %s", uri, position, exc_info=True)
        return None
    return CursorText(
        uri, doc.language_id or _language_from_uri(uri), source[:offset], source[offset:]
    )


def _language_from_uri(uri: str) -> str:
    suffix = uri.rsplit(".", 1)[-1].lower() if "." in uri else ""
    return {
        "py": "python",
        "js": "javascript",
        "ts": "typescript",
        "go": "go",
        "rs": "rust",
        "java": "java",
        "c": "c",
        "h": "c",
        "cpp": "cpp",
        "cc": "cpp",
    }.get(suffix, suffix)


def _word_before(prefix: str) -> str:
    """The identifier characters right before the cursor (what a completion item replaces)."""
    i = len(prefix)
    while i > 0 and (prefix[i - 1].isalnum() or prefix[i - 1] == "_"):
        i -= 1
    return prefix[i:]


def build_server() -> MemlspServer:
    server = MemlspServer()

    @server.feature(lsp.INITIALIZE)
    def initialize(ls: MemlspServer, params: lsp.InitializeParams) -> None:
        ls._loop = asyncio.get_running_loop()
        logging.getLogger().addHandler(logs.ClientLogHandler(ls.send_log, logging.INFO))
        root = None
        if params.workspace_folders:
            root = uri_to_path(params.workspace_folders[0].uri)
        elif params.root_uri:
            root = uri_to_path(params.root_uri)
        options = params.initialization_options
        ls.session.configure(root, options if isinstance(options, dict) else None)
        logs.configure(ls.session.config.server.log_level, ls.session.config.server.log_file)

    @server.feature(lsp.INITIALIZED)
    async def initialized(ls: MemlspServer, params: lsp.InitializedParams) -> None:
        await _pull_client_settings(ls)

    @server.feature(lsp.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(
        ls: MemlspServer, params: lsp.DidChangeConfigurationParams
    ) -> None:
        settings = params.settings
        if isinstance(settings, dict) and isinstance(settings.get(CONFIG_SECTION), dict):
            ls.session.configure(client_settings=settings[CONFIG_SECTION])
        else:  # the modern way: the notification only says "something changed"
            await _pull_client_settings(ls)

    @server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: MemlspServer, params: lsp.DidOpenTextDocumentParams) -> None:
        ls.session.note_opened(params.text_document.uri, params.text_document.text)

    @server.feature(lsp.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: MemlspServer, params: lsp.DidSaveTextDocumentParams) -> None:
        uri = params.text_document.uri
        try:
            doc = ls.workspace.get_text_document(uri)
        except Exception:
            return
        ls.session.note_edited(uri, doc.source, 0)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: MemlspServer, params: lsp.DidCloseTextDocumentParams) -> None:
        ls.session.note_closed(params.text_document.uri)

    @server.feature(lsp.TEXT_DOCUMENT_INLINE_COMPLETION, lsp.InlineCompletionOptions())
    async def inline_completion(
        ls: MemlspServer, params: lsp.InlineCompletionParams
    ) -> lsp.InlineCompletionList | None:
        cursor = _cursor(ls, params.text_document.uri, params.position)
        if cursor is None:
            return None
        suggestion = await ls.session.suggest(cursor)
        if suggestion is None or not suggestion.text:
            return lsp.InlineCompletionList(items=[])
        here = lsp.Range(start=params.position, end=params.position)
        return lsp.InlineCompletionList(
            items=[lsp.InlineCompletionItem(insert_text=suggestion.text, range=here)]
        )

    @server.feature(lsp.TEXT_DOCUMENT_COMPLETION, lsp.CompletionOptions())
    async def completion(
        ls: MemlspServer, params: lsp.CompletionParams
    ) -> lsp.CompletionList | None:
        cursor = _cursor(ls, params.text_document.uri, params.position)
        if cursor is None:
            return None
        suggestion = await ls.session.suggest(cursor)
        if suggestion is None or not suggestion.text:
            return lsp.CompletionList(is_incomplete=True, items=[])
        # Replace the word being typed so the client's fuzzy filter matches our item.
        word = _word_before(cursor.prefix)
        start = lsp.Position(params.position.line, max(0, params.position.character - len(word)))
        full = word + suggestion.text
        first_line = full.split("\n", 1)[0]
        item = lsp.CompletionItem(
            label=first_line + (" …" if "\n" in full else ""),
            kind=lsp.CompletionItemKind.Snippet,
            detail=f"memlsp · {suggestion.model}",
            filter_text=first_line,
            sort_text="0",
            insert_text_format=lsp.InsertTextFormat.PlainText,
            text_edit=lsp.TextEdit(
                range=lsp.Range(start=start, end=params.position), new_text=full
            ),
        )
        return lsp.CompletionList(is_incomplete=True, items=[item])

    @server.feature("memlsp/status")
    def status(ls: MemlspServer, params: Any) -> dict[str, Any]:
        return ls.session.status()

    @server.feature(lsp.SHUTDOWN)
    async def shutdown(ls: MemlspServer, params: None) -> None:
        ls.session.cancel_all()
        await asyncio.to_thread(ls.session.close)

    return server


async def _pull_client_settings(ls: MemlspServer) -> None:
    caps = ls.client_capabilities.workspace
    if not (caps and caps.configuration):
        return
    try:
        result = await asyncio.wait_for(
            ls.workspace_configuration_async(
                lsp.ConfigurationParams(items=[lsp.ConfigurationItem(section=CONFIG_SECTION)])
            ),
            timeout=5,
        )
    except Exception:  # a client that cannot answer leaves the other layers in force
        log.debug("workspace/configuration failed", exc_info=True)
        return
    if result and isinstance(result[0], dict):
        ls.session.configure(client_settings=result[0])
