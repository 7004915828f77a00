"""The refactor agent: catalogue config, instant listing, edit building and guards (pure), and each
built-in action resolved with a real model (no mocks)."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import random
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from memlsp.agents.refactor.actions import (
    ActionOffer,
    DiagnosticInfo,
    Outline,
    Target,
    offers,
    target_for,
)
from memlsp.agents.refactor.agent import (
    RefactorAgent,
    RefactorCancelled,
    ResolveRequest,
    ResolveResult,
    build_messages,
)
from memlsp.agents.refactor.extract_check import defined_functions, extraction_problem
from memlsp.agents.refactor.text_edits import (
    LineSpan,
    TextRange,
    apply_edits,
    build_comment_edits,
    build_edits,
    diff_edits,
    edits_within,
    extract_code,
)
from memlsp.base.edits import TextEdit
from memlsp.config import Config, load_config
from memlsp.config.refactor_schema import (
    ACTION_KINDS,
    BUILTIN_ACTIONS_PATH,
    PROMPT_PLACEHOLDERS,
    RefactorConfig,
)
from memlsp.models import ModelPool
from memlsp.models.assembly import assemble

# The 1.5B gives the better rewrites (it is the default); MEMLSP_TEST_REFACTOR_MODEL picks another.
MODEL = os.environ.get("MEMLSP_TEST_REFACTOR_MODEL", "qwen2.5-coder-1.5b")
URI = "file:///ws/utils.py"

FIXTURE = '''\
"""Small utilities."""

import os


def total_size(paths):
    sizes = []
    for p in paths:
        if os.path.exists(p):
            sizes.append(os.path.getsize(p))
    result = 0
    for s in sizes:
        result = result + s
    return result


class Report:
    def __init__(self, rows):
        self.rows = rows

    def render(self, width):
        lines = []
        for row in self.rows:
            text = str(row)
            if len(text) > width:
                text = text[:width]
            lines.append(text)
        return "\\n".join(lines)


def squares(n):
    out = {}
    for i in range(n):
        out[i] = i * i
    return out


def report(orders):
    total = 0
    for order in orders:
        total += order.price * order.quantity
    tax = total * 0.2
    return total + tax
'''
LINES = FIXTURE.split("\n")


def line_of(needle: str, text: str = FIXTURE) -> int:
    return next(i for i, line in enumerate(text.split("\n")) if needle in line)


def cursor(needle: str, text: str = FIXTURE) -> TextRange:
    line = line_of(needle, text)
    column = len(text.split("\n")[line]) - len(text.split("\n")[line].lstrip())
    return TextRange(line, column, line, column)


def select(first: str, last: str, text: str = FIXTURE) -> TextRange:
    """Whole lines from the one holding ``first`` to the one holding ``last``."""
    return TextRange(line_of(first, text), 0, line_of(last, text) + 1, 0)


def builtin_config() -> RefactorConfig:
    return Config().agents.refactor


def names(found: list[ActionOffer]) -> list[str]:
    return [o.action for o in found]


def span_of(name: str, text: str = FIXTURE) -> LineSpan:
    """Lines of a top-level or class-level function, per ``ast``."""
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            assert node.end_lineno is not None
            return LineSpan(node.lineno - 1, node.end_lineno)
    raise AssertionError(name)


# -- the catalogue in config --------------------------------------------------------------------


def test_builtin_catalogue_passes_config_validation(tmp_path: Path) -> None:
    """refactors.yaml, run through the loader's checks, has no issue and equals the defaults."""
    raw = yaml.safe_load(BUILTIN_ACTIONS_PATH.read_text(encoding="utf-8"))
    user_file = tmp_path / "user.yaml"  # prompts are the user's to set (trusted layer)
    user_file.write_text(yaml.safe_dump({"agents": {"refactor": {"actions": raw}}}))
    loaded = load_config(None, user_file=user_file)
    assert loaded.issues == ()
    actions = loaded.config.agents.refactor.actions
    assert actions == Config().agents.refactor.actions
    assert set(actions) == {
        "docstring",
        "type-hints",
        "simplify",
        "extract-function",
        "comprehension",
        "explain",
        "fix-diagnostics",
        "rewrite",
    }
    for action in actions.values():
        assert action.kind in ACTION_KINDS
        assert action.title
        used = {p for p in PROMPT_PLACEHOLDERS if "{" + p + "}" in action.prompt}
        assert "code" in used, action.name
    assert actions["rewrite"].takes_instruction
    assert actions["type-hints"].languages == ("python",)


