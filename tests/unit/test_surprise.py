"""The surprise reviewer (agents/review/surprise.py): which tokens count, the message's span, and
with the real 0.5B FIM model: a finding on a mutant's bug line whose quick fix restores the
original, none on the original, cancellation, and the shared model left consistent."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from surprise_cases import BUG_LINE, MUTANT, ORIGINAL

from memlsp.agents.review.surprise import SMALL_EDIT, SurpriseReviewer, _import_rows
from memlsp.agents.review.token_scores import differing_span, python_unknowable
from memlsp.agents.review.types import ReviewCancelled
from memlsp.models import ModelPool

FIM = "qwen2.5-coder-0.5b"


def _skipped(text: str) -> set[str]:
    """The words of ``text`` whose characters are all marked unknowable."""
    mask = python_unknowable(text)
    words = set()
    start = None
    for i, ch in enumerate(text + " "):
        if ch.isalnum() or ch == "_":
            start = i if start is None else start
        elif start is not None:
            if np.all(mask[start:i]):
                words.add(text[start:i])
            start = None
    return words


def test_strings_comments_numbers_and_new_names_are_skipped() -> None:
    text = (
        "def scale(values, factor):\n"
        '    """Multiply each value."""\n'
        "    out = []  # the result\n"
        "    for value in values:\n"
        "        out.append(value * factor + 42)\n"
        "    return out\n"
    )
    skipped = _skipped(text)
    # First uses are new names; strings, comments, numbers are data.
    assert {"scale", "values", "factor", "out", "value", "append"} <= skipped
    assert {"Multiply", "each", "the", "result", "42"} <= skipped
    # Keywords, builtins-free code and names seen before are knowable.
    assert not {"def", "for", "in", "return"} & skipped
    mask = python_unknowable(text)
    later_values = text.index("in values") + 3
    assert not mask[later_values : later_values + 6].any()  # `values` seen in the signature
    assert not mask[text.index("return out") + 7]  # `out` seen before
    assert not mask[text.index(" * ") + 1]  # an operator


def test_builtins_are_knowable_and_a_broken_file_stays_knowable_past_the_error() -> None:
    mask = python_unknowable("x = len(y)\n")
    assert mask[0]  # `x`: new
    assert not mask[4:7].any()  # `len`: builtin
    assert python_unknowable("def f(:\n").shape == (8,)


@pytest.mark.parametrize(
    ("written", "proposed", "old", "new"),
    [
        ("    if a < b:", "    if a <= b:", "<", "<="),
        ("    for i in range(n + 1):", "    for i in range(n):", "n + 1", "n"),
        ("    return total", "    return count", "total", "count"),
        ("x = a and b", "x = a or b", "and", "or"),
    ],
)
def test_differing_span_shows_the_changed_code(
    written: str, proposed: str, old: str, new: str
) -> None:
    start, end, got_old, got_new = differing_span(written, proposed)
    assert (got_old, got_new) == (old, new)
    assert written[start:end] == old


def test_other_languages_are_skipped_without_a_model() -> None:
    reviewer = SurpriseReviewer(ModelPool({}), FIM, 0.0, 3)
    assert reviewer.review("let x = 1;", "javascript", None, threading.Event()) == []
    assert reviewer.stats()["skipped_language"] == 1


# -- with the real 0.5B FIM model ---------------------------------------------------------------

THRESHOLD = 8.5


@pytest.fixture(scope="module")
def reviewer(fim_model_pool: ModelPool) -> SurpriseReviewer:
    return SurpriseReviewer(fim_model_pool, FIM, THRESHOLD, 3)


def test_a_mutant_gets_a_finding_whose_fix_restores_the_line(reviewer: SurpriseReviewer) -> None:
    found = reviewer.review(MUTANT, "python", None, threading.Event())
    on_bug = [f for f in found if f.line == BUG_LINE]
    assert on_bug, found
    finding = on_bug[0]
    assert (finding.code, finding.source, finding.origin) == ("unusual-code", "memlsp", "llm")
    assert finding.severity in ("info", "warning")
    assert "`item`" in finding.message and "`total`" in finding.message
    lines = MUTANT.split("\n")
    line = lines[BUG_LINE]
    assert finding.replacement is not None
    lines[BUG_LINE] = line[: finding.column] + finding.replacement + line[finding.end_column :]
    assert "\n".join(lines) == ORIGINAL


def test_the_clean_original_gets_none(reviewer: SurpriseReviewer) -> None:
    assert reviewer.review(ORIGINAL, "python", None, threading.Event()) == []


def test_tokens_longer_than_32_bytes_keep_their_text(reviewer: SurpriseReviewer) -> None:
    """A docstring's continuation lines aligned by 36 spaces (one Qwen token, which
    llama-cpp-python's detokenize drops): the review maps tokens to text and runs (it raised
    "the tokens do not spell the text" on such a HumanEval program)."""
    aligned = " " * 36
    text = (
        "def eat(number, need):\n"
        '    """Returns [ total number of eaten carrots after your meals,\n'
        f"{aligned}the number of carrots left after your meals ]\n"
        '    """\n'
        "    return [number + need, 0]\n"
    )
    reviewer.candidates(text, "python", None, threading.Event())  # must not raise
    found = reviewer.review(MUTANT.replace("    ", aligned, 1), "python", None, threading.Event())
    assert all(f.line >= 0 for f in found)


