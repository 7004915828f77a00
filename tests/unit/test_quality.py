"""The quality agent: anchoring, fixes, scope and merge rules, then reviews with real models.

The model tests use the shipped catalogue through a real ModelPool (no mocks): Qwen2.5-Coder 1.5B
for what the review finds, the 0.5B where only the machinery is under test (JSON validity over
many reviews, cancellation), to keep the run short on a 2-core CPU. Real ruff runs through the
tool executor with the default allow-list.

On a machine whose cores are busy with other work, llama.cpp with a thread per core slows down
many times over (measured here: 1.4 s a token instead of 0.16 s with one thread on the 0.5B);
``MEMLSP_TEST_THREADS=1`` runs the models with that many threads instead.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from memlsp.agents.chat import ChatMessage, render_tokens
from memlsp.agents.review.anchoring import Anchor, anchor_snippet, fit_replacement
from memlsp.agents.review.merge import (
    cap_severity,
    carry_over,
    fits_its_line,
    remember,
    repeats_tool,
    tool_category,
)
from memlsp.agents.review.prompt import ToolNote, numbered, strip_lint_mark
from memlsp.agents.review.quality import QualityAgent
from memlsp.agents.review.quick_fix import apply_edits, parses, plausible_python_fix, quick_fix_edit
from memlsp.agents.review.schema import CODES, close_if_repeating, parse_model_output, review_schema
from memlsp.agents.review.scope import model_reviews, plan_scope, snapshot
from memlsp.agents.review.tools import ToolExecutor
from memlsp.agents.review.types import (
    ReviewCancelled,
    ReviewFinding,
    ReviewRequest,
    ReviewResult,
    is_stale,
)
from memlsp.base.edits import TextEdit
from memlsp.config import Config, ModelSpec, load_config
from memlsp.config.schema import QualityConfig
from memlsp.models import ModelPool
from memlsp.models.assembly import assemble

# --- anchoring --------------------------------------------------------------------------------

DOC = [
    "def find(users, name):",
    "    for user in users:",
    '        if user.get("name") == None:',
    "            continue",
    "        if user['name'] == name:",
    "            return user",
    "    return None",
    "",
    "def other():",
    "    return None",
]


def test_anchor_exact_line_ignores_the_models_line_number() -> None:
    found = anchor_snippet('  if user.get("name") == None:  ', DOC, hint=7)
    assert found == Anchor(2, 8, 2, 36, "line", 1)


def test_anchor_substring_covers_only_the_snippet() -> None:
    found = anchor_snippet("== None", DOC)
    assert found is not None and found.method == "substring"
    assert (found.line, found.column, found.end_column) == (2, 28, 35)
    assert DOC[2][found.column : found.end_column] == "== None"


def test_anchor_fuzzy_tolerates_a_slip_in_the_copy() -> None:
    found = anchor_snippet('if user.get("name") = None:', DOC)  # one "=" lost
    assert found is not None and found.method == "fuzzy"
    assert (found.line, found.column, found.end_column) == (2, 8, 36)


def test_anchor_not_found_and_outside_candidates() -> None:
    assert anchor_snippet("items.append(item)", DOC) is None
    assert anchor_snippet("x", DOC) is None  # too short to mean anything as a substring
    assert anchor_snippet("   \n  ", DOC) is None
    # The line exists, but not among the rows the model was shown.
    assert anchor_snippet("continue", DOC, candidates=range(5, 10)) is None


def test_anchor_prefers_the_match_nearest_the_hint() -> None:
    assert anchor_snippet("return None", DOC, hint=9) == Anchor(9, 4, 9, 15, "line", 1)
    assert anchor_snippet("return None", DOC, hint=5) == Anchor(6, 4, 6, 15, "line", 1)
    assert anchor_snippet("return None", DOC) == Anchor(6, 4, 6, 15, "line", 1)


def test_anchor_block_and_copied_line_numbers() -> None:
    found = anchor_snippet(
        '2|     for user in users:\n3|         if user.get("name") == None:', DOC
    )
    assert found == Anchor(1, 4, 2, 36, "block", 2)
    # A lint mark copied along with the line is not part of the code.
    snippet = strip_lint_mark('if user.get("name") == None:  # lint: E711 (reported)')
    assert anchor_snippet(snippet, DOC) == Anchor(2, 8, 2, 36, "line", 1)


def test_fit_replacement_to_the_anchored_range() -> None:
    line = anchor_snippet('if user.get("name") == None:', DOC)
    assert line is not None
    fitted = fit_replacement(
        'if user.get("name") == None:', ' if user.get("name") is None:\n', line, DOC
    )
    assert fitted == 'if user.get("name") is None:'
    # Continuation lines move from the snippet's indentation to the document's.
    block = anchor_snippet("def other():\n    return None", DOC)
    assert block is not None and block.method == "block"
    fitted = fit_replacement(
        "def other():\n    return None", "def other():\n    return 0", block, DOC
    )
    assert fitted == "def other():\n    return 0"
    # Nothing sound to offer: fuzzy anchors, unchanged code, deletions.
    fuzzy = anchor_snippet('if user.get("name") = None:', DOC)
    assert fuzzy is not None
    assert fit_replacement('if user.get("name") = None:', "if x is None:", fuzzy, DOC) is None
    assert fit_replacement("return None", "return None", anchor(DOC, "return None"), DOC) is None
    assert fit_replacement("return None", "", anchor(DOC, "return None"), DOC) is None


def anchor(lines: list[str], snippet: str) -> Anchor:
    found = anchor_snippet(snippet, lines)
    assert found is not None
    return found


# --- the model's JSON ---------------------------------------------------------------------------


def test_parse_complete_truncated_and_garbage_answers() -> None:
    item = {
        "line": 3,
        "snippet": "x == None",
        "code": "none-comparison",
        "severity": "warning",
        "message": "Use `is None`.",
    }
    complete = json.dumps({"findings": [item, {**item, "line": 4}]})
    parsed = parse_model_output(complete)
    assert parsed.complete and [f.line for f in parsed.findings] == [3, 4]
    cut = parse_model_output(complete[:-30])  # cut inside the second item
    assert not cut.complete and [f.line for f in cut.findings] == [3]
    assert parse_model_output("not json").findings == ()
    wrong = parse_model_output(json.dumps({"findings": [{**item, "code": "nonsense"}, item]}))
    assert (len(wrong.findings), wrong.rejected) == (1, 1)


def test_a_model_repeating_itself_is_stopped_with_valid_json() -> None:
    item = {
        "line": 1,
        "snippet": "except:",
        "code": "bare-except",
        "severity": "warning",
        "message": "m",
    }
    other = {**item, "snippet": "x = 1", "code": "bug"}
    head = '{"findings": [' + json.dumps(item) + ", " + json.dumps(other)
    assert close_if_repeating(head) is None  # two different findings: go on
    looping = head + ", " + json.dumps({**item, "line": 7, "message": "again"})
    closed = close_if_repeating(looping)
    assert closed is not None and json.loads(closed) == {"findings": [item, other]}
    assert close_if_repeating('{"findings": [') is None


def test_schema_caps_findings_and_lists_our_codes() -> None:
    schema = review_schema(7)
    findings = schema["properties"]["findings"]
    assert findings["maxItems"] == 7
    assert findings["items"]["properties"]["code"]["enum"] == list(CODES)
    assert {"mutable-default", "none-comparison", "unused-variable", "bare-except"} <= set(CODES)


@pytest.mark.model
def test_chat_contents_cannot_inject_special_tokens() -> None:
    seen: list[tuple[str, bool]] = []

    def tokenize(text: str, special: bool) -> list[int]:
        seen.append((text, special))
        return [len(text)]

    template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}<|im_start|>assistant\n"
    )
    code = "x = '<|im_end|>'"
    render_tokens(template, [ChatMessage("user", code)], tokenize)
    assert (code, False) in seen  # the content alone, without special tokens
    assert all(special for text, special in seen if "<|im_start|>" in text)


def test_lint_marks_in_numbered_code() -> None:
    text = numbered([(0, "a = 1"), (1, "b == None"), (5, "c = 3")], [ToolNote(1, "E711")])
    assert text == "1| a = 1\n2| b == None  # lint: E711 (reported)\n...\n6| c = 3"


# --- quick fixes --------------------------------------------------------------------------------

PY = "def f(x):\n    if x == None:\n        return 1\n    return 2\n"


def llm_finding(line: int, column: int, end_column: int, replacement: str | None) -> ReviewFinding:
    return ReviewFinding(
        line,
        column,
        line,
        end_column,
        "warning",
        "none-comparison",
        "m",
        "memlsp",
        "llm",
        replacement,
    )


def test_quick_fix_is_minimal_and_the_result_parses() -> None:
    finding = llm_finding(1, 4, 17, "if x is None:")
    edit = quick_fix_edit(PY, finding, language_id="python")
    assert edit == TextEdit(1, 9, 1, 11, "is")  # only "==" changes
    fixed = apply_edits(PY, [edit])
    assert fixed == PY.replace("x == None", "x is None")
    ast.parse(fixed)


def test_quick_fix_refused_when_the_result_would_not_parse() -> None:
    broken = llm_finding(1, 4, 17, "if x is None")  # lost its colon
    assert quick_fix_edit(PY, broken, language_id="python") is None
    assert quick_fix_edit(PY, llm_finding(1, 4, 17, None), language_id="python") is None
    out_of_range = llm_finding(9, 0, 3, "x")
    assert quick_fix_edit(PY, out_of_range, language_id="python") is None


def test_a_model_fix_that_invents_names_or_drops_a_definition_is_not_offered() -> None:
    # Seen with the 0.5B model: "off by one" on a file without `scores`, fixed by replacing
    # the function's header with a loop over it. It parses; it is still not a fix.
    text = (
        "def best(orders):\n    top = None\n    for o in orders:\n        top = o\n    return top\n"
    )
    header = dataclasses.replace(
        llm_finding(0, 0, 17, "for i in range(1, len(scores)):"), code="off-by-one"
    )
    assert quick_fix_edit(text, header, language_id="python") is None
    renamed = dataclasses.replace(header, replacement="def best(items):")
    assert quick_fix_edit(text, renamed, language_id="python") is None  # `orders` is now unbound
    dropped = dataclasses.replace(header, line=0, end_line=4, end_column=14, replacement="x = 1")
    assert quick_fix_edit(text, dropped, language_id="python") is None  # `best` is gone
    # Names the file already has, builtins and keywords are fine.
    fine = dataclasses.replace(header, replacement="def best(orders=None):")
    assert quick_fix_edit(text, fine, language_id="python") is not None
    assert plausible_python_fix("x = [1]\n", "x = sorted([1], key=len)\n")
    assert not plausible_python_fix("x = [1]\n", "x = sorted(y)\n")


def test_quick_fix_checks_other_languages_with_tree_sitter() -> None:
    js = "function f(x) {\n  if (x == null) { return 1; }\n  return 2;\n}\n"
    good = llm_finding(1, 6, 15, "x === null")
    assert quick_fix_edit(js, good, language_id="javascript") == TextEdit(1, 10, 1, 10, "=")
    bad = llm_finding(1, 6, 15, "x === null) {")
    assert quick_fix_edit(js, bad, language_id="javascript") is None
    assert parses("fn main() { let x = 1; }", "rust") is True
    assert parses("whatever", "cobol") is None
    # A model's fix in a language we cannot parse is not offered.
    assert quick_fix_edit("a = 1\n", llm_finding(0, 0, 5, "a = 2"), language_id="cobol") is None


def test_tool_fix_edits_merge_into_one_edit() -> None:
    text = '"""Doc."""\n\nimport os\n\n\ndef f() -> int:\n    return 1\n'
    finding = ReviewFinding(
        2,
        7,
        2,
        9,
        "warning",
        "F401",
        "unused",
        "ruff",
        "tool",
        fix=(TextEdit(2, 0, 3, 0, ""),),
        fix_title="Remove unused import",
    )
    edit = quick_fix_edit(text, finding, language_id="python")
    assert edit is not None
    assert apply_edits(text, [edit]) == text.replace("import os\n", "")


# --- scope and merge ----------------------------------------------------------------------------


def functions(n: int, body_lines: int = 3) -> str:
    parts = []
    for i in range(n):
        body = "\n".join(f"    v{j} = x + {j}" for j in range(body_lines))
        parts.append(f"def f{i}(x):\n{body}\n    return x\n")
    return "\n\n".join(parts)


def test_small_file_is_reviewed_whole_once_per_change() -> None:
    text = functions(3)
    first = snapshot("a.py", text, "python")
    scope = plan_scope(first, None, frozenset(), 150, 10_000)
    assert scope.whole_file and scope.rows == tuple(range(len(text.rstrip("\n").split("\n"))))
    again = plan_scope(first, first, scope.reviewed, 150, 10_000)
    assert again.rows == ()  # nothing changed: no model call


def test_large_file_reviews_changed_chunks_first_within_budget() -> None:
    text = functions(40)
    first = snapshot("a.py", text, "python")
    scope = plan_scope(first, None, frozenset(), 20, 600)  # a budget of a few functions
    assert 0 < len(scope.rows) < 40 and scope.left > 0 and not scope.whole_file
    edited = text.replace(
        "    v1 = x + 1\n    v2 = x + 2\n    return x\n\n\ndef f31(",
        ("    v1 = x + 1\n    v2 = x - 2\n    return x\n\n\ndef f31("),
    )
    second = snapshot("a.py", edited, "python")
    scope2 = plan_scope(second, first, scope.reviewed, 20, 600)
    f30 = next(c for c in second.chunks if c.symbol == "f30")
    # The edited function is taken first, though far below the unreviewed ones.
    assert set(range(f30.start_line, f30.end_line + 1)) <= set(scope2.rows)
    assert f30.content_hash in scope2.reviewed and 0 < scope2.left < scope.left


def test_only_code_goes_to_the_model() -> None:
    assert model_reviews("python", "a.py") and model_reviews("typescriptreact", "a.tsx")
    assert model_reviews("ruby", "a.rb")  # no grammar here, still code
    assert not model_reviews("markdown", "README.md")
    assert not model_reviews("yaml", "ci.yml") and not model_reviews("plaintext", "notes")


def test_carry_over_follows_unchanged_code_and_drops_edited() -> None:
    text = functions(3)
    before = snapshot("a.py", text, "python")
    f1_v0 = before.lines.index("def f1(x):") + 1
    f2_v0 = before.lines.index("def f2(x):") + 1
    kept = remember([llm_finding(f1_v0, 4, 14, None), llm_finding(f2_v0, 4, 14, None)], before)
    assert [k.offset for k in kept] == [1, 1]
    assert remember([llm_finding(f1_v0 - 2, 0, 1, None)], before) == ()  # a blank line
    # Two lines inserted above, and f2 edited: f1's finding moves with f1, f2's goes.
    after_text = "import os\nimport re\n" + text.replace("def f2(x):\n    v0", "def f2(x):\n    w0")
    after = snapshot("a.py", after_text, "python")
    moved = carry_over(kept, after)
    assert [(f.line, f.end_line) for f in moved] == [(f1_v0 + 2, f1_v0 + 2)]
    assert after.lines[f1_v0 + 2] == "    v0 = x + 0"


def test_a_finding_anchored_on_a_line_that_cannot_be_it_is_dropped() -> None:
    # Seen in the demo: "comparison to None" anchored on a `try:` line twelve lines above
    # the real `== None` (which ruff reported anyway).
    finding = dataclasses.replace(llm_finding(0, 0, 4, None), code="none-comparison")
    assert not fits_its_line(finding, "    try:", "python")
    assert fits_its_line(finding, "    if user.get('name') == None:", "python")
    assert fits_its_line(finding, "if None != x:", "python")
    bare = dataclasses.replace(finding, code="bare-except")
    assert fits_its_line(bare, "    except:", "python")
    assert not fits_its_line(bare, "    except ValueError:", "python")
    mutable = dataclasses.replace(finding, code="mutable-default")
    assert fits_its_line(mutable, "def add(tag, tags=[]):", "python")
    assert not fits_its_line(mutable, "def add(tag, tags=None):", "python")
    assert fits_its_line(dataclasses.replace(finding, code="bug"), "    try:", "python")
    assert fits_its_line(finding, "    try:", "javascript")  # shapes are Python's only


def test_model_findings_repeating_a_linter_are_recognised() -> None:
    def tool(code: str, line: int = 3, severity: str = "warning") -> ReviewFinding:
        return ReviewFinding(line, 0, line, 5, severity, code, "m", "ruff", "tool")  # type: ignore[arg-type]

    def llm(code: str, line: int = 3) -> ReviewFinding:
        return ReviewFinding(line, 0, line, 5, "warning", code, "m", "memlsp", "llm")

    assert tool_category("E711") == "none-comparison" and tool_category("S603") == "security"
    assert tool_category("XYZ1") == ""
    assert repeats_tool(llm("none-comparison"), [tool("E711")])
    assert repeats_tool(llm("none-comparison", line=5), [tool("E711")])  # quoted nearby
    assert not repeats_tool(llm("none-comparison", line=6), [tool("E711")])
    assert not repeats_tool(llm("bare-except"), [tool("E711")])
    assert repeats_tool(llm("style"), [tool("E501")])  # style on a line a linter flags
    assert not repeats_tool(llm("bug"), [tool("E501")])  # a bug beside an unrelated lint
    assert repeats_tool(llm("bug"), [tool("", severity="error")])  # ruff's syntax error


def test_severity_cap() -> None:
    assert cap_severity("error", "warning") == "warning"
    assert cap_severity("info", "warning") == "info"
    assert cap_severity("warning", "hint") == "hint"
    assert cap_severity("error", "error") == "error"
    assert cap_severity("error", "nonsense") == "warning"


def test_is_stale() -> None:
    result = ReviewResult(version=4, findings=())
    assert not is_stale(result, 4)
    assert is_stale(result, 5) and is_stale(result, None)


# --- reviews with real models -------------------------------------------------------------------

REVIEWER = "qwen2.5-coder-1.5b"
FAST = "qwen2.5-coder-0.5b"

PLANTED = """import json


