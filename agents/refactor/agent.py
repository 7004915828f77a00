"""The refactor agent: AI code actions (docstrings, type hints, extract function, fixes...).

Two steps, as LSP code actions have them:

* ``list_actions`` answers ``textDocument/codeAction`` instantly, without a model: the actions of
  the catalogue (``agents.refactor.actions``) that fit the selection or cursor, each with the
  ``data`` the server puts in an unresolved ``CodeAction``.
* ``resolve`` answers ``codeAction/resolve``: it asks the instruct model for a rewrite of the
  target lines (the selection, or the enclosing function), streams it so that ``cancel`` stops
  it between tokens, and turns it into minimal, checked text edits (``text_edits.build_edits``).
  It blocks: the server runs it in a worker thread. A rewrite that fails a check comes back as a
  ``message`` for the user and no edits.

Prompts, including those from a workspace's ``.memlsp.yaml``, are data: only the known
placeholders are substituted (no ``str.format``, which could reach attributes), the code is
tokenized without special tokens, and the model's answer is only ever parsed, never run.
"""

from __future__ import annotations

import logging
import re
import textwrap
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from memlsp.agents.chat import ChatMessage, chat_tokens
from memlsp.agents.redaction import restore_credentials
from memlsp.agents.refactor.actions import (
    ActionOffer,
    DiagnosticInfo,
    Outline,
    Target,
    diagnostics_in,
    offers,
    target_for,
)
from memlsp.agents.refactor.extract_check import extraction_problem
from memlsp.agents.refactor.extract_python import ExtractionPlan, plan_extraction, valid_name
from memlsp.agents.refactor.text_edits import (
    LineSpan,
    TextRange,
    build_comment_edits,
    build_edits,
    edit_to_json,
    extract_code,
)
from memlsp.base.edits import TextEdit
from memlsp.config.refactor_schema import PROMPT_PLACEHOLDERS, RefactorAction, RefactorConfig
from memlsp.models import ModelPool
from memlsp.models.prefill import prefill

__all__ = [
    "ActionOffer",
    "DiagnosticInfo",
    "RefactorAgent",
    "RefactorCancelled",
    "ResolveRequest",
    "ResolveResult",
    "TextRange",
    "build_messages",
]

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

CODE_SYSTEM = (
    "You are a refactoring tool inside a code editor. Answer with the complete new version of "
    "the code you are given, in exactly one fenced code block, and nothing else. Copy every line "
    "you do not need to change exactly as it is, keep the comments, and never shorten code with "
    "'...' or placeholder comments."
)
COMMENT_SYSTEM = (
    "You explain code inside a code editor. Answer in plain text only: no code blocks, no "
    "markdown, no introduction."
)
NAME_SYSTEM = (
    "You name functions inside a code editor. Answer with one snake_case identifier that says "
    "what the function does, and nothing else."
)
RETRY_EXTRACTION = (
    "Your answer does not replace the lines with a call to a new function. Answer again: first "
    "the new function, then the code with exactly those lines replaced by a call to it, in one "
    "code block."
)
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PROMPT_PLACEHOLDERS) + r")\}")
_PROGRESS_EVERY = 16  # tokens between two progress reports
_IMPORTS = re.compile(r"(import|from|#include|use|package)\b")  # lines kept in {context}


class RefactorCancelled(Exception):
    """The request was cancelled; nothing to answer."""


