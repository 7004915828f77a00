"""Quality diagnostics on save: linters through the tool executor plus the quality agent's review.

- A save schedules a review after a short debounce; a newer save cancels the older review of that
  document. Reviews run one at a time in their own executor, never ahead of completions or
  refactors, and pause while a completion runs (models/priority.py).
- Two steps (or more) per save: the linters' findings, with the model findings carried over
  from earlier saves on code unchanged since, are published as soon as the linters are done;
  the model stages' findings are merged in and published again when they come (the quality
  agent's ``on_partial``). Each publication holds every finding known so far, so the last one
  wins. A save that runs no model stage (cache hit, model off, nothing changed) publishes once.
- Results for a document version that is no longer current are dropped, partial ones too, and
  a review superseded by a newer save publishes nothing more.
- Clients that advertise pull diagnostics (`textDocument/diagnostic`) get them by pull, the
  others by push; never both. A pull while a review is in flight: when the client supports
  `workspace/diagnostic/refresh`, it waits only for the linters' result (usually well under a
  second) and gets it; the server sends a refresh after each later step, and the client pulls
  the model's findings then. Without refresh support nothing could tell the client to pull
  again, so the pull waits for the whole review (as before staging).
- `$/progress` while a review runs (a report after each step); cancelling the progress cancels
  the review.
- Ahead of a save (``agents.quality.surprise_ahead``): a document opened is scored by the model
  stages that can work ahead (the surprise review's first pass) once the editor is quiet, in
  the review executor at background priority; a save, a close or another document opened stops
  it (what it scored is kept). The review of the first save then evaluates only what changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lsprotocol import types as lsp

from memlsp.agents.review.quality import QualityAgent
from memlsp.agents.review.surprise import surprise_stages
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
# An editor restoring a session opens many files at once: only the last one opened is scored
# ahead, once nothing else was opened for this long.
AHEAD_QUIET_S = 1.0
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
    cancel: threading.Event | None = None  # the latest save's review
    done: asyncio.Event = field(default_factory=asyncio.Event)  # that review is over
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # its first result is in, or over


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
        self._ahead: tuple[str, threading.Event] | None = None  # the document scored ahead

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
            stages=surprise_stages(self.session.pool, config.agents.quality),
        )

    def status(self) -> dict[str, Any]:
        agent = self.quality_agent.current()
        return {"quality": agent.stats() if agent is not None else {"reviews": 0}}

    @property
    def pull_mode(self) -> bool:
        text_document = self.server.client_capabilities.text_document
        return bool(text_document and text_document.diagnostic)

    # -- events --------------------------------------------------------------------------

    def document_opened(self, event: DocumentEvent) -> None:
        self._stop_ahead(None)
        config = self.session.config.agents.quality
        pool = self.session.pool
        if not (config.enabled and config.surprise and config.surprise_ahead):
            return
        # Like completion work-ahead, it never loads a model: a session that has not used it
        # yet does not pay for one.
        if pool is None or not pool.is_loaded(config.surprise_model):
            return
        cancel = threading.Event()
        self._ahead = (event.uri, cancel)
        self._spawn(self._prepare(event, cancel))

    def shutdown(self) -> None:
        self._stop_ahead(None)

    def _stop_ahead(self, uri: str | None) -> None:
        """Stop the work ahead (of ``uri`` only, unless None)."""
        if self._ahead is not None and uri in (None, self._ahead[0]):
            self._ahead[1].set()
            self._ahead = None

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)  # keep a reference until done (the loop holds only weak ones)
        task.add_done_callback(self._tasks.discard)

    async def _prepare(self, event: DocumentEvent, cancel: threading.Event) -> None:
        await asyncio.sleep(AHEAD_QUIET_S)
        request = self._request(event)
        if cancel.is_set() or request is None:
            return
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(
                self.session.review_executor, self._prepare_blocking, request, cancel
            )
        except Exception:  # work ahead: never worth an error shown to the user
            log.debug("scoring %s ahead failed", request.relative_path, exc_info=True)

    def _prepare_blocking(self, request: ReviewRequest, cancel: threading.Event) -> None:
        if not cancel.is_set():
            self.agent().prepare(request, cancel)

    def document_saved(self, event: DocumentEvent) -> None:
        self._stop_ahead(None)  # the review goes first (one executor)
        if uri_to_path(event.uri) is None:
            return  # untitled or remote documents have no file for the tools
        state = self._docs.setdefault(event.uri, DocReview())
        if state.cancel is not None:
            state.cancel.set()  # a newer save supersedes the review in flight
        cancel = threading.Event()
        state.cancel, state.done, state.ready = cancel, asyncio.Event(), asyncio.Event()
        self._spawn(self._review_later(event, state, cancel))

    def document_closed(self, event: DocumentEvent) -> None:
        self._stop_ahead(event.uri)
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
        done, ready = state.done, state.ready
        try:
            await asyncio.sleep(DEBOUNCE_S)
            if cancel.is_set():
                return
            await self._review(event, state, cancel)
        finally:
            ready.set()
            done.set()

    async def _review(
        self, event: DocumentEvent, state: DocReview, cancel: threading.Event
    ) -> None:
        request = self._request(event)
        assert request is not None
        timer = self.session.metrics.timer("review")
        first = self.session.metrics.timer("review_first")  # to the first publication
        progress = await start_progress(
            self.server, "memlsp review", request.relative_path, cancel=cancel
        )
        loop = asyncio.get_running_loop()

        def accept(partial: ReviewResult) -> None:  # on the event loop
            if cancel.is_set() or state.cancel is not cancel:
                return  # a newer save took over
            if self._current_version(event.uri) != partial.version:
                log.debug("dropping stale partial review of %s", event.uri)
                return
            if not state.ready.is_set():
                first("partial")
            self._accept(event, state, partial)
            progress.report(f"{partial.stage} done: {len(partial.findings)} findings")

        def on_partial(partial: ReviewResult) -> None:  # on the review's worker thread
            with contextlib.suppress(RuntimeError):  # the loop closed: the server is exiting
                loop.call_soon_threadsafe(accept, partial)

        try:
            # Partial results queued with call_soon_threadsafe run before this await resumes
            # (the executor's future is completed through the same queue, later).
            result: ReviewResult = await loop.run_in_executor(
                self.session.review_executor, self._run, request, cancel, on_partial
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
        if self._current_version(event.uri) != result.version or state.cancel is not cancel:
            log.debug("dropping stale review of %s (version %s)", event.uri, result.version)
            return
        if not state.ready.is_set():
            first("final")
        self._accept(event, state, result)

    def _request(self, event: DocumentEvent) -> ReviewRequest | None:
        """What the agent reviews of ``event``'s document; None without a file on disk."""
        path = uri_to_path(event.uri)
        if path is None:
            return None
        return ReviewRequest(
            uri=event.uri,
            path=str(path),
            relative_path=self.session.relative_path(event.uri),
            language_id=event.language_id,
            text=event.text,
            version=event.version or 0,
        )

    def _accept(self, event: DocumentEvent, state: DocReview, result: ReviewResult) -> None:
        """Make ``result`` the document's current findings and show them to the client."""
        state.version, state.text, state.language_id = result.version, event.text, event.language_id
        state.findings = result.findings
        state.ready.set()
        if self.pull_mode:
            self._refresh_pull()
        else:
            self._publish(
                event.uri, result.version, self.to_diagnostics(event.text, result.findings)
            )

    def _run(
        self,
        request: ReviewRequest,
        cancel: threading.Event,
        on_partial: Callable[[ReviewResult], None],
    ) -> ReviewResult:
        agents = self.session.config.agents
        if not agents.quality.enabled and not agents.tools.enabled:
            return ReviewResult(version=request.version, findings=())
        return self.agent().review(request, cancel, on_partial)

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

    @property
    def refresh_support(self) -> bool:
        """Whether the client takes `workspace/diagnostic/refresh` (then pulls again)."""
        workspace = self.server.client_capabilities.workspace
        return bool(workspace and workspace.diagnostics and workspace.diagnostics.refresh_support)

    def _refresh_pull(self) -> None:
        if self.refresh_support:
            self.server.workspace_diagnostic_refresh(None)

    async def pull(self, uri: str, previous_result_id: str | None) -> lsp.DocumentDiagnosticReport:
        state = self._docs.get(uri)
        if state is not None and not state.done.is_set():
            # A review is in flight (the client pulls right after saving). A client that takes
            # refreshes gets the first result (the linters') and a refresh for each later one;
            # any other waits for the whole review.
            step = state.ready if self.refresh_support else state.done
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(step.wait(), PULL_WAIT_S)
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