def test_workspace_action_is_validated_and_merged(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    ws_file = ws / ".memlsp.yaml"
    ws_file.write_text(
        textwrap.dedent(
            """\
            agents:
              refactor:
                actions:
                  shout:
                    title: Shout
                    kind: refactor.shout
                    applies_to: everywhere
                    prompt: "Upper-case the strings: {code}"
                  explain: {enabled: false}
            """
        )
    )
    user_file = tmp_path / "user.yaml"  # this user lets workspaces word their own actions
    user_file.write_text("security: {allow_workspace_prompts: true}\n")
    loaded = load_config(ws, user_file=user_file)
    issues = [str(i) for i in loaded.issues]
    assert issues == [
        f"{ws_file}: agents.refactor.actions.shout.kind: 'refactor.shout' is not valid; "
        f"valid values: {', '.join(ACTION_KINDS)} (using 'refactor.rewrite')",
        f"{ws_file}: agents.refactor.actions.shout.applies_to: 'everywhere' is not valid; "
        "valid values: selection, function, any (using 'any')",
    ]
    actions = loaded.config.agents.refactor.actions
    shout = actions["shout"]
    assert (shout.name, shout.title, shout.kind, shout.applies_to) == (
        "shout",
        "Shout",
        "refactor.rewrite",
        "any",
    )
    assert actions["explain"].enabled is False
    assert actions["explain"].prompt == Config().agents.refactor.actions["explain"].prompt


def test_prompt_placeholders_are_data_not_code() -> None:
    """Only the known placeholders are replaced, once; nothing is formatted or evaluated."""
    action = dataclasses.replace(
        builtin_config().actions["rewrite"],
        prompt="{instruction} | {code.__class__} | {0} | {{code}} | {language}",
    )
    outline = Outline("x = 1\n", "python")
    messages = build_messages(action, outline, Target(LineSpan(0, 1)), instruction="{code}")
    assert messages[-1].content == "{code} | {code.__class__} | {0} | {x = 1} | python"


# -- listing ------------------------------------------------------------------------------------


def test_listing_in_a_function() -> None:
    found = offers(builtin_config(), FIXTURE, "python", cursor("sizes = []"), uri=URI, version=3)
    assert names(found) == ["docstring", "type-hints", "simplify", "explain", "rewrite"]
    docstring = found[0]
    assert docstring.target == span_of("total_size")
    assert docstring.kind == "refactor.rewrite"
    data = json.loads(json.dumps(docstring.data()))
    assert data["action"] == "docstring" and data["uri"] == URI and data["version"] == 3
    request = ResolveRequest.from_data(data, text=FIXTURE, language_id="python")
    assert request.range == cursor("sizes = []") and request.instruction is None
    assert found[-1].needs_instruction


def test_listing_outside_functions_and_by_language() -> None:
    config = builtin_config()
    # A blank line between definitions: nothing to act on.
    assert offers(config, FIXTURE, "python", TextRange(15, 0, 15, 0)) == []
    # The import line: only actions on "any" code (the statement at the cursor).
    at_import = offers(config, FIXTURE, "python", cursor("import os"))
    assert names(at_import) == ["simplify", "explain", "rewrite"]
    assert at_import[0].target == LineSpan(2, 3)
    js = "function add(a, b) {\n  return a + b;\n}\n\nconst twice = (x) => {\n  return 2 * x;\n};\n"
    in_js = offers(config, js, "javascript", TextRange(1, 2, 1, 2))
    assert names(in_js) == ["docstring", "simplify", "explain", "rewrite"]
    assert in_js[0].target == LineSpan(0, 3)
    arrow = offers(config, js, "javascript", TextRange(5, 2, 5, 2))
    assert arrow[0].action == "docstring" and arrow[0].target == LineSpan(4, 7)
    # No grammar, no comment syntax: only the selection-based, language-neutral actions.
    assert names(offers(config, "# Title\n\ntext\n", "markdown", TextRange(2, 0, 2, 4))) == [
        "simplify",
        "rewrite",
    ]


def test_listing_selection_actions_and_extract_target() -> None:
    selection = select("total = 0", "total += order.price")
    found = offers(builtin_config(), FIXTURE, "python", selection)
    assert "extract-function" in names(found)
    extract = next(o for o in found if o.action == "extract-function")
    assert extract.kind == "refactor.extract"
    assert extract.target == span_of("report")  # the model may add the helper before it
    target = target_for(
        builtin_config().actions["extract-function"], Outline(FIXTURE, "python"), selection
    )
    assert target is not None and target.selection == selection.lines()
    # No selection, no extract.
    assert "extract-function" not in names(
        offers(builtin_config(), FIXTURE, "python", cursor("tax ="))
    )


@pytest.mark.parametrize(
    ("code", "fits"),
    [
        ("out = []\nfor x in xs:\n    out.append(x * 2)\n", True),
        ("out = set()\nfor x in xs:\n    if x:\n        out.add(x)\n", True),
        ("d = {}\nfor k, v in items:\n    d[k] = v\n", True),
        ("for row in rows:\n    for x in row:\n        flat.append(x)\n", True),
        ("for x in xs:\n    out.append(x)\n    n += 1\n", False),  # two statements
        ("for x in xs:\n    out.append(x)\nelse:\n    pass\n", False),  # for-else
        ("for x in xs:\n    out.append(len(out))\n", False),  # reads what it builds
        ("for x in xs:\n    if x:\n        out.append(x)\n    else:\n        pass\n", False),
        ("for x in xs:\n    print(x)\n", False),
        ("while xs:\n    out.append(xs.pop())\n", False),
        ("for x in xs:\n    out.extend(x)\n", False),
    ],
)
def test_comprehension_offered_only_where_a_loop_fits(code: str, fits: bool) -> None:
    text = "def f(xs, items, rows, flat, out, n):\n" + textwrap.indent(code, "    ")
    loop = next(
        i for i, line in enumerate(text.split("\n")) if line.lstrip()[:4] in ("for ", "whil")
    )
    found = offers(builtin_config(), text, "python", TextRange(loop + 1, 8, loop + 1, 8))
    assert ("comprehension" in names(found)) is fits
    if fits:
        offer = next(o for o in found if o.action == "comprehension")
        first = 1 if "= " in text.split("\n")[1] else loop  # with the collection's creation
        assert offer.target == LineSpan(first, len(text.rstrip("\n").split("\n")))


def test_comprehension_needs_python_and_a_loop_at_the_cursor() -> None:
    config = builtin_config()
    assert "comprehension" in names(offers(config, FIXTURE, "python", cursor("out[i] = i * i")))
    assert "comprehension" in names(offers(config, FIXTURE, "python", cursor("sizes.append")))
    assert "comprehension" not in names(offers(config, FIXTURE, "python", cursor("return out")))
    # The render loop has three statements: no.
    assert "comprehension" not in names(offers(config, FIXTURE, "python", cursor("text = str")))
    # A selection holding a fitting loop, and one crossing its end.
    inside = offers(config, FIXTURE, "python", select("out = {}", "out[i] = i * i"))
    assert next(o for o in inside if o.action == "comprehension").target.start == line_of(
        "out = {}"
    )
    crossing = select("out[i] = i * i", "return out")
    assert "comprehension" not in names(offers(config, FIXTURE, "python", crossing))


def test_fix_diagnostics_only_where_diagnostics_are() -> None:
    config = builtin_config()
    here = cursor("result = result + s")
    problem = DiagnosticInfo(
        TextRange(here.line, 8, here.line, 14), "Undefined name", "ruff", "F821"
    )
    elsewhere = DiagnosticInfo(TextRange(2, 0, 2, 9), "`os` imported but unused", "ruff", "F401")
    assert "fix-diagnostics" not in names(offers(config, FIXTURE, "python", here))
    assert "fix-diagnostics" not in names(offers(config, FIXTURE, "python", here, [elsewhere]))
    found = offers(config, FIXTURE, "python", here, [elsewhere, problem])
    fix = next(o for o in found if o.action == "fix-diagnostics")
    assert fix.kind == "quickfix" and fix.diagnostics == (problem,)
    assert fix.target == span_of("total_size")
    data = json.loads(json.dumps(fix.data()))
    assert ResolveRequest.from_data(data, text=FIXTURE, language_id="python").diagnostics == (
        problem,
    )


def test_disabled_actions_and_agent_are_not_listed() -> None:
    config = builtin_config()
    actions = {**config.actions}
    actions["docstring"] = dataclasses.replace(actions["docstring"], enabled=False)
    off = dataclasses.replace(config, actions=actions)
    assert "docstring" not in names(offers(off, FIXTURE, "python", cursor("sizes = []")))
    assert (
        offers(dataclasses.replace(config, enabled=False), FIXTURE, "python", cursor("sizes")) == []
    )


def test_malformed_code_action_data_is_refused() -> None:
    good = offers(builtin_config(), FIXTURE, "python", cursor("sizes = []"), uri=URI)[0].data()
    for bad in (
        {**good, "action": 3},
        {**good, "range": {"start": {"line": -1, "character": 0}, "end": {}}},
        {**good, "version": "7"},
        {**good, "diagnostics": [{"range": good["range"]}]},
        {**good, "instruction": ["x"]},
    ):
        with pytest.raises(ValueError):
            ResolveRequest.from_data(bad, text=FIXTURE, language_id="python")


def big_file(lines: int = 3000) -> str:
    parts: list[str] = []
    n = 0
    while sum(p.count("\n") for p in parts) < lines:
        parts.append(FIXTURE.replace("def ", f"def v{n}_").replace("class Report", f"class R{n}"))
        n += 1
    return "\n\n".join(parts)


def test_listing_is_fast_on_a_big_file() -> None:
    text = big_file()
    assert text.count("\n") >= 3000
    config = builtin_config()
    line = len(text.split("\n")) // 2
    while "out[i] = i * i" not in text.split("\n")[line]:
        line += 1
    walls, cpus = [], []
    for i in range(7):
        fresh = text + f"\n# edit {i}\n"  # a changed document each time: no cached parse
        started, cpu = time.perf_counter(), time.thread_time()
        found = offers(config, fresh, "python", TextRange(line, 8, line, 8))
        cpus.append(time.thread_time() - cpu)
        walls.append(time.perf_counter() - started)
        assert "comprehension" in names(found)
    # Wall time on a shared 2-core machine mostly measures the other processes: CPU time is the
    # cost of listing; the best wall time has a looser bound.
    assert sorted(cpus)[len(cpus) // 2] < 0.050, cpus
    assert min(walls) < 0.100, walls


# -- edits from a rewrite (pure) ----------------------------------------------------------------

RENDER = span_of("render")


def test_dedented_rewrite_is_reindented_and_minimal() -> None:
    # The model returns the method at column 0 with one line changed.
    method = LINES[RENDER.start : RENDER.end]
    rewrite = textwrap.dedent("\n".join(method)).replace("lines = []", "lines: list[str] = []")
    outcome = build_edits(FIXTURE, RENDER, rewrite, "python")
    assert outcome.ok, outcome.message
    assert outcome.edits == (
        TextEdit(RENDER.start + 1, 0, RENDER.start + 2, 0, "        lines: list[str] = []\n"),
    )
    new = apply_edits(FIXTURE, outcome.edits)
    assert new == outcome.new_text
    report = next(n for n in ast.parse(new).body if isinstance(n, ast.ClassDef))
    assert [f.name for f in report.body if isinstance(f, ast.FunctionDef)] == ["__init__", "render"]


def test_rewrite_that_does_not_parse_is_refused() -> None:
    span = span_of("squares")
    outcome = build_edits(
        FIXTURE, span, "def squares(n):\n    return {i: i * i for i in range(n)", "python"
    )
    assert outcome.edits == () and "not valid code" in outcome.message


def test_no_op_is_detected() -> None:
    span = span_of("squares")
    same = "\n".join(line + "  " for line in LINES[span.start : span.end]) + "\n\n"
    outcome = build_edits(FIXTURE, span, same, "python")
    assert outcome.edits == () and outcome.message == "The model suggested no change."


def test_dropped_definitions_and_elisions_are_refused() -> None:
    span = span_of("total_size")
    gone = build_edits(FIXTURE, span, "import os\n", "python")
    assert gone.edits == () and "drops total_size" in gone.message
    short = "def total_size(paths):\n    sizes = []\n    # ... rest of the code\n"
    elided = build_edits(FIXTURE, span, short, "python")
    assert elided.edits == () and "left code out" in elided.message


def test_new_imports_go_to_the_import_block() -> None:
    span = span_of("total_size")
    body = LINES[span.start : span.end]
    hinted = ["def total_size(paths: Iterable[str]) -> int:", *body[1:]]
    rewrite = "from collections.abc import Iterable\nimport os\n\n" + "\n".join(hinted)
    outcome = build_edits(FIXTURE, span, rewrite, "python")
    assert outcome.ok, outcome.message
    imports_at = line_of("import os") + 1
    assert outcome.edits[0] == TextEdit(
        imports_at, 0, imports_at, 0, "from collections.abc import Iterable\n"
    )  # `import os` is there already: not added twice
    assert edits_within(outcome.edits, span, imports_at)
    assert not edits_within(outcome.edits, span)
    assert outcome.new_text.count("import os") == 1
    ast.parse(outcome.new_text)


def test_edits_stay_in_range_and_apply_exactly() -> None:
    """Random rewrites of random ranges: the edits never leave the range and give the rewrite."""
    rng = random.Random(7)
    words = ["a = 1", "b = a + 1", "# note", "", "c = [a, b]", "print(c)", "d = {}", "e = 'x'"]
    for _ in range(300):
        doc = [rng.choice(words) for _ in range(rng.randint(1, 12))]
        text = "\n".join(doc) + rng.choice(["", "\n"])
        doc_lines = text.split("\n")
        start = rng.randrange(len(doc_lines))
        span = LineSpan(start, rng.randint(start + 1, len(doc_lines)))
        new = list(doc_lines[span.start : span.end])
        for _ in range(rng.randint(1, 4)):
            op = rng.choice(["ins", "del", "sub"])
            where = rng.randint(0, len(new))
            if op == "ins":
                new.insert(where, rng.choice(words))
            elif new and where < len(new):
                if op == "del":
                    del new[where]
                else:
                    new[where] = rng.choice(words)
        edits = diff_edits(doc_lines, span, new)
        assert edits_within(edits, span), (text, span, new, edits)
        expected = "\n".join([*doc_lines[: span.start], *new, *doc_lines[span.end :]])
        if not new and span.start > 0 and span.end == len(doc_lines):
            expected = "\n".join(doc_lines[: span.start])
        assert apply_edits(text, edits) == expected, (text, span, new, edits)


def test_crlf_documents_keep_their_line_ends() -> None:
    text = "def f(x):\r\n    y = x\r\n    return y\r\n"
    outcome = build_edits(text, LineSpan(0, 3), "def f(x):\n    return x\n", "python")
    assert outcome.ok
    assert outcome.new_text == "def f(x):\r\n    return x\r\n"


def test_a_document_broken_elsewhere_can_still_be_edited() -> None:
    text = "def f(x):\n    return x+1\n\n\ndef g(:\n    pass\n"
    outcome = build_edits(text, LineSpan(0, 2), "def f(x):\n    return x + 1\n", "python")
    assert outcome.ok, outcome.message
    worse = build_edits(text, LineSpan(0, 2), "def f(x):\n    return (x + 1\n", "python")
    assert not worse.ok


def test_explanation_becomes_comments_at_the_code_indentation() -> None:
    outcome = build_comment_edits(
        FIXTURE,
        RENDER,
        "Joins the rows, each cut to `width` characters.\n\nReturns text.",
        "python",
    )
    assert outcome.ok
    (edit,) = outcome.edits
    assert (edit.line, edit.column, edit.end_line, edit.end_column) == (
        RENDER.start,
        0,
        RENDER.start,
        0,
    )
    assert edit.new_text == (
        "    # Joins the rows, each cut to `width` characters.\n    # Returns text.\n"
    )
    ast.parse(outcome.new_text)


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        ("```python\nx = 1\n```", "x = 1"),
        ("Here it is:\n\n```py\n    x = 1\n\ny = 2\n```\nThis sets x.", "    x = 1\n\ny = 2"),
        ("```python\nx = 1\ny = 2", "x = 1\ny = 2"),  # cut off: no closing fence
        ("x = 1\n", "x = 1"),
        ("```\nx = 1\n```\n\n```python\nz = 3\n```", "x = 1"),
    ],
)
def test_extract_code(answer: str, code: str) -> None:
    assert extract_code(answer) == code


