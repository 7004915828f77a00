"""Prompt-lookup drafts (agents/completion/draft.py) give exactly the text and tokens of plain
greedy decoding, on the real 0.5B; and the generation time cap (max_predict_ms) ends at a line."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator

import pytest
from fim_pool import FIM, fim_pool

from memlsp.agents.completion.blank_line import expected_start
from memlsp.agents.completion.draft import MAX_DRAFT, PromptLookup
from memlsp.agents.completion.draft_plan import SAMPLES, DraftPlanner
from memlsp.agents.completion.generator import (
    Decoded,
    GeneratorAgent,
    InlineRequest,
    _decode,
)
from memlsp.agents.completion.postprocess import CompletionMode
from memlsp.config import Config
from memlsp.models import ModelPool
from memlsp.models.kv_states import KvStates
from memlsp.models.token_pieces import token_bytes


def test_the_longest_recent_run_wins() -> None:
    lookup = PromptLookup([1, 2, 3, 9, 1, 2, 7, 8, 5, 2], capacity=8, max_ngram=3, min_ngram=1)
    # Only `2` matches: its most recent earlier occurrence is followed by 7 8 5 2.
    assert lookup.propose(3) == [7, 8, 5]
    assert lookup.matched == 1
    lookup.append(3)  # `2 3` matches at the start, rather than a nearer lone `3`
    assert lookup.propose(4) == [9, 1, 2, 7]
    assert lookup.matched == 2
    # `9 1 2` (the longest run) beats the more recent `1 2` followed by 8.
    lookup = PromptLookup([9, 1, 2, 7, 1, 2, 8, 5, 9, 1, 2], capacity=0, min_ngram=1)
    assert lookup.propose(2) == [7, 1]
    assert lookup.matched == 3


def test_nothing_to_propose() -> None:
    lookup = PromptLookup([1, 2, 3, 4], capacity=4, min_ngram=2)
    assert lookup.propose(5) == []  # `3 4` occurs nowhere before
    assert lookup.matched == 0
    assert PromptLookup([5], capacity=1, min_ngram=1).propose(3) == []
    lookup = PromptLookup([1, 2, 1, 2], capacity=0, min_ngram=2, max_draft=1)
    assert lookup.propose(0) == []
    assert lookup.propose(9) == [1]  # at most max_draft
    lookup.append(7)  # past the announced capacity: it grows
    lookup.append(8)
    assert lookup.propose(3) == []


def test_as_many_guesses_as_follow_up_to_the_limits() -> None:
    lookup = PromptLookup([1, 2, 3, 4, 5, 6, 7, 8, 1, 2], capacity=0, max_draft=4)
    assert lookup.propose(9) == [3, 4, 5, 6]  # max_draft
    assert lookup.propose(2) == [3, 4]  # the caller's limit


def test_the_run_may_overlap_the_end() -> None:
    lookup = PromptLookup([4, 4, 4, 4], capacity=2, min_ngram=2, max_ngram=2)
    assert lookup.propose(5) == [4]  # `4 4` last seen at 1, followed by the final 4


@pytest.fixture(scope="module")
def pool() -> Iterator[ModelPool]:
    pool = fim_pool()
    yield pool
    pool.close()


# Code that repeats itself, the cursor where a repetition starts; with the mode to decode in.
PROMPTS: list[tuple[str, str, CompletionMode]] = [
    (
        "def area(shape):\n"
        "    if shape.kind == 'square':\n"
        "        return shape.width * shape.width\n"
        "    if shape.kind == 'rectangle':\n"
        "        return shape.width * shape.height\n"
        "    if shape.kind == 'circle':\n",
        "\n    raise ValueError(shape.kind)\n",
        "multi",
    ),
    (
        "class Point:\n    def __init__(self, x, y, z):\n",
        "\n    def __repr__(self):\n"
        "        return f'Point(x={self.x!r}, y={self.y!r}, z={self.z!r})'\n",
        "multi",
    ),
    (
        "SETTINGS = {\n"
        "    'host': os.environ.get('APP_HOST', 'localhost'),\n"
        "    'port': os.environ.get('APP_PORT', '8080'),\n"
        "    'user': ",
        "\n}\n",
        "single",
    ),
    (
        "import logging\n\nlog = logging.getLogger(__name__)\n\n\n"
        "def load(path):\n    log.debug('loading %s', path)\n    with open(path) as f:\n"
        "        return f.read()\n\n\ndef save(path, text):\n",
        "\n",
        "multi",
    ),
]


def run(
    pool: ModelPool,
    prefix: str,
    suffix: str,
    mode: CompletionMode,
    *,
    draft: str,
    cap: int = 0,
    planner: DraftPlanner | None = None,
    expect: list[int] | None = None,
) -> Decoded:
    with pool.acquire(FIM) as model:
        llama = model.llama
        special = {
            name: int(llama.tokenize(f"<|fim_{name}|>".encode(), add_bos=False, special=True)[0])
            for name in ("prefix", "suffix", "middle", "pad")
        }
        text = f"<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>"
        tokens = list(llama.tokenize(text.encode(), add_bos=False, special=True))
        llama.n_tokens = 0  # each run from a cold cache: both ways see the same prefill
        return _decode(
            model,
            KvStates(0),
            "file:///t.py",
            tokens,
            0,
            frozenset(special.values()),
            mode,
            64,
            8,
            prefix.rsplit("\n", 1)[-1],
            threading.Event(),
            draft=draft,
            planner=planner,
            max_predict_ms=cap,
            expect=expect or (),
        )


@pytest.mark.model
@pytest.mark.parametrize("planned", [False, True], ids=["every-guess", "planned"])
def test_drafts_give_the_text_and_tokens_of_plain_greedy(pool: ModelPool, planned: bool) -> None:
    # Planned: the planner measures as it goes and checks some of the guesses, not all; the
    # text must not depend on which. It starts from a GPU's costs (every batch about one
    # evaluation), so that it checks guesses on any machine: on a CPU where none pays it
    # would soon check none, and the test would show nothing.
    planner = DraftPlanner(MAX_DRAFT) if planned else None
    if planner is not None:
        for size in range(1, MAX_DRAFT + 2):
            for _ in range(SAMPLES):
                planner.timed(size, 0.01)
    drafted = accepted = 0
    for prefix, suffix, mode in PROMPTS:
        plain = run(pool, prefix, suffix, mode, draft="off", planner=planner)
        drafting = run(pool, prefix, suffix, mode, draft="prompt-lookup", planner=planner)
        assert plain.drafted == 0
        assert drafting.tokens == plain.tokens, prefix
        assert drafting.text == plain.text and plain.text.strip(), prefix
        assert drafting.generated == plain.generated
        drafted += drafting.drafted
        accepted += drafting.accepted
    assert accepted >= 5, (accepted, drafted)  # the guesses were used, not only checked


@pytest.mark.model
def test_the_expected_start_gives_the_text_and_tokens_of_plain_greedy(pool: ModelPool) -> None:
    # A cursor on a blank line in the function: the prompt cut at the end of the line above.
    prefix, suffix = PROMPTS[0][0].rstrip("\n"), PROMPTS[0][1]
    with pool.acquire(FIM) as model:
        llama = model.llama
        expect = expected_start(
            "        ",
            lambda text: list(llama.tokenize(text.encode(), add_bos=False)),
            lambda token: token_bytes(llama, token),
        )
    assert len(expect) == 2  # the newline, then seven spaces (the eighth goes with the word)
    plain = run(pool, prefix, suffix, "multi", draft="off")
    assert list(plain.tokens[:2]) == expect and (plain.expected, plain.expected_right) == (0, 0)
    guessed = run(pool, prefix, suffix, "multi", draft="off", expect=expect)
    assert guessed.tokens == plain.tokens and guessed.text == plain.text
    assert (guessed.expected, guessed.expected_right) == (2, 2)
    # Guessed wrong (a blank line first): the wrong guess goes, the text is the same.
    wrong = run(pool, prefix, suffix, "multi", draft="prompt-lookup", expect=[expect[0]] * 2)
    assert wrong.tokens == plain.tokens and wrong.text == plain.text
    assert (wrong.expected, wrong.expected_right) == (2, 1)


def agent(pool: ModelPool, **changes: object) -> GeneratorAgent:
    config = dataclasses.replace(Config().agents.generator, context_tokens=0, **changes)
    return GeneratorAgent(pool, config, FIM)


@pytest.mark.model
def test_the_agent_answers_the_same_with_drafts_and_healing(pool: ModelPool) -> None:
    # The cursor inside a word: the first tokens are healed ones, not drafted.
    prefix = PROMPTS[0][0] + "        return shape.wid"
    request = InlineRequest("file:///t.py", "t.py", "python", prefix, PROMPTS[0][1])
    plain = agent(pool, draft="off", max_predict_ms=0).complete(request, threading.Event())
    drafting = agent(pool, draft="prompt-lookup", max_predict_ms=0)
    # As measured where batches cost about one evaluation (a GPU): every guess pays.
    planner = drafting._planner(FIM)
    for size in range(1, MAX_DRAFT + 2):
        for _ in range(3):
            planner.timed(size, 0.01)
    primed = sum(len(times) for times in planner._times)
    assert drafting.complete(request, threading.Event()).text == plain.text
    assert plain.text.startswith("th * shape.")
    stats = drafting.stats()
    assert stats["accepted_drafts"] >= 1
    # The planner measured the request's own evaluations too.
    assert sum(len(times) for times in planner._times) > primed


@pytest.mark.model
def test_past_the_time_cap_generation_ends_at_a_line(pool: ModelPool) -> None:
    prefix, suffix, mode = PROMPTS[1]
    whole = run(pool, prefix, suffix, mode, draft="off")
    lines = whole.text.split("\n")
    assert len([line for line in lines if line.strip()]) >= 2 and not whole.timed_out
    cut = run(pool, prefix, suffix, mode, draft="off", cap=1)
    # The first line is finished, then it stops: the text is whole lines of the uncut answer.
    assert cut.timed_out and cut.text.strip()
    assert cut.text == "\n".join(lines[: len(cut.text.split("\n"))])
    assert len(cut.text) < len(whole.text.rstrip("\n"))
    drafted = run(pool, prefix, suffix, mode, draft="prompt-lookup", cap=1)
    assert drafted.timed_out and drafted.text == cut.text  # no line is complete any sooner
