"""Typing goes first: interactive model work (completions, refactors) before background work
(reviews, embeddings for indexing, work-ahead prefills).

On a CPU every model call uses all cores, and two calls at once do not share them fairly: the
thread pools spin against each other and both slow down many times over. A review of a saved
file runs for tens of seconds on the 1.5B model; a completion asked in a typing pause while it
ran used to miss the pause altogether. So background work runs in steps (a prompt batch, one
token), and before each step:

- it waits while an interactive request computes on another model; that request, once it holds
  its model, waits for the background step in flight to end (a fraction of a second);
- it gives way (``Preempted``) when an interactive request wants the model it holds: that
  request would otherwise wait for the lock until the whole review ends. The step in flight
  is stopped mid-graph (the model's abort flag, ``models.abort``) instead of the request
  waiting for it (a 32-token batch of the 1.5B: ~0.5 s on 2 cores). The review releases the
  model, waits for the interactive requests on it to finish, and starts its model call again
  (the prompt is evaluated again, less what the KV cache still holds). A background call gives
  way a bounded number of times, so continuous typing cannot starve reviews.

An interactive request counts as *wanting* a model from before it waits for the model's lock,
and as *running* once it holds it: only running requests pause work on other models, so a
request that must wait for memory held by a paused review cannot wait for it forever.

Background steps also take turns among themselves, across models: indexing embeddings beside a
review (or a work-ahead prefill) would spin two thread pools on the same cores again. So, with
interactive work settled by one step at most, at most one llama.cpp compute runs at a time.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from typing import Any

from memlsp.models.abort import Cancel, ComputeAbort, for_model

__all__ = ["MAX_PREEMPTIONS", "BackgroundPacer", "Preempted", "Priority"]

# Longest an interactive request waits for a background step to finish (a 64-token prompt
# batch of the 1.5B model takes ~0.4 s on 2 cores); past it the request runs anyway.
SETTLE_LIMIT_S = 2.0
# Times one background call gives its model up before it keeps it to the end.
MAX_PREEMPTIONS = 3
# How often a waiting background step looks at its cancel flag.
_POLL_S = 0.1


class Preempted(Exception):
    """An interactive request wants the model this background call holds: release it."""


class Priority:
    """One per model pool: which models interactive requests want and run on."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._wanted: Counter[str] = Counter()  # model -> interactive requests waiting or running
        self._running: Counter[str] = Counter()  # model -> interactive requests holding it
        self._background_steps: Counter[str] = Counter()  # model -> steps computing
        self._pauses = 0
        self._paused_s = 0.0
        self._preemptions = 0
        self._settles = 0
        self._settle_s = 0.0
        self._turn_waits = 0  # background steps that waited for another one's turn
        self._turn_queue: deque[object] = deque()  # background steps waiting, oldest first
        # model -> its preemptible background steps computing: (trigger, whether a request on
        # any model stops it) (models.abort)
        self._stoppable: dict[str, list[tuple[Cancel, bool]]] = {}
        self._aborted_steps = 0

    @contextlib.contextmanager
    def wanting(self, model: str) -> Iterator[None]:
        """An interactive request for ``model``, from before it waits for the model's lock."""
        with self._cv:
            self._wanted[model] += 1
            stopping = [trigger for trigger, _ in self._stoppable.get(model, ())]
        for trigger in stopping:  # the background step in flight ends now, not in a batch
            trigger.set()
        with self._counted(self._wanted, model):
            yield

    @contextlib.contextmanager
    def running(self, model: str) -> Iterator[None]:
        """An interactive request computing on ``model`` (it holds the model)."""
        with self._cv:
            self._running[model] += 1
            stopping = [
                trigger
                for name, steps in self._stoppable.items()
                if name != model
                for trigger, for_any in steps
                if for_any
            ]
        for trigger in stopping:  # cheap steps on other models (embeddings) end now too
            trigger.set()
        with self._cv:
            if self._busy_elsewhere(model):
                started = time.monotonic()
                self._cv.wait_for(lambda: not self._busy_elsewhere(model), SETTLE_LIMIT_S)
                self._settles += 1
                self._settle_s += time.monotonic() - started
        with self._counted(self._running, model):
            yield

    def background(
        self,
        holding: str,
        cancel: threading.Event,
        preemptible: bool = True,
        llama: Any = None,
        stopped_by_any: bool = False,
    ) -> BackgroundPacer:
        """A pacer for background work that holds model ``holding``. With its ``llama``, a
        request that wants the model stops the step in flight mid-graph (``models.abort``)
        instead of waiting for it; with ``stopped_by_any``, so does a request that starts
        computing on another model (for steps cheap to do again: an indexing embedding, not
        a work-ahead that a memory query would cancel on every key)."""
        stopper = for_model(llama) if llama is not None and preemptible else None
        return BackgroundPacer(self, holding, cancel, preemptible, stopper, stopped_by_any)

    def wait_unwanted(self, model: str, cancel: threading.Event) -> None:
        """Block until no interactive request wants ``model`` (or ``cancel``): a preempted
        background call waits here before it takes the model again."""
        with self._cv:
            while self._wanted[model] and not cancel.is_set():
                self._cv.wait(_POLL_S)

    def wait_quiet(self, limit_s: float) -> None:
        """Block while an interactive request wants any model, at most ``limit_s``: Python
        work in the background (an import) waits here between steps."""
        with self._cv:
            self._cv.wait_for(lambda: not self._wanted, limit_s)

    def stats(self) -> dict[str, Any]:
        with self._cv:
            return {
                "interactive_active": sum(self._wanted.values()),
                "background_pauses": self._pauses,
                "background_paused_s": round(self._paused_s, 3),
                "background_preempted": self._preemptions,
                "background_aborted": self._aborted_steps,
                "background_turn_waits": self._turn_waits,
                "interactive_waits": self._settles,
                "interactive_waited_s": round(self._settle_s, 3),
            }

    # -- internals: callers hold _cv --------------------------------------------------------

    def _busy_elsewhere(self, model: str) -> bool:
        """A background step on another model is computing (the same model's cannot be: the
        interactive request holds its lock)."""
        return _on_other_models(self._background_steps, model)

    def _must_wait(self, holding: str) -> bool:
        return _on_other_models(self._running, holding)

    def _my_turn(self, holding: str, ticket: object) -> bool:
        """No interactive work on another model, no other background step computing (on any
        model: one compute at a time), and no background step queued before this one."""
        if self._must_wait(holding) or self._background_steps:
            return False
        return not self._turn_queue or self._turn_queue[0] is ticket

    @contextlib.contextmanager
    def _step(self, pacer: BackgroundPacer) -> Iterator[None]:
        holding = pacer.holding
        ticket = object()
        with self._cv:
            started = time.monotonic() if self._must_wait(holding) else None
            queued = False
            try:
                while True:  # checked before the step and after every wait
                    if pacer.preemptible and self._wanted[holding]:
                        self._preemptions += 1
                        raise Preempted()
                    if pacer.cancel.is_set() or self._my_turn(holding, ticket):
                        break
                    if not queued:  # first come, first served among background steps
                        self._turn_queue.append(ticket)
                        queued = True
                        self._turn_waits += not self._must_wait(holding)
                    self._cv.wait(_POLL_S)
            finally:
                if queued:
                    self._turn_queue.remove(ticket)
                    self._cv.notify_all()
            if started is not None:
                self._pauses += 1
                self._paused_s += time.monotonic() - started
            self._background_steps[holding] += 1
            trigger = Cancel() if pacer.stopper is not None else None
            if trigger is not None:
                entry = (trigger, pacer.stopped_by_any)
                self._stoppable.setdefault(holding, []).append(entry)
        try:
            with self._counted(self._background_steps, holding):
                if trigger is None or pacer.stopper is None:
                    yield
                else:
                    yield from self._abortable(pacer.stopper, trigger)
        finally:
            if trigger is not None:
                with self._cv:
                    self._stoppable[holding].remove(entry)
                    if not self._stoppable[holding]:
                        del self._stoppable[holding]

    def _abortable(self, stopper: ComputeAbort, trigger: Cancel) -> Iterator[None]:
        """The step's body with ``trigger`` armed; its computation aborted by a request that
        wants the model ends the step as Preempted (llama.cpp dropped the aborted batch's
        cells; llama-cpp-python and our batch decoder raise RuntimeError)."""
        try:
            with stopper.armed(trigger):
                yield
        except RuntimeError:
            if not trigger.is_set():
                raise
            with self._cv:
                self._preemptions += 1
                self._aborted_steps += 1
            raise Preempted() from None

    @contextlib.contextmanager
    def _counted(self, counter: Counter[str], key: str) -> Iterator[None]:
        """Undo the caller's count of ``key`` when the block ends, and wake the waiters."""
        try:
            yield
        finally:
            with self._cv:
                counter[key] -= 1
                if counter[key] <= 0:
                    del counter[key]
                self._cv.notify_all()


class BackgroundPacer:
    """Wrap each step of background work in ``step()``: it waits first while interactive work
    runs on another model, raises ``Preempted`` when interactive work wants this model (if
    ``preemptible``), and the step's caller checks its cancel flag after (a wait can end in a
    cancel)."""

    def __init__(
        self,
        priority: Priority,
        holding: str,
        cancel: threading.Event,
        preemptible: bool,
        stopper: ComputeAbort | None = None,
        stopped_by_any: bool = False,
    ) -> None:
        self._priority = priority
        self.holding = holding
        self.cancel = cancel
        self.preemptible = preemptible
        self.stopper = stopper
        self.stopped_by_any = stopped_by_any

    def step(self) -> contextlib.AbstractContextManager[None]:
        return self._priority._step(self)


def _on_other_models(counter: Counter[str], model: str) -> bool:
    return any(n for name, n in counter.items() if name != model)