_REPORT = (
    "def report(orders):\n    total = 0\n    for o in orders:\n        total += o.price\n"
    "    return total\n"
)


@pytest.mark.parametrize(
    ("language", "original", "rewrite", "problem"),
    [
        (  # the helper is defined and called: fine
            "python",
            _REPORT,
            "def _total(orders):\n    total = 0\n    for o in orders:\n        total += o.price\n"
            "    return total\n\n"
            "def report(orders):\n    total = _total(orders)\n    return total\n",
            None,
        ),
        (  # the helper is written but the original lines stay: dead code
            "python",
            _REPORT,
            "def _total(orders):\n    return sum(o.price for o in orders)\n\n" + _REPORT,
            "`_total` but did not replace",
        ),
        (  # only calls inside the helper itself (recursion) do not count
            "python",
            _REPORT,
            "def _walk(n):\n    return _walk(n - 1) if n else 0\n\n" + _REPORT,
            "did not replace",
        ),
        ("python", _REPORT, _REPORT.replace("o.price", "o.cost"), "did not write a new function"),
        (  # a method called through self
            "python",
            "    def render(self):\n        return [str(r) for r in self.rows]\n",
            "    def _lines(self):\n        return [str(r) for r in self.rows]\n\n"
            "    def render(self):\n        return self._lines()\n",
            None,
        ),
        (  # JavaScript: an arrow-function helper counts, a name inside a longer one does not
            "javascript",
            "function f(xs) {\n  return xs.map((x) => x * 2);\n}\n",
            "const double = (x) => x * 2;\nfunction f(xs) {\n  return xs.map(doubled);\n}\n",
            "`double`",
        ),
        (
            "javascript",
            "function f(xs) {\n  return xs.map((x) => x * 2);\n}\n",
            "const double = (x) => x * 2;\nfunction f(xs) {\n  return xs.map(double);\n}\n",
            None,
        ),
        ("go", "func f() int {\n\treturn 1\n}\n", "func f() int {\n\treturn 2\n}\n", None),
        ("plaintext", "a\n", "b\n", None),  # no grammar: no opinion
    ],
)
def test_extraction_problem(
    language: str, original: str, rewrite: str, problem: str | None
) -> None:
    found = extraction_problem(original, rewrite, language)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


