"""Refactor code actions: offered instantly, resolved by the refactor agent in the background."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lsprotocol import types as lsp
from pygls.workspace import TextDocument

from memlsp.agents.refactor.actions import DiagnosticInfo
from memlsp.agents.refactor.agent import (
    RefactorAgent,
    RefactorCancelled,
    ResolveRequest,
    ResolveResult,
)
from memlsp.agents.refactor.text_edits import TextRange
from memlsp.config import Config
from memlsp.models import ModelError
from memlsp.server.lsp.documents import opened_document
from memlsp.server.lsp.feature import ConfigBound

if TYPE_CHECKING:
    from memlsp.server.lsp.server import MemlspServer

log = logging.getLogger(__name__)

REWRITE_COMMAND = "memlsp.rewriteSelection"


def _opened(server: MemlspServer, uri: Any) -> TextDocument:
    doc = opened_document(server, str(uri))
    if doc is None:
        raise LookupError(f"{uri} is not open")
    return doc


class RefactorService:
    def __init__(self, server: MemlspServer) -> None:
        self.server = server
        self.session = server.session
        self.refactor_agent = ConfigBound(
            "refactor agent", lambda c: c.agents.refactor, self._build_agent
        )

    def agent(self) -> RefactorAgent:
        return self.refactor_agent.get(self.session.config)

    def _build_agent(self, config: Config) -> RefactorAgent:
        assert self.session.pool is not None
        return RefactorAgent(self.session.pool, config.agents.refactor)

    def _code_points(self, lines: list[str], span: lsp.Range) -> TextRange:
        server_range = self.server.workspace.position_codec.range_from_client_units(lines, span)
        return TextRange(
            server_range.start.line,
            server_range.start.character,
            server_range.end.line,
            server_range.end.character,
        )

    def offers(
        self, uri: str, span: lsp.Range, context: lsp.CodeActionContext
    ) -> list[lsp.CodeAction]:
        if not self.session.config.agents.refactor.enabled:
            return []
        doc = opened_document(self.server, uri)
        if doc is None:
            return []
        lines = list(doc.lines) or [""]
        diagnostics = tuple(
            DiagnosticInfo(
                range=self._code_points(lines, d.range),
                message=d.message,
                source=d.source or "",
                code=str(d.code or ""),
                severity=int(d.severity or 0),
            )
            for d in context.diagnostics
        )
        offers = self.agent().list_actions(
            doc.source,
            doc.language_id or "",
            self._code_points(lines, span),
            diagnostics,
            uri=uri,
            version=doc.version,
        )
        return [
            lsp.CodeAction(title=o.title, kind=o.kind, data=o.data())
            for o in offers
            if not o.needs_instruction  # clients prompt via REWRITE_COMMAND
        ]

    async def run(
        self, data: dict[str, Any], cancel: threading.Event, report: Callable[[str], None] | None
    ) -> ResolveResult | str:
        """Resolve an action's data to edits, or a message saying why there are none."""
        uri = data.get("uri")
        try:
            doc = _opened(self.server, uri)
            request = ResolveRequest.from_data(
                data, text=doc.source, language_id=doc.language_id or ""
            )
        except Exception as exc:
            return f"memlsp: cannot run this action ({exc})"
        if request.version is not None and doc.version != request.version:
            return "memlsp: the file changed since the action was offered; ask again"
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self.session.background_executor, self.agent().resolve, request, cancel, report
            )
        except RefactorCancelled:
            return "memlsp: refactor cancelled"
        except ModelError as exc:
            self.session.report_model_error(exc)
            return f"memlsp: {exc}"

    def workspace_edit(self, result: ResolveResult) -> lsp.WorkspaceEdit:
        from memlsp.server.lsp.code_actions import to_lsp_edit

        doc = self.server.workspace.get_text_document(result.uri)
        return lsp.WorkspaceEdit(
            changes={result.uri: [to_lsp_edit(self.server, doc.source, e) for e in result.edits]}
        )

    async def resolve(
        self, action: lsp.CodeAction, cancel: threading.Event, report: Callable[[str], None] | None
    ) -> lsp.CodeAction:
        assert isinstance(action.data, dict)
        outcome = await self.run(action.data, cancel, report)
        if isinstance(outcome, str) or not outcome.edits:
            message = outcome if isinstance(outcome, str) else f"memlsp: {outcome.message}"
            self.server.window_show_message(
                lsp.ShowMessageParams(type=lsp.MessageType.Info, message=message)
            )
            return action
        action.edit = self.workspace_edit(outcome)
        return action


def register(server: MemlspServer) -> RefactorService:
    service = RefactorService(server)
    server.session.features.add(service.refactor_agent)

    @server.command(REWRITE_COMMAND)
    async def rewrite_selection(ls: Any, *args: Any) -> dict[str, Any]:
        """Arguments: uri, range (LSP), instruction. Applies the rewrite as a workspace edit."""
        if len(args) < 3:
            return {"applied": False, "message": "expected uri, range and instruction"}
        uri, raw_range, instruction = args[0], args[1], args[2]
        try:
            doc = _opened(ls, uri)
            span = lsp.Range(
                start=lsp.Position(**dict(raw_range["start"])),
                end=lsp.Position(**dict(raw_range["end"])),
            )
        except Exception as exc:
            return {"applied": False, "message": f"bad arguments: {exc}"}
        text_range = service._code_points(list(doc.lines) or [""], span)
        data = {
            "action": "rewrite",
            "uri": uri,
            "version": doc.version,
            "range": text_range.to_json(),
            "instruction": str(instruction),
        }
        outcome = await service.run(data, threading.Event(), None)
        if isinstance(outcome, str) or not outcome.edits:
            message = outcome if isinstance(outcome, str) else outcome.message
            ls.window_show_message(
                lsp.ShowMessageParams(type=lsp.MessageType.Info, message=message)
            )
            return {"applied": False, "message": message}
        result = await ls.workspace_apply_edit_async(
            lsp.ApplyWorkspaceEditParams(
                edit=service.workspace_edit(outcome), label="memlsp rewrite"
            )
        )
        return {"applied": bool(result.applied)}

    return service
