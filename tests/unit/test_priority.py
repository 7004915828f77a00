"""Interactive model work before background work (models/priority.py), with real threads.

The model-level behaviour (a review pausing for, and giving its model up to, a completion) is in
test_quality.py."""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Iterator

from memlsp.models.priority import MAX_PREEMPTIONS, SETTLE_LIMIT_S, Preempted, Priority


@contextlib.contextmanager
def interactive(priority: Priority, model: str) -> Iterator[None]:
    """What ModelPool.acquire(..., interactive=True) does around its lock."""
    with priority.wanting(model), priority.running(model):
        yield


def run_steps(
    priority: Priority,
    holding: str,
    cancel: threading.Event,
    steps: int,
    log: list[float],
    outcome: list[str] | None = None,
    preemptible: bool = True,
) -> threading.Thread:
    """A background worker: ``steps`` steps, each logging when it started computing; how it
    ended goes to ``outcome``."""
    pacer = priority.background(holding, cancel, preemptible)

    def work() -> None:
        try:
            for _ in range(steps):
                with pacer.step():
                    if cancel.is_set():
                        return
                    log.append(time.monotonic())
                    time.sleep(0.01)
        except Preempted:
            (outcome if outcome is not None else []).append("preempted")
            return
        (outcome if outcome is not None else []).append("done")

    worker = threading.Thread(target=work)
    worker.start()
    return worker


def test_background_waits_while_interactive_work_runs_on_another_model() -> None:
    priority = Priority()
    started: list[float] = []
    with interactive(priority, "coder"):
        worker = run_steps(priority, "reviewer", threading.Event(), 3, started)
        time.sleep(0.5)
        assert started == []  # not one step while the completion runs
        released = time.monotonic()
    worker.join(timeout=5)
    assert len(started) == 3 and started[0] >= released
    stats = priority.stats()
    assert stats["background_pauses"] == 1 and stats["background_paused_s"] >= 0.4
    assert stats["interactive_active"] == 0


def test_background_gives_up_a_model_an_interactive_request_wants() -> None:
    # The interactive request waits for this model's lock, held by the background work: if the
    # background waited too, neither would ever go on; so it gives the model up.
    priority = Priority()
    started: list[float] = []
    outcome: list[str] = []
    with priority.wanting("shared"):  # waiting for the lock
        worker = run_steps(priority, "shared", threading.Event(), 3, started, outcome)
        worker.join(timeout=5)
    assert outcome == ["preempted"] and started == []
    assert priority.stats()["background_preempted"] == 1


def test_preempted_while_paused_for_another_model() -> None:
    priority = Priority()
    outcome: list[str] = []
    with interactive(priority, "coder"):
        worker = run_steps(priority, "reviewer", threading.Event(), 3, [], outcome)
        time.sleep(0.3)  # paused for the completion on "coder"
        with priority.wanting("reviewer"):  # a refactor now wants the review's model
            worker.join(timeout=5)
    assert outcome == ["preempted"]


def test_background_past_its_preemptions_keeps_its_model() -> None:
    priority = Priority()
    started: list[float] = []
    outcome: list[str] = []
    with priority.wanting("shared"):
        worker = run_steps(priority, "shared", threading.Event(), 3, started, outcome, False)
        worker.join(timeout=5)
    assert outcome == ["done"] and len(started) == 3
    assert priority.stats()["background_preempted"] == 0
    assert MAX_PREEMPTIONS >= 1


@contextlib.contextmanager
def _request_ending_after(
    priority: Priority, model: str, seconds: float
) -> Iterator[threading.Event]:
    """An interactive request for ``model`` in another thread, under way on entry, ending
    after ``seconds``; yields the event set when it ends."""
    wanted, ended = threading.Event(), threading.Event()

    def request() -> None:
        with priority.wanting(model):
            wanted.set()
            ended.wait(5)

    worker = threading.Thread(target=request)
    worker.start()
    assert wanted.wait(5)
    threading.Timer(seconds, ended.set).start()
    try:
        yield ended
    finally:
        ended.set()
        worker.join(timeout=5)