def test_defined_functions_of_c_and_rust() -> None:
    c = defined_functions("c", "static int add(int a, int b) { return a + b; }\nint *g(void) {}\n")
    assert sorted(c) == ["add", "g"]
    assert sorted(defined_functions("rust", "fn main() {}\nimpl A { fn m(&self) {} }\n")) == [
        "m",
        "main",
    ]


def test_extract_prompt_has_the_selection_and_the_whole_function() -> None:
    action = builtin_config().actions["extract-function"]
    outline = Outline(FIXTURE, "python")
    target = target_for(action, outline, select("total = 0", "total += order.price"))
    assert target is not None
    user = build_messages(action, outline, target)[-1].content
    function = "\n".join(LINES[target.span.start : target.span.end]).rstrip()
    assert f"```python\n{function}\n```" in user
    assert "```python\n    total = 0\n    for order in orders:\n" in user


def test_extract_prompt_says_when_the_code_is_a_method() -> None:
    action = builtin_config().actions["extract-function"]
    outline = Outline(FIXTURE, "python")

    def prompt(first: str, last: str, text: str = FIXTURE) -> str:
        outline = Outline(text, "python")
        target = target_for(action, outline, select(first, last, text))
        assert target is not None
        return build_messages(action, outline, target)[-1].content

    assert "method of class `Report`" in prompt("for row in self.rows", "lines.append(text)")
    assert "through `self`" in prompt("for row in self.rows", "lines.append(text)")
    assert "method of class" not in prompt("total = 0", "total += order.price")
    # A function nested in a method is not a method itself.
    nested = FIXTURE.replace(
        "        lines = []\n",
        "        def clip(text):\n            return text[:width]\n\n        lines = []\n",
    )
    assert "method of class" not in prompt("def clip(text)", "return text[:width]", nested)
    assert outline.enclosing_class(LineSpan(line_of("lines = []"), line_of("lines = []") + 1)) == (
        "Report"
    )
    js = "class Cart {\n  total() {\n    let t = 0;\n    return t;\n  }\n}\n"
    assert Outline(js, "javascript").enclosing_class(LineSpan(2, 3)) == "Cart"


