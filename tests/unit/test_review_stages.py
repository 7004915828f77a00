"""The quality agent's staged review and its categories.

Staged review: the linters' result (with model findings carried over on unchanged code) goes to
``on_partial`` before any model stage runs, then one partial result after each model stage but
the last, whose result is returned. The plumbing tests plug in model stages of their own (plain
functions, recording what they saw): what is under test is the agent's ordering, merging,
cancelling and caching, with real ruff through the tool executor. The instruct review's own
stage runs with the real 0.5B model (marked ``model``).

Categories (``agents.quality.categories``): the prompt's checklist and reminder, the JSON
schema's enum and the worked example name only the allowed codes, and findings in other codes
are dropped.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from memlsp.agents.review.prompt import CodeView, build_messages, reminder, system_prompt
from memlsp.agents.review.quality import (
    INSTRUCT_STAGE,
    ModelStage,
    QualityAgent,
    StageInput,
    keep_categories,
)
from memlsp.agents.review.schema import CODES, ModelFinding, allowed_codes, review_schema
from memlsp.agents.review.tools import ToolExecutor
from memlsp.agents.review.types import (
    LLM_SOURCE,
    ReviewCancelled,
    ReviewFinding,
    ReviewRequest,
    ReviewResult,
)
from memlsp.config import Config, ModelSpec, load_config
from memlsp.config.schema import REVIEW_CATEGORIES, QualityConfig
from memlsp.models import ModelError, ModelPool
from memlsp.models.assembly import assemble

TEXT = """import os


def first(values):
    total = 0
    for v in values:
        total += v
    return total


def second(values):
    return [v * 2 for v in values]
