"""Quality diagnostics on save: linters through the tool executor plus the quality agent's review.

- A save schedules a review after a short debounce; a newer save cancels the older review of that
  document. Reviews run one at a time in their own executor, never ahead of completions or
  refactors, and pause while a completion runs (models/priority.py).
- Results for a document version that is no longer current are dropped.
- Clients that advertise pull diagnostics (`textDocument/diagnostic`) get them by pull (the pull
  waits for a review in flight); the others by push. Never both.
- `$/progress` while a review runs; cancelling the progress cancels the review.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lsprotocol import types as lsp

from memlsp.agents.review.quality import QualityAgent
from memlsp.agents.review.tools import ToolExecutor
from memlsp.agents.review.types import ReviewCancelled, ReviewFinding, ReviewRequest, ReviewResult
from memlsp.config import Config
from memlsp.models import ModelError
from memlsp.server.lsp.documents import DocumentEvent
from memlsp.server.lsp.feature import ConfigBound, Feature
from memlsp.server.lsp.progress import start_progress
from memlsp.server.lsp.session import uri_to_path

if TYPE_CHECKING:
    from memlsp.server.lsp.server import MemlspServer

log = logging.getLogger(__name__)

DEBOUNCE_S = 0.3
PULL_WAIT_S = 120.0
_SEVERITY = {
    "error": lsp.DiagnosticSeverity.Error,
    "warning": lsp.DiagnosticSeverity.Warning,
    "info": lsp.DiagnosticSeverity.Information,
    "hint": lsp.DiagnosticSeverity.Hint,
}


@dataclass
class DocReview:
    """What we know of one document's review state."""

    version: int | None = None
    text: str = ""
    language_id: str = ""
    findings: tuple[ReviewFinding, ...] = ()
    cancel: threading.Event | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


