"""A cursor on a line holding only indentation: the prompt cut at the line above."""

from __future__ import annotations

from memlsp.agents.completion.blank_line import (
    cut_at_line_above,
    expected_start,
    from_line_above,
)


def test_the_prompt_is_cut_at_the_line_above_a_blank_cursor_line() -> None:
    assert cut_at_line_above("def f(x):\n    y = x\n    ") == ("def f(x):\n    y = x", "    ")
    assert cut_at_line_above("x = 1\n\n") == ("x = 1\n", "")  # column 0 under a blank line
    assert cut_at_line_above("def f(x):\n    ret") is None  # code typed on the line
    assert cut_at_line_above("    ") is None  # the first line: nothing above


def after_code_line(raw: str, indent: str) -> str:
    """from_line_above under a line of code."""
    return from_line_above(raw, indent, "def f(y):")


def test_model_output_from_the_line_above_is_placed_at_the_cursor() -> None:
    indent = "    "
    assert after_code_line("\n    return y\n", indent) == "return y\n"
    # Deeper than the cursor: the extra indentation stays; shallower: the code starts here.
    assert after_code_line("\n        z = 1", indent) == "    z = 1"
    assert after_code_line("\nelse:", "        ") == "else:"
    # Lines after the first keep their own indentation.
    assert after_code_line("\n    if y:\n        return 1", indent) == "if y:\n        return 1"
    # A blank line first: left to post-processing, which shows the code further down.
    assert after_code_line("\n\n    return y", indent) == "\n    return y"
    # Going on with the line above has no place at the cursor: nothing (the generator then
    # asks again with the prompt ending at the cursor).
    assert after_code_line("  # note", indent) == ""
    assert after_code_line("", indent) == ""
    # Unless the line above is blank: then the code is for a blank line, and ours is one.
    assert from_line_above("    return y", indent, "def f(y):\n") == "return y"


def test_the_expected_start_is_the_newline_and_the_indentation_as_tokenized_before_code() -> None:
    # A BPE-like split: a newline, runs of spaces, a space joined to the word after it.
    pieces = {1: b"\n", 2: b"   ", 3: b" x", 4: b"\tx", 5: b"x", 6: b"\t"}

    def tokenize(text: str) -> list[int]:
        table = {"\n    x": [1, 2, 3], "\n\tx": [1, 4], "\nx": [1, 5], "\n\t\tx": [1, 6, 4]}
        return table[text]

    def piece(token: int) -> bytes:
        return pieces[token]

    assert expected_start("    ", tokenize, piece) == [1, 2]  # " x" goes past the indentation
    assert expected_start("\t", tokenize, piece) == [1]
    assert expected_start("", tokenize, piece) == [1]
    assert expected_start("\t\t", tokenize, piece) == [1, 6]
