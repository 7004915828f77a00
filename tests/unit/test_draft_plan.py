"""The draft planner (agents/completion/draft_plan.py) checks the guesses that pay on the
measured batch costs: none where a batch costs much more than the guesses save, many where
batches are cheap (a GPU) and guesses good; and it learns from what it checked."""

from __future__ import annotations

from memlsp.agents.completion.draft_plan import (
    EXPLORE_EVERY,
    MIN_SAMPLES,
    DraftPlanner,
)

# Milliseconds per batch size, as measured (agents/completion/draft_plan.py's docstring).
CPU_1_5B = {1: 83, 2: 124, 3: 151, 4: 154, 5: 193, 6: 225, 7: 252}
GPU = {n: 10 + 0.3 * n for n in range(1, 8)}


def measured(costs: dict[int, float], times: int = MIN_SAMPLES) -> DraftPlanner:
    planner = DraftPlanner(6)
    for _ in range(times):
        for size, ms in costs.items():
            planner.timed(size, ms / 1000)
    return planner


def test_before_any_measurement_background_decoding_tries_longer_batches() -> None:
    planner = DraftPlanner(6)
    # Long runs: most guesses right (prior). In the background, batches assumed cheap: tried.
    assert planner.count(4, 6, explore=True) >= 3
    # A request someone waits for assumes a CPU's costs: one guess, none of a short run's.
    assert planner.count(4, 6) == 1
    assert planner.count(2, 6) == 0
    assert planner.count(4, 0) == 0


def test_on_a_cpu_only_the_guesses_of_long_runs_pay() -> None:
    planner = measured(CPU_1_5B)
    # A 2-token match: a first guess right 30 % of the time cannot pay a batch of 1.5x.
    assert planner.count(2, 6) == 0
    # A 4-token match: several guesses, in a batch of an even size (3 costs what 4 does).
    assert planner.count(4, 6) == 3


def test_on_a_gpu_every_guess_pays() -> None:
    planner = measured(GPU)
    assert planner.count(4, 6) == 6
    assert planner.count(2, 6) >= 1


def test_guesses_found_wrong_stop_being_checked() -> None:
    planner = measured(CPU_1_5B)
    assert planner.count(4, 6) > 0
    for _ in range(40):
        planner.checked(4, 3, 0)
    assert planner.count(4, 6) == 0
    # ... but now and then one is checked in the background, to notice when the code starts
    # repeating itself; never in a request.
    assert [planner.count(4, 6) for _ in range(2 * EXPLORE_EVERY)] == [0] * 2 * EXPLORE_EVERY
    counts = [planner.count(4, 6, explore=True) for _ in range(EXPLORE_EVERY)]
    assert counts.count(1) == 1 and counts.count(0) == EXPLORE_EVERY - 1


def test_guesses_found_right_are_checked_more() -> None:
    planner = measured(CPU_1_5B)
    assert planner.count(2, 6) == 0
    for _ in range(40):
        planner.checked(2, 1, 1)
    assert planner.count(2, 6) >= 1


def test_one_slow_batch_does_not_rule_a_size_out() -> None:
    planner = measured({1: 83}, times=1)
    planner.timed(4, 2.0)  # a batch slowed by something else on the machine
    assert planner.count(4, 3, explore=True) == 3
    planner.timed(4, 2.0)
    planner.timed(4, 2.0)  # measured slow three times: it is slow
    assert planner.count(4, 3, explore=True) < 3


def test_summary_reports_the_measurements() -> None:
    summary = measured(CPU_1_5B).summary()
    assert summary["batch_ms"]["1"] == 83.0 and summary["batch_ms"]["7"] == 252.0
    assert summary["first_guess_right"]["4"] == 0.75