def test_wait_unwanted_returns_when_the_interactive_request_ends() -> None:
    priority = Priority()
    priority.wait_unwanted("shared", threading.Event())  # nobody wants it: returns at once
    with _request_ending_after(priority, "shared", 0.3) as ended:
        started = time.monotonic()
        priority.wait_unwanted("shared", threading.Event())
        assert time.monotonic() - started >= 0.25 and ended.is_set()
    cancel = threading.Event()
    with priority.wanting("shared"):
        threading.Timer(0.2, cancel.set).start()
        started = time.monotonic()
        priority.wait_unwanted("shared", cancel)  # ends on the cancel
        assert 0.15 <= time.monotonic() - started < 2


def test_wait_quiet_waits_for_any_interactive_request_within_its_limit() -> None:
    priority = Priority()
    started = time.monotonic()
    priority.wait_quiet(5)  # nothing wanted: at once
    assert time.monotonic() - started < 0.1
    with priority.wanting("other-model"):
        started = time.monotonic()
        priority.wait_quiet(0.3)  # never quiet: the limit ends it
        assert 0.25 <= time.monotonic() - started < 2
    with _request_ending_after(priority, "fim", 0.2) as ended:
        started = time.monotonic()
        priority.wait_quiet(5)  # returns when the request ends
        assert 0.15 <= time.monotonic() - started < 2 and ended.is_set()


def test_cancel_ends_a_paused_step() -> None:
    priority = Priority()
    cancel = threading.Event()
    started: list[float] = []
    with interactive(priority, "coder"):
        worker = run_steps(priority, "reviewer", cancel, 3, started)
        time.sleep(0.2)
        cancel.set()
        worker.join(timeout=2)
        assert not worker.is_alive() and started == []


@contextlib.contextmanager
def step_in_flight(priority: Priority, model: str, ended: list[float]) -> Iterator[threading.Event]:
    """A background step on ``model`` computing until the yielded event is set (or 10 s); when
    it ended goes to ``ended``."""
    in_step = threading.Event()
    finish = threading.Event()

    def step() -> None:
        with priority.background(model, threading.Event()).step():
            in_step.set()
            finish.wait(10)
            ended.append(time.monotonic())

    worker = threading.Thread(target=step)
    worker.start()
    assert in_step.wait(5)
    try:
        yield finish
    finally:
        finish.set()
        worker.join(timeout=5)


def test_interactive_work_waits_for_the_background_step_in_flight() -> None:
    priority = Priority()
    ended: list[float] = []
    with step_in_flight(priority, "reviewer", ended) as finish:
        threading.Timer(0.3, finish.set).start()
        with interactive(priority, "coder"):
            entered = time.monotonic()
    assert ended and entered >= ended[0]
    assert priority.stats()["interactive_waits"] == 1


def test_interactive_work_stops_waiting_for_a_step_that_does_not_end() -> None:
    priority = Priority()
    with step_in_flight(priority, "reviewer", []):
        started = time.monotonic()
        with interactive(priority, "coder"):
            waited = time.monotonic() - started
    assert SETTLE_LIMIT_S - 0.1 <= waited < SETTLE_LIMIT_S + 2


def test_interactive_on_the_same_model_does_not_wait_for_its_step() -> None:
    priority = Priority()
    with step_in_flight(priority, "shared", []):
        started = time.monotonic()
        with interactive(priority, "shared"):
            waited = time.monotonic() - started
    assert waited < 0.5 and priority.stats()["interactive_waits"] == 0


def test_background_steps_on_different_models_never_overlap() -> None:
    # Indexing embeddings beside a review's prompt batches: two thread pools on the same cores.
    priority = Priority()
    spans: list[tuple[str, float, float]] = []
    lock = threading.Lock()

    def work(model: str) -> None:
        pacer = priority.background(model, threading.Event())
        for _ in range(5):
            with pacer.step():
                started = time.monotonic()
                time.sleep(0.02)
                with lock:
                    spans.append((model, started, time.monotonic()))

    workers = [threading.Thread(target=work, args=(m,)) for m in ("embedder", "reviewer")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=5)
    assert len(spans) == 10
    ordered = sorted(spans, key=lambda span: span[1])
    assert all(a[2] <= b[1] for a, b in itertools.pairwise(ordered))
    # First come, first served: neither worker ran all its steps before the other started.
    first_done = min(max(e for m, _, e in spans if m == name) for name in ("embedder", "reviewer"))
    assert any(s < first_done for m, s, _ in spans if m != ordered[0][0])
    assert priority.stats()["background_turn_waits"] > 0
