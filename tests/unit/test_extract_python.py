"""Mechanical extract-function for Python (agents.extract_python): parameters, return values,
calls, refusals. Pure code analysis: no model."""

from __future__ import annotations

import ast
import textwrap

import pytest

from memlsp.agents.refactor.actions import Outline
from memlsp.agents.refactor.extract_python import ExtractionPlan, plan_extraction, valid_name
from memlsp.agents.refactor.text_edits import LineSpan


def plan(source: str, first: str, last: str) -> ExtractionPlan | str:
    """Extract the lines from the one holding ``first`` to the one holding ``last``."""
    text = textwrap.dedent(source)
    lines = text.split("\n")
    start = next(i for i, line in enumerate(lines) if first in line)
    end = next(i for i, line in enumerate(lines) if i >= start and last in line) + 1
    outline = Outline(text, "python")
    selection = LineSpan(start, end)
    function = outline.enclosing_function(selection)
    assert function is not None
    method = outline.enclosing_class(selection) is not None
    return plan_extraction(lines, function, selection, method)


def extracted(source: str, first: str, last: str, name: str = "helper") -> str:
    found = plan(source, first, last)
    assert isinstance(found, ExtractionPlan), found
    code = found.render(name)
    ast.parse(textwrap.dedent(code))
    return code


def test_accumulator_is_returned_and_its_input_passed() -> None:
    code = extracted(
        """
        def report(orders):
            total = 0
            for order in orders:
                total += order.price
            tax = total * 0.2
            return total + tax
        """,
        "total = 0",
        "total += order.price",
    )
    assert code == textwrap.dedent(
        """\
        def report(orders):
            total = helper(orders)
            tax = total * 0.2
            return total + tax


        def helper(orders):
            total = 0
            for order in orders:
                total += order.price
            return total"""
    )


def test_method_helper_takes_self_and_mutated_list_is_passed_not_returned() -> None:
    code = extracted(
        """
        class Report:
            def render(self, width):
                lines = []
                for row in self.rows:
                    lines.append(str(row)[:width])
                return "\\n".join(lines)
        """,
        "for row in self.rows",
        "lines.append",
    )
    assert "        self.helper(lines, width)\n" in code
    assert "\n    def helper(self, lines, width):\n        for row in self.rows:\n" in code
    assert "return lines" not in code


def test_two_values_come_back_and_locals_of_the_lines_stay_inside() -> None:
    code = extracted(
        """
        def stats(xs):
            n = len(xs)
            tmp = sorted(xs)
            lo, hi = tmp[0], tmp[-1]
            return n, lo, hi
        """,
        "tmp = sorted",
        "lo, hi =",
    )
    assert "    lo, hi = helper(xs)\n" in code
    assert "def helper(xs):" in code and "    return lo, hi" in code


def test_a_value_the_loop_reads_on_its_next_turn_is_returned() -> None:
    code = extracted(
        """
        def walk(items):
            previous = None
            for item in items:
                if previous is not None:
                    print(previous, item)
                previous = item
        """,
        "previous = item",
        "previous = item",
    )
    assert "        previous = helper(item)\n" in code


def test_comprehension_variables_and_builtins_are_not_parameters() -> None:
    code = extracted(
        """
        def squares(n):
            limit = n * 2
            values = [i * i for i in range(limit)]
            return values
        """,
        "values = [",
        "values = [",
    )
    assert "values = helper(limit)" in code and "def helper(limit):" in code


def test_a_lambda_reading_an_outer_name_gets_it_as_parameter() -> None:
    code = extracted(
        """
        def scale_all(xs, factor):
            scale = lambda x: x * factor
            out = [scale(x) for x in xs]
            return out
        """,
        "scale = lambda",
        "scale = lambda",
    )
    assert "    scale = helper(factor)\n" in code
    assert "def helper(factor):\n    scale = lambda x: x * factor\n    return scale" in code


@pytest.mark.parametrize(
    ("first", "last", "reason"),
    [
        ("if x < 0", "return -1", "return"),
        ("if x > 10", "break", "break"),
        ("y = x", "return total", "cuts"),
        ("y = x", "y = x", None),  # inside the loop, no jump: fine
    ],
)
def test_refusals_name_the_reason(first: str, last: str, reason: str | None) -> None:
    source = """
        def f(xs):
            total = 0
            for x in xs:
                if x < 0:
                    return -1
                if x > 10:
                    break
                y = x
                total = total + y
            return total
        """
    found = plan(source, first, last)
    if reason is None:
        assert isinstance(found, ExtractionPlan)
    else:
        assert isinstance(found, str) and reason in found


def test_break_of_a_loop_inside_the_lines_is_fine() -> None:
    code = extracted(
        """
        def first_big(xs):
            found = None
            for x in xs:
                if x > 10:
                    found = x
                    break
            return found
        """,
        "for x in xs",
        "break",
    )
    assert "    found = helper(xs, found)\n" in code


def test_valid_name() -> None:
    assert valid_name("compute_total", {"report"})
    assert not valid_name("report", {"report"})
    assert not valid_name("class", set())
    assert not valid_name("2x", set())