def test_rows_limit_the_review(reviewer: SurpriseReviewer) -> None:
    assert reviewer.review(MUTANT, "python", range(0, 7), threading.Event()) == []


def test_a_change_deep_in_a_long_file_scores_only_the_code_near_it(
    fim_model_pool: ModelPool,
) -> None:
    """Rows at the end of a long file: the first pass starts ``prefix_window`` tokens before
    them, not at the top of the file, and the bug is still found."""
    filler = "".join(
        f"def scaled_{i}(values, factor):\n"
        f"    return [value * factor + {i} for value in values]\n\n\n"
        for i in range(60)
    )
    text = filler + MUTANT
    offset = filler.count("\n")
    reviewer = SurpriseReviewer(fim_model_pool, FIM, THRESHOLD, 3, prefix_window=256)
    found = reviewer.review(text, "python", range(offset + 9, offset + 14), threading.Event())
    assert [f.line for f in found] == [offset + BUG_LINE], found
    evaluated = reviewer.stats()["evaluated_tokens"]
    # The filler alone is over 1,500 tokens; the window and the function about 350 (the
    # second pass adds its suffix and the line).
    assert evaluated < 900, evaluated


def test_a_document_saved_again_is_scored_from_its_first_change(
    fim_model_pool: ModelPool,
) -> None:
    """The document's last first pass is kept (gaps, and its KV state): saved again with a
    change near its end, only what follows the change is evaluated, even after a completion
    replaced the model's cache in between, and the findings are those of a review from
    scratch."""
    filler = "".join(
        f"def offset_{i}(values, step):\n    return [value + step * {i} for value in values]\n\n\n"
        for i in range(16)
    )
    original, mutant = filler + ORIGINAL, filler + MUTANT
    fresh = SurpriseReviewer(fim_model_pool, FIM, THRESHOLD, 3)
    expected = fresh.review(mutant, "python", None, threading.Event())
    assert [f.line for f in expected] == [filler.count("\n") + BUG_LINE], expected
    from_scratch = fresh.stats()["evaluated_tokens"]

    kept = SurpriseReviewer(fim_model_pool, FIM, THRESHOLD, 3)
    key = "file:///ledger.py"
    assert kept.review(original, "python", None, threading.Event(), key) == []
    with fim_model_pool.acquire(FIM) as model:  # another prompt takes the model's cache
        model.llama.reset()
        model.llama.eval(model.llama.tokenize(b"import os\nprint(os.getcwd())\n"))
    before = kept.stats()
    found = kept.review(mutant, "python", None, threading.Event(), key)
    after = kept.stats()
    assert [(f.line, f.replacement) for f in found] == [(f.line, f.replacement) for f in expected]
    evaluated = after["evaluated_tokens"] - before["evaluated_tokens"]
    assert after["reused_tokens"] - before["reused_tokens"] > 400
    assert evaluated < from_scratch / 2, (evaluated, from_scratch)


def test_scoring_ahead_stopped_half_way_keeps_what_it_scored(fim_model_pool: ModelPool) -> None:
    """Work ahead (the document as opened) stopped by a save: the review that follows starts
    from what it scored and finds what a review from scratch finds."""
    filler = "".join(
        f"def scale_{i}(values, k):\n    return [value * k - {i} for value in values]\n\n\n"
        for i in range(40)
    )
    original, mutant = filler + ORIGINAL, filler + MUTANT
    reviewer = SurpriseReviewer(fim_model_pool, FIM, THRESHOLD, 3)
    key = "file:///scales.py"
    cancel = threading.Event()
    timer = threading.Timer(2.0, cancel.set)  # the file is ~1,300 tokens: ~10 s to score
    timer.start()
    try:
        assert reviewer.score_ahead(original, "python", cancel, key) is False
    finally:
        timer.cancel()
    before = reviewer.stats()
    assert 0 < before["evaluated_tokens"] < 1000, before
    found = reviewer.review(mutant, "python", None, threading.Event(), key)
    assert [f.line for f in found] == [filler.count("\n") + BUG_LINE], found
    assert reviewer.stats()["reused_tokens"] > 32