@dataclass(frozen=True)
class ResolveRequest:
    """A chosen action, on the document as it is now (``text``).

    ``version`` is the document version the offer was made for: the server should refuse (or
    re-list) when the document has moved on, since ``range`` may no longer point at the same code.
    """

    action: str
    uri: str
    text: str
    language_id: str
    range: TextRange
    version: int | None = None
    instruction: str | None = None
    diagnostics: tuple[DiagnosticInfo, ...] = ()

    @classmethod
    def from_data(cls, data: Mapping[str, Any], *, text: str, language_id: str) -> ResolveRequest:
        """From a CodeAction's ``data`` (``ActionOffer.data()``, back from the client: checked,
        ValueError when malformed)."""
        action, uri, version = data.get("action"), data.get("uri"), data.get("version")
        instruction = data.get("instruction")
        diagnostics = data.get("diagnostics") or []
        if not isinstance(action, str) or not isinstance(uri, str):
            raise ValueError("code action data without an action name or uri")
        if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
            raise ValueError(f"bad document version {version!r}")
        if instruction is not None and not isinstance(instruction, str):
            raise ValueError("the instruction is not a string")
        if not isinstance(diagnostics, list):
            raise ValueError("diagnostics are not a list")
        return cls(
            action=action,
            uri=uri,
            text=text,
            language_id=language_id,
            range=TextRange.from_json(data.get("range")),
            version=version,
            instruction=instruction,
            diagnostics=tuple(DiagnosticInfo.from_json(d) for d in diagnostics),
        )


@dataclass(frozen=True)
class ResolveResult:
    """Edits for the CodeAction (``edits_json()``), or a ``message`` saying why there are none."""

    action: str
    title: str
    uri: str
    version: int | None
    edits: tuple[TextEdit, ...] = ()
    message: str = ""
    model: str = ""
    seconds: float = 0.0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    answer: str = ""  # the model's raw answer (for logs and tests)
    retries: int = 0  # answers refused by a check and asked again

    def edits_json(self) -> list[dict[str, Any]]:
        return [edit_to_json(e) for e in self.edits]