"""
FIRST_RETURN = 7  # 0-based: "    return total"
SECOND_RETURN = 11  # "    return [v * 2 for v in values]"
# Stages of our own only: the instruct review is off (max_findings=0) in the plumbing tests.
STAGES_ONLY = QualityConfig(max_findings=0)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    return root.resolve()


@pytest.fixture
def tools(workspace: Path) -> Iterator[ToolExecutor]:
    with ToolExecutor.from_config(Config().agents.tools, workspace) as executor:
        yield executor


@pytest.fixture
def pool() -> Iterator[ModelPool]:
    pool = ModelPool({})  # the plumbing tests load no model
    yield pool
    pool.close()


def save(root: Path, text: str, version: int = 1, name: str = "m.py") -> ReviewRequest:
    path = root / name
    path.write_text(text, encoding="utf-8")
    return ReviewRequest(path.as_uri(), str(path), name, "python", text, version)


def finding_on(text: str, line: int, code: str = "bug") -> ReviewFinding:
    row = text.split("\n")[line]
    start = len(row) - len(row.lstrip())
    return ReviewFinding(line, start, line, len(row), "warning", code, code, LLM_SOURCE, "llm")


class Recorder:
    """A model stage that reports fixed findings and records what had been published when it
    ran (the stage list is the agent's, the stage's work is ours)."""

    def __init__(
        self, name: str, log: list[str], findings: list[ReviewFinding], fail: bool = False
    ) -> None:
        self.name, self.log, self.findings, self.fail = name, log, findings, fail
        self.seen: list[StageInput] = []

    def stage(self) -> ModelStage:
        return ModelStage(self.name, self.run)

    def run(self, work: StageInput, cancel: threading.Event) -> list[ReviewFinding]:
        self.log.append(f"run {self.name}")
        self.seen.append(work)
        if self.fail:
            raise ModelError(self.name, f"{self.name} has no model")
        return list(self.findings)


def staged(agent: QualityAgent, request: ReviewRequest, log: list[str]) -> list[ReviewResult]:
    """Every result of one review, partial ones first, the returned one last."""
    results: list[ReviewResult] = []

    def on_partial(result: ReviewResult) -> None:
        log.append(f"partial {result.stage}")
        results.append(result)

    results.append(agent.review(request, threading.Event(), on_partial))
    log.append(f"final {results[-1].stage}")
    return results


# --- staged results --------------------------------------------------------------------------


def test_linters_come_first_then_each_stage(
    pool: ModelPool, tools: ToolExecutor, workspace: Path
) -> None:
    log: list[str] = []
    fast = Recorder("surprise", log, [finding_on(TEXT, FIRST_RETURN, "wrong-return")])
    slow = Recorder("slow", log, [finding_on(TEXT, SECOND_RETURN)])
    agent = QualityAgent(pool, STAGES_ONLY, tools, stages=[fast.stage(), slow.stage()])
    assert [s.name for s in agent.model_stages()] == ["surprise", "slow"]
    results = staged(agent, save(workspace, TEXT), log)
    assert log == [
        "partial lint",
        "run surprise",
        "partial surprise",
        "run slow",
        "final slow",
    ]
    lint, after_fast, final = results
    assert [(f.code, f.origin) for f in lint.findings] == [("F401", "tool")]
    assert not lint.final and lint.stage == "lint" and lint.version == 1
    assert [(f.line, f.origin) for f in after_fast.findings] == [(0, "tool"), (FIRST_RETURN, "llm")]
    assert not after_fast.final
    assert [(f.line, f.origin) for f in final.findings] == [
        (0, "tool"),
        (FIRST_RETURN, "llm"),
        (SECOND_RETURN, "llm"),
    ]
    assert final.final and final.stage == "slow" and not final.from_cache
    # Each stage saw the linters' findings and the rows to review (the whole small file).
    work = fast.seen[0]
    assert [f.code for f in work.tool_findings] == ["F401"]
    assert work.scope.whole_file and SECOND_RETURN in work.scope.rows
    stats = agent.stats()
    assert stats["partials"] == 2
    assert stats["stages"]["surprise"]["runs"] == 1
    assert stats["stages"]["slow"]["findings"] == 1


def test_carried_findings_are_in_the_linters_result(
    pool: ModelPool, tools: ToolExecutor, workspace: Path
) -> None:
    log: list[str] = []
    stage = Recorder("s", log, [finding_on(TEXT, FIRST_RETURN)])
    agent = QualityAgent(pool, STAGES_ONLY, tools, stages=[stage.stage()])
    staged(agent, save(workspace, TEXT, version=1), log)
    # The second function changes; the first (with the model's finding) does not.
    edited = TEXT.replace("v * 2", "v * 3")
    stage.findings = []
    lint, final = staged(agent, save(workspace, edited, version=2), log)
    assert lint.stage == "lint" and lint.version == 2
    assert [(f.line, f.origin) for f in lint.findings] == [(0, "tool"), (FIRST_RETURN, "llm")]
    assert [(f.line, f.origin) for f in final.findings] == [(0, "tool"), (FIRST_RETURN, "llm")]
    # Nothing changed in a third save of the same text: the cache answers, no partial result.
    log.clear()
    cached = staged(agent, save(workspace, edited, version=3), log)
    assert log == ["final cache"] and len(cached) == 1 and cached[0].from_cache
    assert cached[0].version == 3 and cached[0].findings == final.findings


def test_no_model_stage_no_partial_result(
    pool: ModelPool, tools: ToolExecutor, workspace: Path
) -> None:
    log: list[str] = []
    stage = Recorder("s", log, [])
    off = dataclasses.replace(STAGES_ONLY, enabled=False)  # linters only
    agent = QualityAgent(pool, off, tools, stages=[stage.stage()])
    assert agent.model_stages() == []
    results = staged(agent, save(workspace, TEXT), log)
    assert log == ["final lint"] and results[0].final
    assert [f.code for f in results[0].findings] == ["F401"]


def test_cancelled_after_the_linters_runs_no_stage(
    pool: ModelPool, tools: ToolExecutor, workspace: Path
) -> None:
    log: list[str] = []
    stage = Recorder("s", log, [finding_on(TEXT, FIRST_RETURN)])
    agent = QualityAgent(pool, STAGES_ONLY, tools, stages=[stage.stage()])
    cancel = threading.Event()
    partials: list[ReviewResult] = []

    def newer_save(result: ReviewResult) -> None:
        partials.append(result)
        cancel.set()  # what a newer save does while the linters' result is published

    request = save(workspace, TEXT)
    with pytest.raises(ReviewCancelled):
        agent.review(request, cancel, newer_save)
    assert [p.stage for p in partials] == ["lint"] and log == []
    assert agent.stats()["cancelled"] == 1
    # Nothing was remembered: the same text is reviewed again, in full.
    again = staged(agent, request, log)
    assert log[-2:] == ["run s", "final s"] and not again[-1].from_cache


def test_a_failed_stage_leaves_the_others(
    pool: ModelPool, tools: ToolExecutor, workspace: Path
) -> None:
    log: list[str] = []
    broken = Recorder("broken", log, [], fail=True)
    works = Recorder("works", log, [finding_on(TEXT, SECOND_RETURN)])
    agent = QualityAgent(pool, STAGES_ONLY, tools, stages=[broken.stage(), works.stage()])
    request = save(workspace, TEXT)
    *_, final = staged(agent, request, log)
    assert [(f.line, f.origin) for f in final.findings] == [(0, "tool"), (SECOND_RETURN, "llm")]
    assert any(n.startswith("model broken skipped: broken has no model") for n in final.notes)
    stats = agent.stats()
    assert stats["model_errors"] == 1 and stats["stages"]["broken"]["errors"] == 1
    # Not cached: the next save of the same text tries the failed stage again.
    log.clear()
    staged(agent, dataclasses.replace(request, version=2), log)
    assert "run broken" in log and "run works" in log


# --- categories --------------------------------------------------------------------------------


def test_config_categories_are_the_schema_codes() -> None:
    assert tuple(CODES) == REVIEW_CATEGORIES
    assert QualityConfig().categories == tuple(CODES)
    loaded = load_config(
        None,
        user_file=Path("/nonexistent/m.yaml"),
        extra_layers=[("test", {"agents": {"quality": {"categories": ["bug", "off-by-one"]}}})],
    )
    assert loaded.config.agents.quality.categories == ("bug", "off-by-one")


def test_schema_and_prompt_name_only_the_allowed_codes() -> None:
    codes = ("bug", "off-by-one", "no-such-code")
    assert allowed_codes(codes) == ("off-by-one", "bug")  # known ones, in CODES order
    assert allowed_codes(None) == tuple(CODES)
    finding = review_schema(5, codes)["properties"]["findings"]["items"]
    assert finding["properties"]["code"]["enum"] == ["off-by-one", "bug"]
    assert review_schema(5)["properties"]["findings"]["items"]["properties"]["code"]["enum"] == (
        list(CODES)
    )
    with pytest.raises(ValueError):
        review_schema(5, ("no-such-code",))
    system = system_prompt(codes)
    assert "- off-by-one:" in system and "- bug:" in system
    assert "- mutable-default:" not in system and "- style:" not in system
    assert system_prompt() == system_prompt(tuple(CODES))  # the default is every code
    assert "- mutable-default:" in system_prompt()
    python = reminder("python", codes)
    assert "off-by-one loop bounds" in python and "other bugs" in python
    assert "`=[]`" not in python and "`== None`" not in python
    # The worked example keeps only its findings in allowed codes (off-by-one, not the leak)...
    view = CodeView("a.py", "python", ((0, "x = 1"),), False)
    messages = build_messages(view, [], [], codes)
    assert [m.role for m in messages] == ["system", "user", "assistant", "user"]
    assert "off-by-one" in messages[2].content and "resource-leak" not in messages[2].content
    assert "`=[]`" not in messages[-1].content
    # ...and goes when none of them is allowed (an example answering [] teaches silence).
    assert [m.role for m in build_messages(view, [], [], ("bug",))] == ["system", "user"]


def test_findings_in_other_categories_are_dropped() -> None:
    def model(code: str) -> ModelFinding:
        return ModelFinding(1, "x = 1", code, "warning", "m")

    found = [model("bug"), model("style"), model("off-by-one"), model("style")]
    kept = keep_categories(found, ("bug", "off-by-one"))
    assert [f.code for f in kept] == ["bug", "off-by-one"]
    assert keep_categories(found, tuple(CODES)) == found


def test_the_instruct_review_is_off_by_default(pool: ModelPool) -> None:
    """Measured on bench_bugs: its findings came as often on clean files as on bugs."""
    assert QualityAgent(pool, QualityConfig(), None).model_stages() == []
    on = QualityAgent(pool, QualityConfig(instruct=True), None)
    assert [s.name for s in on.model_stages()] == [INSTRUCT_STAGE]


def test_categories_decide_the_instruct_stage(pool: ModelPool) -> None:
    narrow = QualityAgent(pool, QualityConfig(instruct=True, categories=("bug", "nonsense")), None)
    assert narrow.codes == ("bug",)
    assert [s.name for s in narrow.model_stages()] == [INSTRUCT_STAGE]
    assert narrow.stats()["categories"] == ["bug"]
    # No known category: nothing the model could report, no model call.
    none = QualityAgent(pool, QualityConfig(instruct=True, categories=("nonsense",)), None)
    assert none.model_stages() == []


# --- with the real instruct model ------------------------------------------------------------

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
"""


