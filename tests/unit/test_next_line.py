"""The next line's start after Enter (agents/completion/next_line.py): what speculation asks for
after a line suggestion."""

from __future__ import annotations

import pytest

from memlsp.agents.completion.next_line import next_line_start


@pytest.mark.parametrize(
    ("prefix", "suffix", "language", "expected"),
    [
        ("def f(x):\n    y = x + 1", "\n", "python", "\n    "),
        ("def f(x):\n    if x:", "", "python", "\n        "),
        ("class A:\n  def f(self):", "\n", "python", "\n    "),  # this file steps by 2
        ("def f(x):\n\tif x:", "", "python", "\n\t\t"),
        ("def f(x):\n    return g(", "", "python", "\n        "),
        ("function f(x) {", "\n}", "javascript", "\n    "),
        ("let y = x + 1;", "", "javascript", "\n"),
        ("def f(x):\n    y = x", " + 1\n", "python", None),  # not at the end of the line
        ("def f(x):\n    ", "", "python", None),  # a blank line: nothing written yet
    ],
)
def test_the_cursor_after_enter(
    prefix: str, suffix: str, language: str, expected: str | None
) -> None:
    assert next_line_start(prefix, suffix, language) == expected