class RefactorAgent:
    def __init__(self, pool: ModelPool, config: RefactorConfig) -> None:
        self.pool = pool
        self.config = config

    # -- listing (instant) ----------------------------------------------------------------

    def list_actions(
        self,
        text: str,
        language_id: str,
        selection: TextRange,
        diagnostics: Sequence[DiagnosticInfo] = (),
        *,
        uri: str = "",
        version: int | None = None,
        instruction: str | None = None,
    ) -> list[ActionOffer]:
        """The actions that fit the selection or cursor; no model call (safe on the event loop).

        ``instruction`` (for actions that take one, e.g. "rewrite") is what a client-side command
        asked the user for; without it such actions are offered with ``needs_instruction``.
        """
        return offers(
            self.config,
            text,
            language_id,
            selection,
            diagnostics,
            uri=uri,
            version=version,
            instruction=instruction,
        )

    # -- resolving (blocking) -------------------------------------------------------------

    def resolve(
        self,
        request: ResolveRequest,
        cancel: threading.Event,
        progress: Progress | None = None,
    ) -> ResolveResult:
        """Run the action; raises RefactorCancelled when ``cancel`` is set before the end."""
        started = time.perf_counter()
        config = self.config
        action = config.actions.get(request.action)
        title = action.label if action is not None else request.action

        def result(message: str, **fields: Any) -> ResolveResult:
            return ResolveResult(
                request.action,
                title,
                request.uri,
                request.version,
                message=message,
                seconds=time.perf_counter() - started,
                **fields,
            )

        if action is None or not action.enabled or not config.enabled:
            return result(f"The code action '{request.action}' is not available.")
        instruction = (request.instruction or "").strip()
        if action.takes_instruction and not instruction:
            return result(f"'{title}' needs an instruction saying how to change the code.")
        outline = Outline(request.text, request.language_id)
        target = target_for(action, outline, request.range)
        if target is None:
            return result(f"'{title}' does not apply here any more (the code has changed).")
        if len(target.span) > config.max_target_lines:
            return result(
                f"The code is {len(target.span)} lines long; '{title}' works on at most "
                f"{config.max_target_lines} (agents.refactor.max_target_lines)."
            )
        _report(progress, f"{title}: preparing")
        if action.kind == "refactor.extract" and target.selection is not None:
            plan = (
                plan_extraction(
                    outline.lines,
                    target.span,
                    target.selection,
                    method=outline.enclosing_class(target.selection) is not None,
                )
                if outline.grammar == "python"
                else "not Python"
            )
            if isinstance(plan, ExtractionPlan):
                name, naming = self._name_helper(plan, request.text, cancel, progress, title)
                outcome = build_edits(
                    request.text, target.span, plan.render(name), request.language_id
                )
                log.info(
                    "refactor %s on %s: extracted %s(%s) -> %s, %d edit(s) in %.1f s",
                    request.action,
                    request.uri,
                    name,
                    ", ".join(plan.parameters),
                    ", ".join(plan.returns) or "None",
                    len(outcome.edits),
                    time.perf_counter() - started,
                )
                return result(outcome.message, edits=outcome.edits, model=config.model, **naming)
            log.info("refactor %s: the model rewrites it (%s)", request.action, plan)
        diagnostics = diagnostics_in(request.diagnostics, target.span)
        messages = build_messages(
            action, outline, target, instruction, diagnostics, config.context_lines
        )
        run = self._generate(messages, action, target, cancel, progress, title)
        stats: dict[str, Any] = {
            "model": config.model,
            "prompt_tokens": run.prompt_tokens,
            "generated_tokens": run.generated,
            "answer": run.answer,
        }
        if run.refusal:
            return result(run.refusal, **stats)
        if run.finish == "length":
            return result(
                f"The model's answer was cut off after {run.generated} tokens "
                "(agents.refactor.max_tokens); nothing was changed.",
                **stats,
            )
        _report(progress, f"{title}: checking the edit")
        if action.output == "comment":
            outcome = build_comment_edits(
                request.text, target.span, run.answer, request.language_id
            )
        else:
            # The model saw credential values masked: never write its *** over the real ones.
            code = restore_credentials(request.text, extract_code(run.answer))
            if code is None:
                return result(
                    "The model's rewrite would replace a credential with ***; nothing was changed.",
                    **stats,
                )
            if action.kind == "refactor.extract":
                checked = self._checked_extraction(
                    request, action, target, messages, run, code, cancel, progress, title
                )
                stats.update(checked.stats)
                if checked.problem:
                    return result(checked.problem, **stats)
                code = checked.code
            outcome = build_edits(request.text, target.span, code, request.language_id)
        log.info(
            "refactor %s on %s: %d edit(s)%s in %.1f s (%d prompt, %d generated tokens)",
            request.action,
            request.uri,
            len(outcome.edits),
            f", refused: {outcome.message}" if outcome.message else "",
            time.perf_counter() - started,
            run.prompt_tokens,
            run.generated,
        )
        return result(outcome.message, edits=outcome.edits, **stats)

    def _generate(
        self,
        messages: list[ChatMessage],
        action: RefactorAction,
        target: Target,
        cancel: threading.Event,
        progress: Progress | None,
        title: str,
    ) -> _Generation:
        if cancel.is_set():
            raise RefactorCancelled()
        _report(progress, f"{title}: waiting for the model")
        # The user waits for this one: interactive, like a completion (reviews give way).
        with self.pool.acquire(self.config.model, interactive=True) as model:
            llama = model.llama
            tokens = chat_tokens(llama, messages)
            room = int(llama.n_ctx()) - len(tokens) - 1
            max_tokens = min(self.config.max_tokens, room)
            # A rewrite is about as long as the code (~4 tokens a line at least): don't start one
            # that cannot finish.
            needed = 16 if action.output == "comment" else max(16, len(target.span) * 4)
            if max_tokens < needed:
                return _Generation(
                    prompt_tokens=len(tokens),
                    refusal=f"The code is too long for '{title}' with model '{model.name}' "
                    f"(prompt {len(tokens)} tokens, context {llama.n_ctx()}, "
                    f"agents.refactor.max_tokens {self.config.max_tokens}).",
                )
            if cancel.is_set():
                raise RefactorCancelled()
            _report(progress, f"{title}: reading the code ({len(tokens)} tokens)")
            if prefill(llama, tokens, cancel) is None:
                raise RefactorCancelled()
            run = _stream(
                llama, tokens, max_tokens, action.output == "code", cancel, progress, title
            )
        if run.finish == "cancelled":
            raise RefactorCancelled()
        return _Generation(run.answer, run.finish, len(tokens), run.generated)

    def _name_helper(
        self,
        plan: ExtractionPlan,
        text: str,
        cancel: threading.Event,
        progress: Progress | None,
        title: str,
    ) -> tuple[str, dict[str, Any]]:
        """A name for the extracted helper from the model (a few tokens), checked to be a free
        identifier; ``extracted`` (numbered) when the model's is not usable."""
        taken = set(re.findall(r"\b(?:def|class)\s+(\w+)", text)) | set(
            re.findall(r"^\s*(\w+)\s*=", text, re.MULTILINE)
        )
        kind = "method" if plan.receiver else "function"
        body = textwrap.dedent("\n".join(plan.body))
        takes = ", ".join(plan.parameters) or "nothing"
        gives = ", ".join(plan.returns) or "nothing"
        messages = [
            ChatMessage("system", NAME_SYSTEM),
            ChatMessage(
                "user",
                f"Name a new Python {kind} whose body is:\n```python\n{body}\n```\n"
                f"It takes {takes} and returns {gives}.",
            ),
        ]
        if cancel.is_set():
            raise RefactorCancelled()
        _report(progress, f"{title}: naming the new {kind}")
        with self.pool.acquire(self.config.model, interactive=True) as model:
            tokens = chat_tokens(model.llama, messages)
            if prefill(model.llama, tokens, cancel) is None:
                raise RefactorCancelled()
            run = _stream(model.llama, tokens, 16, False, cancel, None, title)
        if run.finish == "cancelled":
            raise RefactorCancelled()
        found = re.search(r"[A-Za-z_][A-Za-z0-9_]*", run.answer.replace("python", " "))
        name = found.group(0) if found else ""
        if not valid_name(name, taken):
            fallbacks = (f"extracted{i or ''}" for i in range(1000))
            name = next(n for n in fallbacks if valid_name(n, taken))
        return name, {
            "prompt_tokens": len(tokens),
            "generated_tokens": run.generated,
            "answer": run.answer,
        }

    def _checked_extraction(
        self,
        request: ResolveRequest,
        action: RefactorAction,
        target: Target,
        messages: list[ChatMessage],
        run: _Generation,
        code: str,
        cancel: threading.Event,
        progress: Progress | None,
        title: str,
    ) -> _Extraction:
        """``code`` if it extracts a function that it calls; else one more try, told what was
        wrong (the model then usually gets it right), else why the rewrite was refused."""
        original = "\n".join(request.text.split("\n")[target.span.start : target.span.end])
        problem = extraction_problem(original, code, request.language_id)
        if problem is None:
            return _Extraction(code)
        log.info("refactor %s: %s Asking again.", request.action, problem)
        _report(progress, f"{title}: the function was not called; asking again")
        retry = [
            *messages,
            ChatMessage("assistant", run.answer),
            ChatMessage("user", RETRY_EXTRACTION),
        ]
        second = self._generate(retry, action, target, cancel, progress, title)
        stats = {
            "retries": 1,
            "prompt_tokens": run.prompt_tokens + second.prompt_tokens,
            "generated_tokens": run.generated + second.generated,
            "answer": second.answer,
        }
        if second.refusal or second.finish == "length":
            return _Extraction(code, problem, stats)
        again = restore_credentials(request.text, extract_code(second.answer))
        if again is None:
            return _Extraction(code, problem, stats)
        return _Extraction(again, extraction_problem(original, again, request.language_id), stats)


