"""The FIM prompt's windows, with a tokenizer of one token per character (budget logic only;
the real tokenizer runs in the server tests)."""

from __future__ import annotations

from memlsp.agents.completion.fim_prompt import FimPromptBuilder, FimSpecialIds

IDS = FimSpecialIds(
    prefix=-1, suffix=-2, middle=-3, repo_name=-4, file_sep=-5, stops=frozenset({-1, -2, -3})
)


def chars(text: str) -> list[int]:
    return [ord(c) for c in text]


def test_a_prompt_may_take_a_larger_suffix_than_the_builder_default() -> None:
    builder = FimPromptBuilder(IDS, prefix_budget=100, suffix_budget=20, context_budget=0)
    suffix = "".join(f"\nline_{i}" for i in range(20))  # 7 characters a line
    default = builder.build(chars, doc_key="d", path="a.py", prefix="x = 1\n", suffix=suffix)
    larger = builder.build(
        chars, doc_key="d", path="a.py", prefix="x = 1\n", suffix=suffix, suffix_budget=70
    )
    # Whole lines within each budget.
    assert (default.suffix_tokens, larger.suffix_tokens) == (14, 70)
    assert (
        larger.tokens[: len(default.tokens) - default.suffix_tokens - 1]
        == (default.tokens[: len(default.tokens) - default.suffix_tokens - 1])
    )


def test_the_middle_goes_after_the_middle_token_and_the_suffix_stays_before_it() -> None:
    builder = FimPromptBuilder(IDS, prefix_budget=100, suffix_budget=20, context_budget=0)
    suffix = "\n    return y\n"
    typed = [
        builder.build(
            chars, doc_key="d", path="a.py", prefix="def f(x):", suffix=suffix, middle=middle
        )
        for middle in ("\n    y = ", "\n    y = x +")
    ]
    for prompt, middle in zip(typed, ("\n    y = ", "\n    y = x +"), strict=True):
        assert prompt.tokens[-len(middle) - 1 :] == [-3, *chars(middle)]
        assert prompt.middle_tokens == len(middle)
    # Typing only appends: the first prompt is the start of the second.
    assert typed[1].tokens[: len(typed[0].tokens)] == typed[0].tokens
    # A credential typed on the line is masked there as anywhere.
    secret = builder.build(
        chars,
        doc_key="d",
        path="a.py",
        prefix="def f(x):",
        suffix="",
        middle='\n    api_key = "sk-live-0123456789abcdef0123"',
    )
    assert "0123456789abcdef" not in "".join(chr(t) for t in secret.tokens if t > 0)
