"""The JSON the review model must produce, and a reader for it that survives truncation.

The schema is given to llama.cpp as a grammar, so every token the model emits keeps the output a
prefix of a valid document: what can still go wrong is running out of tokens mid-way. The reader
then keeps the findings that were complete.

String lengths are capped in the schema so that one runaway message cannot eat the whole token
budget; ``code`` is an enum of short stable ids so that findings can be compared across reviews
and against linters.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "CODES",
    "LLM_SEVERITIES",
    "ModelFinding",
    "ParsedOutput",
    "allowed_codes",
    "close_if_repeating",
    "parse_model_output",
    "review_schema",
]

LlmSeverity = Literal["error", "warning", "info"]
LLM_SEVERITIES: tuple[LlmSeverity, ...] = ("error", "warning", "info")

# Our finding codes and what each means; the prompt's checklist is written from this table.
CODES: Mapping[str, str] = {
    "mutable-default": "a mutable default argument (list, dict, set) shared between calls",
    "none-comparison": "comparing to None with == or != instead of `is` / `is not`",
    "unused-variable": "a local variable assigned but never read",
    "unused-import": "an import that is never used",
    "bare-except": "a bare `except:` or `except Exception: pass` that hides errors",
    "off-by-one": "a loop bound or index one too far or too short",
    "resource-leak": "a file, socket or lock opened without `with` or close()",
    "undefined-name": "a name used but never defined or imported",
    "wrong-return": "a missing return, or a function returning the wrong value",
    "shadowed-builtin": "a variable named like a builtin (list, dict, id, type, ...)",
    "security": "eval/exec on input, shell=True, SQL built from strings, hard-coded secrets",
    "performance": "needless quadratic work or repeated expensive calls in a loop",
    "bug": "any other logic error that makes the code misbehave",
    "style": "a readability problem that is not a bug",
}

# Caps in characters; a message of 160 characters is two lines in an editor's hover.
SNIPPET_MAX = 160
MESSAGE_MAX = 160
REPLACEMENT_MAX = 240


def allowed_codes(categories: Iterable[str] | None = None) -> tuple[str, ...]:
    """The known codes among ``categories`` (all of them for None), in :data:`CODES` order;
    unknown names are left out."""
    if categories is None:
        return tuple(CODES)
    wanted = set(categories)
    return tuple(code for code in CODES if code in wanted)


def review_schema(max_findings: int, codes: Iterable[str] | None = None) -> dict[str, Any]:
    """The JSON schema of one answer. ``line`` comes first: writing the number makes the model
    look at the numbered line it then copies into ``snippet``. ``codes``: the categories the
    model may use (all for None; at least one must be known)."""
    enum = list(allowed_codes(codes))
    if not enum:
        raise ValueError(f"no known finding code among {codes!r}")
    finding = {
        "type": "object",
        "properties": {
            "line": {"type": "integer"},
            "snippet": {"type": "string", "minLength": 1, "maxLength": SNIPPET_MAX},
            "code": {"enum": enum},
            "severity": {"enum": list(LLM_SEVERITIES)},
            "message": {"type": "string", "minLength": 1, "maxLength": MESSAGE_MAX},
            "replacement": {"type": "string", "maxLength": REPLACEMENT_MAX},
        },
        "required": ["line", "snippet", "code", "severity", "message"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {
            "findings": {"type": "array", "items": finding, "maxItems": max_findings},
        },
        "required": ["findings"],
        "additionalProperties": False,
    }


@dataclass(frozen=True)
class ModelFinding:
    """One finding as the model wrote it (before anchoring): positions are only hints."""

    line: int  # 1-based, as shown in the prompt; often wrong
    snippet: str
    code: str
    severity: LlmSeverity
    message: str
    replacement: str | None = None


@dataclass(frozen=True)
class ParsedOutput:
    findings: tuple[ModelFinding, ...]
    complete: bool  # the whole document parsed; False: salvaged from a truncated answer
    rejected: int = 0  # items of the wrong shape (only possible without the grammar)


def parse_model_output(text: str) -> ParsedOutput:
    """Findings from the model's answer. Never raises: a truncated answer yields the findings
    that were complete, and anything unreadable yields none."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        items, complete = _salvage_items(text), False
    else:
        raw = document.get("findings") if isinstance(document, dict) else None
        items, complete = (raw if isinstance(raw, list) else []), isinstance(raw, list)
    findings = [f for f in (_finding(item) for item in items) if f is not None]
    return ParsedOutput(tuple(findings), complete, len(items) - len(findings))


def _salvage_items(text: str) -> list[Any]:
    """The complete objects of the ``findings`` array of a cut-off answer."""
    return [item for item, _ in _scan_items(text)]


def _scan_items(text: str) -> list[tuple[Any, int]]:
    """Each complete object of the ``findings`` array, with the offset just past it."""
    start = text.find("[")
    if start < 0:
        return []
    decoder = json.JSONDecoder()
    items: list[tuple[Any, int]] = []
    position = start + 1
    while True:
        while position < len(text) and text[position] in " \t\r\n,":
            position += 1
        if position >= len(text) or text[position] != "{":
            return items
        try:
            item, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            return items
        items.append((item, position))


def close_if_repeating(text: str) -> str | None:
    """A small model stuck in a loop writes the same finding again and again until the token
    budget runs out. When the last complete finding repeats an earlier one (same code and
    snippet), this returns the answer closed after the finding before it (valid JSON);
    otherwise None: let the model go on."""
    items = _scan_items(text)
    if len(items) < 2:
        return None
    last = _identity(items[-1][0])
    if last is None or last not in {_identity(item) for item, _ in items[:-1]}:
        return None
    return text[: items[-2][1]] + "]}"


def _identity(item: Any) -> tuple[str, str] | None:
    if not isinstance(item, dict):
        return None
    return str(item.get("code")), " ".join(str(item.get("snippet", "")).split())


def _finding(item: Any) -> ModelFinding | None:
    if not isinstance(item, dict):
        return None
    line, snippet, code = item.get("line"), item.get("snippet"), item.get("code")
    severity, message = item.get("severity"), item.get("message")
    replacement = item.get("replacement")
    if not (isinstance(snippet, str) and snippet.strip() and isinstance(message, str)):
        return None
    if not isinstance(code, str) or code not in CODES:
        return None
    if severity not in LLM_SEVERITIES:
        return None
    if not isinstance(replacement, str):
        replacement = None
    return ModelFinding(
        line=line if isinstance(line, int) and not isinstance(line, bool) else 0,
        snippet=snippet,
        code=code,
        severity=severity,
        message=message.strip(),
        replacement=replacement,
    )
