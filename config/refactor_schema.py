"""Settings of the refactor agent (code actions): its model and the catalogue of actions.

Kept apart from schema.py so the action catalogue can grow without crowding the core settings.
The built-in actions live in ``refactors.yaml`` (long prompts read better there than in Python)
and are the schema's default for ``actions``, as ``default_tools()`` is for the tool allow-list:
``Config()`` holds them, and users add or override actions per name, per field, under
``agents.refactor.actions``. A prompt is data even when a workspace file supplies it: only the
placeholders below are substituted, and nothing the model writes is ever executed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any

import yaml

BUILTIN_ACTIONS_PATH = Path(__file__).with_name("refactors.yaml")

# LSP CodeActionKind values a client can filter on (the light bulb groups by them).
ACTION_KINDS = (
    "quickfix",
    "refactor",
    "refactor.extract",
    "refactor.inline",
    "refactor.move",
    "refactor.rewrite",
    "source",
    "source.organizeImports",
    "source.fixAll",
)
# Placeholders a prompt may use; anything else in braces stays literal text.
PROMPT_PLACEHOLDERS = (
    "code",
    "language",
    "instruction",
    "context",
    "diagnostics",
    "selection",
    "enclosing",  # what the code is in, when it matters (a method of class X)
)


def _choice(*values: str, doc: str = "") -> dict[str, Any]:
    return {"choices": values, "doc": doc}


def _number(lo: float, hi: float, doc: str = "") -> dict[str, Any]:
    return {"min": lo, "max": hi, "doc": doc}


@dataclass(frozen=True)
class RefactorAction:
    """One code action the model performs on a range of the document."""

    name: str = field(default="", metadata={"doc": "the entry's key"})
    title: str = field(default="", metadata={"doc": "shown in the light bulb; empty: the name"})
    kind: str = field(
        default="refactor.rewrite",
        metadata=_choice(*ACTION_KINDS, doc="the LSP code action kind clients group it under"),
    )
    prompt: str = field(
        default="",
        metadata={"doc": "user message; placeholders: " + ", ".join(PROMPT_PLACEHOLDERS)},
    )
    languages: tuple[str, ...] = field(
        default=(), metadata={"doc": "LSP language ids it applies to; empty: all"}
    )
    applies_to: str = field(
        default="any",
        metadata=_choice(
            "selection",
            "function",
            "any",
            doc="selection: needs a non-empty selection; function: the function at the cursor; "
            "any: the selection, else the function, else the statement at the cursor",
        ),
    )
    when: str = field(
        default="always",
        metadata=_choice(
            "always",
            "diagnostics",
            "comprehension_loop",
            doc="extra condition: diagnostics in range; a Python loop a comprehension can replace",
        ),
    )
    output: str = field(
        default="code",
        metadata=_choice(
            "code", "comment", doc="code: a rewrite of the range; comment: text put above it"
        ),
    )
    scope: str = field(
        default="target",
        metadata=_choice(
            "target",
            "function",
            doc="what the model may rewrite: the target, or the whole enclosing function "
            "(the selection is then {selection}; e.g. to extract a helper before it)",
        ),
    )
    takes_instruction: bool = field(
        default=False, metadata={"doc": "needs the user's instruction ({instruction})"}
    )
    enabled: bool = field(default=True, metadata={"doc": "false: not offered"})

    @property
    def label(self) -> str:
        return self.title or self.name


def default_actions() -> dict[str, RefactorAction]:
    """The built-in catalogue (a fresh dict; the actions themselves are frozen)."""
    return dict(_builtin_actions())


@cache
def _builtin_actions() -> dict[str, RefactorAction]:
    # A shipped file: a mistake in it is a bug caught by tests/unit/test_refactor.py, which also
    # runs it through the loader's validation; here it only needs converting.
    raw = yaml.safe_load(BUILTIN_ACTIONS_PATH.read_text(encoding="utf-8"))
    known = {f.name for f in fields(RefactorAction)}
    actions = {}
    for name, entry in raw.items():
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in entry.items() if k in known}
        actions[name] = RefactorAction(**{**values, "name": name})
    return actions


@dataclass(frozen=True)
class RefactorConfig:
    enabled: bool = field(default=True, metadata={"doc": "offer model refactors as code actions"})
    model: str = field(default="qwen2.5-coder-1.5b", metadata={"doc": "catalogue name"})
    max_tokens: int = field(default=2048, metadata=_number(16, 8192, "longest answer"))
    max_target_lines: int = field(
        default=300, metadata=_number(1, 100000, "refuse larger ranges (generation time)")
    )
    context_lines: int = field(
        default=12, metadata=_number(0, 1000, "lines around the target shown as {context}")
    )
    actions: dict[str, RefactorAction] = field(default_factory=default_actions)
