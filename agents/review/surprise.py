"""Findings from surprise: the FIM code model's own token probabilities, no chat generation.

A wrong operator, an off-by-one, the wrong variable: one-token slips that make the written code
far less likely, to a code model, than a confident alternative. Two passes over the saved file
with the FIM model (Python only; other languages give no findings):

1. **Left to right**, one evaluation of the file in batches, logits at the positions that
   matter: per model token, ``gap`` = log p(best token) - log p(written token). Only tokens the
   model can know count (``token_scores``: not string, comment or number contents, not names
   the file has not used yet). A line's score is its largest gap; the few highest lines in the
   reviewed rows become candidates.
2. **Fill in the middle**, per candidate: the text before the line as prefix, the text after it
   (a window of whole lines) as suffix, the line as the middle. The written line is scored
   under that prompt and the model's own line is decoded greedily (the written line's tokens
   serve as drafts: a one-token change costs about one extra batch). ``score`` = log p(proposal)
   - log p(written), both up to and including the line's end. The prefix is exactly the first
   pass's evaluated text, so its KV cache is reused; candidates go bottom-up, so each prompt's
   prefix is a prefix of the one before.

A candidate becomes a finding when the proposal differs from the written line (beyond white
space), the file with the line replaced still parses, and the score reaches the threshold. The
quick fix (``replacement``) puts the proposed line over the written one.

Costs (0.5B, 2 cores): about the file's tokens once (~120 tokens/s: a 150-line file ~8.6 s),
plus per candidate its suffix window and a few single-token steps (~1.5 s). A document's last
first pass is kept (its gaps, and its KV state saved out of the context): the next review of it
evaluates only from the first token that changed (that file saved again after an edit two
thirds down: 2.9 s instead of 8.5), and a file opened can be scored ahead of its first save
(``score_ahead``). Import statements are never scored. The model is shared with completions:
each batch is a background step (``priority``) that gives the model up when a completion wants
it, and the review resumes where it stopped.
"""

from __future__ import annotations

import ast
import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from memlsp.agents.review.quality import ModelStage, StageInput
from memlsp.agents.review.token_scores import (
    changed_lexemes,
    code_lexemes,
    differing_span,
    line_starts,
    log_softmax_at,
    python_unknowable,
    token_spans,
)
from memlsp.agents.review.types import (
    LLM_SOURCE,
    ReviewCancelled,
    ReviewFinding,
    ReviewRequest,
    check_cancelled,
)
from memlsp.config import QualityConfig
from memlsp.models import ModelPool
from memlsp.models.batch_decode import BatchDecoder
from memlsp.models.kv_states import KvStates, common_prefix, restore, shared_prefix, snapshot
from memlsp.models.prefill import BACKGROUND_BATCH
from memlsp.models.priority import MAX_PREEMPTIONS, BackgroundPacer, Preempted
from memlsp.models.token_pieces import token_bytes

__all__ = ["SURPRISE_STAGE", "Candidate", "SurpriseReviewer", "surprise_stages"]

log = logging.getLogger(__name__)

CODE = "unusual-code"
# Lexemes a proposal may change and still count as a small edit (bench_surprise: the bugs'
# proposals mostly change 1-4; the clean files' false findings were mostly longer rewrites).
SMALL_EDIT = 4
SURPRISE_STAGE = "surprise"
# A document's last first pass is kept (its KV state, ~12 KB a token on the 0.5B, and its
# gaps), so that the next review of it evaluates only from the first token that changed: a
# save after an edit near the end of a 150-line file re-scores the end, not the whole file.
SAVED_PASSES_BYTES = 96 << 20
SAVED_PASSES = 16
LANGUAGES = frozenset({"python"})


