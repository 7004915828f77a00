"""Mode choice and cleaning of raw FIM output."""

from __future__ import annotations

import pytest

from memlsp.agents.completion.generator import should_stop
from memlsp.agents.completion.postprocess import (
    FIM_SPECIAL_TOKENS,
    CompletionMode,
    clean_completion,
    decide_mode,
)

# --- decide_mode -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "suffix", "language_id", "expected"),
    [
        pytest.param("def add(a, b):\n    ", "\n", "python", "multi", id="py-after-def"),
        pytest.param("if x:\n", "", "python", "multi", id="py-column-0-after-if"),
        pytest.param("class A:\n    def f(self):\n        ", "", "python", "multi", id="py-method"),
        pytest.param(
            'def f():\n    """Doc."""\n    ', "\n", "python", "multi", id="py-docstring-only-body"
        ),
        pytest.param(
            "def f():\n    # TODO: write\n\n    ",
            "\n",
            "python",
            "multi",
            id="py-comment-only-body",
        ),
        pytest.param("x = 1\n# Example:\n", "\n", "python", "single", id="py-colon-in-comment"),
        pytest.param("x = 1\n", "\ny = 2\n", "python", "single", id="py-after-statement"),
        pytest.param("def f():\n    ", "  \n", "python", "multi", id="py-trailing-ws-after"),
        pytest.param("print(", ")\n", "python", "single", id="mid-line"),
        pytest.param("def f():\n    return ", "\n", "python", "single", id="end-of-statement"),
        pytest.param("x = 1  # why:", "\n", "python", "single", id="in-comment"),
        pytest.param('s = "abc {', "\n", "python", "single", id="in-string"),
        pytest.param("function f() {\n  ", "\n}\n", "javascript", "multi", id="js-brace"),
        pytest.param("const g = () =>\n  ", "\n", "typescript", "multi", id="ts-arrow"),
        pytest.param("foo(\n    ", "\n)", "go", "multi", id="go-paren"),
        pytest.param("int main() {\n  x = 1;\n  ", "\n}", "c", "single", id="c-after-statement"),
        pytest.param("// see f(\n", "\n", "rust", "single", id="rust-paren-in-comment"),
        pytest.param("if x:\n", "", "javascript", "single", id="colon-not-opener-in-js"),
        pytest.param("", "", "python", "single", id="empty-document"),
    ],
)
def test_decide_mode(prefix: str, suffix: str, language_id: str, expected: CompletionMode) -> None:
    assert decide_mode(prefix, suffix, language_id) == expected


def test_decide_mode_hash_in_string_is_not_a_comment() -> None:
    # The '#' inside the string must not hide the ':' that opens the block.
    assert decide_mode('if s == "#":\n    ', "\n", "python") == "multi"