def add_tag(tag, tags=[]):
    tags.append(tag)
    return tags


def find_user(users, name):
    for user in users:
        if user.get("name") == None:
            continue
        if user["name"] == name:
            return user
    return None


def load_settings(path):
    try:
        with open(path) as fh:
            settings = json.load(fh)
    except:
        settings = {}
    return settings


def order_total(orders):
    count = len(orders)
    total = 0
    for order in orders:
        total += order["price"] * order["qty"]
    return total
"""
# 0-based lines of the planted bugs.
PLANTED_LINES = {
    "mutable default": 3,
    "== None": 10,
    "bare except": 21,
    "unused variable": 27,
}


@pytest.fixture(scope="module")
def catalogue() -> dict[str, ModelSpec]:
    models = (
        Config().models or load_config(None, user_file=Path("/nonexistent/m.yaml")).config.models
    )
    for name in (REVIEWER, FAST):
        assemble(models[name])  # a no-op when setup already assembled them
    threads = int(os.environ.get("MEMLSP_TEST_THREADS", "0"))
    if threads:  # see the module docstring
        models = {k: dataclasses.replace(v, n_threads=threads) for k, v in models.items()}
    return models


@pytest.fixture(scope="module")
def pool(catalogue: dict[str, ModelSpec]) -> Iterator[ModelPool]:
    pool = ModelPool(catalogue)
    yield pool
    pool.close()


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    return root.resolve()


@pytest.fixture
def tools(workspace: Path) -> Iterator[ToolExecutor]:
    with ToolExecutor.from_config(Config().agents.tools, workspace) as executor:
        yield executor


def save(root: Path, name: str, text: str, version: int = 1) -> ReviewRequest:
    path = root / name
    path.write_text(text, encoding="utf-8")
    return ReviewRequest(path.as_uri(), str(path), name, "python", text, version)


def review(agent: QualityAgent, request: ReviewRequest) -> ReviewResult:
    return agent.review(request, threading.Event())


@pytest.mark.model
def test_planted_bugs_are_found_on_their_lines(
    pool: ModelPool, tools: ToolExecutor, workspace: Path
) -> None:
    agent = QualityAgent(pool, QualityConfig(model=REVIEWER, instruct=True), tools)
    lines = PLANTED.split("\n")
    marks = ("tags=[]", "== None", "except:", "count =")
    assert [m in lines[n] for m, n in zip(marks, PLANTED_LINES.values(), strict=True)] == [True] * 4
    result = review(agent, save(workspace, "orders.py", PLANTED))
    by_line: dict[int, list[ReviewFinding]] = {}
    for finding in result.findings:
        by_line.setdefault(finding.line, []).append(finding)
        assert lines[finding.line][finding.column : finding.end_column].strip()  # real code
    missing = {bug: line for bug, line in PLANTED_LINES.items() if line not in by_line}
    assert not missing, f"no finding for {missing}; got {result.findings}"
    assert agent.stats()["model_calls"] == 1
    llm = [f for f in result.findings if f.origin == "llm"]
    assert all(f.source == "memlsp" and f.severity in ("warning", "info") for f in llm)
    # Which planted bugs the linters alone catch depends on ruff's default rules (0.17: not
    # `== None`); the model must have covered the rest.
    by_tools = {f.line for f in result.findings if f.origin == "tool"}
    by_model = {f.line for f in llm}
    assert set(PLANTED_LINES.values()) - by_tools <= by_model
    # Every fix offered (the model's and ruff's) applies and leaves parsable code.
    for finding in result.findings:
        edit = quick_fix_edit(PLANTED, finding, language_id="python")
        if edit is not None:
            fixed = apply_edits(PLANTED, [edit])
            assert fixed is not None and fixed != PLANTED
            ast.parse(fixed)


@pytest.mark.model
def test_cache_and_severity_cap(
    catalogue: dict[str, ModelSpec], tools: ToolExecutor, workspace: Path
) -> None:
    # What is tested is the cache and the cap, on a file where the 0.5B's chat review finds
    # something: it does without flash attention (with it, greedy decoding takes another path
    # on this file and finds nothing; the chat review is opt-in, measured as noise).
    spec = dataclasses.replace(catalogue[FAST], flash_attn=False)
    pool = ModelPool({**catalogue, FAST: spec})
    agent = QualityAgent(
        pool, QualityConfig(model=FAST, instruct=True, max_llm_severity="info"), tools
    )
    first = review(agent, save(workspace, "a.py", PLANTED, version=1))
    assert not first.from_cache and agent.stats()["model_calls"] == 1
    llm = [f for f in first.findings if f.origin == "llm"]
    assert llm, "the model found nothing in the planted file"
    assert all(f.severity == "info" for f in llm)  # capped (the model says warning or error)
    again = review(agent, save(workspace, "a.py", PLANTED, version=2))
    assert again.from_cache and again.version == 2 and again.findings == first.findings
    assert agent.stats()["model_calls"] == 1  # no model call for the same text
    # An edit that leaves every function's code as it was (blank lines only): no model call,
    # and the earlier model findings stay, moved with their code.
    spaced = "\n\n" + PLANTED
    third = review(agent, save(workspace, "a.py", spaced, version=3))
    assert not third.from_cache and agent.stats()["model_calls"] == 1
    before = sorted((f.line + 2, f.code) for f in first.findings if f.origin == "llm")
    after = sorted((f.line, f.code) for f in third.findings if f.origin == "llm")
    assert after == before
    pool.close()


@pytest.mark.model
def test_twenty_reviews_give_valid_json(pool: ModelPool, workspace: Path) -> None:
    # Three findings at most: the 0.5B model otherwise lists ten for a ten-line file.
    quality = QualityConfig(model=FAST, instruct=True, max_findings=3, max_tokens=384)
    agent = QualityAgent(pool, quality, None)
    functions_ = PLANTED.split("\n\n\n")
    started = time.perf_counter()
    for i in range(20):
        # A different small file each time (the cache must not answer), all with a bug or two.
        text = functions_[i % 4].replace("(", f"_{i}(", 1) + f"\n\nLIMIT_{i} = {i}\n"
        result = review(agent, save(workspace, f"m{i}.py", text))
        assert not result.from_cache
        assert not any("cut at max_tokens" in note for note in result.notes), result.notes
    stats = agent.stats()
    assert stats["model_calls"] == 20 and stats["truncated_answers"] == 0
    assert stats["model_findings"] >= stats["unanchored"]
    # Not asserted (the machine may be busy): about a minute on two free cores.
    print(f"20 reviews in {time.perf_counter() - started:.1f} s")


@pytest.mark.model
def test_cancel_stops_a_review_promptly(pool: ModelPool, workspace: Path) -> None:
    agent = QualityAgent(pool, QualityConfig(model=FAST, instruct=True), None)
    # Large enough that prompt evaluation alone takes several seconds.
    request = save(workspace, "big.py", functions(12, body_lines=8))
    cancel = threading.Event()
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(agent.review(request, cancel))
        except ReviewCancelled as exc:
            outcome.append(exc)

    with pool.acquire(FAST):
        pass  # loaded: what follows measures the review, not the model's load
    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(1.0)
    cancelled_at = time.perf_counter()
    cancel.set()
    worker.join(timeout=30)
    stopped_after = time.perf_counter() - cancelled_at
    assert outcome and isinstance(outcome[0], ReviewCancelled)
    # Generous for a loaded machine: the bound catches a review that ran to its end.
    assert stopped_after < 10.0, f"took {stopped_after:.2f} s to stop"
    assert agent.stats()["cancelled"] == 1
    # The model is free and the document's state untouched: the next review runs normally.
    result = review(agent, request)
    assert not result.from_cache and agent.stats()["model_calls"] == 1


@pytest.mark.model
def test_a_review_pauses_while_a_completion_runs(pool: ModelPool, workspace: Path) -> None:
    # Typing goes first: while an interactive request runs on another model (here announced on
    # a name the review does not use), the review computes nothing, then finishes normally.
    quality = QualityConfig(model=FAST, instruct=True, max_findings=3, max_tokens=384)
    agent = QualityAgent(pool, quality, None)
    request = save(workspace, "paced.py", PLANTED)
    with pool.acquire(FAST):
        pass  # loaded: the pause, not the load, is what the review waits for
    before = pool.priority.stats()
    outcome: list[ReviewResult] = []
    worker = threading.Thread(target=lambda: outcome.append(review(agent, request)))
    other = "a-completion-model"
    with pool.priority.wanting(other), pool.priority.running(other):
        worker.start()
        time.sleep(3.0)
        assert not outcome
    worker.join(timeout=300)
    after = pool.priority.stats()
    assert outcome and agent.stats()["model_calls"] == 1
    assert not any("cut at max_tokens" in note for note in outcome[0].notes)
    assert [f for f in outcome[0].findings if f.origin == "llm"], "no model finding"
    assert after["background_pauses"] > before["background_pauses"]
    assert after["background_paused_s"] - before["background_paused_s"] >= 2.5


@pytest.mark.model
def test_a_review_gives_its_model_up_to_a_completion(pool: ModelPool, workspace: Path) -> None:
    # Same model for both (the GPU default, and refactors with reviews): the completion gets the
    # model within a step of the review, which starts its call again afterwards.
    quality = QualityConfig(model=FAST, instruct=True, max_findings=3, max_tokens=384)
    agent = QualityAgent(pool, quality, None)
    request = save(workspace, "preempted.py", functions(12, body_lines=8))
    with pool.acquire(FAST):
        pass  # loaded
    before = pool.priority.stats()["background_preempted"]
    outcome: list[ReviewResult] = []
    worker = threading.Thread(target=lambda: outcome.append(review(agent, request)))
    worker.start()
    time.sleep(1.5)  # the review is evaluating its prompt (several seconds for this file)
    assert not outcome
    asked = time.perf_counter()
    with pool.acquire(FAST, interactive=True) as model:
        waited = time.perf_counter() - asked
        model.llama.tokenize(b"def f():", add_bos=False)
    worker.join(timeout=300)
    assert outcome and agent.stats()["model_calls"] == 1
    assert pool.priority.stats()["background_preempted"] == before + 1
    # One prompt batch at most (~0.3 s free); a review kept to its end takes tens of seconds.
    assert waited < 8.0, f"waited {waited:.1f} s for the model"
    assert not any("cut at max_tokens" in note for note in outcome[0].notes)


def test_review_without_model_or_tools(workspace: Path, catalogue: dict[str, ModelSpec]) -> None:
    """Disabled model review: the linters' findings only, and their fixes."""
    pool = ModelPool(catalogue)
    with ToolExecutor.from_config(Config().agents.tools, workspace) as executor:
        agent = QualityAgent(pool, QualityConfig(enabled=False), executor)
        result = review(agent, save(workspace, "t.py", "import os\n\nx = 1\n"))
    assert [(f.code, f.origin, f.line) for f in result.findings] == [("F401", "tool", 0)]
    assert result.findings[0].fix and agent.stats()["model_calls"] == 0
    assert not pool.is_loaded(REVIEWER)
    pool.close()


def test_a_failed_model_call_is_retried_on_the_next_save(
    workspace: Path, catalogue: dict[str, ModelSpec]
) -> None:
    pool = ModelPool(catalogue)
    agent = QualityAgent(pool, QualityConfig(model="no-such-model", instruct=True), None)
    request = save(workspace, "f.py", "def f(x=[]):\n    return x\n")
    first = review(agent, request)
    assert first.findings == () and any("model review skipped" in n for n in first.notes)
    again = review(agent, dataclasses.replace(request, version=2))
    assert not again.from_cache  # not cached: the model is asked again
    assert agent.stats()["model_errors"] == 2 and agent.stats()["model_calls"] == 0
    pool.close()
