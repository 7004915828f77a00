"""Text synchronisation as the LSP specification defines it, where pygls 2.1.1 does not.

pygls splits lines with ``str.splitlines`` (which also breaks at form feed, \\x0b, \\x1c-\\x1e,
NEL, U+2028 and U+2029), clamps a character past the end of the last line to one before its end,
and maps "line length + 1" on a line ending in "\\r\\n" between the "\\r" and the "\\n". Each of
these puts positions elsewhere than the client meant, and incremental edits then corrupt our copy
of the document for good (found by tests/stress/test_protocol_fuzz.py). The specification: lines
end at
"\\r\\n", "\\n" or "\\r"; a character past the end of a line means the end of that line.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING
from urllib.parse import unquote

from lsprotocol import types as lsp
from pygls.workspace import TextDocument, Workspace
from pygls.workspace.position_codec import PositionCodec, ServerTextPosition

if TYPE_CHECKING:
    from pygls.lsp.server import LanguageServer

log = logging.getLogger(__name__)

_LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")
_OTHER_BREAKS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # str.splitlines() breaks there too


def split_lines(text: str) -> tuple[str, ...]:
    """Lines with their line breaks, like ``splitlines(True)`` but only at LSP line breaks."""
    if not any(char in text for char in _OTHER_BREAKS):  # `in` is far faster than a regex
        return tuple(text.splitlines(True))  # the same lines, at C speed
    return tuple(_LINE.findall(text))


def line_count(lines: Sequence[str]) -> int:
    """Lines as the client counts them: a final line break starts one more (empty) line."""
    return len(lines) + (not lines or lines[-1].endswith(("\r", "\n")))


def _code_units(text: str, encoding: str | None) -> int:
    if encoding == lsp.PositionEncodingKind.Utf8:
        return len(text.encode("utf-8"))
    if encoding == lsp.PositionEncodingKind.Utf32:
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def client_position(doc: TextDocument, offset: int) -> lsp.Position:
    """The position of a code-point offset, in the client's units (pygls's
    ``client_position_at_offset`` puts the end of a last line without a line break on the line
    after it)."""
    lines = doc.lines
    for number, line in enumerate(lines):
        content = line.rstrip("\r\n")
        if offset <= len(content):
            return doc.position_codec.position_to_client_units(
                lines, ServerTextPosition(number, offset)
            )
        offset -= len(line)
    return lsp.Position(len(lines), 0)  # after the final line break


class SpecPositionCodec(PositionCodec):
    def position_from_client_units(
        self, lines: Sequence[str], position: lsp.Position
    ) -> ServerTextPosition:
        if not lines:
            return ServerTextPosition(0, 0)
        if position.line >= len(lines):  # past the last line: the end of the document
            return ServerTextPosition(len(lines) - 1, len(lines[-1]))
        content = lines[position.line].rstrip("\r\n")
        if _code_units(content, self.encoding) == len(content):  # one unit per character
            return ServerTextPosition(position.line, max(0, min(position.character, len(content))))
        taken = 0
        for index, char in enumerate(content):
            taken += self.impl.code_units_for_char(char)
            if taken > position.character:  # inside or before this character
                return ServerTextPosition(position.line, index)
        return ServerTextPosition(position.line, len(content))


class SpecTextDocument(TextDocument):
    @property
    def lines(self) -> Sequence[str]:
        return split_lines(self.source)


def utf8_size_over(text: str, limit: int) -> bool:
    """Whether ``text`` takes more than ``limit`` bytes in UTF-8, encoding it only when needed."""
    if len(text) > limit:
        return True
    if len(text) * 4 <= limit:
        return False
    return len(text.encode("utf-8", "surrogatepass")) > limit


class SpecWorkspace(Workspace):
    """pygls's workspace with the documents and positions above.

    A document over ``max_document_bytes`` is not kept: every line split, copy and parse of a
    50 MB buffer took seconds on the event loop (everything else waited) and left hundreds of MB
    behind. It is listed in ``too_large`` instead, so features see it as not open; a full-text
    change that brings it under the limit makes it a normal document again.
    """

    def __init__(
        self,
        like: Workspace,
        sync_kind: lsp.TextDocumentSyncKind,
        max_document_bytes: Callable[[], int] = lambda: 1 << 62,
    ) -> None:
        super().__init__(
            like.root_uri, sync_kind, list(like.folders.values()), like.position_encoding
        )
        self._spec_codec = SpecPositionCodec(like.position_encoding)
        self._max_document_bytes = max_document_bytes
        self.too_large: dict[str, str] = {}  # uri -> language id

    def put_text_document(
        self, text_document: lsp.TextDocumentItem, notebook_uri: str | None = None
    ) -> None:
        uri = unquote(text_document.uri)
        limit = self._max_document_bytes()
        if utf8_size_over(text_document.text, limit):
            self._text_documents.pop(uri, None)
            self.too_large[uri] = text_document.language_id
            log.warning(
                "%s is larger than server.max_document_bytes (%d): no completions, code actions "
                "or reviews in it",
                text_document.uri,
                limit,
            )
            return
        self.too_large.pop(uri, None)
        super().put_text_document(text_document, notebook_uri)

    def update_text_document(
        self,
        text_doc: lsp.VersionedTextDocumentIdentifier,
        change: lsp.TextDocumentContentChangeEvent,
    ) -> None:
        uri = unquote(text_doc.uri)
        if uri in self.too_large:
            if isinstance(change, lsp.TextDocumentContentChangeWholeDocument):
                item = lsp.TextDocumentItem(
                    uri=uri,
                    language_id=self.too_large[uri],
                    version=text_doc.version,
                    text=change.text,
                )
                self.put_text_document(item)
            return  # an edit to text we do not hold: nothing to apply it to
        if uri not in self._text_documents:  # never opened: pygls would raise (a popup)
            log.debug("change to a document not open: %s", uri)
            return
        super().update_text_document(text_doc, change)

    def remove_text_document(self, doc_uri: str) -> None:
        self.too_large.pop(unquote(doc_uri), None)
        super().remove_text_document(doc_uri)

    @property
    def position_codec(self) -> PositionCodec:
        return self._spec_codec

    def _create_text_document(
        self,
        doc_uri: str,
        source: str | None = None,
        version: int | None = None,
        language_id: str | None = None,
    ) -> TextDocument:
        return SpecTextDocument(
            doc_uri,
            source=source,
            version=version,
            language_id=language_id,
            sync_kind=self._sync_kind,
            position_codec=self._spec_codec,
        )


def install(server: LanguageServer, max_document_bytes: Callable[[], int]) -> None:
    """Replace the workspace pygls made in `initialize` (before our handler runs, so it holds no
    documents yet) with the spec-conforming one; it keeps the negotiated position encoding."""
    server.protocol._workspace = SpecWorkspace(
        server.workspace, server._text_document_sync_kind, max_document_bytes
    )