# --- clean_completion -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "prefix", "suffix", "mode", "expected"),
    [
        pytest.param(
            "return a + b\n\ndef sub(a, b):\n    return a - b",
            "def add(a, b):\n    ",
            "\n",
            "multi",
            "return a + b",
            id="py-stops-at-dedent",
        ),
        pytest.param("x)", "print(", ")\n", "single", "x", id="suffix-paren-overlap"),
        pytest.param("f(a)", "print(", ")\n", "single", "f(a)", id="balanced-paren-kept"),
        pytest.param("x))", "print(f(", ")\n", "single", "x)", id="one-of-two-parens-trimmed"),
        pytest.param("x)", "print(f(", ")\n", "single", "x)", id="needed-paren-kept"),
        pytest.param('hello")', 'print("', '")', "single", "hello", id="quote-and-paren-overlap"),
        pytest.param("2;", "x = ", ";\n", "single", "2", id="semicolon-overlap"),
        pytest.param(")", "print(", ")\n", "single", "", id="only-the-suffix"),
        pytest.param(
            "y = 1<|file_sep|>junk", "x = 0\n", "", "single", "y = 1", id="leaked-file-sep"
        ),
        pytest.param(
            "a\n    b<|endoftext|>\n    c",
            "def f():\n    ",
            "",
            "multi",
            "a\n    b",
            id="leaked-endoftext-multi",
        ),
        pytest.param(
            "return 1;\n}",
            "function f() {\n  ",
            "\n}",
            "multi",
            "return 1;",
            id="js-closer-in-suffix",
        ),
        pytest.param(
            "return 1;\n}\n\nfunction g() {",
            "function f() {\n  ",
            "",
            "multi",
            "return 1;\n}",
            id="js-closer-kept-at-eof",
        ),
        pytest.param(
            "y = x * 2\n        z = y + 1\n        return z\n    return 0",
            "def f(x):\n    if x > 0:\n        ",
            "\n",
            "multi",
            "y = x * 2\n        z = y + 1\n        return z",
            id="if-body-kept",
        ),
        pytest.param(
            "for i in r:\n        s += i\n\n    return s\nprint(1)",
            "def f(r):\n    s = 0\n    ",
            "\n",
            "multi",
            "for i in r:\n        s += i\n\n    return s",
            id="one-blank-line-inside-block-kept",
        ),
        pytest.param(
            "a = 1\n\n\n    b = 2",
            "def f():\n    ",
            "",
            "multi",
            "a = 1",
            id="two-blank-lines-stop",
        ),
        pytest.param(  # the code the model put below the empty cursor line is shown on it
            "\nreturn 1", "x = 1\n", "", "single", "return 1", id="single-leading-newline"
        ),
        pytest.param(
            "return 1\nx = 2", "def f():\n    ", "", "single", "return 1", id="single-cut"
        ),
        pytest.param("   \n\t", "def f():\n    ", "", "multi", "", id="whitespace-only"),
        pytest.param("", "x", "", "single", "", id="empty"),
        pytest.param("x = compute()", "x = compute()\n", "", "single", "", id="repeats-line-above"),
        pytest.param(
            "compute()",
            "x = compute()\nx = ",
            "",
            "single",
            "",
            id="repeats-above-with-cursor-text",
        ),
        pytest.param("}", "  }\n", "\n", "single", "}", id="closer-may-repeat"),
        pytest.param(  # the inner block's closer, above the outer one's
            "}",
            "class A {\n  void f() {\n    if (x) {\n      y();\n    ",
            "\n  }\n}\n",
            "single",
            "}",
            id="inner-closer-above-outer-kept",
        ),
        pytest.param(  # the same closer in the same column is a repeat
            "}",
            "class A {\n  void f() {\n    if (x) {\n      y();\n    ",
            "\n    }\n  }\n}\n",
            "single",
            "",
            id="closer-repeating-the-next-line-dropped",
        ),
        pytest.param(
            "y = 2\n    z = 3",
            "def f():\n    ",
            "\n    y = 2\n    z = 3\n",
            "multi",
            "",
            id="repeats-following-lines",
        ),
        pytest.param(
            "x = 1\n    y = 2\n    z = 3",
            "def f():\n    ",
            "\n    y = 2\n    z = 3\n",
            "multi",
            "x = 1",
            id="tail-equal-to-following-trimmed",
        ),
        pytest.param(
            "\n    return 1",
            "def f():\n    ",
            "",
            "multi",
            "return 1",
            id="multi-leading-newline-moved-up",
        ),
        pytest.param(
            "x = 1   \n    y = 2  ",
            "def f():\n    ",
            "",
            "multi",
            "x = 1\n    y = 2",
            id="trailing-whitespace-removed",
        ),
        pytest.param(
            "a,\n        b,\n    )\nz = 1",
            "def f():\n    foo(\n        ",
            "",
            "multi",
            "a,\n        b,\n    )",
            id="closing-paren-at-opener-level-kept",
        ),
    ],
)
def test_clean_completion(
    text: str, prefix: str, suffix: str, mode: CompletionMode, expected: str
) -> None:
    assert clean_completion(text, prefix=prefix, suffix=suffix, mode=mode) == expected


@pytest.mark.parametrize("token", FIM_SPECIAL_TOKENS)
def test_every_special_token_cuts(token: str) -> None:
    assert clean_completion(f"value{token}rest", prefix="x = ", suffix="", mode="single") == "value"


