"""The quality agent: reviews a saved file with the linters and a local model.

On each save (``review``, blocking; run it in a worker thread):

1. The same text as the last review of the document answers from the cache, without tools or
   model (``from_cache=True``).
2. The allow-listed linters run on the saved file (their findings are exact; they come first).
3. The code to review is chosen by syntax (:mod:`review_scope`): a small file whole, otherwise
   the functions and classes that changed, within a token budget.
4. The model stages run on that code, in order (:meth:`QualityAgent.model_stages`): the stages
   given to the agent (the place of fast ones, such as a FIM-model "surprise" scorer), then the
   instruct review: the model answers in grammar-constrained JSON (:mod:`review_schema`,
   :mod:`review_model`) with the linters' lines marked and a few workspace snippets for
   reference, in the categories of ``agents.quality.categories`` only.
5. Each finding is anchored by the code it quotes (:mod:`anchoring`), capped in severity, and
   merged with the linters' and the previous review's (:mod:`review_merge`).

Staged results: when a model stage is going to run, ``on_partial`` gets the linters' findings
(plus the model findings carried over from earlier saves on unchanged code) as soon as the
linters are done, then the merged result after each model stage but the last; the last one's is
the return value (``final``). Each partial result holds everything known so far: publishing it
replaces the one before.

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
    allowed_codes,
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
    check_cancelled,
    is_stale,
)
from memlsp.base.edits import TextEdit
from memlsp.config.schema import QualityConfig
from memlsp.models import ModelError, ModelPool
from memlsp.models.priority import MAX_PREEMPTIONS, Preempted

__all__ = [
    "INSTRUCT_STAGE",
    "ContextFn",
    "ModelStage",
    "PartialFn",
    "QualityAgent",
    "ReviewCancelled",
    "ReviewFinding",
    "ReviewRequest",
    "ReviewResult",
    "StageInput",
    "drop_example_echoes",
    "is_stale",
    "keep_categories",
]

log = logging.getLogger(__name__)

# (relative path, code under review) -> snippets of related workspace code.
ContextFn = Callable[[str, str], list[str]]
# Receives each partial result of a review (from the review's worker thread).
PartialFn = Callable[[ReviewResult], None]
# The name of the instruct review's stage.
INSTRUCT_STAGE = "review"

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


@dataclass(frozen=True)
class StageInput:
    """What a model stage gets: the saved file, the code chosen for review, the linters'
    findings."""

    request: ReviewRequest
    snapshot: Snapshot
    scope: ReviewScope  # scope.rows: the 0-based rows to review (changed code, or all)
    tool_findings: tuple[ReviewFinding, ...]
    notes: list[str]  # a stage may add notes for the user (ReviewResult.notes)


@dataclass(frozen=True)
class ModelStage:
    """One model-based source of findings, run after the linters on the rows in scope.

    ``run`` returns findings anchored on the document (origin "llm"); they are merged with the
    others (linters first, one per line and code) and published when the stage is done. It
    checks ``cancel`` (raising :class:`ReviewCancelled`) and raises ``ModelError`` or
    ``PromptTooLong`` when its model cannot run: the other stages' findings still count and
    the change is reviewed again on the next save.

    A second model source plugs in here, e.g. the surprise scorer (FIM model, fast), run first::

        ModelStage("surprise", lambda work, cancel: reviewer.review(
            work.request.text, work.request.language_id, work.scope.rows, cancel))

    given to ``QualityAgent(..., stages=[...])``.
    """

    name: str
    run: Callable[[StageInput, threading.Event], list[ReviewFinding]]
    stats: Callable[[], dict[str, Any]] | None = None  # the stage's own figures, for status
    # Work the stage can do on the document before it is saved (as opened), so that the
    # review after the save costs less; stops when ``cancel`` is set or a completion wants
    # the model.
    ahead: Callable[[ReviewRequest, threading.Event], None] | None = None


@dataclass
class _StageStats:
    runs: int = 0
    errors: int = 0
    findings: int = 0
    seconds: float = 0.0


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
    off_category: int = 0  # dropped: a category not in agents.quality.categories
    partials: int = 0  # partial results handed to on_partial
    prepared: int = 0  # stages' work done ahead of a save (ModelStage.ahead)
    lint_seconds: float = 0.0  # from the start of a review to its linters' result
    prompt_tokens: int = 0
    reused_tokens: int = 0
    generated_tokens: int = 0
    model_seconds: float = 0.0
    stages: dict[str, _StageStats] = field(default_factory=dict)


class QualityAgent:
    def __init__(
        self,
        pool: ModelPool,
        config: QualityConfig,
        tools: ToolExecutor | None,
        context: ContextFn | None = None,
        stages: Sequence[ModelStage] = (),
    ) -> None:
        """``stages``: model stages run before the instruct review (fast ones first)."""
        self.pool = pool
        self.config = config
        self.tools = tools
        self.context = context
        self.early_stages = tuple(stages)
        # The categories the instruct review may give (config order does not matter).
        self.codes = allowed_codes(config.categories)
        unknown = sorted(set(config.categories) - set(self.codes))
        if unknown:
            log.warning("agents.quality.categories: unknown codes ignored: %s", unknown)
        self._docs: OrderedDict[str, _DocState] = OrderedDict()
        self._lock = threading.Lock()
        self._stats = _Stats()

    # -- public ------------------------------------------------------------------------------

    def review(
        self,
        request: ReviewRequest,
        cancel: threading.Event,
        on_partial: PartialFn | None = None,
    ) -> ReviewResult:
        """Review the saved document. Raises :class:`ReviewCancelled` when ``cancel`` is set
        before the result is ready. ``on_partial``, called on this thread, gets the partial
        results (``final`` False) before the final one is returned: the linters' as soon as
        they are done, then one after each model stage but the last; none when no model stage
        runs (cache hit, model disabled, nothing changed)."""
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
                    state.result,
                    version=request.version,
                    from_cache=True,
                    seconds=seconds,
                    stage="cache",
                )
        try:
            return self._review(request, state, key, cancel, started, on_partial)
        except ReviewCancelled:
            with self._lock:
                self._stats.cancelled += 1
            raise

    def prepare(self, request: ReviewRequest, cancel: threading.Event) -> int:
        """Before a save (the document as opened, in idle time): the work the model stages can
        do ahead (``ModelStage.ahead``). Returns how many stages did some."""
        if not model_reviews(request.language_id, request.relative_path):
            return 0
        done = 0
        for stage in self.model_stages():
            if stage.ahead is not None and not cancel.is_set():
                stage.ahead(request, cancel)
                done += 1
        with self._lock:
            self._stats.prepared += done
        return done

    def forget(self, uri: str) -> None:
        """Drop what is remembered of a document (on close)."""
        with self._lock:
            self._docs.pop(uri, None)

    def model_stages(self) -> list[ModelStage]:
        """The model stages of a review, in the order they run and publish: the agent's own
        (``stages``), then the instruct review. None when the model review is disabled."""
        if not self.config.enabled:
            return []
        stages = list(self.early_stages)
        if self.config.instruct and self.config.max_findings > 0 and self.codes:
            stages.append(ModelStage(INSTRUCT_STAGE, self._instruct_stage))
        return stages

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
                "off_category": s.off_category,
                "categories": list(self.codes),
                "partials": s.partials,
                "prepared": s.prepared,
                "lint_seconds": round(s.lint_seconds, 3),
                "stages": {
                    name: {
                        "runs": st.runs,
                        "errors": st.errors,
                        "findings": st.findings,
                        "seconds": round(st.seconds, 3),
                    }
                    for name, st in s.stages.items()
                },
                **{
                    stage.name: stage.stats()
                    for stage in self.early_stages
                    if stage.stats is not None
                },
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
        on_partial: PartialFn | None,
    ) -> ReviewResult:
        check_cancelled(cancel)
        notes: list[str] = []
        tool_findings = self._run_tools(request, notes)
        check_cancelled(cancel)
        snap = snapshot(request.relative_path, request.text, request.language_id)
        reviewed = state.reviewed if state is not None else frozenset()
        carried = carry_over(state.kept, snap) if state is not None else []
        stages = (
            self.model_stages() if model_reviews(request.language_id, request.relative_path) else []
        )
        scope = ReviewScope((), False, reviewed, 0)
        if stages:
            scope = plan_scope(
                snap,
                state.snapshot if state is not None else None,
                reviewed,
                self.config.whole_file_max_lines,
                self.config.max_code_tokens * _CHARS_PER_TOKEN,
            )
        if not scope.rows:
            stages = []
        with self._lock:
            self._stats.lint_seconds += time.perf_counter() - started

        def result(fresh: list[ReviewFinding], final: bool, stage: str) -> ReviewResult:
            llm, _ = self._merge_llm(carried, fresh, tool_findings)
            return ReviewResult(
                version=request.version,
                findings=_in_order(tool_findings, llm),
                from_cache=False,
                seconds=time.perf_counter() - started,
                notes=tuple(notes),
                final=final,
                stage=stage,
            )

        def publish(partial: ReviewResult) -> None:
            check_cancelled(cancel)  # a superseded review publishes nothing more
            if on_partial is not None:
                with self._lock:
                    self._stats.partials += 1
                on_partial(partial)

        fresh: list[ReviewFinding] = []
        complete = True
        if stages:
            publish(result(fresh, final=False, stage="lint"))
        work = StageInput(request, snap, scope, tuple(tool_findings), notes)
        for index, stage in enumerate(stages):
            check_cancelled(cancel)
            found = self._run_stage(stage, work, cancel)
            if found is None:
                complete = False  # the linters' findings still count; the next save retries
            else:
                fresh.extend(found)
            if index + 1 < len(stages):
                publish(result(fresh, final=False, stage=stage.name))
        if complete and stages:
            reviewed = scope.reviewed
        if scope.left:
            notes.append(f"{scope.left} unreviewed chunk(s) left for later saves")
        check_cancelled(cancel)
        llm, repeats = self._merge_llm(carried, fresh, tool_findings)
        final = ReviewResult(
            version=request.version,
            findings=_in_order(tool_findings, llm),
            from_cache=False,
            seconds=time.perf_counter() - started,
            notes=tuple(notes),
            final=True,
            stage=stages[-1].name if stages else "lint",
        )
        kept = remember(llm, snap)
        base = snap if complete else (state.snapshot if state is not None else None)
        new_state = _DocState(request.version, key, base, reviewed, kept, final, complete)
        with self._lock:
            current = self._docs.get(request.uri)
            if current is None or current.version <= request.version:
                self._docs[request.uri] = new_state
                self._docs.move_to_end(request.uri)
                while len(self._docs) > _MAX_DOCUMENTS:
                    self._docs.popitem(last=False)
            self._stats.published_llm += len(llm)
            self._stats.repeats += repeats
        return final

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

    def _run_stage(
        self, stage: ModelStage, work: StageInput, cancel: threading.Event
    ) -> list[ReviewFinding] | None:
        """The stage's findings; None when its model could not run (noted)."""
        begun = time.perf_counter()
        found: list[ReviewFinding] | None = None
        failed = False
        try:
            found = stage.run(work, cancel)
        except (ModelError, PromptTooLong) as exc:
            failed = True
            log.warning(
                "review of %s without the model %s stage: %s",
                work.request.relative_path,
                stage.name,
                exc,
            )
            work.notes.append(f"model {stage.name} skipped: {exc}")
        finally:  # counted when cancelled too (ReviewCancelled goes on up)
            with self._lock:
                st = self._stats.stages.setdefault(stage.name, _StageStats())
                st.runs += 1
                st.seconds += time.perf_counter() - begun
                st.errors += failed
                self._stats.model_errors += failed
                st.findings += len(found or ())
        return found

    def _instruct_stage(self, work: StageInput, cancel: threading.Event) -> list[ReviewFinding]:
        return self._ask_model(
            work.request, work.snapshot, work.scope, work.tool_findings, cancel, work.notes
        )

    def _ask_model(
        self,
        request: ReviewRequest,
        snap: Snapshot,
        scope: ReviewScope,
        tool_findings: Sequence[ReviewFinding],
        cancel: threading.Event,
        notes: list[str],
    ) -> list[ReviewFinding]:
        rows = tuple((row, snap.lines[row]) for row in scope.rows)
        shown = set(scope.rows)
        lint = [ToolNote(f.line, f.code or f.source) for f in tool_findings if f.line in shown]
        snippets = self._snippets(request, "\n".join(text for _, text in rows))
        check_cancelled(cancel)
        view = CodeView(request.relative_path, request.language_id, rows, not scope.whole_file)
        messages = build_messages(view, lint, snippets, self.codes)
        answer = self._generate(messages, cancel)
        parsed = parse_model_output(answer.text)
        if answer.finish_reason == "watch":
            notes.append("model answer stopped: it repeated a finding")
        if not parsed.complete:
            notes.append(
                f"model answer cut at max_tokens={self.config.max_tokens}; "
                f"kept its {len(parsed.findings)} complete finding(s)"
            )
        # The grammar allows only these codes; an answer read without it might hold others.
        in_category = keep_categories(parsed.findings, self.codes)
        own = drop_example_echoes(in_category, request.text, request.relative_path)
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
            s.off_category += len(parsed.findings) - len(in_category)
            s.example_echoes += len(in_category) - len(own)
            s.unanchored += len(anchored) - len(found)
        return found

    def _generate(self, messages: list[ChatMessage], cancel: threading.Event) -> ModelAnswer:
        """The model's answer; a background call, which gives its model up to completions and
        refactors that want it and starts again after them (``priority``)."""
        priority = self.pool.priority
        preempted = 0
        while True:
            with self.pool.acquire(self.config.model) as model:
                check_cancelled(cancel)
                tokens = chat_tokens(model.llama, messages)
                pacer = priority.background(
                    model.name,
                    cancel,
                    preemptible=preempted < MAX_PREEMPTIONS,
                    llama=model.llama,
                )
                try:
                    return generate_json(
                        model,
                        tokens,
                        review_schema(self.config.max_findings, self.codes),
                        self.config.max_tokens,
                        cancel,
                        watch=close_if_repeating,
                        pacer=pacer,
                    )
                except Preempted:
                    preempted += 1
            priority.wait_unwanted(self.config.model, cancel)  # the model is theirs meanwhile
            check_cancelled(cancel)

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

    @staticmethod
    def _merge_llm(
        carried: list[ReviewFinding],
        fresh: list[ReviewFinding],
        tool_findings: list[ReviewFinding],
    ) -> tuple[list[ReviewFinding], int]:
        """The model findings to publish, and how many fresh ones repeated another's."""
        kept = [f for f in carried if not repeats_tool(f, tool_findings)]
        known = {(f.line, f.code) for f in kept}
        new = [
            f
            for f in unique_llm(fresh)
            if (f.line, f.code) not in known and not repeats_tool(f, tool_findings)
        ]
        return kept + new, len(fresh) - len(new)


def keep_categories(findings: Sequence[ModelFinding], codes: Sequence[str]) -> list[ModelFinding]:
    """The model's findings in the allowed categories (``agents.quality.categories``)."""
    allowed = frozenset(codes)
    return [f for f in findings if f.code in allowed]


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


def _in_order(
    tool_findings: Sequence[ReviewFinding], llm: Sequence[ReviewFinding]
) -> tuple[ReviewFinding, ...]:
    """Linters' and model findings by position, a linter's first on the same spot."""
    return tuple(
        sorted([*tool_findings, *llm], key=lambda f: (f.line, f.column, f.origin != "tool"))
    )


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
