"""The quality agent: reviews a saved file with the linters and a local model.

On each save (``review``, blocking; run it in a worker thread):

1. The same text as the last review of the document answers from the cache, without tools or
   model (``from_cache=True``).
2. The allow-listed linters run on the saved file (their findings are exact; they come first).
3. The code to review is chosen by syntax (:mod:`review_scope`): a small file whole, otherwise
   the functions and classes that changed, within a token budget.
4. The model answers in grammar-constrained JSON (:mod:`review_schema`, :mod:`review_model`)
   with the linters' lines marked and a few workspace snippets for reference.
5. Each finding is anchored by the code it quotes (:mod:`anchoring`), capped in severity, and
   merged with the linters' and the previous review's (:mod:`review_merge`).

``cancel`` is honoured between stages and, during generation, between tokens (prompt
evaluation too, in small batches): a cancelled review raises :class:`ReviewCancelled` and leaves
the document's state as it was. Results carry the request's version; :func:`is_stale` tells the
server whether the document moved on meanwhile.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from memlsp.agents.chat import ChatMessage, chat_tokens
from memlsp.agents.review.anchoring import anchor_snippet, fit_replacement
from memlsp.agents.review.merge import (
    KeptFinding,
    cap_severity,
    carry_over,
    fits_its_line,
    remember,
    repeats_tool,
    unique_llm,
)
from memlsp.agents.review.model import ModelAnswer, PromptTooLong, generate_json
from memlsp.agents.review.prompt import (
    CodeView,
    ToolNote,
    build_messages,
    echoes_example,
    strip_lint_mark,
)
from memlsp.agents.review.schema import (
    ModelFinding,
    close_if_repeating,
    parse_model_output,
    review_schema,
)
from memlsp.agents.review.scope import (
    ReviewScope,
    Snapshot,
    chunk_language,
    model_reviews,
    plan_scope,
    snapshot,
)
from memlsp.agents.review.tool_parsers import Finding
from memlsp.agents.review.tools import ToolExecutor
from memlsp.agents.review.types import (
    LLM_SOURCE,
    ReviewCancelled,
    ReviewFinding,
    ReviewRequest,
    ReviewResult,
    is_stale,
)
from memlsp.base.edits import TextEdit
from memlsp.config.schema import QualityConfig
from memlsp.models import ModelError, ModelPool
from memlsp.models.priority import MAX_PREEMPTIONS, Preempted

__all__ = [
    "ContextFn",
    "QualityAgent",
    "ReviewCancelled",
    "ReviewFinding",
    "ReviewRequest",
    "ReviewResult",
    "drop_example_echoes",
    "is_stale",
]

log = logging.getLogger(__name__)

# (relative path, code under review) -> snippets of related workspace code.
ContextFn = Callable[[str, str], list[str]]

# Code is ~3.5 characters a token for the Qwen tokenizer; 3 keeps the estimate on the safe side
# without tokenizing before the model is held.
_CHARS_PER_TOKEN = 3
# Documents whose last review is remembered (LRU); a closed document should be forgotten.
_MAX_DOCUMENTS = 256
# Linter fixes offered as quick fixes: ruff's "unsafe" ones change behaviour, "display-only"
# ones are not meant to be applied.
_APPLICABLE = frozenset({"safe", ""})


@dataclass(frozen=True)
class _DocState:
    version: int
    text_key: str
    # The file as the model last reviewed it: what "changed" is measured against. A save whose
    # model call failed keeps the one before, so the next save retries that change.
    snapshot: Snapshot | None
    reviewed: frozenset[str]  # chunk hashes the model has seen
    kept: tuple[KeptFinding, ...]  # published model findings, for carry-over
    result: ReviewResult
    complete: bool  # False: the model could not run; the same text is reviewed again


@dataclass
class _Stats:
    reviews: int = 0
    cache_hits: int = 0
    model_calls: int = 0
    cancelled: int = 0
    model_errors: int = 0
    truncated_answers: int = 0
    repetitions: int = 0  # answers stopped because the model repeated itself
    model_findings: int = 0  # as the model wrote them
    unanchored: int = 0  # dropped: snippet not found
    example_echoes: int = 0  # dropped: the prompt's example repeated, not the reviewed code
    repeats: int = 0  # dropped: a linter's or an earlier review's finding again
    published_llm: int = 0
    prompt_tokens: int = 0
    reused_tokens: int = 0
    generated_tokens: int = 0
    model_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


class QualityAgent:
    def __init__(
        self,
        pool: ModelPool,
        config: QualityConfig,
        tools: ToolExecutor | None,
        context: ContextFn | None = None,
    ) -> None:
        self.pool = pool
        self.config = config
        self.tools = tools
        self.context = context
        self._docs: OrderedDict[str, _DocState] = OrderedDict()
        self._lock = threading.Lock()
        self._stats = _Stats()

    # -- public ------------------------------------------------------------------------------

    def review(self, request: ReviewRequest, cancel: threading.Event) -> ReviewResult:
        """Review the saved document. Raises :class:`ReviewCancelled` when ``cancel`` is set
        before the result is ready."""
        started = time.perf_counter()
        key = _text_key(request)
        with self._lock:
            self._stats.reviews += 1
            state = self._docs.get(request.uri)
            if state is not None and state.complete and state.text_key == key:
                self._docs.move_to_end(request.uri)
                self._stats.cache_hits += 1
                seconds = time.perf_counter() - started
                return replace(
                    state.result, version=request.version, from_cache=True, seconds=seconds
                )
        try:
            return self._review(request, state, key, cancel, started)
        except ReviewCancelled:
            with self._lock:
                self._stats.cancelled += 1
            raise

    def forget(self, uri: str) -> None:
        """Drop what is remembered of a document (on close)."""
        with self._lock:
            self._docs.pop(uri, None)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            s = self._stats
            return {
                "model": self.config.model,
                "reviews": s.reviews,
                "cache_hits": s.cache_hits,
                "model_calls": s.model_calls,
                "cancelled": s.cancelled,
                "model_errors": s.model_errors,
                "truncated_answers": s.truncated_answers,
                "repetitions": s.repetitions,
                "model_findings": s.model_findings,
                "unanchored": s.unanchored,
                "example_echoes": s.example_echoes,
                "repeats": s.repeats,
                "published_llm": s.published_llm,
                "prompt_tokens": s.prompt_tokens,
                "reused_tokens": s.reused_tokens,
                "generated_tokens": s.generated_tokens,
                "model_seconds": round(s.model_seconds, 3),
                "documents": len(self._docs),
            }

    # -- stages ------------------------------------------------------------------------------

    def _review(
        self,
        request: ReviewRequest,
        state: _DocState | None,
        key: str,
        cancel: threading.Event,
        started: float,
    ) -> ReviewResult:
        _check(cancel)
        notes: list[str] = []
        tool_findings = self._run_tools(request, notes)
        _check(cancel)
        snap = snapshot(request.relative_path, request.text, request.language_id)
        reviewed = state.reviewed if state is not None else frozenset()
        carried = carry_over(state.kept, snap) if state is not None else []
        scope = ReviewScope((), False, reviewed, 0)
        if (
            self.config.enabled
            and self.config.max_findings > 0
            and model_reviews(request.language_id, request.relative_path)
        ):
            scope = plan_scope(
                snap,
                state.snapshot if state is not None else None,
                reviewed,
                self.config.whole_file_max_lines,
                self.config.max_code_tokens * _CHARS_PER_TOKEN,
            )
        fresh: list[ReviewFinding] = []
        complete = True
        if scope.rows:
            try:
                fresh = self._ask_model(request, snap, scope, tool_findings, cancel, notes)
                reviewed = scope.reviewed
            except (ModelError, PromptTooLong) as exc:
                # The linters' findings still count; the next save tries the model again.
                log.warning("review of %s without the model: %s", request.relative_path, exc)
                notes.append(f"model review skipped: {exc}")
                complete = False
                with self._lock:
                    self._stats.model_errors += 1
            if scope.left:
                notes.append(f"{scope.left} unreviewed chunk(s) left for later saves")
        _check(cancel)
        llm = self._merge_llm(carried, fresh, tool_findings)
        findings = sorted(
            [*tool_findings, *llm], key=lambda f: (f.line, f.column, f.origin != "tool")
        )
        result = ReviewResult(
            version=request.version,
            findings=tuple(findings),
            from_cache=False,
            seconds=time.perf_counter() - started,
            notes=tuple(notes),
        )
        kept = remember(llm, snap)
        base = snap if complete else (state.snapshot if state is not None else None)
        new_state = _DocState(request.version, key, base, reviewed, kept, result, complete)
        with self._lock:
            current = self._docs.get(request.uri)
            if current is None or current.version <= request.version:
                self._docs[request.uri] = new_state
                self._docs.move_to_end(request.uri)
                while len(self._docs) > _MAX_DOCUMENTS:
                    self._docs.popitem(last=False)
            self._stats.published_llm += len(llm)
        return result

    def _run_tools(self, request: ReviewRequest, notes: list[str]) -> list[ReviewFinding]:
        if self.tools is None:
            return []
        findings: list[ReviewFinding] = []
        for result in self.tools.run_all(Path(request.path), request.language_id):
            if result.status not in ("ok", "skipped"):
                notes.append(f"{result.tool}: {result.status}: {result.message}")
            notes.extend(f"{result.tool}: {note}" for note in result.notes)
            findings.extend(_from_tool(f) for f in result.findings)
        return findings

    def _ask_model(
        self,
        request: ReviewRequest,
        snap: Snapshot,
        scope: ReviewScope,
        tool_findings: list[ReviewFinding],
        cancel: threading.Event,
        notes: list[str],
    ) -> list[ReviewFinding]:
        rows = tuple((row, snap.lines[row]) for row in scope.rows)
        shown = set(scope.rows)
        lint = [ToolNote(f.line, f.code or f.source) for f in tool_findings if f.line in shown]
        snippets = self._snippets(request, "\n".join(text for _, text in rows))
        _check(cancel)
        view = CodeView(request.relative_path, request.language_id, rows, not scope.whole_file)
        messages = build_messages(view, lint, snippets)
        answer = self._generate(messages, cancel)
        parsed = parse_model_output(answer.text)
        if answer.finish_reason == "watch":
            notes.append("model answer stopped: it repeated a finding")
        if not parsed.complete:
            notes.append(
                f"model answer cut at max_tokens={self.config.max_tokens}; "
                f"kept its {len(parsed.findings)} complete finding(s)"
            )
        own = drop_example_echoes(parsed.findings, request.text, request.relative_path)
        anchored = [self._anchor(f, snap, scope) for f in own]
        language = chunk_language(request.language_id, request.relative_path) or ""
        found = [
            f for f in anchored if f is not None and fits_its_line(f, snap.lines[f.line], language)
        ]
        log.debug(
            "review of %s: %d prompt tokens (%d reused), %d generated in %.2f s, %d/%d anchored",
            request.relative_path,
            answer.prompt_tokens,
            answer.reused_tokens,
            answer.generated_tokens,
            answer.seconds,
            len(found),
            len(parsed.findings),
        )
        with self._lock:
            s = self._stats
            s.model_calls += 1
            s.model_seconds += answer.seconds
            s.prompt_tokens += answer.prompt_tokens
            s.reused_tokens += answer.reused_tokens
            s.generated_tokens += answer.generated_tokens
            s.truncated_answers += not parsed.complete
            s.repetitions += answer.finish_reason == "watch"
            s.model_findings += len(parsed.findings)
            s.example_echoes += len(parsed.findings) - len(own)
            s.unanchored += len(anchored) - len(found)
        return found

    def _generate(self, messages: list[ChatMessage], cancel: threading.Event) -> ModelAnswer:
        """The model's answer; a background call, which gives its model up to completions and
        refactors that want it and starts again after them (``priority``)."""
        priority = self.pool.priority
        preempted = 0
        while True:
            with self.pool.acquire(self.config.model) as model:
                _check(cancel)
                tokens = chat_tokens(model.llama, messages)
                pacer = priority.background(
                    model.name, cancel, preemptible=preempted < MAX_PREEMPTIONS
                )
                try:
                    return generate_json(
                        model,
                        tokens,
                        review_schema(self.config.max_findings),
                        self.config.max_tokens,
                        cancel,
                        watch=close_if_repeating,
                        pacer=pacer,
                    )
                except Preempted:
                    preempted += 1
            priority.wait_unwanted(self.config.model, cancel)  # the model is theirs meanwhile
            _check(cancel)

    def _snippets(self, request: ReviewRequest, code: str) -> list[str]:
        if self.context is None or self.config.context_snippets == 0:
            return []
        try:
            found = self.context(request.relative_path, code)
        except Exception:  # context is a bonus: never fail a review over it
            log.exception("context provider failed")
            return []
        kept: list[str] = []
        room = self.config.context_chars
        for snippet in found[: self.config.context_snippets]:
            if room <= 0:
                break
            kept.append(snippet[:room])
            room -= len(kept[-1])
        return kept

    def _anchor(
        self, finding: ModelFinding, snap: Snapshot, scope: ReviewScope
    ) -> ReviewFinding | None:
        snippet = strip_lint_mark(finding.snippet)
        found = anchor_snippet(snippet, snap.lines, scope.rows, hint=finding.line - 1)
        if found is None:
            return None
        return ReviewFinding(
            line=found.line,
            column=found.column,
            end_line=found.end_line,
            end_column=found.end_column,
            severity=cap_severity(finding.severity, self.config.max_llm_severity),
            code=finding.code,
            message=finding.message,
            source=LLM_SOURCE,
            origin="llm",
            replacement=fit_replacement(snippet, finding.replacement, found, snap.lines),
        )

    def _merge_llm(
        self,
        carried: list[ReviewFinding],
        fresh: list[ReviewFinding],
        tool_findings: list[ReviewFinding],
    ) -> list[ReviewFinding]:
        kept = [f for f in carried if not repeats_tool(f, tool_findings)]
        known = {(f.line, f.code) for f in kept}
        new = [
            f
            for f in unique_llm(fresh)
            if (f.line, f.code) not in known and not repeats_tool(f, tool_findings)
        ]
        with self._lock:
            self._stats.repeats += len(fresh) - len(new)
        return kept + new


def drop_example_echoes(
    findings: Sequence[ModelFinding], text: str, relative_path: str
) -> list[ModelFinding]:
    """The model's findings less those that repeat the prompt's worked example."""
    kept = []
    for finding in findings:
        if echoes_example(finding.message, strip_lint_mark(finding.snippet), text):
            log.debug(
                "review of %s: dropped a finding that repeats the example: %r",
                relative_path,
                finding.message,
            )
        else:
            kept.append(finding)
    return kept


def _check(cancel: threading.Event) -> None:
    if cancel.is_set():
        raise ReviewCancelled()


def _text_key(request: ReviewRequest) -> str:
    digest = hashlib.sha256(request.language_id.encode())
    digest.update(b"\0")
    digest.update(request.text.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def _from_tool(finding: Finding) -> ReviewFinding:
    fix: tuple[TextEdit, ...] = ()
    title = ""
    if finding.fix is not None and finding.fix.applicability in _APPLICABLE:
        fix, title = finding.fix.edits, finding.fix.message
    return ReviewFinding(
        line=finding.line,
        column=finding.column,
        end_line=finding.end_line,
        end_column=finding.end_column,
        severity=finding.severity,
        code=finding.code,
        message=finding.message,
        source=finding.source,
        origin="tool",
        fix=fix,
        fix_title=title,
    )
