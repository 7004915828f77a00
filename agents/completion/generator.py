"""The generator agent: fill-in-the-middle suggestions from a code model, with workspace context.

``cached`` answers from the completion cache (including "typed-through": the user typed the start
of the current suggestion) without touching a model, cheap enough for the event loop.
``complete`` runs the model and blocks: call it in a worker thread. It decodes greedily with its
own loop so it can stop between tokens (cancellation, end of line, end of block) and evaluate the
prompt in small batches, checking for cancellation between them: a superseded request releases the
model within one batch instead of after a whole prompt. Tokens guessed from the prompt are
checked in batches (agents/completion/draft.py: the same text, faster; or a smaller model's
guesses, agents/completion/draft_model.py, with agents.generator.draft "model"), and past
``max_predict_ms`` the answer ends at a line end. An explicit request also gets the texts that
the next best first tokens lead to (``alternatives``), from the same prompt evaluation.
Other-file context goes in only when the code at the cursor needs it
(agents/completion/relevance.py, ``context_filter``): else the prompt is the bare FIM prompt.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import numpy as np

from memlsp.agents.completion.blank_line import (
    cut_at_line_above,
    expected_start,
    from_line_above,
)
from memlsp.agents.completion.completion_cache import CompletionCache
from memlsp.agents.completion.draft import MAX_DRAFT, BatchVerifier, PromptLookup
from memlsp.agents.completion.draft_model import ModelDraft, same_vocabulary
from memlsp.agents.completion.draft_plan import DraftPlanner
from memlsp.agents.completion.fences import PROSE_LANGUAGES, opens_fence
from memlsp.agents.completion.fim_prompt import FimPrompt, FimPromptBuilder, FimSpecialIds
from memlsp.agents.completion.postprocess import (
    CLOSERS,
    CompletionMode,
    clean_completion,
    decide_mode,
)
from memlsp.agents.completion.relevance import CursorNames, names_of, relevant_chunks
from memlsp.agents.completion.sticky_context import StickyContext
from memlsp.agents.completion.token_healing import Vocabulary, split_for_healing
from memlsp.base.context import ContextChunk, ContextProvider, ContextRequest, code_around_cursor
from memlsp.config.schema import GeneratorConfig
from memlsp.models import LoadedModel, ModelError, ModelPool
from memlsp.models.kv_states import KvStates, common_prefix
from memlsp.models.prefill import prefill
from memlsp.models.priority import BackgroundPacer, Preempted, Priority
from memlsp.models.token_pieces import token_bytes, vocabulary_bytes

log = logging.getLogger(__name__)
_T = TypeVar("_T")


class Cancelled(Exception):
    """The request was cancelled or superseded; nothing to answer."""


@dataclass(frozen=True)
class InlineRequest:
    doc_key: str  # the document's URI: per-document state (prefix window, supersession)
    path: str  # shown to the model (relative to the workspace when possible)
    language_id: str
    prefix: str  # document text before the cursor
    suffix: str  # document text after the cursor
    repo_name: str = ""
    # Suggestions wanted: above 1 on an explicit request (agents.generator.alternatives).
    alternatives: int = 1


@dataclass(frozen=True)
class Suggestion:
    text: str
    source: str  # "model", "cache" or "typed-through"
    model: str
    seconds: float
    prompt_tokens: int = 0
    reused_tokens: int = 0
    generated_tokens: int = 0
    alternatives: tuple[str, ...] = ()  # other distinct suggestions, after ``text``


@dataclass
class GeneratorStats:
    requests: int = 0
    model_calls: int = 0
    cache_hits: int = 0
    typed_through: int = 0
    cancelled: int = 0
    empty: int = 0
    model_seconds: float = 0.0
    prompt_tokens: int = 0
    reused_tokens: int = 0  # prompt tokens found in the KV cache: what typing costs
    generated_tokens: int = 0
    asked_again: int = 0  # blank-line prompts cut at the line above that gave nothing
    ended_at_fence: int = 0  # answers the model ended with a markdown fence (agents.fences)
    drafted_tokens: int = 0  # guessed tokens checked in batches (agents.generator.draft)
    accepted_drafts: int = 0  # of which right
    expected_tokens: int = 0  # a cut prompt's newline and indentation, guessed with the prompt
    expected_right: int = 0  # of which the model picked
    timed_out: int = 0  # answers cut at a line end by agents.generator.max_predict_ms
    work_ahead: int = 0  # prompts prefilled ahead of a request (agents.generator.work_ahead)
    work_ahead_tokens: int = 0  # prompt tokens they evaluated
    work_ahead_stopped: int = 0  # of which stopped by a request or a cancel
    alternatives: int = 0  # other suggestions given on explicit requests
    speculations: int = 0  # next suggestions computed ahead (agents.generator.speculate)
    speculation_seconds: float = 0.0
    speculation_tokens: int = 0  # tokens they evaluated (prompt not in the KV cache, generated)
    speculations_stopped: int = 0  # stopped by a request or a cancel
    joined_speculations: int = 0  # requests answered by waiting for a speculation under way
    extra: dict[str, Any] = field(default_factory=dict)


class GeneratorAgent:
    def __init__(
        self,
        pool: ModelPool,
        config: GeneratorConfig,
        model_name: str,
        context: ContextProvider | None = None,
    ) -> None:
        self.pool = pool
        self.config = config
        self.model_name = model_name
        self.context = context
        self.cache = CompletionCache(capacity=config.cache_entries)
        self._builders: dict[str, FimPromptBuilder] = {}
        self._kv_states: dict[str, KvStates] = {}  # per model name
        self._vocabularies: dict[str, Vocabulary] = {}  # per model name, for token healing
        self._planners: dict[str, DraftPlanner] = {}  # per model name: how many guesses pay
        self._sticky = StickyContext(config.context_keep_s)
        self._lock = threading.Lock()
        self._stats = GeneratorStats()
        self._last_context: list[tuple[str, str]] = []
        # agents.generator.draft "model": (completion model, draft model) -> same tokenizer
        self._draft_pairs: dict[tuple[str, str], bool] = {}
        self._draft_notes: set[str] = set()  # why a draft model was not used, logged once each
        # Speculations under way, by (document, prefix, suffix): set when each ends.
        self._ahead: dict[tuple[str, str, str], threading.Event] = {}

    # -- fast path -----------------------------------------------------------------------

    def cached(self, request: InlineRequest) -> Suggestion | None:
        """A suggestion from the cache or typed-through reuse; None means: ask the model."""
        started = time.perf_counter()
        with self._lock:
            self._stats.requests += 1
        if request.alternatives > 1:  # the cache holds one suggestion: ask for them all
            return None
        text = self.cache.get(request.prefix, request.suffix)
        source = "cache"
        if text is None:
            text = self.cache.typed_through(request.prefix, request.suffix)
            source = "typed-through"
        if text is None:
            return None
        with self._lock:
            if source == "cache":
                self._stats.cache_hits += 1
            else:
                self._stats.typed_through += 1
        return Suggestion(text, source, self.model_name, time.perf_counter() - started)

    # -- model path ----------------------------------------------------------------------

    def complete(self, request: InlineRequest, cancel: threading.Event) -> Suggestion:
        """Ask the model. Raises Cancelled when ``cancel`` is set before the answer is ready.
        A speculation computing this very answer is waited for (not preempted)."""
        started = time.perf_counter()
        try:
            joined = self._join_speculation(request, cancel)
            if joined is not None:
                return joined
            text, raw, sizes, others = self._answer(request, cancel, None)
        except Cancelled:
            with self._lock:
                self._stats.cancelled += 1
            raise
        prompt_tokens, reused, generated = sizes
        seconds = time.perf_counter() - started
        with self._lock:
            self._stats.model_calls += 1
            self._stats.model_seconds += seconds
            self._stats.prompt_tokens += prompt_tokens
            self._stats.reused_tokens += reused
            self._stats.generated_tokens += generated
            self._stats.alternatives += len(others)
            if not text:
                self._stats.empty += 1
        log.debug(
            "completion %r (raw %r) in %.3f s, prompt %d (reused %d), %d generated",
            text,
            raw,
            seconds,
            prompt_tokens,
            reused,
            generated,
        )
        return Suggestion(
            text, "model", self.model_name, seconds, prompt_tokens, reused, generated, others
        )

    def speculate(self, request: InlineRequest, cancel: threading.Event) -> bool:
        """Background: answer ``request`` into the completion cache ahead of it (the next
        suggestion as if the one on screen were accepted), at background priority: it waits
        while interactive work runs, gives the model up to a request that wants it (within
        one prompt batch or token) and stops when ``cancel`` is set. True when it stored an
        answer; an answer cached already is not computed again."""
        if request.alternatives > 1 or self.cache.contains(request.prefix, request.suffix):
            return False
        key = (request.doc_key, request.prefix, request.suffix)
        done = threading.Event()
        with self._lock:
            self._ahead[key] = done
        priority = self.pool.priority
        started = time.perf_counter()
        try:
            priority.wait_unwanted(self.model_name, cancel)  # a request is coming: it goes first
            text, _raw, sizes, _others = self._answer(request, cancel, priority)
        except (Cancelled, Preempted):
            with self._lock:
                self._stats.speculations_stopped += 1
            return False
        finally:
            with self._lock:
                if self._ahead.get(key) is done:
                    del self._ahead[key]
            done.set()
        seconds = time.perf_counter() - started
        with self._lock:
            self._stats.speculations += 1
            self._stats.speculation_seconds += seconds
            self._stats.speculation_tokens += sizes[0] - sizes[1] + sizes[2]
        log.debug("speculated for %s in %.3f s: %r", request.doc_key, seconds, text)
        return True

    def _join_speculation(
        self, request: InlineRequest, cancel: threading.Event
    ) -> Suggestion | None:
        """The answer of a speculation under way for exactly ``request``, once it ends (None:
        there is none, or it stopped without one)."""
        with self._lock:
            done = self._ahead.get((request.doc_key, request.prefix, request.suffix))
        if done is None:
            return None
        started = time.perf_counter()
        while not done.wait(0.02):
            if cancel.is_set():
                raise Cancelled()
        text = self.cache.get(request.prefix, request.suffix)
        if text is None:
            return None
        with self._lock:
            self._stats.cache_hits += 1
            self._stats.joined_speculations += 1
        return Suggestion(text, "cache", self.model_name, time.perf_counter() - started)

    def _answer(
        self, request: InlineRequest, cancel: threading.Event, background: Priority | None
    ) -> tuple[str, str, tuple[int, int, int], tuple[str, ...]]:
        """The model's suggestion for ``request``, cached: (text, raw text, (prompt tokens,
        reused, generated), alternatives). ``background``: at background priority (no draft
        model; Preempted when a request wants the model)."""
        if cancel.is_set():
            raise Cancelled()
        mode = decide_mode(request.prefix, request.suffix, request.language_id)
        chunks = self._context_chunks(request)
        if background is None:
            with self._lock:
                self._last_context = [(c.source, c.path) for c in chunks]
        # On a line holding only indentation, first the prompt cut at the line above; if that
        # yields nothing, the prompt ending at the cursor (see agents/blank_line).
        cut = cut_at_line_above(request.prefix)
        attempts: list[tuple[str, str] | None] = [cut, None] if cut is not None else [None]
        text = raw = ""
        others: tuple[str, ...] = ()
        prompt_tokens = reused = generated = 0
        with (
            self.pool.acquire(self.model_name, interactive=background is None) as model,
            contextlib.ExitStack() as stack,
        ):
            drafter = self._draft_model(model, stack) if background is None else None
            pacer = (
                background.background(model.name, cancel, llama=model.llama) if background else None
            )
            for attempt in attempts:
                if cancel.is_set():
                    raise Cancelled()
                model_prefix = request.prefix if attempt is None else attempt[0]

                def finish(raw: str, attempt: tuple[str, str] | None = attempt) -> str:
                    if attempt is not None:
                        raw = from_line_above(raw, attempt[1], attempt[0])
                    return clean_completion(
                        raw,
                        prefix=request.prefix,
                        suffix=request.suffix,
                        mode=mode,
                        max_lines=self.config.multiline_max_lines,
                    )

                raw, sizes, others = self._run_model(
                    model,
                    request,
                    model_prefix,
                    chunks,
                    mode,
                    cancel,
                    blank_line=cut is not None,
                    finish=finish,
                    draft_model=drafter,
                    pacer=pacer,
                )
                prompt_tokens += sizes[0]
                reused += sizes[1]
                generated += sizes[2]
                text = finish(raw)
                if text:
                    break
                if attempt is not None:
                    with self._lock:
                        self._stats.asked_again += 1
        if cancel.is_set():
            raise Cancelled()
        self.cache.put(request.prefix, request.suffix, text)
        return text, raw, (prompt_tokens, reused, generated), others

    def _context_chunks(self, request: InlineRequest) -> list[ContextChunk]:
        """Other-file context for ``request``: the document's last chunks while they serve."""
        if self.context is None or self.config.context_tokens <= 0:
            return []
        chunks: list[ContextChunk] = []
        ctx_request = ContextRequest(
            path=request.path,
            prefix=request.prefix,
            suffix=request.suffix,
            language_id=request.language_id,
            uri=request.doc_key,
        )
        budget = self.config.context_tokens * 3
        try:
            chunks = self.context.context_for(ctx_request, budget)
        except Exception:  # context is a bonus: never fail a completion over it
            log.exception("context provider failed")
        if chunks and self.config.context_filter == "relevant":
            kept = relevant_chunks(chunks, CursorNames.of(ctx_request), budget)
            if len(kept) < len(chunks):
                log.debug(
                    "context of %s: %d of %d chunks relevant (%s)",
                    request.doc_key,
                    len(kept),
                    len(chunks),
                    ", ".join(names_of(kept)) or "none",
                )
            chunks = kept
        around = code_around_cursor(request.prefix, request.suffix)
        line = request.prefix.count("\n")
        return self._sticky.choose(request.doc_key, line, chunks, around)

    def work_ahead(self, request: InlineRequest, cancel: threading.Event) -> int:
        """Background: bring the model's KV cache up to the prompt ``request`` would be asked
        with (context, cut at the line above on a blank line; no generation), so the request
        pays only for what changes after. Gives the model up within one prompt batch when a
        request wants it or ``cancel`` is set. Returns the prompt tokens evaluated."""
        priority = self.pool.priority
        priority.wait_unwanted(self.model_name, cancel)  # a request is coming: it goes first
        if cancel.is_set():
            return 0
        chunks = self._context_chunks(request)
        cut = cut_at_line_above(request.prefix)
        blank_line = cut is not None
        model_prefix = request.prefix if cut is None else cut[0]
        with self.pool.acquire(self.model_name) as model:
            if cancel.is_set():  # superseded while a request held the model
                return 0
            llama = model.llama
            prompt = self._prompt(model, request, model_prefix, chunks, blank_line=blank_line)[0]
            tokens = _fit_context(llama, prompt.tokens, self.config.max_tokens)
            self._kv(model.name).switch_to(llama, request.doc_key, tokens)
            held = common_prefix(llama, tokens)
            pacer = priority.background(model.name, cancel, llama=model.llama)
            try:
                done = prefill(
                    llama,
                    tokens,
                    cancel,
                    pacer=pacer,
                    reuse_min_chunk=self.config.kv_reuse_min_tokens,
                )
            except Preempted:
                done = None
            evaluated = max(0, common_prefix(llama, tokens) - held)
        with self._lock:
            self._stats.work_ahead += 1
            self._stats.work_ahead_tokens += evaluated
            self._stats.work_ahead_stopped += done is None
        log.debug("work-ahead for %s: %d prompt tokens evaluated", request.doc_key, evaluated)
        return evaluated

    def _prompt(
        self,
        model: LoadedModel,
        request: InlineRequest,
        model_prefix: str,
        chunks: list[ContextChunk],
        *,
        blank_line: bool,
    ) -> tuple[FimPrompt, str, str, bytes]:
        """The prompt for ``model_prefix`` (work-ahead builds the same one): (prompt, the
        prefix it ends with, the start of the cursor's line there, the bytes to heal)."""
        config = self.config
        tokenize = _tokenizer(model)
        # The model starts at the end of the line above when the prompt was cut there.
        line_start = model_prefix.rsplit("\n", 1)[-1] if model_prefix == request.prefix else ""
        # The cursor line after the middle token (agents/completion/fim_prompt): a keystroke
        # appends to the prompt, and the suffix, evaluated once per line, may be as long as a
        # blank line's (a blank line's prompt is the same up to the middle token).
        in_middle = config.typed_line == "middle"
        line_in_middle = in_middle and not blank_line and "\n" in model_prefix
        heal = b""
        if config.token_healing and line_start:
            llama = model.llama
            model_prefix, heal = split_for_healing(
                model_prefix,
                tokenize,
                lambda token: token_bytes(llama, token),
                last_token=line_in_middle,
            )
            line_start = model_prefix.rsplit("\n", 1)[-1]
        above, middle = model_prefix, ""
        if line_in_middle:
            above, line = model_prefix.rsplit("\n", 1)
            middle = "\n" + line
        long_suffix = blank_line or in_middle
        prompt = self._builder(model).build(
            tokenize,
            doc_key=request.doc_key,
            path=request.path,
            prefix=above,
            suffix=request.suffix,
            repo_name=request.repo_name,
            chunks=chunks,
            suffix_budget=config.blank_line_suffix_tokens if long_suffix else config.suffix_tokens,
            middle=middle,
        )
        return prompt, model_prefix, line_start, heal

    def _run_model(
        self,
        model: LoadedModel,
        request: InlineRequest,
        model_prefix: str,
        chunks: list[ContextChunk],
        mode: CompletionMode,
        cancel: threading.Event,
        *,
        blank_line: bool,
        finish: Callable[[str], str],
        draft_model: LoadedModel | None = None,
        pacer: BackgroundPacer | None = None,
    ) -> tuple[str, tuple[int, int, int], tuple[str, ...]]:
        """One prompt through the model: (raw text, (prompt tokens, reused, generated), other
        suggestions). ``finish``: raw text to suggestion, which tells alternatives apart.

        ``blank_line``: the cursor's line holds only indentation. What follows then decides
        which line goes here (on 171 HumanEval-FIM Python tasks: 50.3 % exact match with 96
        suffix tokens, 53.2 % with 256), and the request comes once per line, not per key."""
        config = self.config
        builder = self._builder(model)
        expect: list[int] = []  # the newline and indentation a cut prompt's answer starts with
        if blank_line and request.prefix.startswith(model_prefix + "\n"):
            llama = model.llama
            expect = expected_start(
                request.prefix[len(model_prefix) + 1 :],
                _tokenizer(model),
                lambda token: token_bytes(llama, token),
            )
        prompt, model_prefix, line_start, heal = self._prompt(
            model, request, model_prefix, chunks, blank_line=blank_line
        )
        # Built on the first cursor inside a word (once per model, under the model's lock).
        vocabulary = self._vocabulary(model) if heal else None
        try:
            decoded = _decode(
                model,
                self._kv(model.name),
                request.doc_key,
                prompt.tokens,
                prompt.context_tokens,
                builder.ids.stops,
                mode,
                config.max_tokens,
                config.multiline_max_lines,
                line_start,
                cancel,
                heal=heal,
                vocabulary=vocabulary,
                fences_after=None
                if request.language_id in PROSE_LANGUAGES
                else model_prefix.rsplit("\n", 1)[-1],
                draft=config.draft,
                draft_model=draft_model,
                planner=self._planner(model.name),
                max_predict_ms=config.max_predict_ms,
                kv_reuse_min_tokens=config.kv_reuse_min_tokens,
                alternatives=request.alternatives,
                finish=finish,
                pacer=pacer,
                expect=expect,
            )
        except Cancelled:  # stopped in the prompt or between tokens
            raise Cancelled() from None
        with self._lock:
            self._stats.ended_at_fence += decoded.fenced
            self._stats.drafted_tokens += decoded.drafted
            self._stats.accepted_drafts += decoded.accepted
            self._stats.expected_tokens += decoded.expected
            self._stats.expected_right += decoded.expected_right
            self._stats.timed_out += decoded.timed_out
        sizes = (len(prompt.tokens), decoded.reused, decoded.generated)
        return decoded.text, sizes, decoded.alternatives

    def _draft_model(self, model: LoadedModel, stack: contextlib.ExitStack) -> LoadedModel | None:
        """With agents.generator.draft "model": the draft model, held in ``stack`` beside the
        completion model ``model`` (held already), when it may draft for it: another, smaller
        catalogue model with the same tokenizer, loaded or fitting the memory budget beside the
        models loaded (a load never evicts one), and not busy. Else None: prompt-lookup drafts."""
        name = self.config.draft_model
        if self.config.draft != "model" or name == model.name:
            return None
        try:
            draft_spec = self.pool.spec(name)
        except ModelError:
            return self._no_draft(name, f"'{name}' is not in the catalogue")
        sizes = (draft_spec.size_bytes, model.spec.size_bytes)
        if draft_spec.fim is None or not 0 < sizes[0] < sizes[1]:
            return self._no_draft(name, f"'{name}' is not a smaller FIM model than '{model.name}'")
        if self._draft_pairs.get((model.name, name)) is False:
            return None
        if not self.pool.is_loaded(name):
            try:
                needed = self.pool.estimate(name)
            except ModelError as exc:  # not installed, damaged
                return self._no_draft(name, str(exc))
            stats = self.pool.stats()
            if stats["reserved_bytes"] + needed > stats["budget_bytes"]:
                return self._no_draft(
                    name, "loading it would unload another model (pool.memory_budget_mb)"
                )
        try:
            # Interactive: background work on it gives way. A short wait: busy, no draft.
            draft = stack.enter_context(self.pool.acquire(name, timeout=0.05, interactive=True))
        except ModelError as exc:
            log.debug("no draft model for this request: %s", exc)
            return None
        pair = (model.name, name)
        if pair not in self._draft_pairs:
            self._draft_pairs[pair] = same_vocabulary(model.llama, draft.llama)
            if not self._draft_pairs[pair]:
                return self._no_draft(name, f"its tokenizer differs from '{model.name}'s")
            log.info("drafting for %s with %s", model.name, name)
        return draft

    def _no_draft(self, name: str, why: str) -> LoadedModel | None:
        """Log ``why`` (once) and give no draft model."""
        if why not in self._draft_notes:
            self._draft_notes.add(why)
            log.info("no draft model (agents.generator.draft_model %s): %s", name, why)
        return None

    def forget(self, doc_key: str) -> None:
        self._sticky.forget(doc_key)
        for builder in self._builders.values():
            builder.forget(doc_key)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            s = self._stats
            return {
                "model": self.model_name,
                "requests": s.requests,
                "model_calls": s.model_calls,
                "cache_hits": s.cache_hits,
                "typed_through": s.typed_through,
                "cancelled": s.cancelled,
                "empty": s.empty,
                "model_seconds": round(s.model_seconds, 3),
                "prompt_tokens": s.prompt_tokens,
                "reused_tokens": s.reused_tokens,
                "generated_tokens": s.generated_tokens,
                "cache_entries": len(self.cache),
                "context_kept": self._sticky.kept,
                "asked_again": s.asked_again,
                "ended_at_fence": s.ended_at_fence,
                "drafted_tokens": s.drafted_tokens,
                "accepted_drafts": s.accepted_drafts,
                "expected_tokens": s.expected_tokens,
                "expected_right": s.expected_right,
                # per model: what each batch size costs, how often first guesses are right
                "draft_plans": {name: p.summary() for name, p in self._planners.items()},
                "timed_out": s.timed_out,
                "work_ahead": s.work_ahead,
                "work_ahead_tokens": s.work_ahead_tokens,
                "work_ahead_stopped": s.work_ahead_stopped,
                "alternatives": s.alternatives,
                "speculations": s.speculations,
                "speculation_seconds": round(s.speculation_seconds, 3),
                "speculation_tokens": s.speculation_tokens,
                "speculations_stopped": s.speculations_stopped,
                "joined_speculations": s.joined_speculations,
                # where the last model call's extra context came from: [source, path] pairs
                "last_context": [list(pair) for pair in self._last_context],
                # the completion model's saved KV states (identifier keys only: clients
                # mangle others)
                "kv_states": self._kv_states[self.model_name].stats_dict()
                if self.model_name in self._kv_states
                else KvStates(0).stats_dict(),
            }

    def _planner(self, model_name: str) -> DraftPlanner:
        return self._per_model(self._planners, model_name, lambda: DraftPlanner(MAX_DRAFT))

    def _kv(self, model_name: str) -> KvStates:
        return self._per_model(
            self._kv_states, model_name, lambda: KvStates(self.config.kv_state_mb << 20)
        )

    def _per_model(self, table: dict[str, _T], model_name: str, make: Callable[[], _T]) -> _T:
        """``table``'s entry for the model, made on first use."""
        with self._lock:  # stats() reads the maps from another thread
            entry = table.get(model_name)
            if entry is None:
                entry = table[model_name] = make()
            return entry

    def _vocabulary(self, model: LoadedModel) -> Vocabulary:
        """The model's token bytes (built once per model: ~0.6 s for 152k tokens)."""
        vocabulary = self._vocabularies.get(model.name)
        if vocabulary is None:
            llama = model.llama
            vocabulary = Vocabulary(vocabulary_bytes(llama))
            self._vocabularies[model.name] = vocabulary
        return vocabulary

    def _builder(self, model: LoadedModel) -> FimPromptBuilder:
        builder = self._builders.get(model.name)
        if builder is None:
            fim = model.spec.fim
            if fim is None:
                raise ValueError(
                    f"model '{model.name}' has no FIM tokens in the catalogue: it cannot "
                    "complete code; choose a FIM model in agents.generator.model"
                )
            llama = model.llama

            def special_id(text: str) -> int:
                ids = llama.tokenize(text.encode(), add_bos=False, special=True)
                if len(ids) != 1:
                    raise ValueError(f"model '{model.name}' does not know the token {text!r}")
                return int(ids[0])

            builder = FimPromptBuilder(
                FimSpecialIds.from_tokens(fim, special_id),
                prefix_budget=self.config.prefix_tokens,
                suffix_budget=self.config.suffix_tokens,
                context_budget=self.config.context_tokens,
            )
            self._builders[model.name] = builder
        return builder