# -- with the model -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool() -> Iterator[ModelPool]:
    config = load_config(None, user_file=Path("/nonexistent/memlsp.yaml")).config
    assemble(config.models[MODEL])
    models = ModelPool(config.models, config.pool)
    yield models
    models.close()


@pytest.fixture(scope="module")
def agent(pool: ModelPool) -> RefactorAgent:
    return RefactorAgent(pool, dataclasses.replace(builtin_config(), model=MODEL))


def resolve(
    agent: RefactorAgent,
    action: str,
    where: TextRange,
    text: str = FIXTURE,
    instruction: str | None = None,
    diagnostics: tuple[DiagnosticInfo, ...] = (),
) -> tuple[ResolveResult, str, LineSpan]:
    """Resolve through the offer (as the server does) and apply the edits ourselves."""
    offer = next(
        o
        for o in agent.list_actions(
            text, "python", where, diagnostics, uri=URI, instruction=instruction
        )
        if o.action == action
    )
    request = ResolveRequest.from_data(
        json.loads(json.dumps(offer.data())), text=text, language_id="python"
    )
    seen: list[str] = []
    result = agent.resolve(request, threading.Event(), seen.append)
    assert result.message == "" and result.edits, (result.message, result.answer)
    assert seen and all(action_title in s for s in seen for action_title in [offer.title])
    new = apply_edits(text, result.edits)
    ast.parse(new)
    imports = line_of("import os", text) + 1
    assert edits_within(result.edits, offer.target, imports)
    return result, new, offer.target