def test_earliest_special_token_wins() -> None:
    text = "a<|im_end|>b<|fim_prefix|>c"
    assert clean_completion(text, prefix="x = ", suffix="", mode="single") == "a"


def test_max_lines_caps_multi() -> None:
    text = "a = 1\n    b = 2\n    c = 3\n    d = 4"
    result = clean_completion(text, prefix="def f():\n    ", suffix="", mode="multi", max_lines=2)
    assert result == "a = 1\n    b = 2"


def test_crlf_output_is_normalised() -> None:
    result = clean_completion(
        "a = 1\r\n    b = 2", prefix="def f():\r\n    ", suffix="\r\n", mode="multi"
    )
    assert result == "a = 1\n    b = 2"


def test_column_zero_cursor_keeps_model_indentation() -> None:
    result = clean_completion(
        "    return 1\n\ndef g():\n    pass", prefix="def f():\n", suffix="", mode="multi"
    )
    assert result == "    return 1"


def test_typescript_nested_block_stops_at_outer_closer() -> None:
    prefix = "function f(x: number) {\n  if (x > 0) {\n    "
    suffix = "\n  }\n}\n"
    text = "x += 1;\n    log(x);\n  }\n  return x;\n}"
    assert (
        clean_completion(text, prefix=prefix, suffix=suffix, mode="multi") == "x += 1;\n    log(x);"
    )


def test_indentation_the_user_already_typed_is_not_repeated() -> None:
    # Seen at the end of a file: the model re-emits the cursor line's indentation.
    prefix = "def add(a, b):\n    "
    assert clean_completion("    return a + b", prefix=prefix, suffix="", mode="multi") == (
        "return a + b"
    )
    # Not past the line above: the model's indentation is the block's own.
    assert clean_completion("    x = 1", prefix="if a:\n    y = 2\n", suffix="", mode="multi") == (
        "    x = 1"
    )


def test_single_line_on_an_empty_line_shows_the_code_the_model_put_below_it() -> None:
    # Seen on HumanEval-FIM JavaScript at column 0: the model ends the empty line first.
    prefix = "function f(a) {\n  if (a) {\n    x = 1;\n"
    suffix = "\n  }\n}\n"
    assert clean_completion("\n    y = 2;\n  }", prefix=prefix, suffix=suffix, mode="single") == (
        "    y = 2;"
    )
    # The indentation already typed is not repeated.
    assert clean_completion(
        "\n    y = 2;", prefix=prefix + "    ", suffix=suffix, mode="single"
    ) == ("y = 2;")
    # After code on the cursor line, a newline still ends the suggestion.
    assert clean_completion("\nz", prefix="x = ", suffix="\n", mode="single") == ""


# Raw answers seen on bench_vs_llama_server (prefix ends at the cursor; "" line start: the
# prompt was cut at the line above, see agents/blank_line).
_STREAMED = [
    (
        "def f(n, m):\n    if n > m:\n        ",
        "\n    return 1\n",
        "",
        "\n        return(-1)\n    else:\n",
        "else:",
    ),
    (
        "def second(lst):\n    for i in lst:\n        if i < min2:\n            ",
        "\n",
        "",
        "\n            min2 = lst[i]\n    return min2\n\n",
        "return min2",
    ),
    (
        "def g(items):\n    total = sum(\n        ",
        "\n",
        "        ",
        "x for x in items\n        if x > 0\n    )\n    return total\n",
        "return total",
    ),
]


@pytest.mark.parametrize(("prefix", "suffix", "line_start", "raw", "after_stop"), _STREAMED)
def test_generation_stops_where_the_block_is_left_and_shows_the_same(
    prefix: str, suffix: str, line_start: str, raw: str, after_stop: str
) -> None:
    """should_stop fires at the first character of a line that leaves the block (not at its
    end; a closing bracket's line is waited for): what is shown equals the whole answer's."""
    stop = next(n for n in range(1, len(raw) + 1) if should_stop(raw[:n], "multi", 8, line_start))
    assert after_stop not in raw[:stop]
    shown = clean_completion(raw[:stop], prefix=prefix, suffix=suffix, mode="multi")
    assert shown == clean_completion(raw, prefix=prefix, suffix=suffix, mode="multi")
    assert shown
