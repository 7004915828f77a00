"""Inline completion and completion: thin handlers over the generator agent.

Latency-sensitive: cache and typed-through hits are answered on the event loop; model calls run in
the session's completion executor. A newer request for a document supersedes the older one (its
generation stops between tokens), and `$/cancelRequest` does the same.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lsprotocol import types as lsp

from memlsp.agents.completion.generator import Cancelled, InlineRequest, Suggestion
from memlsp.base.context import ContextRequest
from memlsp.models import ModelError
from memlsp.models.abort import Cancel
from memlsp.server.lsp.acceptance import ACCEPT_COMMAND, AcceptanceStats
from memlsp.server.lsp.documents import cursor_text, opened_document
from memlsp.server.lsp.feature import Feature
from memlsp.server.lsp.lasting_stats import LastingStats
from memlsp.server.lsp.text_sync import client_position
from memlsp.server.lsp.work_ahead import WorkAheadService

if TYPE_CHECKING:
    from memlsp.server.lsp.documents import DocumentEvent
    from memlsp.server.lsp.server import MemlspServer
    from memlsp.server.lsp.session import Session


@dataclass(frozen=True)
class CursorText:
    uri: str
    language_id: str
    prefix: str
    suffix: str
    alternatives: int = 1  # suggestions wanted (an explicit inline request: more)


class CompletionService(Feature):
    name = "completion"

    def __init__(self, session: Session) -> None:
        self.session = session
        self._inflight: dict[str, threading.Event] = {}
        self.acceptance = AcceptanceStats()  # this session's, for memlsp/status
        self.lasting = LastingStats(lambda: session.config)  # per day, for `memlsp stats`
        self.debounced = 0  # requests superseded during the debounce: no model call at all
        self._asked: set[str] = set()  # documents with a request since they were opened
        self.work_ahead = WorkAheadService(session)
        self._shown: tuple[CursorText, list[str]] | None = None  # the last inline answer

    def status(self) -> dict[str, Any]:
        debounce = {
            "ms": self.session.config.agents.generator.debounce_ms,
            "superseded": self.debounced,
        }
        return {"acceptance": self.acceptance.snapshot(), "debounce": debounce}

    def shutdown(self) -> None:
        self.cancel_all()

    def document_opened(self, event: DocumentEvent) -> None:
        self._asked.discard(event.uri)

    def document_closed(self, event: DocumentEvent) -> None:
        self._asked.discard(event.uri)

    async def suggest(self, cursor: CursorText, feature: str) -> Suggestion | None:
        """The suggestion at a cursor; None when superseded, cancelled or failed."""
        done = self.session.metrics.timer(feature)
        try:
            suggestion = await self._suggest(cursor)
        except asyncio.CancelledError:
            done("cancelled")
            raise
        if suggestion is None:
            done("cancelled")
        else:
            done(suggestion.source if suggestion.text else "empty")
        return suggestion

    async def _suggest(self, cursor: CursorText) -> Suggestion | None:
        session = self.session
        root = session.workspace_root
        request = InlineRequest(
            doc_key=cursor.uri,
            path=session.relative_path(cursor.uri),
            language_id=cursor.language_id,
            prefix=cursor.prefix,
            suffix=cursor.suffix,
            repo_name=root.name if root else "",
            alternatives=cursor.alternatives,
        )
        self.work_ahead.request_arrived(
            cursor.uri, cursor.language_id, cursor.prefix, cursor.suffix
        )
        previous = self._inflight.pop(cursor.uri, None)
        if previous is not None:
            previous.set()
        generator = session.current_generator()
        if generator is not None:
            hit = generator.cached(request)
            if hit is not None:
                return hit
        # The memory search runs while the debounce waits (it has its own time budget later).
        session.prefetch_context(
            ContextRequest(
                request.path, request.prefix, request.suffix, request.language_id, cursor.uri
            )
        )
        cancel = Cancel()  # aborts the model mid-batch too (models.abort)
        self._inflight[cursor.uri] = cancel
        first = cursor.uri not in self._asked
        self._asked.add(cursor.uri)
        loop = asyncio.get_running_loop()
        try:
            # Typing sends a request per key: wait a moment, so that the keys that follow
            # supersede this one before it costs a prompt evaluation. Cache hits skip this, and
            # so does a document's first request (the editor asking as it opens: no key follows
            # at once, and a cold prompt is the longest wait a user sees).
            delay = 0.0 if first else session.config.agents.generator.debounce_ms / 1000
            if delay > 0:
                await asyncio.sleep(delay)
                if cancel.is_set():
                    self.debounced += 1
                    return None
            return await loop.run_in_executor(
                session.completion_executor, self._complete_blocking, request, cancel
            )
        except asyncio.CancelledError:  # $/cancelRequest: stop the worker between tokens
            cancel.set()
            raise
        except Cancelled:
            return None
        except ModelError as exc:
            session.report_model_error(exc)
            return None
        finally:
            if self._inflight.get(cursor.uri) is cancel:
                del self._inflight[cursor.uri]

    def _complete_blocking(self, request: InlineRequest, cancel: threading.Event) -> Suggestion:
        generator = self.session.generator()
        # The first request (before the agent existed) could not use the cache on the loop.
        hit = generator.cached(request)
        if hit is not None:
            return hit
        return generator.complete(request, cancel)

    def remember_shown(self, cursor: CursorText, texts: list[str]) -> None:
        self._shown = (cursor, texts)

    def work_ahead_after_accept(self, chars: int, partial: bool) -> None:
        """Prefill for the cursor after the accepted text: the last answer's item of ``chars``
        characters (its first), or the first ``chars`` of it when ``partial``."""
        if self._shown is None:
            return
        cursor, texts = self._shown
        text = next((t for t in texts if len(t) == chars), texts[0])
        text = text[:chars] if partial else text
        if text:
            prefix = cursor.prefix + text
            self.work_ahead.accepted(cursor.uri, cursor.language_id, prefix, cursor.suffix)

    def cancel_all(self) -> None:
        for event in self._inflight.values():
            event.set()
        self._inflight.clear()


def _accept_args(args: tuple[Any, ...]) -> tuple[str, str, int, str, float | None]:
    """Tolerant parse: editors may send fewer arguments than we put in the command."""
    defaults: list[Any] = ["", "", 0, "full", None]
    language, model, chars, kind, latency = [*args[:5], *defaults[len(args[:5]) :]]
    try:
        count = int(chars)
    except (TypeError, ValueError):
        count = 0
    try:
        latency_ms = float(latency) if latency is not None else None
    except (TypeError, ValueError):
        latency_ms = None
    if latency_ms is not None and not 0 <= latency_ms < 1e9:  # NaN, negative or absurd
        latency_ms = None
    return str(language), str(model), count, str(kind), latency_ms


def _word_before(prefix: str) -> str:
    """The identifier characters right before the cursor (what a completion item replaces)."""
    i = len(prefix)
    while i > 0 and (prefix[i - 1].isalnum() or prefix[i - 1] == "_"):
        i -= 1
    return prefix[i:]


def register(server: MemlspServer) -> None:
    service = CompletionService(server.session)
    server.session.features.add(service, service.lasting, service.work_ahead)

    def cursor(uri: str, position: lsp.Position) -> CursorText | None:
        found = cursor_text(server, uri, position)
        return CursorText(*found) if found else None

    def at_offset(uri: str, offset: int) -> lsp.Position:
        """Ranges we answer are in the client's units and clamped to the text (a request past
        the end of a line means its end), computed from offsets rather than by arithmetic on
        the request's character, which counts UTF-16 or UTF-8 units."""
        doc = opened_document(server, uri)
        assert doc is not None  # cursor() found it just now, before any await
        return client_position(doc, offset)

    @server.feature(lsp.TEXT_DOCUMENT_INLINE_COMPLETION, lsp.InlineCompletionOptions())
    async def inline_completion(
        ls: MemlspServer, params: lsp.InlineCompletionParams
    ) -> lsp.InlineCompletionList | None:
        here = cursor(params.text_document.uri, params.position)
        if here is None:
            return None
        cursor_at = at_offset(params.text_document.uri, len(here.prefix))
        started = time.perf_counter()
        # The editor's trigger key asks for choices; typing gets the best one only.
        if params.context.trigger_kind == lsp.InlineCompletionTriggerKind.Invoked:
            wanted = service.session.config.agents.generator.alternatives
            here = dataclasses.replace(here, alternatives=wanted)
        suggestion = await service.suggest(here, "inline_completion")
        if suggestion is None or not suggestion.text:
            return lsp.InlineCompletionList(items=[])
        span = lsp.Range(start=cursor_at, end=cursor_at)
        service.acceptance.shown(here.language_id, suggestion.model)
        service.lasting.shown(here.language_id, suggestion.model)
        # What the user waited for (debounce and cache hits included), counted if accepted.
        latency_ms = round((time.perf_counter() - started) * 1000)
        model = suggestion.model

        def item(text: str) -> lsp.InlineCompletionItem:
            accepted = lsp.Command(
                title="memlsp: suggestion accepted",
                command=ACCEPT_COMMAND,
                arguments=[here.language_id, model, len(text), "full", latency_ms],
            )
            return lsp.InlineCompletionItem(insert_text=text, range=span, command=accepted)

        texts = [suggestion.text, *suggestion.alternatives]  # the greedy one first
        service.remember_shown(here, texts)
        service.work_ahead.shown(
            here.uri, here.language_id, here.prefix + suggestion.text, here.suffix
        )
        return lsp.InlineCompletionList(items=[item(text) for text in texts])

    # pygls resolves command handlers' annotations at call time: only names importable here.
    @server.command(ACCEPT_COMMAND)
    def on_accepted(ls: Any, *args: Any) -> None:
        """The editor ran the item's command: the user took the suggestion (or part of it).

        Arguments: language, model, accepted characters, "full" or "partial", and the
        milliseconds the suggestion took to show (optional).
        """
        language, model, chars, kind, latency_ms = _accept_args(args)
        service.acceptance.accepted(language, model, chars, kind == "partial")
        service.lasting.accepted(language, model, kind == "partial", latency_ms)
        service.work_ahead_after_accept(chars, kind == "partial")

    @server.feature(lsp.TEXT_DOCUMENT_COMPLETION, lsp.CompletionOptions())
    async def completion(
        ls: MemlspServer, params: lsp.CompletionParams
    ) -> lsp.CompletionList | None:
        here = cursor(params.text_document.uri, params.position)
        if here is None:
            return None
        # Replace the word being typed so the client's fuzzy filter matches our item.
        word = _word_before(here.prefix)
        uri = params.text_document.uri
        start = at_offset(uri, len(here.prefix) - len(word))
        end = at_offset(uri, len(here.prefix))
        suggestion = await service.suggest(here, "completion")
        if suggestion is None or not suggestion.text:
            return lsp.CompletionList(is_incomplete=True, items=[])
        full = word + suggestion.text
        first_line = full.split("\n", 1)[0]
        item = lsp.CompletionItem(
            label=first_line + (" …" if "\n" in full else ""),
            kind=lsp.CompletionItemKind.Snippet,
            detail=f"memlsp · {suggestion.model}",
            filter_text=first_line,
            sort_text="0",
            insert_text_format=lsp.InsertTextFormat.PlainText,
            text_edit=lsp.TextEdit(range=lsp.Range(start=start, end=end), new_text=full),
        )
        return lsp.CompletionList(is_incomplete=True, items=[item])