def _tokenizer(model: LoadedModel) -> Any:
    llama = model.llama

    def tokenize(text: str) -> list[int]:
        if not text:
            return []
        return list(llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    return tokenize


def _fit_context(llama: Any, tokens: list[int], max_tokens: int) -> list[int]:
    """The prompt cut to leave room for the answer, keeping its end (the FIM part)."""
    room = llama.n_ctx() - max_tokens - 1
    return tokens[-room:] if len(tokens) > room else tokens


class Decoded(NamedTuple):
    text: str
    reused: int  # prompt tokens found in the KV cache
    generated: int
    fenced: bool = False  # a markdown fence ended it (agents.fences)
    drafted: int = 0  # guessed tokens checked (agents.generator.draft)
    accepted: int = 0  # of which right: each spared one evaluation
    timed_out: bool = False  # agents.generator.max_predict_ms cut it at a line end
    tokens: tuple[int, ...] = ()  # the tokens picked, healed ones included
    alternatives: tuple[str, ...] = ()  # finished texts of other first tokens, distinct
    expected: int = 0  # tokens guessed with the prompt (``expect``)
    expected_right: int = 0  # of which the model picked


class _Greedy:
    """What greedy decoding does with each token picked: the stop rules and the output.

    The plain loop and the drafting loop both feed every token through here, one by one, so
    they stop at the same token and give the same text."""

    def __init__(
        self,
        lib: Any,
        llama: Any,
        stops: frozenset[int],
        mode: CompletionMode,
        max_lines: int,
        line_start: str,
        *,
        budget: int,
        pending: bytes,
        vocabulary: Vocabulary | None,
        fences_after: str | None,
        max_predict_ms: int,
    ) -> None:
        self._lib = lib
        self._llama = llama
        self._vocab = lib.llama_model_get_vocab(llama.model)
        self._n_vocab = int(llama.n_vocab())
        self._stops = stops
        self._mode = mode
        self._max_lines = max_lines
        self._line_start = line_start
        self._budget = budget
        self._vocabulary = vocabulary
        self._fences_after = fences_after.encode("utf-8") if fences_after is not None else None
        self._deadline = time.perf_counter() + max_predict_ms / 1000 if max_predict_ms > 0 else None
        self.pending = pending if vocabulary is not None else b""
        self.out = bytearray()
        self.tokens: list[int] = []
        self.generated = 0
        self.fenced = False
        self.timed_out = False
        self.gave_up = False  # no token fits the healed bytes

    @property
    def room(self) -> int:
        """Tokens it may still take."""
        return self._budget - self.generated

    def step(self, logits: np.ndarray[Any, Any] | None = None) -> int | None:
        """Pick from ``logits`` (default: those of the last token evaluated): the token to
        evaluate next, or None when the answer is complete."""
        if logits is None:
            logits = np.ctypeslib.as_array(
                self._lib.llama_get_logits_ith(self._llama.ctx, -1), shape=(self._n_vocab,)
            )
        best = self.candidates(logits, 1)
        if not best:  # no token fits the healed bytes (cannot happen with byte tokens)
            self.gave_up = True
            return None
        return self.pick(best[0])

    def candidates(self, logits: np.ndarray[Any, Any], count: int) -> list[int]:
        """The ``count`` tokens with the highest ``logits``, best first; while healed bytes are
        pending, among the tokens that fit them only."""
        fitting = None
        if self.pending and self._vocabulary is not None:
            fitting = self._vocabulary.allowed(self.pending)
            logits = logits[fitting]
        count = min(count, len(logits))
        if count <= 0:
            return []
        if count == 1:  # argmax: the first of equal ones, as greedy decoding always picked
            best = np.array([np.argmax(logits)])
        else:
            top = np.argpartition(-logits, count - 1)[:count]
            best = top[np.argsort(-logits[top], kind="stable")]
        return [int(fitting[i]) if fitting is not None else int(i) for i in best]

    def pick(self, token: int) -> int | None:
        """``token`` chosen for the next position (among ``candidates``): as ``step``."""
        if self.pending and self._vocabulary is not None:
            piece = self._vocabulary.piece(token)
            self.pending = self.pending[len(piece) :] if self.pending.startswith(piece) else b""
            return self._append(token, piece)
        return self.take(token)

    def take(self, token: int) -> int | None:
        """The argmax ``token``, picked with nothing pending: as ``step``."""
        if token in self._stops or self._lib.llama_vocab_is_eog(self._vocab, token):
            return None
        piece = token_bytes(self._llama, token)
        if self._fences_after is not None:
            line_so_far = (self._fences_after + self.out).rsplit(b"\n", 1)[-1]
            if opens_fence(line_so_far, piece):
                self.fenced = True
                return None
        return self._append(token, piece)

    def _append(self, token: int, piece: bytes) -> int | None:
        self.out += piece
        self.tokens.append(token)
        self.generated += 1
        if self.pending:
            return token if self.room > 0 else None
        text = self.out.decode("utf-8", errors="ignore")
        if should_stop(text, self._mode, self._max_lines, self._line_start):
            return None
        if self._deadline is not None and time.perf_counter() >= self._deadline:
            # Out of time: end at the last line break after some text. Before the first one,
            # go on: a line in progress is worth finishing, half a line is not.
            end = self.out.rfind(b"\n")
            if end > 0 and self.out[:end].strip():
                del self.out[end:]
                self.timed_out = True
                return None
        return token if self.room > 0 else None

    def text(self, heal: bytes) -> str:
        text = self.out.decode("utf-8", errors="ignore")
        healed = heal.decode("utf-8", errors="ignore")
        return text[len(healed) :] if text.startswith(healed) else ""


def _decode(
    model: LoadedModel,
    kv_states: KvStates,
    doc_key: str,
    tokens: list[int],
    context_tokens: int,
    stops: frozenset[int],
    mode: CompletionMode,
    max_tokens: int,
    max_lines: int,
    line_start: str,
    cancel: threading.Event,
    *,
    heal: bytes = b"",
    vocabulary: Vocabulary | None = None,
    fences_after: str | None = None,
    draft: str = "off",
    draft_model: LoadedModel | None = None,
    planner: DraftPlanner | None = None,
    max_predict_ms: int = 0,
    kv_reuse_min_tokens: int = 0,
    alternatives: int = 1,
    finish: Callable[[str], str] | None = None,
    pacer: BackgroundPacer | None = None,
    expect: Sequence[int] = (),
) -> Decoded:
    """Greedy decoding with early stops.

    ``heal``: bytes the output must start with (agents.token_healing), chosen among the tokens
    that fit them; the text returned is what follows them. ``fences_after``: in code, the
    prompt's last line; a token that opens a markdown fence at a line start then ends the answer
    (agents.fences). ``draft``: "prompt-lookup" checks guessed tokens in batches (same text,
    agents.completion.draft); "model": the guesses of ``draft_model`` (a held model with the
    same tokenizer, agents.completion.draft_model), or prompt-lookup's without it; ``planner``:
    how many prompt-lookup guesses to check (all of them without one).
    ``max_predict_ms``: past this much time after the prompt, end at
    the last line break that follows some text (0: no limit). ``kv_reuse_min_tokens``: cached
    runs kept across a deletion by shifting them (models.kv_reuse; 0: off).

    ``alternatives`` above 1: after the greedy answer, the next best first tokens (that fit the
    healed bytes too) are decoded the same way, each from the logits the prompt left and with
    its own ``max_predict_ms``, until that many distinct non-empty texts after ``finish`` (the
    caller's post-processing). The prompt is evaluated once: each branch's tokens are dropped
    from the KV cache before the next. No alternatives to an empty greedy text.

    ``expect``: tokens the answer likely starts with (agents.completion.blank_line), evaluated
    in the prompt's batch and kept as far as the model picks them (none while healing)."""
    from memlsp.models.runtime import llama_cpp

    lib = llama_cpp()
    llama = model.llama
    tokens = _fit_context(llama, tokens, max_tokens)
    restored = kv_states.switch_to(llama, doc_key, tokens)  # a file switched back to starts warm
    if heal and vocabulary is not None:
        expect = ()  # the first tokens are chosen among those that fit the healed bytes
    # Within the answer's budget; _fit_context left the context room for all of it.
    expect = list(expect[: max(0, max_tokens - 1)])
    reused = prefill(
        llama,
        [*tokens, *expect],
        cancel,
        logits_for=1 + len(expect),
        reuse_min_chunk=kv_reuse_min_tokens,
        pacer=pacer,
    )
    log.debug(
        "prompt of %s: %d tokens (%d context), %s, %d from a saved state",
        doc_key,
        len(tokens),
        context_tokens,
        "cancelled in it" if reused is None else f"{reused} reused",
        restored,
    )
    if reused is None:
        raise Cancelled()
    # After the prompt, then after each expected token.
    rows = [_last_logits(lib, llama, row - len(expect) - 1) for row in range(len(expect) + 1)]
    # The prompt's last logits, for the alternatives' first tokens: decoding overwrites them.
    first_logits = rows[0].copy() if alternatives > 1 else None

    def branch() -> _Greedy:  # each branch has its own budget and time cap
        pending = heal if vocabulary is not None else b""
        return _Greedy(
            lib,
            llama,
            stops,
            mode,
            max_lines,
            line_start,
            budget=max_tokens + len(pending),
            pending=pending,
            vocabulary=vocabulary,
            fences_after=fences_after,
            max_predict_ms=max_predict_ms,
        )

    def lookup() -> PromptLookup | ModelDraft | None:
        if draft == "model" and draft_model is not None:
            return ModelDraft(lib, draft_model.llama, tokens, cancel, stops=stops)
        return PromptLookup(tokens, capacity=max_tokens + len(heal)) if draft != "off" else None

    greedy = branch()
    picked_next, expected_right = _take_expected(greedy, rows, expect)
    if expected_right < len(expect):  # the expected tokens not picked go
        _keep_tokens(lib, llama, len(tokens) + expected_right)
    follower = lookup()
    if follower is not None:
        for guessed in expect[:expected_right]:
            follower.append(guessed)
    others: tuple[str, ...] = ()
    with BatchVerifier(lib, llama, MAX_DRAFT + 1) as verifier:
        drafted, accepted = _follow(
            llama, greedy, picked_next, follower, verifier, cancel, pacer, planner
        )
        generated = greedy.generated
        finished = finish or (lambda raw: raw)
        best = "" if first_logits is None or greedy.gave_up else finished(greedy.text(heal))
        # Branch at the first token with text: a blank lead ("\n    " on a blank line) is
        # shared, so that alternatives differ in what they write, not in how it is indented.
        lead = _text_starts_at(llama, greedy.tokens) if best else None
        if first_logits is not None and lead is not None:
            seen = {best}
            start = len(tokens) + lead  # the prompt and the lead stay in the KV cache
            logits = first_logits
            if lead:  # the logits after the lead: its last token evaluated again
                _keep_tokens(lib, llama, start - 1)
                llama.eval(greedy.tokens[lead - 1 : lead])
                logits = _last_logits(lib, llama).copy()
            probe = branch()
            _replay(probe, greedy.tokens[:lead], None)
            tried = 0
            picked: list[str] = []
            for first in probe.candidates(logits, 1 + MAX_ALTERNATIVE_TRIES):
                if len(picked) == alternatives - 1 or tried == 2 * (alternatives - 1):
                    break
                # The greedy one, and blank pieces: mostly the same text indented otherwise.
                if first == greedy.tokens[lead] or not token_bytes(llama, first).strip():
                    continue
                _keep_tokens(lib, llama, start)
                other, other_lookup = branch(), lookup()
                tried += 1
                if not _replay(other, greedy.tokens[:lead], other_lookup):
                    break
                token = other.pick(first)
                counts = _follow(
                    llama, other, token, other_lookup, verifier, cancel, planner=planner
                )
                drafted += counts[0]
                accepted += counts[1]
                generated += other.generated - lead
                text = "" if other.gave_up else finished(other.text(heal))
                if text and text not in seen:
                    seen.add(text)
                    picked.append(text)
            others = tuple(picked)
    if greedy.gave_up:
        return Decoded("", reused, generated)
    return Decoded(
        greedy.text(heal),
        reused,
        generated,
        greedy.fenced,
        drafted,
        accepted,
        greedy.timed_out,
        tuple(greedy.tokens),
        others,
        len(expect),
        expected_right,
    )


# First tokens looked at for alternatives; at most twice as many branches as wanted are
# decoded, since some give a text another already gave.
MAX_ALTERNATIVE_TRIES = 8


def _last_logits(lib: Any, llama: Any, row: int = -1) -> np.ndarray[Any, np.dtype[np.float32]]:
    """The logits after the last token evaluated (``row`` -2: the one before, in the same
    batch; a view: llama.cpp reuses the buffer)."""
    return np.ctypeslib.as_array(
        lib.llama_get_logits_ith(llama.ctx, row), shape=(int(llama.n_vocab()),)
    )


def _take_expected(
    greedy: _Greedy, rows: Sequence[np.ndarray[Any, Any]], expect: Sequence[int]
) -> tuple[int | None, int]:
    """Greedy's picks from the logits after the prompt and after each expected token, as far as
    they are the expected ones: (the next token to evaluate, or None when done; how many
    expected tokens were picked)."""
    token = greedy.step(rows[0])
    right = 0
    for guess in expect:
        if token != guess:
            break
        right += 1
        token = greedy.step(rows[right])
    return token, right


def _text_starts_at(llama: Any, tokens: Sequence[int]) -> int | None:
    """The index of the first token with more than whitespace (None: all blank)."""
    for i, token in enumerate(tokens):
        if token_bytes(llama, token).strip():
            return i
    return None


def _keep_tokens(lib: Any, llama: Any, count: int) -> None:
    """Drop what follows the first ``count`` tokens from the KV cache (a decoded branch)."""
    lib.llama_memory_seq_rm(lib.llama_get_memory(llama.ctx), -1, count, -1)
    llama.n_tokens = count


def _replay(
    branch: _Greedy, tokens: Sequence[int], lookup: PromptLookup | ModelDraft | None
) -> bool:
    """Feed a branch the tokens it shares with the greedy answer (in the KV cache already);
    False if they end it, which the greedy answer's going on past them rules out."""
    for token in tokens:
        if lookup is not None:
            lookup.append(token)
        if branch.pick(token) is None:
            return False
    return True


def _follow(
    llama: Any,
    greedy: _Greedy,
    token: int | None,
    lookup: PromptLookup | ModelDraft | None,
    verifier: BatchVerifier,
    cancel: threading.Event,
    pacer: BackgroundPacer | None = None,
    planner: DraftPlanner | None = None,
) -> tuple[int, int]:
    """Greedy decoding from ``token`` (picked, not evaluated yet) until ``greedy`` stops:
    (tokens drafted, of which right). ``pacer``: background work, one step per evaluation
    (raises Preempted when a request wants the model)."""
    drafted = accepted = 0
    while token is not None:
        with pacer.step() if pacer else contextlib.nullcontext():
            if cancel.is_set():  # also set while the pacer waited
                raise Cancelled()
            token, counts = _follow_step(
                llama, greedy, token, lookup, verifier, planner, explore=pacer is not None
            )
        drafted += counts[0]
        accepted += counts[1]
    return drafted, accepted


def _follow_step(
    llama: Any,
    greedy: _Greedy,
    token: int,
    lookup: PromptLookup | ModelDraft | None,
    verifier: BatchVerifier,
    planner: DraftPlanner | None,
    *,
    explore: bool = False,
) -> tuple[int | None, tuple[int, int]]:
    """One evaluation of ``_follow``: ``token`` alone, or with the drafts that follow it.
    Returns the next token (None: done) and (tokens drafted, of which right). ``explore``:
    background decoding, where the planner may try what it has not measured."""
    guesses: list[int] = []
    matched = 0  # prompt-lookup's run length, for the planner
    if lookup is not None:
        lookup.append(token)
        # Not while healing: those tokens are chosen among the fitting ones only.
        if not greedy.pending:
            guesses = lookup.propose(greedy.room - 1)
        if guesses and planner is not None and isinstance(lookup, PromptLookup):
            matched = lookup.matched
            guesses = guesses[: planner.count(matched, len(guesses), explore=explore)]
    started = time.perf_counter()
    if not guesses:
        llama.eval([token])
        if planner is not None:
            planner.timed(1, time.perf_counter() - started)
        return greedy.step(), (0, 0)
    picks = verifier.argmaxes([token, *guesses])
    if planner is not None:
        planner.timed(1 + len(guesses), time.perf_counter() - started)
    right = 0
    next_token: int | None = None
    for pick, guess in zip(picks, [*guesses, None], strict=True):
        next_token = greedy.take(pick)
        if next_token is None or pick != guess:
            break
        right += 1
        lookup.append(pick)  # type: ignore[union-attr]  # guesses came from it
    # ``next_token``, when not None, is a wrong guess's correction: not evaluated yet.
    verifier.keep(1 + right)
    if planner is not None and matched:
        planner.checked(matched, len(guesses), right)
    return next_token, (len(guesses), right)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def should_stop(text: str, mode: CompletionMode, max_lines: int, line_start: str) -> bool:
    """Stop generating once the rest would be trimmed anyway (post-processing decides)."""
    if mode == "single":
        return "\n" in text.lstrip("\n") or (text.startswith("\n") and line_start.strip() != "")
    lines = (line_start + text).split("\n")
    complete = lines[:-1]  # the last line may still grow
    if len(complete) > max_lines:
        return True
    if text.endswith("\n\n\n"):
        return True
    body = [line for line in complete if line.strip()]
    growing = lines[-1]
    # A line that leaves the block is cut whatever follows on it (postprocess): its
    # indentation is known from its first character, so stop there rather than at its end
    # (llama-server's n_indent does the same; 2-4 tokens a multi-line answer). A closing
    # bracket may be kept with what follows it: that line is waited for.
    if growing.strip() and growing.lstrip()[0] not in CLOSERS:
        body.append(growing)
    if len(body) >= 2:
        base = _indent(body[0])
        return any(_indent(line) < base for line in body[1:])
    return False