class DiagnosticsService(Feature):
    name = "quality"

    def __init__(self, server: MemlspServer) -> None:
        self.server = server
        self.session = server.session
        self._docs: dict[str, DocReview] = {}
        self.quality_agent = ConfigBound(
            "quality agent",
            lambda c: (c.agents.quality, c.agents.tools, self.session.workspace_root),
            self._build_agent,
        )
        self._tasks: set[asyncio.Future[None]] = set()

    # -- agent ---------------------------------------------------------------------------

    def agent(self) -> QualityAgent:
        """The quality agent for the current config (worker threads: building starts tools)."""
        return self.quality_agent.get(self.session.config)

    def _build_agent(self, config: Config) -> QualityAgent:
        root = self.session.workspace_root
        tools = None
        if config.agents.tools.enabled and root is not None and root.is_dir():
            tools = ToolExecutor.from_config(config.agents.tools, root)
        assert self.session.pool is not None
        return QualityAgent(
            self.session.pool,
            config.agents.quality,
            tools,
            context=self.session.features.related_snippets,
        )

    def status(self) -> dict[str, Any]:
        agent = self.quality_agent.current()
        return {"quality": agent.stats() if agent is not None else {"reviews": 0}}

    @property
    def pull_mode(self) -> bool:
        text_document = self.server.client_capabilities.text_document
        return bool(text_document and text_document.diagnostic)

    # -- events --------------------------------------------------------------------------

    def document_saved(self, event: DocumentEvent) -> None:
        if uri_to_path(event.uri) is None:
            return  # untitled or remote documents have no file for the tools
        state = self._docs.setdefault(event.uri, DocReview())
        if state.cancel is not None:
            state.cancel.set()  # a newer save supersedes the review in flight
        cancel = threading.Event()
        state.cancel, state.done = cancel, asyncio.Event()
        task = asyncio.ensure_future(self._review_later(event, state, cancel))
        self._tasks.add(task)  # keep a reference until done (the loop holds only weak ones)
        task.add_done_callback(self._tasks.discard)

    def document_closed(self, event: DocumentEvent) -> None:
        state = self._docs.pop(event.uri, None)
        if state is not None and state.cancel is not None:
            state.cancel.set()
        agent = self.quality_agent.current()
        if agent is not None:
            agent.forget(event.uri)
        if not self.pull_mode:
            self._publish(event.uri, None, [])

    def reviewed(self, uri: str) -> DocReview | None:
        """The last published review of a document (its text, language and findings)."""
        return self._docs.get(uri)

    # -- review --------------------------------------------------------------------------

    async def _review_later(
        self, event: DocumentEvent, state: DocReview, cancel: threading.Event
    ) -> None:
        done = state.done
        try:
            await asyncio.sleep(DEBOUNCE_S)
            if cancel.is_set():
                return
            await self._review(event, state, cancel)
        finally:
            done.set()

    async def _review(
        self, event: DocumentEvent, state: DocReview, cancel: threading.Event
    ) -> None:
        path = uri_to_path(event.uri)
        assert path is not None
        request = ReviewRequest(
            uri=event.uri,
            path=str(path),
            relative_path=self.session.relative_path(event.uri),
            language_id=event.language_id,
            text=event.text,
            version=event.version or 0,
        )
        timer = self.session.metrics.timer("review")
        progress = await start_progress(
            self.server, "memlsp review", request.relative_path, cancel=cancel
        )
        loop = asyncio.get_running_loop()
        try:
            result: ReviewResult = await loop.run_in_executor(
                self.session.review_executor, self._run, request, cancel
            )
        except ReviewCancelled:
            timer("cancelled")
            progress.end("cancelled")
            return
        except ModelError as exc:
            self.session.report_model_error(exc)
            timer("error")
            progress.end(str(exc))
            return
        except Exception:
            log.exception("review of %s failed", request.relative_path)
            timer("error")
            progress.end("failed")
            return
        progress.end(f"{len(result.findings)} findings")
        timer("cache" if result.from_cache else "ok")
        if self._current_version(event.uri) != result.version:
            log.debug("dropping stale review of %s (version %s)", event.uri, result.version)
            return
        state.version, state.text, state.language_id = result.version, event.text, event.language_id
        state.findings = result.findings
        if self.pull_mode:
            self._refresh_pull()
        else:
            self._publish(
                event.uri, result.version, self.to_diagnostics(event.text, result.findings)
            )

    def _run(self, request: ReviewRequest, cancel: threading.Event) -> ReviewResult:
        agents = self.session.config.agents
        if not agents.quality.enabled and not agents.tools.enabled:
            return ReviewResult(version=request.version, findings=())
        return self.agent().review(request, cancel)

    def _current_version(self, uri: str) -> int | None:
        try:
            return self.server.workspace.get_text_document(uri).version
        except Exception:
            return None

    # -- publishing ----------------------------------------------------------------------

    def to_diagnostics(
        self, text: str, findings: tuple[ReviewFinding, ...]
    ) -> list[lsp.Diagnostic]:
        lines = text.splitlines(True) or [""]
        codec = self.server.workspace.position_codec
        out = []
        for finding in findings:
            span = codec.range_to_client_units(
                lines,
                lsp.Range(
                    start=lsp.Position(finding.line, finding.column),
                    end=lsp.Position(finding.end_line, finding.end_column),
                ),
            )
            out.append(
                lsp.Diagnostic(
                    range=span,
                    message=finding.message,
                    severity=_SEVERITY.get(finding.severity, lsp.DiagnosticSeverity.Warning),
                    code=finding.code or None,
                    source=finding.source,
                    data={"origin": finding.origin},
                )
            )
        return out

    def _publish(self, uri: str, version: int | None, diagnostics: list[lsp.Diagnostic]) -> None:
        self.server.text_document_publish_diagnostics(
            lsp.PublishDiagnosticsParams(uri=uri, version=version, diagnostics=diagnostics)
        )

    def _refresh_pull(self) -> None:
        workspace = self.server.client_capabilities.workspace
        if workspace and workspace.diagnostics and workspace.diagnostics.refresh_support:
            self.server.workspace_diagnostic_refresh(None)

    async def pull(self, uri: str, previous_result_id: str | None) -> lsp.DocumentDiagnosticReport:
        state = self._docs.get(uri)
        if state is not None and not state.done.is_set():
            # A review is in flight (the client pulls right after saving): wait for it.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(state.done.wait(), PULL_WAIT_S)
        state = self._docs.get(uri)
        diagnostics = self.to_diagnostics(state.text, state.findings) if state else []
        result_id = hashlib.sha1(
            repr([(d.range, d.message, d.code) for d in diagnostics]).encode()
        ).hexdigest()[:16]
        if previous_result_id == result_id:
            return lsp.RelatedUnchangedDocumentDiagnosticReport(result_id=result_id)
        return lsp.RelatedFullDocumentDiagnosticReport(items=diagnostics, result_id=result_id)


def register(server: MemlspServer) -> DiagnosticsService:
    service = DiagnosticsService(server)
    server.session.features.add(service, service.quality_agent)

    @server.feature(
        lsp.TEXT_DOCUMENT_DIAGNOSTIC,
        lsp.DiagnosticOptions(
            identifier="memlsp", inter_file_dependencies=False, workspace_diagnostics=False
        ),
    )
    async def diagnostic(
        ls: MemlspServer, params: lsp.DocumentDiagnosticParams
    ) -> lsp.DocumentDiagnosticReport:
        return await service.pull(params.text_document.uri, params.previous_result_id)

    return service