def new_span(new: str, old_span: LineSpan, text: str = FIXTURE) -> list[str]:
    """The lines of ``new`` that replaced ``old_span`` (what is outside it is unchanged)."""
    old = text.split("\n")
    lines = new.split("\n")
    tail = len(old) - old_span.end
    assert lines[len(lines) - tail :] == old[old_span.end :]
    head = [i for i in range(old_span.start) if i < len(lines)]
    return lines[len(head) : len(lines) - tail]


@pytest.mark.model
def test_docstring(agent: RefactorAgent) -> None:
    _, new, _ = resolve(agent, "docstring", cursor("sizes = []"))
    function = next(n for n in ast.parse(new).body if isinstance(n, ast.FunctionDef))
    assert function.name == "total_size" and ast.get_docstring(function)


@pytest.mark.model
def test_type_hints(agent: RefactorAgent) -> None:
    _, new, _ = resolve(agent, "type-hints", cursor("result = 0"))
    function = next(n for n in ast.parse(new).body if isinstance(n, ast.FunctionDef))
    assert function.returns is not None and function.args.args[0].annotation is not None


@pytest.mark.model
def test_simplify_keeps_the_method_in_its_class(agent: RefactorAgent) -> None:
    _, new, span = resolve(agent, "simplify", cursor("lines = []"))
    report = next(n for n in ast.parse(new).body if isinstance(n, ast.ClassDef))
    assert "render" in [f.name for f in report.body if isinstance(f, ast.FunctionDef)]
    replaced = [line for line in new_span(new, span) if line.strip()]
    assert replaced[0].startswith("    def render(")  # base indentation kept
    assert all(line.startswith("    ") for line in replaced)


