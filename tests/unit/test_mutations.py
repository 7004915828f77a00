"""The bug-finding benchmark's mutants (tests/mutations.py, tests/mutation_cases.py): no model."""

from __future__ import annotations

import ast
from collections import Counter

import pytest
from mutation_cases import HUMANEVAL, build_cases, load_sources
from mutations import KINDS, mutants, one_line_change

EXAMPLE = '''def summary(values, limit, verbose=False):
    """Counts and totals of the values under a limit."""
    total = 0
    count = 0
    for i in range(len(values)):
        value = values[i]
        if value < limit and not verbose:
            total += value * 2
            count = count + 1
        elif value in (0, None) or verbose:
            count -= 1
    average = divmod(total, count)
    return average
'''


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_changes_one_line_and_still_parses(kind: str) -> None:
    found = mutants(EXAMPLE, kind)
    assert found, f"no {kind} mutant of the example"
    original = ast.dump(ast.parse(EXAMPLE))
    for mutant in found:
        assert mutant.kind == kind
        assert one_line_change(EXAMPLE, mutant.text) == mutant.line
        assert ast.dump(ast.parse(mutant.text)) != original, mutant.description
    assert len({m.text for m in found}) == len(found)


def test_what_each_kind_changes() -> None:
    def changed(kind: str) -> set[tuple[str, str]]:
        before = EXAMPLE.split("\n")
        return {
            (before[m.line].strip(), m.text.split("\n")[m.line].strip())
            for m in mutants(EXAMPLE, kind)
        }

    assert ("total += value * 2", "total -= value * 2") in changed("arith-op")
    assert ("elif value in (0, None) or verbose:", "elif value in (0, None) and verbose:") in (
        changed("and-or")
    )
    assert ("if value < limit and not verbose:", "if value < limit and verbose:") in changed(
        "dropped-not"
    )
    assert ("average = divmod(total, count)", "average = divmod(count, total)") in changed(
        "swap-args"
    )
    assert all(new.startswith("return ") and new != old for old, new in changed("wrong-return"))
    assert {new for _, new in changed("range-bound")} <= {
        "for i in range(len(values) + 1):",
        "for i in range(len(values) - 1):",
    }
    assert {new for _, new in changed("index-shift")} <= {
        "value = values[i + 1]",
        "value = values[i - 1]",
    }
    compares = {new for _, new in changed("compare-op")}
    assert compares & {"if value <= limit and not verbose:", "if value > limit and not verbose:"}
    assert "elif value not in (0, None) or verbose:" in compares


def test_a_replaced_variable_is_a_local_bound_before_its_line() -> None:
    found = mutants(EXAMPLE, "wrong-variable")
    assert found
    bound_at = {"values": 0, "limit": 0, "verbose": 0, "total": 2, "count": 3, "i": 4}
    bound_at |= {"value": 5, "average": 11}
    for mutant in found:
        new = mutant.description.split(" -> ")[1].strip("`")
        assert bound_at[new] <= mutant.line, mutant.description


def test_annotations_and_strings_are_not_mutated() -> None:
    text = 'def f(xs: list[int]) -> dict[str, int]:\n    return {"a" + "b": xs[0]}\n'
    assert all("list[int]" in m.text for m in mutants(text, "index-shift"))
    assert mutants(text, "arith-op") == []


def test_mutants_are_deterministic_for_a_seed() -> None:
    assert mutants(EXAMPLE, "compare-op", 3) == mutants(EXAMPLE, "compare-op", 3)
    sources = load_sources()
    first = [(c.name, c.mutant.text) for c in build_cases(sources, 5, seed=1)]
    assert first == [(c.name, c.mutant.text) for c in build_cases(sources, 5, seed=1)]
    assert first != [(c.name, c.mutant.text) for c in build_cases(sources, 5, seed=2)]


def test_cases_are_balanced_in_every_prefix() -> None:
    cases = build_cases(load_sources(), 4)
    assert [c.mutant.kind for c in cases[: len(KINDS)]] == list(KINDS)
    refused = build_cases(load_sources(), 2, accept=lambda c: c.mutant.line % 2 == 0)
    assert refused and all(c.mutant.line % 2 == 0 for c in refused)


@pytest.mark.skipif(not HUMANEVAL.exists(), reason=f"benchmark data not found: {HUMANEVAL}")
def test_the_real_case_set_has_200_cases_of_every_kind() -> None:
    sources = load_sources()
    cases = build_cases(sources, 25)
    assert len(cases) >= 200
    kinds = Counter(c.mutant.kind for c in cases)
    assert set(kinds) == set(KINDS)
    assert min(kinds.values()) >= 10
    for case in cases:
        assert one_line_change(case.source.text, case.mutant.text) == case.mutant.line
        ast.parse(case.mutant.text)
    # spread over the sources, not drawn from a few
    assert len({c.source.name for c in cases}) >= 100
