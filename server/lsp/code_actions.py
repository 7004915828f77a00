"""Code actions: quick fixes for our findings, and refactors from the refactor agent.

Listing is instant (no model call): quick fixes are computed from the last review's findings
(a minimal edit, offered only if the file still parses); refactors are offered unresolved and
`codeAction/resolve` runs the model (in the background executor, with `$/progress`, cancellable).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from lsprotocol import types as lsp

from memlsp.agents.review.quick_fix import quick_fix_edit
from memlsp.agents.review.types import ReviewFinding
from memlsp.base.edits import TextEdit
from memlsp.models.abort import Cancel
from memlsp.server.lsp.progress import start_progress
from memlsp.server.lsp.text_sync import split_lines

if TYPE_CHECKING:
    from memlsp.server.lsp.diagnostics import DiagnosticsService
    from memlsp.server.lsp.refactors import RefactorService
    from memlsp.server.lsp.server import MemlspServer

log = logging.getLogger(__name__)


def _overlaps(finding: ReviewFinding, span: lsp.Range) -> bool:
    return finding.line <= span.end.line and finding.end_line >= span.start.line


def to_lsp_edit(server: MemlspServer, text: str, edit: TextEdit) -> lsp.TextEdit:
    """A code-point edit as an LSP edit in the client's position encoding."""
    lines = list(split_lines(text)) or [""]  # LSP's line breaks, not str.splitlines()'s
    span = server.workspace.position_codec.range_to_client_units(
        lines,
        lsp.Range(
            start=lsp.Position(edit.line, edit.column),
            end=lsp.Position(edit.end_line, edit.end_column),
        ),
    )
    return lsp.TextEdit(range=span, new_text=edit.new_text)


def quick_fixes(
    server: MemlspServer, diagnostics: DiagnosticsService, uri: str, span: lsp.Range
) -> list[lsp.CodeAction]:
    reviewed = diagnostics.reviewed(uri)
    if reviewed is None or not reviewed.findings:
        return []
    try:
        current = server.workspace.get_text_document(uri)
    except Exception:
        return []
    if current.source != reviewed.text:
        return []  # the findings describe another text: their edits would land wrong
    actions = []
    for finding in reviewed.findings:
        if not _overlaps(finding, span):
            continue
        edit = quick_fix_edit(reviewed.text, finding, language_id=reviewed.language_id)
        if edit is None:
            continue
        diagnostic = diagnostics.to_diagnostics(reviewed.text, (finding,))[0]
        title = finding.fix_title or f"Fix: {finding.message}"
        actions.append(
            lsp.CodeAction(
                title=title[:120],
                kind=lsp.CodeActionKind.QuickFix,
                diagnostics=[diagnostic],
                is_preferred=finding.origin == "tool",
                edit=lsp.WorkspaceEdit(changes={uri: [to_lsp_edit(server, reviewed.text, edit)]}),
            )
        )
    return actions


def register(
    server: MemlspServer, diagnostics: DiagnosticsService, refactors: RefactorService | None
) -> None:
    kinds = [lsp.CodeActionKind.QuickFix]
    if refactors is not None:
        kinds += [
            lsp.CodeActionKind.Refactor,
            lsp.CodeActionKind.RefactorRewrite,
            lsp.CodeActionKind.RefactorExtract,
        ]

    @server.feature(
        lsp.TEXT_DOCUMENT_CODE_ACTION,
        lsp.CodeActionOptions(code_action_kinds=kinds, resolve_provider=refactors is not None),
    )
    def code_action(ls: MemlspServer, params: lsp.CodeActionParams) -> list[lsp.CodeAction]:
        timer = ls.session.metrics.timer("code_action")
        uri = params.text_document.uri
        only = params.context.only
        actions: list[lsp.CodeAction] = []
        if not only or any(k.startswith("quickfix") for k in only):
            actions += quick_fixes(ls, diagnostics, uri, params.range)
        if refactors is not None:
            actions += refactors.offers(uri, params.range, params.context)
        if only:
            actions = [a for a in actions if a.kind and any(a.kind.startswith(k) for k in only)]
        timer("ok")
        return actions

    if refactors is None:
        return

    @server.feature(lsp.CODE_ACTION_RESOLVE)
    async def code_action_resolve(ls: MemlspServer, action: lsp.CodeAction) -> lsp.CodeAction:
        if not isinstance(action.data, dict):
            return action
        cancel = Cancel()  # aborts the model mid-batch too (models.abort)
        progress = await start_progress(ls, "memlsp refactor", action.title, cancel=cancel)
        timer = ls.session.metrics.timer("code_action_resolve")
        try:
            resolved = await refactors.resolve(action, cancel, progress.report)
        except asyncio.CancelledError:
            cancel.set()
            timer("cancelled")
            progress.end("cancelled")
            raise
        progress.end()
        timer("ok" if resolved.edit else "no_edit")
        return resolved