@pytest.fixture(scope="module")
def fast_pool() -> Iterator[ModelPool]:
    models = (
        Config().models or load_config(None, user_file=Path("/nonexistent/m.yaml")).config.models
    )
    spec: ModelSpec = models[FAST]
    assemble(spec)
    pool = ModelPool(models)
    yield pool
    pool.close()


@pytest.mark.model
def test_instruct_review_is_published_after_the_linters(
    fast_pool: ModelPool, tools: ToolExecutor, workspace: Path
) -> None:
    quality = QualityConfig(
        model=FAST,
        instruct=True,
        max_findings=3,
        max_tokens=384,
        categories=("mutable-default", "bug"),
    )
    agent = QualityAgent(fast_pool, quality, tools)
    seen: list[tuple[ReviewResult, int]] = []

    def on_partial(result: ReviewResult) -> None:
        seen.append((result, agent.stats()["model_calls"]))

    final = agent.review(save(workspace, PLANTED), threading.Event(), on_partial)
    assert len(seen) == 1
    lint, calls_then = seen[0]
    assert calls_then == 0  # handed over before the model was asked
    assert lint.stage == "lint" and {f.origin for f in lint.findings} == {"tool"}
    assert "F401" in {f.code for f in lint.findings}
    assert final.final and final.stage == INSTRUCT_STAGE
    assert agent.stats()["model_calls"] == 1
    # The linters' findings are all in the final result too, and every model finding is in an
    # allowed category (the grammar's enum; the output filter backs it up).
    assert set(lint.findings) <= set(final.findings)
    assert {f.code for f in final.findings if f.origin == "llm"} <= {"mutable-default", "bug"}
    assert agent.stats()["off_category"] == 0