@pytest.mark.model
def test_extract_function(agent: RefactorAgent) -> None:
    _, new, _ = resolve(agent, "extract-function", select("total = 0", "total += order.price"))
    functions = {n.name: n for n in ast.parse(new).body if isinstance(n, ast.FunctionDef)}
    assert "report" in functions and len(functions) == 4  # a helper beside the original three
    (helper,) = set(functions) - {"total_size", "squares", "report"}
    called = {ast.unparse(n.func) for n in ast.walk(functions["report"]) if isinstance(n, ast.Call)}
    assert helper in called


@pytest.mark.model
def test_extract_function_from_a_method_keeps_self(agent: RefactorAgent) -> None:
    _, new, _ = resolve(agent, "extract-function", select("for row in self.rows", "lines.append"))
    report = next(n for n in ast.parse(new).body if isinstance(n, ast.ClassDef))
    methods = {n.name: n for n in report.body if isinstance(n, ast.FunctionDef)}
    assert "render" in methods and len(methods) == 3  # __init__, render and the helper
    (helper,) = (m for name, m in methods.items() if name not in ("__init__", "render"))
    assert helper.args.args and helper.args.args[0].arg == "self"  # a method, not a function
    # render now calls it (the 1.5B first kept render's lines beside the helper: the agent's
    # extraction check asks again, telling the model what was wrong).
    calls = [n for n in ast.walk(methods["render"]) if isinstance(n, ast.Call)]
    assert any(ast.unparse(c.func) == f"self.{helper.name}" for c in calls), new


@pytest.mark.model
def test_comprehension(agent: RefactorAgent) -> None:
    _, new, span = resolve(agent, "comprehension", cursor("out[i] = i * i"))
    assert span == LineSpan(line_of("out = {}"), line_of("out[i] = i * i") + 1)
    squares = next(
        n for n in ast.parse(new).body if isinstance(n, ast.FunctionDef) and n.name == "squares"
    )
    assert any(isinstance(n, ast.DictComp) for n in ast.walk(squares))
    assert not any(isinstance(n, ast.For) for n in ast.walk(squares))