@dataclass
class Candidate:
    """A line the first pass found surprising, with what the second pass made of it."""

    line: int  # 0-based
    gap: float  # first pass: the line's largest log-probability gap
    written: str  # the line as saved (without its newline)
    proposal: str | None = None  # the model's line; None: not scored (no token boundary)
    written_logp: float = 0.0  # under the FIM prompt, up to the line's end
    proposal_logp: float = 0.0
    parses: bool = False  # the file with the proposal in place parses
    knowable: bool = True  # the change touches code the model can know (not only new names)
    same_code: bool = False  # the proposal only restyles: the file's syntax tree is unchanged
    edit: int = 0  # lexemes of code the proposal changes (token_scores.changed_lexemes)
    cut_short: bool = False  # a rewrite below its threshold: decoding stopped (no finding)

    @property
    def delta(self) -> float:
        return self.proposal_logp - self.written_logp

    @property
    def differs(self) -> bool:
        return self.proposal is not None and "".join(self.proposal.split()) != "".join(
            self.written.split()
        )

    def score(self) -> float:
        """Both passes must agree (bench_surprise: min beat delta, gap and their sum)."""
        return min(self.delta, self.gap)

    def finds(self, threshold: float, rewrite_threshold: float) -> bool:
        """A finding: a real change the model can know that scores its threshold: a small
        edit (at most SMALL_EDIT lexemes: an operator, a name, an argument order) the lower
        one, a rewrite the higher one (bench_surprise: rewrites were most false findings)."""
        if self.cut_short or not (self.differs and self.parses and self.knowable):
            return False
        if self.same_code:
            return False
        return self.score() >= (threshold if self.edit <= SMALL_EDIT else rewrite_threshold)


@dataclass
class _Job:
    """A review's progress, kept across preemptions."""

    text: str
    lines: list[str]
    tokens: list[int]  # [fim_prefix] + the file's tokens (the evaluated window)
    token_line: np.ndarray  # per entry of tokens: its line (-1: none)
    need: np.ndarray  # per position p: its logits are wanted (tokens[p + 1] is scored)
    line_token: dict[int, int]  # line -> index in tokens of its first code token
    line_cut: dict[int, int]  # line -> column where that token starts (in the indentation)
    unknowable: np.ndarray  # per character of the text (token_scores.python_unknowable)
    gaps: np.ndarray  # per position p: gap of tokens[p + 1]
    scored_to: int = 0  # positions before this have their logits read
    candidates: list[Candidate] = field(default_factory=list)
    next_candidate: int = 0
    first: int = 0  # where the window starts in the file's tokens
    kept: bool = False  # the first pass was saved for the document's next review


@dataclass
class _Pass:
    """A document's last first pass: what the next review of it can start from."""

    first: int  # where its window started in the file's tokens
    tokens: np.ndarray  # the evaluated window
    gaps: np.ndarray  # per position: its gap, where ``scored``
    scored: np.ndarray


@dataclass
class _Stats:
    reviews: int = 0
    skipped_language: int = 0
    skipped_unparsable: int = 0
    candidates: int = 0
    findings: int = 0
    no_boundary: int = 0
    preempted: int = 0
    cancelled: int = 0
    evaluated_tokens: int = 0
    generated_tokens: int = 0
    reused_tokens: int = 0  # first-pass positions taken from the document's last pass
    ahead: int = 0  # first passes scored ahead of a save (score_ahead)
    ahead_seconds: float = 0.0
    seconds: float = 0.0


