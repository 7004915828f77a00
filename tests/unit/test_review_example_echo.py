"""A model finding that repeats the review prompt's worked example is never published.

Seen with Qwen2.5-Coder 1.5B: on 7 of 12 buggy programs the answer held the example's own
"The last index is len(scores), one past the end", anchored on some line of the reviewed file.
"""

from __future__ import annotations

import json
import logging

import pytest

from memlsp.agents.review.prompt import echoes_example
from memlsp.agents.review.quality import drop_example_echoes
from memlsp.agents.review.schema import ModelFinding, parse_model_output

REVIEWED = """def running_max(numbers):
    result = []
    current = None
    for i in range(len(numbers) + 1):
        value = numbers[i]
        current = value if current is None else max(current, value)
        result.append(current)
    return result
"""
LEAKY = """def first_line(path):
    f = open(path)
    return f.readline()
"""


def model_answer(*findings: dict[str, object]) -> tuple[ModelFinding, ...]:
    """Findings as the agent gets them: parsed from the model's JSON."""
    return parse_model_output(json.dumps({"findings": list(findings)})).findings


ECHO = {
    "line": 4,
    "snippet": "for i in range(len(numbers) + 1):",
    "code": "off-by-one",
    "severity": "error",
    "message": "The last index is len(scores), one past the end: IndexError.",
}
GENUINE = {
    "line": 4,
    "snippet": "for i in range(len(numbers) + 1):",
    "code": "off-by-one",
    "severity": "error",
    "message": "The loop reaches len(numbers): numbers[i] raises IndexError on the last turn.",
}


def test_a_finding_copying_the_example_is_dropped_and_a_genuine_one_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="memlsp.agents.review.quality"):
        kept = drop_example_echoes(model_answer(ECHO, GENUINE), REVIEWED, "stats.py")
    assert [f.message for f in kept] == [GENUINE["message"]]
    assert "repeats the example" in caplog.text


@pytest.mark.parametrize(
    ("message", "snippet"),
    [
        # the example's sentence, case and spacing aside
        ("the LAST index is   len(scores),  one past the end", "result = []"),
        # the other example finding, about a file this one never opens
        ("The file is never closed; use `with open(path) as f:`.", "result = []"),
        # a snippet from the example rather than the reviewed file
        ("Off by one.", "best = scores[0]"),
        # the example's names, as code in an otherwise new message
        ("`best_score` may be wrong here.", "return result"),
    ],
)
def test_echoes_of_the_example_are_recognised(message: str, snippet: str) -> None:
    assert echoes_example(message, snippet, REVIEWED)


@pytest.mark.parametrize(
    ("message", "snippet", "text"),
    [
        (GENUINE["message"], GENUINE["snippet"], REVIEWED),
        ("The best value is never reset between calls.", "current = None", REVIEWED),
        # the example's resource-leak advice fits a file that has the same leak
        ("The file is never closed; use `with open(path) as f:`.", "f = open(path)", LEAKY),
    ],
)
def test_genuine_findings_are_kept(message: str, snippet: str, text: str) -> None:
    assert not echoes_example(message, snippet, text)