def test_import_statements_are_never_scored(fim_model_pool: ModelPool) -> None:
    """Which modules a file needs is not for the model to judge: an import where a new part of
    the file starts (the model expected another ``def``) is no candidate."""
    text = (
        ORIGINAL + "\n\nfrom typing import (\n    List,\n)\n\n\ndef first(v: List[int]) -> int:\n"
    )
    text += "    return v[0]\n"
    rows = _import_rows(text)
    start = text.split("\n").index("from typing import (")
    assert rows == {start, start + 1, start + 2}, rows
    every_line = SurpriseReviewer(fim_model_pool, FIM, 0.0, 3, candidates=50)
    lines = {c.line for c in every_line.candidates(text, "python", None, threading.Event())}
    assert lines and not lines & rows, lines


def test_a_rewrite_below_its_threshold_is_not_decoded_to_the_end(
    fim_model_pool: ModelPool,
) -> None:
    """Below ``rewrite_threshold`` only a small edit can be a finding: a proposal that grows
    past that is cut short. The same lines, and the same small edits, as without the cut."""
    full = SurpriseReviewer(fim_model_pool, FIM, 0.0, 3, candidates=50)
    cut = SurpriseReviewer(fim_model_pool, FIM, 0.0, 3, candidates=50, rewrite_threshold=1e9)
    whole = full.candidates(MUTANT, "python", None, threading.Event())
    short = cut.candidates(MUTANT, "python", None, threading.Event())
    assert [c.line for c in whole] == [c.line for c in short]
    assert any(c.cut_short for c in short), [(c.written, c.proposal) for c in short]
    for a, b in zip(whole, short, strict=True):
        if b.cut_short:
            assert a.edit > SMALL_EDIT and not b.finds(0.0, 1e9), (a.proposal, b.proposal)
        else:
            assert (a.proposal, a.edit) == (b.proposal, b.edit)
    assert cut.stats()["generated_tokens"] < full.stats()["generated_tokens"]


def test_cancel_raises(reviewer: SurpriseReviewer) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(ReviewCancelled):
        reviewer.review(MUTANT + "\n# another save\n", "python", None, cancel)


def _complete(pool: ModelPool, prefix: str, suffix: str) -> str:
    """A greedy FIM completion through the shared instance, reusing whatever its cache holds."""
    with pool.acquire(FIM) as model:
        llama = model.llama

        def ids(text: str, special: bool = False) -> list[int]:
            return list(llama.tokenize(text.encode(), add_bos=False, special=special))

        prompt = [
            *ids("<|fim_prefix|>", True),
            *ids(prefix),
            *ids("<|fim_suffix|>", True),
            *ids(suffix),
            *ids("<|fim_middle|>", True),
        ]
        out = llama.create_completion(prompt, max_tokens=12, temperature=0.0)
        return str(out["choices"][0]["text"])


def test_the_shared_model_stays_consistent(
    reviewer: SurpriseReviewer, fim_model_pool: ModelPool
) -> None:
    from memlsp.models.runtime import llama_cpp

    cut = MUTANT.index("    return item")
    prefix, suffix = MUTANT[:cut] + "    return", "\n"
    before = _complete(fim_model_pool, prefix, suffix)
    reviewer.review(MUTANT, "python", None, threading.Event())
    with fim_model_pool.acquire(FIM) as model:
        llama = model.llama
        lib = llama_cpp()
        # The record says what the KV cache holds: positions 0 .. n_tokens - 1.
        assert lib.llama_memory_seq_pos_max(lib.llama_get_memory(llama.ctx), 0) == (
            llama.n_tokens - 1
        )
    # The review left a prefix of this prompt in the cache: the completion reuses it.
    assert _complete(fim_model_pool, prefix, suffix) == before


def test_cancel_during_the_review_raises(reviewer: SurpriseReviewer) -> None:
    cancel = threading.Event()
    long_text = "\n\n".join(MUTANT.replace("total", f"total{i}") for i in range(8))
    timer = threading.Timer(0.3, cancel.set)
    timer.start()
    try:
        with pytest.raises(ReviewCancelled):
            reviewer.review(long_text, "python", None, cancel)
    finally:
        timer.cancel()
    assert reviewer.stats()["cancelled"] >= 1
