"""Requests for tests only, registered when the environment has MEMLSP_TEST_HOOKS=1.

`memlsp/debugDocument` {uri, position?} answers the server's copy of an opened document
({version, text}, and with a position the code-point offset the completion features would use
there, or null where they would not complete). The protocol fuzzer
(tests/stress/test_protocol_fuzz.py)
checks text synchronisation against a reference model with it, without a model call. Nothing
else exposes the text, and an editor never sets the variable.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from lsprotocol import types as lsp

from memlsp.server.lsp.documents import cursor_text, opened_document

if TYPE_CHECKING:
    from memlsp.server.lsp.server import MemlspServer

ENV_VAR = "MEMLSP_TEST_HOOKS"
DEBUG_DOCUMENT = "memlsp/debugDocument"


def register(server: MemlspServer) -> None:
    if os.environ.get(ENV_VAR) != "1":
        return

    @server.feature(DEBUG_DOCUMENT)
    def debug_document(ls: MemlspServer, params: Any) -> dict[str, Any] | None:
        doc = opened_document(ls, params.uri)
        if doc is None:
            return None
        answer: dict[str, Any] = {"version": doc.version, "text": doc.source}
        position = getattr(params, "position", None)
        if position is not None:
            found = cursor_text(ls, params.uri, lsp.Position(position.line, position.character))
            answer["offset"] = len(found[2]) if found else None
        return answer