@dataclass(frozen=True)
class _Extraction:
    code: str
    problem: str | None = None  # for the user, when the rewrite is refused
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Generation:
    answer: str = ""
    finish: str = ""  # llama.cpp's finish reason ("stop", "length"), or "cancelled"
    prompt_tokens: int = 0
    generated: int = 0
    refusal: str = ""  # why generation did not start (for the user)


def _stream(
    llama: Any,
    tokens: list[int],
    max_tokens: int,
    code: bool,
    cancel: threading.Event,
    progress: Progress | None,
    title: str,
) -> _Generation:
    """Greedy decoding, checking ``cancel`` between tokens; for code, stops as soon as the first
    fenced block closes (small models like to add an explanation after it)."""
    stream = llama.create_completion(tokens, max_tokens=max_tokens, temperature=0.0, stream=True)
    answer, finish, generated = "", "stop", 0
    try:
        for chunk in stream:
            if cancel.is_set():
                return _Generation(answer, "cancelled", 0, generated)
            choice = chunk["choices"][0]
            piece = choice.get("text") or ""
            answer += piece
            generated += 1
            if choice.get("finish_reason"):
                finish = str(choice["finish_reason"])
            if generated % _PROGRESS_EVERY == 0:
                _report(progress, f"{title}: writing ({generated} tokens)")
            if code and "`" in piece and _block_closed(answer):
                finish = "stop"
                break
    finally:
        stream.close()  # ends llama.cpp's generation at once; the instance stays usable
    return _Generation(answer, finish, 0, generated)