class SurpriseReviewer:
    """Findings where the written code is far less likely than the FIM model's own line."""

    def __init__(
        self,
        pool: ModelPool,
        model: str,
        threshold: float,
        max_findings: int,
        *,
        rewrite_threshold: float | None = None,
        # The second pass costs ~1.5 s a line on 2 cores; beyond the 3 highest-gap lines of a
        # review none ever scored a finding in bench_surprise's full dump.
        candidates: int = 3,
        min_gap: float = 1.0,
        batch: int = 128,
        suffix_tokens: int = 160,
        max_new_tokens: int = 40,
        prefix_window: int = 768,
    ) -> None:
        self.pool = pool
        self.model = model
        self.threshold = threshold
        self.rewrite_threshold = threshold if rewrite_threshold is None else rewrite_threshold
        self.max_findings = max_findings
        self.n_candidates = candidates
        self.min_gap = min_gap
        # A finding's score is min(FIM delta, first-pass gap): a line whose gap is below the
        # threshold can never reach it, so the second pass (the costly part) skips it.
        self.floor = max(min_gap, min(threshold, self.rewrite_threshold))
        self.batch = batch
        self.suffix_tokens = suffix_tokens
        self.max_new_tokens = max_new_tokens
        self.prefix_window = prefix_window
        self._stats = _Stats()
        self._lock = threading.Lock()
        self._passes: OrderedDict[str, _Pass] = OrderedDict()
        self._states = KvStates(SAVED_PASSES_BYTES)
        # The model's FIM and stop token ids (read under the model's lock, before each review).
        self._fim_ids: dict[str, int] = {}
        self._stop_ids: frozenset[int] = frozenset()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            s = self._stats
            out = dict(vars(s))
        out["seconds"] = round(out["seconds"], 3)
        out["ahead_seconds"] = round(out["ahead_seconds"], 3)
        return out

    # -- public ------------------------------------------------------------------------------

    def review(
        self,
        text: str,
        language_id: str,
        rows: Collection[int] | None,
        cancel: threading.Event,
        key: str | None = None,
    ) -> list[ReviewFinding]:
        """Findings on ``rows`` (0-based; None: every line) of the saved ``text``, best first,
        at most ``max_findings``, each scoring its threshold (``Candidate.finds``). ``key``:
        the document's, to start from its last review (what did not change is not evaluated
        again)."""
        scored = self.candidates(text, language_id, rows, cancel, key)
        kept = [c for c in scored if c.finds(self.threshold, self.rewrite_threshold)]
        kept.sort(key=lambda c: -c.score())
        findings = [_finding(c) for c in kept[: self.max_findings]]
        with self._lock:
            self._stats.findings += len(findings)
        return findings

    def candidates(
        self,
        text: str,
        language_id: str,
        rows: Collection[int] | None,
        cancel: threading.Event,
        key: str | None = None,
    ) -> list[Candidate]:
        """Every candidate line of both passes, scored, before any threshold (calibration)."""
        with self._lock:
            self._stats.reviews += 1
        if language_id not in LANGUAGES:
            with self._lock:
                self._stats.skipped_language += 1
            return []
        try:
            ast.parse(text)
        except (SyntaxError, ValueError):
            with self._lock:
                self._stats.skipped_unparsable += 1
            return []
        started = time.monotonic()
        try:
            job = self._run(text, rows, cancel, key)
        except ReviewCancelled:
            with self._lock:
                self._stats.cancelled += 1
            raise
        finally:
            with self._lock:
                self._stats.seconds += time.monotonic() - started
        with self._lock:
            self._stats.candidates += len(job.candidates)
        return job.candidates

    def score_ahead(self, text: str, language_id: str, cancel: threading.Event, key: str) -> bool:
        """The first pass over the whole of ``text`` (the document as opened), kept for its
        next review, at background priority: it stops, keeping what it scored, when ``cancel``
        is set or a completion wants the model. True when it ran to the end."""
        if language_id not in LANGUAGES:
            return False
        try:
            ast.parse(text)
        except (SyntaxError, ValueError):
            return False
        started = time.monotonic()
        try:
            self._run(text, None, cancel, key, second_pass=False, ahead=True)
            done = True
        except (ReviewCancelled, Preempted):
            done = False
        with self._lock:
            self._stats.ahead += 1
            self._stats.ahead_seconds += time.monotonic() - started
        return done

    # -- the model work ----------------------------------------------------------------------

    def _run(
        self,
        text: str,
        rows: Collection[int] | None,
        cancel: threading.Event,
        key: str | None,
        *,
        second_pass: bool = True,
        ahead: bool = False,
    ) -> _Job:
        """Both passes; a background call that gives the model up to completions that want it
        and resumes after them (at most ``MAX_PREEMPTIONS`` times)."""
        priority = self.pool.priority
        job: _Job | None = None
        preempted = 0
        while True:
            with self.pool.acquire(self.model) as model, contextlib.ExitStack() as leave:
                check_cancelled(cancel)
                llama = model.llama
                if ahead:  # work ahead leaves the cache as it found it (a completion's prompt)
                    found = snapshot(llama)
                    if found is not None:
                        leave.callback(restore, llama, found)
                if job is None:
                    job = self._prepare(llama, model.spec, text, rows, key)
                    if key is not None:
                        self._start_from_last_pass(llama, job, key)
                pacer = priority.background(
                    model.name, cancel, preemptible=preempted < MAX_PREEMPTIONS, llama=llama
                )
                from memlsp.models.runtime import llama_cpp

                try:
                    # Work ahead runs while the user types: a request waits for its batch.
                    batch = min(self.batch, BACKGROUND_BATCH) if ahead else self.batch
                    with BatchDecoder(llama_cpp(), llama, batch) as decoder:
                        try:
                            self._first_pass(job, decoder, pacer, cancel)
                        except (ReviewCancelled, Preempted):
                            # Work ahead keeps what it scored; a review resumes it itself.
                            if ahead and key is not None:
                                self._keep_pass(llama, job, key)
                            raise
                        if key is not None and not job.kept:
                            self._keep_pass(llama, job, key)
                        if second_pass:
                            self._second_pass(job, decoder, pacer, cancel)
                    return job
                except Preempted:
                    if ahead:
                        raise
                    preempted += 1
                    with self._lock:
                        self._stats.preempted += 1
            priority.wait_unwanted(self.model, cancel)
            check_cancelled(cancel)

    def _prepare(
        self, llama: Any, spec: Any, text: str, rows: Collection[int] | None, key: str | None
    ) -> _Job:
        fim = spec.fim
        if fim is None:
            raise ValueError(f"model '{self.model}' has no FIM tokens")
        self._fim_ids = {
            name: _special_id(llama, getattr(fim, name)) for name in ("prefix", "suffix", "middle")
        }
        self._stop_ids = frozenset(
            {int(llama.token_eos()), *(_special_id(llama, getattr(fim, n)) for n in ("pad",))}
            | set(self._fim_ids.values())
        )
        lines = text.split("\n")
        wanted = set(range(len(lines))) if rows is None else set(rows)
        wanted -= _import_rows(text)
        starts = line_starts(text)
        body = _tokenize(llama, text)
        spans = token_spans(text, body, lambda t: _piece(llama, t))
        unknowable = python_unknowable(text)
        code_at = spans.first_code
        line_of_char = np.searchsorted(np.asarray(starts), np.arange(len(text) + 1), "right") - 1
        token_line = np.where(code_at >= 0, line_of_char[np.maximum(code_at, 0)], -1)
        scored = (code_at >= 0) & ~unknowable[np.clip(code_at, 0, max(len(text) - 1, 0))]
        scored &= np.isin(token_line, list(wanted))
        # Line starts that are token boundaries (every line that does not follow a blank one,
        # with Qwen's pre-tokenizer): where a FIM prefix can end on the first pass's tokens.
        # Where a line's FIM prefix ends: before the token holding its first code character,
        # when that token starts within the line's indentation (it carries the last space of
        # the indentation with Qwen's pre-tokenizer): the model then writes the line's code at
        # the written indentation, tokenized as the whole file is.
        line_token: dict[int, int] = {}
        line_cut: dict[int, int] = {}
        for i in np.flatnonzero(code_at >= 0):
            row = int(token_line[i])
            if row not in line_token and starts[row] <= int(spans.start[i]) <= int(code_at[i]):
                line_token[row] = int(i) + 1  # +1: the [fim_prefix] token
                line_cut[row] = int(spans.start[i]) - starts[row]
        # The window: everything up to the last scored token, cut at a line start to fit.
        room = int(llama.n_ctx()) - self.suffix_tokens - self.max_new_tokens - 96
        last = int(np.flatnonzero(scored)[-1]) + 1 if scored.any() else 0
        # ...and no further back than ``prefix_window`` tokens before the first scored token:
        # a save that changed one function of a long file scores it with the code just above
        # it, not the whole file again (the nearby code is what the model's guesses rest on).
        first_scored = int(np.flatnonzero(scored)[0]) if scored.any() else 0
        must, may = last - room, first_scored - self.prefix_window
        first = 0
        if must > 0 or may > 0:
            boundary = {int(s): i for i, s in enumerate(spans.start)}
            cuts = [boundary[starts[r]] for r in range(len(lines)) if starts[r] in boundary]
            if must > 0:
                first = min((i for i in cuts if i >= must), default=last)
            if may > first:
                first = min((i for i in cuts if may <= i <= first_scored), default=first)
            # The document's last pass started earlier within reach: start there too, so that
            # its evaluated tokens (kept) serve this one.
            with self._lock:
                last_pass = self._passes.get(key) if key is not None else None
            if (
                last_pass is not None
                and must <= last_pass.first < first
                and last_pass.first in cuts
            ):
                first = last_pass.first
        tokens = [self._fim_ids["prefix"], *body[first:last]]
        token_line = np.concatenate([[-1], token_line[first:last]])
        scored = np.concatenate([[False], scored[first:last]])
        need = np.zeros(len(tokens), dtype=bool)
        need[:-1] = scored[1:]
        line_token = {row: i - first for row, i in line_token.items() if i - first >= 1}
        return _Job(
            text,
            lines,
            tokens,
            token_line,
            need,
            line_token,
            line_cut,
            unknowable,
            np.zeros(len(tokens)),
            first=first,
        )

    def _start_from_last_pass(self, llama: Any, job: _Job, key: str) -> None:
        """Take from the document's last first pass what this one shares with it: the gaps of
        the positions both score, and (restored into the cache) the evaluated tokens."""
        with self._lock:
            last = self._passes.get(key)
        if last is None:
            return
        shared = shared_prefix(last.tokens, job.tokens)
        # A gap at position p needs tokens up to p + 1 the same; and the last pass must have
        # read it (it may have scored other rows).
        usable = max(0, min(shared - 1, len(job.need) - 1))
        missing = np.flatnonzero(job.need[:usable] & ~last.scored[:usable])
        resume = int(missing[0]) if missing.size else usable
        if resume <= 0:
            return
        job.gaps[:resume] = last.gaps[:resume]
        job.scored_to = resume
        self._states.switch_to(llama, key, job.tokens)
        with self._lock:
            self._stats.reused_tokens += resume

    def _keep_pass(self, llama: Any, job: _Job, key: str) -> None:
        """Save the first pass (the cache holds it now) for the document's next review."""
        end = min(int(llama.n_tokens), len(job.tokens))
        if end <= 1:
            return
        held = job.tokens[:end]
        scored = job.need.copy()
        scored[job.scored_to :] = False  # a pass stopped early read no logits past it
        self._states.keep(llama, key, held)
        with self._lock:
            self._passes[key] = _Pass(job.first, np.asarray(held), job.gaps.copy(), scored)
            self._passes.move_to_end(key)
            while len(self._passes) > SAVED_PASSES:
                self._passes.popitem(last=False)
        job.kept = True

    def _first_pass(
        self, job: _Job, decoder: BatchDecoder, pacer: BackgroundPacer, cancel: threading.Event
    ) -> None:
        tokens = job.tokens
        end = int(np.flatnonzero(job.need)[-1]) + 1 if job.need.any() else 0
        if job.scored_to < end:
            for where, rows in self._evaluate(
                decoder, tokens[:end], job.scored_to, job.need, pacer, cancel
            ):
                nxt = np.asarray([tokens[p + 1] for p in where])
                job.gaps[where] = rows.max(axis=1) - rows[np.arange(len(where)), nxt]
                job.scored_to = int(where[-1]) + 1
            job.scored_to = end
        if job.candidates:
            return
        best: dict[int, float] = {}
        for p in np.flatnonzero(job.need):
            row = int(job.token_line[p + 1])
            best[row] = max(best.get(row, 0.0), float(job.gaps[p]))
        ranked = sorted(
            (row for row, gap in best.items() if gap >= self.floor and row in job.line_token),
            key=lambda row: -best[row],
        )[: self.n_candidates]
        # Bottom-up: each FIM prefix is then a prefix of the one before (KV cache reuse).
        job.candidates = [
            Candidate(row, best[row], job.lines[row]) for row in sorted(ranked, reverse=True)
        ]

    def _evaluate(
        self,
        decoder: BatchDecoder,
        tokens: list[int],
        resume: int,
        need: np.ndarray,
        pacer: BackgroundPacer,
        cancel: threading.Event,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Bring the cache to ``tokens``, reading logits from ``resume`` on where ``need``:
        yields (positions, their logits rows) per batch that has some."""
        llama = decoder.llama
        start = min(common_prefix(llama, tokens), resume)
        while start < len(tokens):
            chunk = tokens[start : start + decoder.capacity]
            outputs = [bool(need[p]) and p >= resume for p in range(start, start + len(chunk))]
            with pacer.step():
                check_cancelled(cancel)
                rows = decoder.decode(chunk, start, outputs)
                with self._lock:
                    self._stats.evaluated_tokens += len(chunk)
                if len(rows):
                    yield np.flatnonzero(outputs) + start, rows
            start += len(chunk)

    def _second_pass(
        self, job: _Job, decoder: BatchDecoder, pacer: BackgroundPacer, cancel: threading.Event
    ) -> None:
        while job.next_candidate < len(job.candidates):
            cand = job.candidates[job.next_candidate]
            self._score_line(job, cand, decoder, pacer, cancel)
            job.next_candidate += 1

    def _score_line(
        self,
        job: _Job,
        cand: Candidate,
        decoder: BatchDecoder,
        pacer: BackgroundPacer,
        cancel: threading.Event,
    ) -> None:
        llama = decoder.llama
        ids = self._fim_ids
        row = cand.line
        suffix = _suffix_window(llama, job.lines[row + 1 :], self.suffix_tokens)
        prompt = [*job.tokens[: job.line_token[row]], ids["suffix"], *suffix, ids["middle"]]
        cut = job.line_cut[row]
        indent = job.lines[row][:cut]
        written = _tokenize(llama, job.lines[row][cut:] + "\n")
        full = prompt + written
        need = np.zeros(len(full), dtype=bool)
        need[len(prompt) - 1 : len(full) - 1] = True
        logps: list[float] = []  # per written token: its log p
        picks: list[int] = []  # the model's choice there
        pick_logps: list[float] = []
        for where, rows in self._evaluate(decoder, full, len(prompt) - 1, need, pacer, cancel):
            for r, p in enumerate(where):
                lp, top, top_lp = log_softmax_at(rows[r], [full[p + 1]])
                logps.append(float(lp[0]))
                picks.append(top)
                pick_logps.append(top_lp)
        cand.written_logp = float(sum(logps))
        # The first token where the model's choice differs from the written line.
        k = next((i for i, (w, a) in enumerate(zip(written, picks, strict=True)) if w != a), None)
        if k is None:
            cand.proposal, cand.proposal_logp = cand.written, cand.written_logp
            return
        base = len(prompt) + k  # where the proposal's own tokens go
        proposal = list(written[:k])
        plogp = float(sum(logps[:k])) + pick_logps[k]
        draft = list(written[k + 1 :])
        token = picks[k]
        proposal.append(token)
        ended = self._ends(llama, token)
        position = base
        # Below the rewrite threshold only a small edit can be a finding: once the proposal
        # holds more lexemes than that allows, it is a rewrite, and decoding it is wasted.
        small_only = cand.gap < self.rewrite_threshold
        limit = code_lexemes(cand.written) + SMALL_EDIT + 1  # + 1: a last lexeme may still merge
        while not ended and len(proposal) - k < self.max_new_tokens:
            if small_only and code_lexemes(_line_text(llama, proposal)) > limit:
                cand.proposal_logp = plogp
                cand.proposal = indent + _line_text(llama, proposal)
                cand.edit = max(changed_lexemes(cand.written, cand.proposal), SMALL_EDIT + 1)
                cand.cut_short = True
                return
            batch = [token, *draft[: self.batch - 1]]
            outputs = [True] * len(batch)
            with pacer.step():
                check_cancelled(cancel)
                rows = decoder.decode(batch, position, outputs)
                with self._lock:
                    self._stats.generated_tokens += len(batch)
                accepted = 0
                for r in range(len(batch)):
                    want = draft[r] if r < len(draft) else -1
                    _, pick, top_lp = log_softmax_at(rows[r], [])
                    plogp += top_lp
                    proposal.append(pick)
                    if self._ends(llama, pick) or len(proposal) - k >= self.max_new_tokens:
                        ended = True
                        break
                    if pick != want:
                        token = pick
                        break
                    accepted += 1
            position += 1 + accepted
            if not ended:
                draft = _realign(written, proposal)
        cand.proposal_logp = plogp
        line = indent + _line_text(llama, [t for t in proposal if t not in self._stop_ids])
        cand.proposal = line
        tree = _tree_with(job.lines, row, line) if cand.differs else None
        cand.parses = tree is not None
        cand.same_code = tree is not None and tree == _tree_with(job.lines, row, cand.written)
        cand.edit = changed_lexemes(cand.written, line)
        # A proposal that only renames what the model cannot know (a new name, a string) is
        # no finding: the written code there was never predictable.
        start, end, _, _ = differing_span(cand.written, line)
        at = sum(len(x) + 1 for x in job.lines[:row]) + start
        changed = [i for i in range(at, at + end - start) if not job.text[i].isspace()]
        cand.knowable = not changed or not bool(job.unknowable[changed].all())

    def _ends(self, llama: Any, token: int) -> bool:
        return token in self._stop_ids or b"\n" in _piece(llama, token)


# -- helpers -------------------------------------------------------------------------------------


def _import_rows(text: str) -> set[int]:
    """The rows of import statements (0-based): never scored. Which modules a file needs is
    not something the code around a line tells the model, and a surprising import is where a
    new part of a file starts (bench_surprise: 3 of 338 second-pass lines, never a finding)."""
    rows: set[int] = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            rows.update(range(node.lineno - 1, node.end_lineno or node.lineno))
    return rows


def _special_id(llama: Any, text: str) -> int:
    ids = llama.tokenize(text.encode(), add_bos=False, special=True)
    if len(ids) != 1:
        raise ValueError(f"the model does not know the token {text!r}")
    return int(ids[0])


def _tokenize(llama: Any, text: str) -> list[int]:
    if not text:
        return []
    return [int(t) for t in llama.tokenize(text.encode("utf-8"), add_bos=False, special=False)]


def _piece(llama: Any, token: int) -> bytes:
    return token_bytes(llama, token)


def _realign(written: list[int], proposal: list[int]) -> list[int]:
    """Drafts after a rejected guess: what follows the proposal's last token in the written
    line (its last occurrence), else nothing."""
    last = proposal[-1]
    for i in range(len(written) - 1, -1, -1):
        if written[i] == last:
            return list(written[i + 1 :])
    return []


def _suffix_window(llama: Any, after: list[str], budget: int) -> list[int]:
    """The lines after the reviewed one, whole lines within ``budget`` tokens."""
    ids: list[int] = []
    for i, line in enumerate(after):
        more = _tokenize(llama, line + ("\n" if i + 1 < len(after) else ""))
        if ids and len(ids) + len(more) > budget:
            break
        ids += more[: budget - len(ids)]
    return ids


def _line_text(llama: Any, tokens: list[int]) -> str:
    raw = b"".join(_piece(llama, t) for t in tokens)
    return raw.decode("utf-8", "replace").split("\n", 1)[0].rstrip()


def _tree_with(lines: list[str], row: int, line: str) -> str | None:
    """The syntax tree (dumped) of the file with ``line`` at ``row``; None if it does not parse."""
    changed = [*lines[:row], line, *lines[row + 1 :]]
    try:
        return ast.dump(ast.parse("\n".join(changed)))
    except (SyntaxError, ValueError, RecursionError):
        return None


def _finding(cand: Candidate) -> ReviewFinding:
    written, proposal = cand.written, cand.proposal or ""
    _, _, old, new = differing_span(written, proposal)
    indent = len(written) - len(written.lstrip())
    message = f"`{old}` is unusual here; expected `{new}`" if old else f"expected `{new}`"
    return ReviewFinding(
        line=cand.line,
        column=indent,
        end_line=cand.line,
        end_column=len(written.rstrip()),
        severity="info",
        code=CODE,
        message=message,
        source=LLM_SOURCE,
        origin="llm",
        replacement=proposal.strip(),
        fix_title=f"Replace with `{proposal.strip()}`",
    )


def surprise_stages(pool: ModelPool, config: QualityConfig) -> list[ModelStage]:
    """The surprise stage for ``QualityAgent(stages=...)`` as configured (none when off)."""
    if not config.surprise or config.surprise_max_findings <= 0:
        return []
    reviewer = SurpriseReviewer(
        pool,
        config.surprise_model,
        config.surprise_threshold,
        config.surprise_max_findings,
        rewrite_threshold=config.surprise_rewrite_threshold,
    )

    def run(work: StageInput, cancel: threading.Event) -> list[ReviewFinding]:
        request = work.request
        return reviewer.review(
            request.text, request.language_id, work.scope.rows, cancel, request.uri
        )

    def ahead(request: ReviewRequest, cancel: threading.Event) -> None:
        reviewer.score_ahead(request.text, request.language_id, cancel, request.uri)

    return [
        ModelStage(
            SURPRISE_STAGE,
            run,
            stats=reviewer.stats,
            ahead=ahead if config.surprise_ahead else None,
        )
    ]