@pytest.mark.model
def test_explain(agent: RefactorAgent) -> None:
    result, _, span = resolve(agent, "explain", cursor("text = str(row)"))
    (edit,) = result.edits
    assert (edit.line, edit.end_line) == (span.start, span.start)  # only inserted, above
    assert span == span_of("render")  # no selection: the enclosing function
    comments = edit.new_text.rstrip("\n").split("\n")
    assert comments and all(line.startswith("    # ") for line in comments)


@pytest.mark.model
def test_fix_diagnostics(agent: RefactorAgent) -> None:
    text = FIXTURE.replace("    result = 0\n", "    reslt = 0\n")
    line = line_of("result = result + s", text)
    problem = DiagnosticInfo(
        TextRange(line, 17, line, 23), "Undefined name `result`", "ruff", "F821"
    )
    _, new, _ = resolve(
        agent, "fix-diagnostics", cursor("result = result + s", text), text, diagnostics=(problem,)
    )
    total_size = next(n for n in ast.parse(new).body if isinstance(n, ast.FunctionDef))
    assigned = {
        t.id
        for n in ast.walk(total_size)
        if isinstance(n, ast.Assign)
        for t in n.targets
        if isinstance(t, ast.Name)
    }
    assert "result" in assigned or "reslt" not in new


@pytest.mark.model
def test_rewrite_with_instruction(agent: RefactorAgent) -> None:
    offer = agent.list_actions(FIXTURE, "python", cursor("tax ="))
    assert next(o for o in offer if o.action == "rewrite").needs_instruction
    _, new, _ = resolve(
        agent, "rewrite", cursor("tax ="), instruction="rename the variable tax to vat"
    )
    assert "vat" in new and "tax =" not in new


@pytest.mark.model
def test_rewrite_without_instruction_asks_for_one(agent: RefactorAgent) -> None:
    request = ResolveRequest("rewrite", URI, FIXTURE, "python", cursor("tax ="))
    result = agent.resolve(request, threading.Event())
    assert result.edits == () and "needs an instruction" in result.message


@pytest.mark.model
def test_user_defined_action_from_workspace(tmp_path: Path, pool: ModelPool) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / ".memlsp.yaml").write_text(
        textwrap.dedent(
            """\
            agents:
              refactor:
                actions:
                  shout:
                    title: Upper-case the strings
                    kind: refactor.rewrite
                    languages: [python]
                    applies_to: function
                    prompt: |
                      Rewrite this {language} function so that every string literal in it is in
                      upper case. Change nothing else.

                      ```{language}
                      {code}
                      ```
            """
        )
    )
    user_file = tmp_path / "user.yaml"  # this user lets workspaces word their own actions
    user_file.write_text("security: {allow_workspace_prompts: true}\n")
    loaded = load_config(ws, user_file=user_file)
    assert loaded.issues == ()
    config = dataclasses.replace(loaded.config.agents.refactor, model=MODEL)
    agent = RefactorAgent(pool, config)
    text = 'def greet(name):\n    return "hello, " + name\n'
    assert "shout" in names(agent.list_actions(text, "python", TextRange(1, 4, 1, 4)))
    assert "shout" not in names(agent.list_actions(text, "javascript", TextRange(1, 4, 1, 4)))
    request = ResolveRequest("shout", URI, text, "python", TextRange(1, 4, 1, 4))
    result = agent.resolve(request, threading.Event())
    assert result.message == "" and result.edits, result.answer
    new = apply_edits(text, result.edits)
    ast.parse(new)
    assert "HELLO" in new


@pytest.mark.model
def test_cancellation_stops_between_tokens(agent: RefactorAgent) -> None:
    cancel = threading.Event()
    cancelled_at: list[float] = []

    def progress(message: str) -> None:
        if "writing" in message and not cancel.is_set():
            cancel.set()
            cancelled_at.append(time.perf_counter())

    request = ResolveRequest("docstring", URI, FIXTURE, "python", cursor("lines = []"))
    with pytest.raises(RefactorCancelled):
        agent.resolve(request, cancel, progress)
    assert cancelled_at and time.perf_counter() - cancelled_at[0] < 5.0
    # Cancelled before it starts: no model call at all.
    with pytest.raises(RefactorCancelled):
        agent.resolve(request, cancel)
    # The model is still usable after a cancelled stream.
    result = agent.resolve(
        ResolveRequest("comprehension", URI, FIXTURE, "python", cursor("out[i] = i * i")),
        threading.Event(),
    )
    assert result.edits, (result.message, result.answer)