def _block_closed(answer: str) -> bool:
    opening = answer.find("```")
    if opening < 0:
        return False
    return re.search(r"\n[ \t]*```[ \t]*(\n|$)", answer[opening + 3 :]) is not None


def _report(progress: Progress | None, message: str) -> None:
    if progress is None:
        return
    try:
        progress(message)
    except Exception:  # a progress sink must never fail the refactoring
        log.exception("progress callback failed")


# -- prompts ----------------------------------------------------------------------------------


def build_messages(
    action: RefactorAction,
    outline: Outline,
    target: Target,
    instruction: str = "",
    diagnostics: Sequence[DiagnosticInfo] = (),
    context_lines: int = 0,
) -> list[ChatMessage]:
    """The chat for ``action`` on ``target``: a fixed system message, then the action's prompt
    with its placeholders filled in (one pass: a value is never re-substituted)."""
    lines = outline.lines
    span = target.span
    selected = target.selection or span
    values = {
        "code": "\n".join(lines[span.start : span.end]).rstrip(),
        "selection": "\n".join(lines[selected.start : selected.end]).rstrip(),
        "language": outline.language_id,
        "instruction": instruction,
        "context": _context(outline, span.start, context_lines),
        "diagnostics": _diagnostics_text(diagnostics, lines, span.start),
        "enclosing": _enclosing_text(outline, span),
    }
    user = _PLACEHOLDER.sub(lambda m: values[m.group(1)], action.prompt).strip()
    system = COMMENT_SYSTEM if action.output == "comment" else CODE_SYSTEM
    return [ChatMessage("system", system), ChatMessage("user", user)]


def _enclosing_text(outline: Outline, span: LineSpan) -> str:
    """Where the code lives, when that changes the answer: a method's helper needs `self`."""
    owner = outline.enclosing_class(span)
    if owner is None:
        return ""
    this = "self" if outline.grammar == "python" else "this"
    return (
        f"The code is a method of class `{owner}`. If the extracted lines use `{this}`, make the "
        f"new function a method of `{owner}` too, placed next to this one, and call it through "
        f"`{this}`.\n\n"
    )


def _context(outline: Outline, before: int, count: int) -> str:
    """The file's leading imports and the lines just above the target, as a reference block."""
    if count <= 0 or before == 0:
        return ""
    lines = outline.lines
    start = max(0, before - count)
    imports = [line for line in lines[:start][:200] if _IMPORTS.match(line)][:20]
    nearby = lines[start:before]
    while nearby and not nearby[0].strip():
        nearby.pop(0)
    shown = [*imports, *(["..."] if imports and start > 0 else []), *nearby]
    if not any(line.strip() for line in shown):
        return ""
    body = "\n".join(shown).rstrip()
    return (
        f"For reference only, the code above it (do not repeat it):\n"
        f"```{outline.language_id}\n{body}\n```\n\n"
    )


def _diagnostics_text(
    diagnostics: Sequence[DiagnosticInfo], lines: Sequence[str], first: int
) -> str:
    items = []
    for d in diagnostics:
        where = lines[d.range.line].strip() if 0 <= d.range.line < len(lines) else ""
        tag = " ".join(part for part in (d.source, d.code) if part)
        items.append(
            f"- line {d.range.line - first + 1}"
            + (f" `{where}`" if where else "")
            + f": {d.message}"
            + (f" ({tag})" if tag else "")
        )
    return "\n".join(items)
