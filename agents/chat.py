"""Chat messages to prompt tokens, with the model's own chat template.

We tokenize ourselves rather than let ``create_chat_completion`` do it, for two reasons:

* the prompt must be evaluated in small batches so a cancelled review stops within one batch
  (llama.cpp cannot interrupt one big evaluation); that needs the exact tokens up front;
* message contents are user code and must be tokenized with ``special=False``: a literal
  ``<|im_end|>`` in a reviewed file must stay text, not end the message (chat completion
  tokenizes the whole rendered prompt with special tokens on).

Every chat prompt (reviews, refactors) goes through here, so this is where credential values in
message contents are masked (``redaction``).

The template is rendered with placeholders for the contents; the template's own text is then
tokenized with special tokens, each content without.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from memlsp.agents.redaction import mask_credentials
from memlsp.models.token_pieces import token_bytes

__all__ = ["ChatMessage", "chat_tokens"]

# Used when a GGUF carries no template: ChatML, what the shipped Qwen models speak.
_CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_PLACEHOLDER = "\x00memlsp-content-{}\x00"
_PLACEHOLDER_RE = re.compile("\x00memlsp-content-(\\d+)\x00")


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system" or "user"
    content: str


Tokenize = Callable[[str, bool], list[int]]  # (text, special) -> token ids


def chat_tokens(llama: Any, messages: Sequence[ChatMessage]) -> list[int]:
    """The prompt tokens for ``messages`` followed by the assistant's turn."""
    return render_tokens(_template(llama), messages, _tokenizer(llama), _token_text(llama))


def render_tokens(
    template: str,
    messages: Sequence[ChatMessage],
    tokenize: Tokenize,
    special_text: Callable[[str], str] = lambda _: "",
) -> list[int]:
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    formatter = Jinja2ChatFormatter(
        template,
        eos_token=special_text("eos"),
        bos_token=special_text("bos"),
        add_generation_prompt=True,
    )
    placeholders: list[Any] = [
        {"role": m.role, "content": _PLACEHOLDER.format(i)} for i, m in enumerate(messages)
    ]
    rendered = formatter(messages=placeholders).prompt
    tokens: list[int] = []
    position = 0
    for match in _PLACEHOLDER_RE.finditer(rendered):
        tokens += tokenize(rendered[position : match.start()], True)
        tokens += tokenize(mask_credentials(messages[int(match[1])].content), False)
        position = match.end()
    tokens += tokenize(rendered[position:], True)
    return tokens


def _template(llama: Any) -> str:
    metadata = getattr(llama, "metadata", None) or {}
    template = metadata.get("tokenizer.chat_template")
    return template if isinstance(template, str) and template else _CHATML


def _tokenizer(llama: Any) -> Tokenize:
    def tokenize(text: str, special: bool) -> list[int]:
        if not text:
            return []
        return list(llama.tokenize(text.encode("utf-8"), add_bos=False, special=special))

    return tokenize


def _token_text(llama: Any) -> Callable[[str], str]:
    def text(which: str) -> str:
        token = llama.token_eos() if which == "eos" else llama.token_bos()
        if token is None or token < 0:
            return ""
        raw = token_bytes(llama, token, special=True)
        return raw.decode("utf-8", errors="ignore")

    return text
