"""The steps of `memlsp demo`, each a real LSP exchange with the server, timed."""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import types as lsp

from memlsp.server.demo.client import DemoClient, ProgressEvent, client_capabilities
from memlsp.server.demo.scenario import Scenario
from memlsp.server.demo.text import apply_edits, edits_for, unified_diff

# Generous: a loaded 2-core machine took over 2 minutes for one completion; a demo that gives
# up there shows nothing.
REQUEST_TIMEOUT_S = 600.0
INDEX_TIMEOUT_S = 600.0
REVIEW_TIMEOUT_S = 900.0
REVIEW_PROGRESS = "memlsp review"  # the title of a review's $/progress (server/lsp/diagnostics.py)
# A completion waits this long for the memory search (default 150 ms): on a busy machine the
# first request of a new file would otherwise go without it; an editor gets it a keystroke later.
DEMO_CONTEXT_BUDGET_MS = 1000
DOCSTRING_ACTION = "docstring"


@dataclass
class StepResult:
    name: str
    ok: bool | None  # None: skipped
    seconds: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)


Say = Callable[[str], None]


class DemoRun:
    """One demo session: the client, the scenario, and where the text goes."""

    def __init__(self, client: DemoClient, scenario: Scenario, say: Say) -> None:
        self.client = client
        self.scenario = scenario
        self.say = say
        self.versions: dict[str, int] = {}
        self._ids = itertools.count(1)

    # -- helpers -------------------------------------------------------------------------

    async def request(self, method: str, params: Any, timeout_s: float = REQUEST_TIMEOUT_S) -> Any:
        """Send a request; past ``timeout_s`` cancel it the LSP way ($/cancelRequest) and raise
        TimeoutError. The pending future is left to the late answer: pygls logs an error when
        an answer finds its future cancelled."""
        msg_id = f"demo-{next(self._ids)}"
        future = self.client.protocol.send_request_async(method, params, msg_id=msg_id)
        future.add_done_callback(_consume)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout_s)
        except TimeoutError:
            self.client.protocol.notify(lsp.CANCEL_REQUEST, lsp.CancelParams(id=msg_id))
            raise

    async def status(self) -> dict[str, Any]:
        result = await self.request("memlsp/status", {})
        plain = _plain(result)
        return plain if isinstance(plain, dict) else {}

    def relative(self, path: Path) -> str:
        return path.relative_to(self.scenario.root).as_posix()

    def open(self, path: Path, text: str) -> str:
        uri = path.as_uri()
        self.versions[uri] = 1
        self.client.text_document_did_open(
            lsp.DidOpenTextDocumentParams(
                text_document=lsp.TextDocumentItem(
                    uri=uri, language_id="python", version=1, text=text
                )
            )
        )
        return uri

    def replace_text(self, uri: str, text: str) -> None:
        self.versions[uri] += 1
        self.client.text_document_did_change(
            lsp.DidChangeTextDocumentParams(
                text_document=lsp.VersionedTextDocumentIdentifier(
                    uri=uri, version=self.versions[uri]
                ),
                content_changes=[lsp.TextDocumentContentChangeWholeDocument(text=text)],
            )
        )

    async def suggest(self, uri: str, cursor: lsp.Position) -> str:
        result = await self.request(
            lsp.TEXT_DOCUMENT_INLINE_COMPLETION,
            lsp.InlineCompletionParams(
                text_document=lsp.TextDocumentIdentifier(uri=uri),
                position=cursor,
                context=lsp.InlineCompletionContext(
                    trigger_kind=lsp.InlineCompletionTriggerKind.Invoked
                ),
            ),
        )
        items = result.items if isinstance(result, lsp.InlineCompletionList) else (result or [])
        if not items:
            return ""
        text = items[0].insert_text
        return text if isinstance(text, str) else text.value

    def show_code(self, text: str, indent: str = "    | ") -> None:
        for line in text.rstrip("\n").split("\n"):
            self.say(f"{indent}{line}")

    # -- 1. initialize and index ---------------------------------------------------------

    async def initialize(self) -> StepResult:
        root = self.scenario.root
        started = time.perf_counter()
        result = await self.request(
            lsp.INITIALIZE,
            lsp.InitializeParams(
                capabilities=client_capabilities(),
                process_id=None,
                client_info=lsp.ClientInfo(name="memlsp-demo"),
                root_uri=root.as_uri(),
                workspace_folders=[lsp.WorkspaceFolder(uri=root.as_uri(), name=root.name)],
                initialization_options={"memory": {"context_budget_ms": DEMO_CONTEXT_BUDGET_MS}},
            ),
        )
        seconds = time.perf_counter() - started
        self.client.initialized(lsp.InitializedParams())
        info = result.server_info
        name = f"{info.name} {info.version}" if info else "?"
        inline = result.capabilities.inline_completion_provider is not None
        self.say(f"  initialize: {seconds * 1000:.0f} ms ({name}; inline completion: {inline})")
        return StepResult("initialize", True, seconds, {"server": name})

    async def index(self) -> StepResult:
        started = time.perf_counter()
        self.client.on_progress = self._show_progress
        try:
            folder = await self._memory_ready(started + INDEX_TIMEOUT_S)
        except TimeoutError as exc:
            self.say(f"  indexing did not finish: {exc}")
            return StepResult("index", False, time.perf_counter() - started)
        seconds = time.perf_counter() - started
        # The progress bar's end can trail the status by a moment: show it when it comes.
        ends = await self._indexing_end(3.0)
        self.client.on_progress = None
        skipped = folder.get("skipped") or {}
        skipped_text = ", ".join(f"{n} {why}" for why, n in skipped.items()) or "none"
        self.say(
            f"  memory ready in {seconds:.1f} s: {folder.get('files_indexed')} files, "
            f"{folder.get('chunks')} chunks, skipped: {skipped_text}; store: {folder.get('store')}"
        )
        reports = [e for e in self.client.progress_events if e.title.startswith("indexing")]
        ok = bool(folder.get("chunks")) and bool(reports) and not folder.get("last_error")
        if not reports:
            self.say("  (no indexing progress was reported)")
        return StepResult(
            "index",
            ok,
            seconds,
            {
                "files": folder.get("files_indexed"),
                "chunks": folder.get("chunks"),
                "skipped": skipped,
                "role": folder.get("role"),
                "progress": [f"{e.kind}: {e.message or e.title}" for e in reports],
                "progress_ended": bool(ends),
            },
        )

    def _show_progress(self, event: ProgressEvent) -> None:
        if not event.title.startswith("indexing"):
            return
        if event.kind == "begin":
            self.say(f"  $/progress begin: {event.title}")
        elif event.kind == "report":
            pct = f" ({event.percentage}%)" if event.percentage is not None else ""
            self.say(f"  $/progress report: {event.message}{pct}")
        else:
            self.say(f"  $/progress end: {event.message}")

    async def _memory_ready(self, deadline: float) -> dict[str, Any]:
        last_chunks = -1
        while True:
            folders = (await self.status()).get("memory", {}).get("folders") or []
            folder = folders[0] if folders else {}
            chunks = int(folder.get("chunks") or 0)
            if chunks != last_chunks and chunks:
                self.say(f"  memlsp/status: {folder.get('files_indexed')} files, {chunks} chunks")
                last_chunks = chunks
            if folder.get("role") == "client" and chunks:
                return folder  # another window owns and indexes this store
            if chunks and folder.get("lag", 1) == 0 and folder.get("state") != "indexing":
                return folder
            if folder.get("last_error") and folder.get("role") == "disabled":
                raise TimeoutError(folder["last_error"])
            if time.perf_counter() > deadline:
                raise TimeoutError(f"after {INDEX_TIMEOUT_S:.0f} s: {folder}")
            await asyncio.sleep(0.5)

    async def _indexing_end(self, timeout_s: float) -> list[ProgressEvent]:
        def ended() -> list[ProgressEvent]:
            return [
                e
                for e in self.client.progress_events
                if e.kind == "end" and e.title.startswith("indexing")
            ]

        try:
            found: list[ProgressEvent] = await self.client.wait_until(ended, timeout_s)
        except TimeoutError:
            return []
        return found

    # -- 2. inline completion ------------------------------------------------------------

    async def inline(self) -> StepResult:
        edit = self.scenario.inline
        if edit is None:
            return self._skip("inline", self.scenario.skipped)
        uri = self.open(edit.path, edit.path.read_text(encoding="utf-8"))
        self.replace_text(uri, edit.text)  # typed in the editor, not saved
        where = f"{self.relative(edit.path)}:{edit.cursor.line + 1}:{edit.cursor.character + 1}"
        self.say(f"  typed (unsaved) in {where}, the cursor at the end:")
        before = edit.text.split("\n")[max(0, edit.cursor.line - 2) : edit.cursor.line + 1]
        self.show_code("\n".join(before))
        started = time.perf_counter()
        suggestion = await self.suggest(uri, edit.cursor)
        seconds = time.perf_counter() - started
        self.say(f"  suggestion after {seconds * 1000:.0f} ms{await self._load_note()}:")
        self.show_code(suggestion or "(none)", "    + ")
        self.replace_text(uri, edit.path.read_text(encoding="utf-8"))  # the user undoes it
        return StepResult("inline", bool(suggestion.strip()), seconds, {"text": suggestion})

    async def _load_note(self) -> str:
        """How much of the first suggestion's latency was loading the model (from status)."""
        status = await self.status()
        name = (status.get("generator") or {}).get("model")
        models = (status.get("pool") or {}).get("models") or []
        loaded = [m for m in models if m.get("name") == name and m.get("load_seconds")]
        if not loaded:
            return ""
        return f" (including loading {name}: {loaded[0]['load_seconds']:.1f} s)"

    # -- 3. a fact from another file -----------------------------------------------------

    async def cross_file(self) -> StepResult:
        task = self.scenario.cross_file
        if task is None:
            return self._skip("memory_completion", self.scenario.skipped)
        task.path.write_text(task.text, encoding="utf-8")  # a new file in the (temporary) copy
        uri = self.open(task.path, task.text)
        self.say(f"  new file {self.relative(task.path)} (it never names {task.expected}):")
        self.show_code(task.text)
        started = time.perf_counter()
        suggestion = await self.suggest(uri, task.cursor)
        seconds = time.perf_counter() - started
        self.say(f"  suggestion after {seconds * 1000:.0f} ms:")
        self.show_code(suggestion or "(none)", "    + ")
        generator = (await self.status()).get("generator") or {}
        context = [
            {"source": pair[0], "path": pair[1]}
            for pair in generator.get("last_context") or []
            if isinstance(pair, list) and len(pair) == 2
        ]
        pieces = collections.Counter((c["path"], c["source"]) for c in context)
        shown = ", ".join(f"{path} ({source}, {n}x)" for (path, source), n in pieces.items())
        self.say(f"  context the server put in the prompt: {shown or 'none'}")
        from_memory = any(c["path"] == task.defined_in and c["source"] == "memory" for c in context)
        used = task.expected in suggestion
        if used:
            verdict = f"yes: the suggestion calls {task.expected} from {task.defined_in}"
        elif from_memory:
            verdict = f"no: {task.defined_in} was retrieved, but the model did not use it"
        else:
            verdict = f"no: {task.defined_in} was not retrieved from memory"
        self.say(f"  used the cross-file fact: {verdict}")
        return StepResult(
            "memory_completion",
            bool(suggestion.strip()),
            seconds,
            {
                "text": suggestion,
                "expected": task.expected,
                "used_fact": used,
                "retrieved": from_memory,
                "context": context,
            },
        )

    # -- 4. diagnostics on save ----------------------------------------------------------

    async def diagnostics(self) -> StepResult:
        path = self.scenario.review
        if path is None:
            return self._skip("diagnostics", self.scenario.skipped)
        text = path.read_text(encoding="utf-8")
        uri = self.open(path, text)
        version = self.versions[uri]
        self.say(f"  didSave {self.relative(path)}; waiting for textDocument/publishDiagnostics")
        started = time.perf_counter()
        self.client.text_document_did_save(
            lsp.DidSaveTextDocumentParams(text_document=lsp.TextDocumentIdentifier(uri=uri))
        )

        def published() -> lsp.PublishDiagnosticsParams | None:
            params = self.client.diagnostics.get(uri)
            return params if params is not None and params.version == version else None

        def review_ends() -> int:
            return sum(
                e.kind == "end" and e.title == REVIEW_PROGRESS for e in self.client.progress_events
            )

        ends_before = review_ends()
        try:
            first = await self.client.wait_until(published, REVIEW_TIMEOUT_S)
        except TimeoutError:
            self.say(f"  no diagnostics within {REVIEW_TIMEOUT_S:.0f} s")
            return StepResult("diagnostics", False, time.perf_counter() - started)
        first_s = time.perf_counter() - started
        self.say(f"  linters: {len(first.diagnostics)} diagnostics {first_s:.1f} s after the save")
        # The model's findings follow in later publications; the review's progress ends right
        # before the last one.
        try:
            await self.client.wait_until(lambda: review_ends() > ends_before, REVIEW_TIMEOUT_S)
            await asyncio.sleep(0.3)
        except TimeoutError:
            self.say(f"  the model review did not end within {REVIEW_TIMEOUT_S:.0f} s")
        params = published() or first
        seconds = time.perf_counter() - started
        found = []
        for d in sorted(
            params.diagnostics, key=lambda d: (d.range.start.line, d.range.start.character)
        ):
            row = {
                "file": self.relative(path),
                "line": d.range.start.line + 1,
                "col": d.range.start.character + 1,
                "code": str(d.code or ""),
                "message": d.message,
                "source": d.source or "",
            }
            found.append(row)
            self.say(
                f"  {row['file']}:{row['line']}:{row['col']}: {row['code']} {row['message']}"
                f" [{row['source']}]"
            )
        self.say(f"  {len(found)} diagnostics {seconds:.1f} s after the save")
        codes = {row["code"] for row in found}
        missing = [c for c in self.scenario.expected_codes if c not in codes]
        if self.scenario.expected_codes:
            planted = ", ".join(self.scenario.expected_codes)
            self.say(
                f"  planted problems found: {planted}"
                + (f"; missing: {missing}" if missing else "")
            )
        ok = not missing and (bool(found) or not self.scenario.expected_codes)
        return StepResult("diagnostics", ok, seconds, {"diagnostics": found, "missing": missing})

    # -- 5. code actions -----------------------------------------------------------------

    async def code_actions(self) -> StepResult:
        path, span = self.scenario.review, self.scenario.action_range
        if path is None or span is None:
            return self._skip("code_action", self.scenario.skipped)
        uri = path.as_uri()
        text = path.read_text(encoding="utf-8")
        published = self.client.diagnostics.get(uri)
        in_range = [
            d
            for d in (published.diagnostics if published else [])
            if span.start.line <= d.range.start.line <= span.end.line
        ]
        started = time.perf_counter()
        listed = await self.request(
            lsp.TEXT_DOCUMENT_CODE_ACTION,
            lsp.CodeActionParams(
                text_document=lsp.TextDocumentIdentifier(uri=uri),
                range=span,
                context=lsp.CodeActionContext(diagnostics=in_range),
            ),
        )
        list_seconds = time.perf_counter() - started
        actions = [a for a in listed or [] if isinstance(a, lsp.CodeAction)]
        lines = f"{span.start.line + 1}-{span.end.line + 1}"
        self.say(f"  {len(actions)} actions for lines {lines} in {list_seconds * 1000:.0f} ms:")
        for action in actions:
            ready = "edit ready" if action.edit else "resolved on demand"
            self.say(f"    - {action.title} [{action.kind}] ({ready})")
        detail: dict[str, Any] = {
            "offered": [a.title for a in actions],
            "list_seconds": round(list_seconds, 3),
        }
        with_edit = [a for a in actions if a.edit is not None]
        # A linter's own fix (preferred) over a model's.
        quick_fix = next(
            (a for a in with_edit if a.is_preferred), with_edit[0] if with_edit else None
        )
        if quick_fix is not None:
            diff = unified_diff(
                text, apply_edits(text, edits_for(quick_fix.edit, uri)), self.relative(path)
            )
            self.say(f"  quick fix '{quick_fix.title}':")
            self.show_code(diff, "    ")
            detail["quick_fix"] = {"title": quick_fix.title, "diff": diff}
        target = next(
            (
                a
                for a in actions
                if isinstance(a.data, dict) and a.data.get("action") == DOCSTRING_ACTION
            ),
            next((a for a in actions if a.edit is None and a.data is not None), None),
        )
        if target is None:
            self.say("  no action to resolve")
            return StepResult("code_action", False, list_seconds, detail)
        self.say(f"  codeAction/resolve '{target.title}' (the instruct model writes it) ...")
        started = time.perf_counter()
        resolved: lsp.CodeAction = await self.request(
            lsp.CODE_ACTION_RESOLVE, target, REVIEW_TIMEOUT_S
        )
        seconds = time.perf_counter() - started
        edits = edits_for(resolved.edit, uri)
        diff = unified_diff(text, apply_edits(text, edits), self.relative(path)) if edits else ""
        if diff:
            self.say(f"  resolved in {seconds:.1f} s, the edit (not applied):")
            self.show_code(diff, "    ")
        else:
            said = "; ".join(self.client.messages[-1:]) or "no reason given"
            self.say(f"  resolved in {seconds:.1f} s without an edit ({said})")
        detail["resolved"] = {"title": target.title, "has_edit": bool(edits), "diff": diff}
        return StepResult("code_action", bool(edits), seconds, detail)

    def _skip(self, name: str, why: str) -> StepResult:
        self.say(f"  skipped: {why}")
        return StepResult(name, None, 0.0, {"skipped": why})


def _consume(future: asyncio.Future[Any]) -> None:
    """Retrieve a late request's outcome so asyncio does not warn that nobody did."""
    if not future.cancelled():
        future.exception()


def _plain(value: Any) -> Any:
    """pygls gives custom results back as named tuples: make plain dicts and lists."""
    if hasattr(value, "_asdict"):
        return {k: _plain(v) for k, v in value._asdict().items()}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
