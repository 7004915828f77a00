"""Document lifecycle: pygls keeps the text (incremental sync); we feed the agents' context."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import unquote

from lsprotocol import types as lsp
from pygls.workspace import TextDocument

from memlsp.base.languages import language_of_path
from memlsp.server.lsp.text_sync import line_count

if TYPE_CHECKING:
    from memlsp.server.lsp.server import MemlspServer

log = logging.getLogger(__name__)


def language_from_uri(uri: str) -> str:
    """The LSP language id of a document from its name (for when the client sends none); the
    file's extension where memlsp does not know it ("" without one)."""
    name = uri.rsplit("/", 1)[-1]
    language = language_of_path(name)
    if language is not None:
        return language.lsp_id
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def opened_document(server: MemlspServer, uri: str) -> TextDocument | None:
    """A document the client opened, never one read from disk: pygls's get_text_document reads
    any path a request names (a FIFO, /dev/zero, a 20 MB file) on the event loop."""
    return server.workspace.text_documents.get(unquote(uri))  # type: ignore[no-any-return]


def cursor_text(
    server: MemlspServer, uri: str, position: lsp.Position
) -> tuple[str, str, str, str] | None:
    """(uri, language id, text before, text after) the cursor; None for documents the client did
    not open and for lines past the end (a client out of sync: a suggestion would land wrong)."""
    doc = opened_document(server, uri)
    if doc is None or position.line >= line_count(doc.lines):
        return None
    try:
        source = doc.source
        offset = min(doc.offset_at_position(position), len(source))
    except Exception:  # nonsense position: nothing to suggest
        log.debug("no text at %s %s", uri, position, exc_info=True)
        return None
    return uri, doc.language_id or language_from_uri(uri), source[:offset], source[offset:]


@dataclass(frozen=True)
class DocumentEvent:
    uri: str
    version: int | None
    language_id: str
    text: str


def _event(server: MemlspServer, uri: str) -> DocumentEvent | None:
    doc = opened_document(server, uri)  # a didSave for a document never opened: nothing to do
    if doc is None:
        return None
    return DocumentEvent(uri, doc.version, doc.language_id or language_from_uri(uri), doc.source)


def register(server: MemlspServer) -> None:
    """One LSP handler per method (pygls allows one), fanned out to every feature."""
    features = server.session.features

    @server.feature(lsp.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: MemlspServer, params: lsp.DidOpenTextDocumentParams) -> None:
        event = _event(ls, params.text_document.uri)
        if event is not None:
            features.document_opened(event)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: MemlspServer, params: lsp.DidChangeTextDocumentParams) -> None:
        event = _event(ls, params.text_document.uri)
        if event is not None:
            features.document_changed(event)

    @server.feature(lsp.TEXT_DOCUMENT_DID_SAVE, lsp.SaveOptions(include_text=False))
    def did_save(ls: MemlspServer, params: lsp.DidSaveTextDocumentParams) -> None:
        event = _event(ls, params.text_document.uri)
        if event is not None:
            features.document_saved(event)

    @server.feature(lsp.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: MemlspServer, params: lsp.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        features.document_closed(DocumentEvent(uri, None, language_from_uri(uri), ""))
