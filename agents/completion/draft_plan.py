"""How many prompt-lookup guesses to check in one batch: only as many as pay, on this model and
this machine.

A guess checked in the batch spares one single-token evaluation when right and costs a bigger
batch either way. What a batch costs depends on the model and the hardware, and not smoothly
(in process, 2 AVX2 cores, 200 tokens deep; a batch of n tokens against one):

    n          2     3     4     5     6     7
    0.5B     1.24  1.95  1.76  2.43  2.15  2.88
    1.5B     1.49  1.83  1.86  2.33  2.71  3.04

(on a GPU all of them cost about one). How often guesses are right depends on how long a run of
last tokens they were found by (60 HumanEval-FIM holes, lines and random spans, the 1.5B's greedy
answers: the first guess right after a 2-token match 21-52 % of the time, 3 tokens 50-69 %, 4
tokens 64-86 %, with runs of 2.6-3.6 right guesses). Fixed rules lost either way: always
checking a growing number of guesses (the earlier rule) made the 1.5B's single lines 4 % slower
than no drafts at all, while a GPU gains 13 % from long batches.

So ``DraftPlanner`` (one per model) measures what each batch size costs (the median of its last
evaluations) and counts, per match length and guess position, how often a guess there was right;
for each proposal it checks the number of guesses that gives the most tokens per second:
(1 + q1 + q1 q2 + ...) / cost(1 + guesses). Learning is left to background decoding (the next
suggestion computed ahead), where a wasted batch costs nobody a wait: there, sizes not measured
yet are assumed cheap (PRIOR_SLOPE), so each gets tried, and every EXPLORE_EVERY-th proposal
that nothing pays for is checked with one guess anyway, so a codebase that repeats itself more
than the priors say is noticed. A request someone waits for assumes what a CPU measures
(CAUTIOUS_SLOPE) until a size is measured. A size measured fewer than MIN_SAMPLES times counts
at most at the assumption (one slow batch does not rule it out).
Simulated on the same answers with trials allowed everywhere: the 1.5B's decoding 0.99x of no
drafts on lines (the earlier rule: 1.04x) and 0.93x on spans (0.97x); the 0.5B 0.98x / 0.93x; a
GPU's cost table 0.95x / 0.83x. With no background decoding at all (so no trials), the 1.5B's
spans 0.97x and the GPU's 0.89x: the price of sparing requests the trials.
"""

from __future__ import annotations

import statistics
from collections import deque
from typing import Any

__all__ = [
    "CAUTIOUS_SLOPE",
    "EXPLORE_EVERY",
    "MIN_SAMPLES",
    "PRIOR_RIGHT",
    "SAMPLES",
    "DraftPlanner",
]

# Share of right guesses assumed before any is checked, by the length of the run of last
# tokens they were found by (the 1.5B's answers above); longer runs count as the longest.
PRIOR_RIGHT = {2: 0.3, 3: 0.6, 4: 0.75}
# How many checked guesses the prior is worth.
PRIOR_WEIGHT = 4.0
# Past this many guesses checked at a position, old counts fade (halved): the share follows
# the code being written.
FADE_AFTER = 256
# A batch of n tokens is assumed to cost 1 + slope * (n - 1) single evaluations until measured:
# in background decoding cheaper than on a CPU, so that each size gets tried; in a request
# about what 2 CPU cores measure (above), so that nobody waits for the trial.
PRIOR_SLOPE = 0.15
CAUTIOUS_SLOPE = 0.5
# Evaluations kept per batch size; below MIN_SAMPLES a size counts at most its assumed cost.
SAMPLES = 5
MIN_SAMPLES = 2
# One guess is checked anyway for every this many proposals nothing was checked for.
EXPLORE_EVERY = 16


class DraftPlanner:
    """Chooses how many guesses to check; learns from the batches' times and outcomes.

    Used under the model's lock (one completion at a time); ``summary`` may be read from
    another thread (a status request): it only reads."""

    def __init__(self, max_draft: int) -> None:
        self.max_draft = max_draft
        self._times: list[deque[float]] = [deque(maxlen=SAMPLES) for _ in range(max_draft + 2)]
        longest = max(PRIOR_RIGHT)
        self._checked = {n: [PRIOR_WEIGHT] * (max_draft + 1) for n in range(1, longest + 1)}
        self._right = {
            n: [PRIOR_RIGHT[max(n, min(PRIOR_RIGHT))] * PRIOR_WEIGHT] * (max_draft + 1)
            for n in range(1, longest + 1)
        }
        self._skipped = 0  # proposals checked with no guess since the last exploration

    def count(self, matched: int, offered: int, *, explore: bool = False) -> int:
        """How many of ``offered`` guesses, found by a run of ``matched`` last tokens, to check.
        ``explore``: background decoding, where trying what is not measured yet costs no wait."""
        offered = min(offered, self.max_draft)
        if offered <= 0:
            return 0
        matched = self._row(matched)
        slope = PRIOR_SLOPE if explore else CAUTIOUS_SLOPE
        best, best_rate = 0, 1.0 / self._cost(1, slope)
        expected = chance = 1.0
        for guesses in range(1, offered + 1):
            chance *= self._share(matched, guesses)
            expected += chance
            rate = expected / self._cost(1 + guesses, slope)
            if rate > best_rate:
                best, best_rate = guesses, rate
        if best == 0 and explore:
            self._skipped += 1
            if self._skipped >= EXPLORE_EVERY:
                self._skipped = 0
                return 1
        return best

    def timed(self, size: int, seconds: float) -> None:
        """An evaluation of ``size`` tokens (the token picked and its guesses) took this long."""
        if 0 < size < len(self._times):
            self._times[size].append(seconds)

    def checked(self, matched: int, drafted: int, right: int) -> None:
        """``drafted`` guesses found by a run of ``matched`` tokens were checked: the first
        ``right`` of them were right (each position after a right one was tried)."""
        matched = self._row(matched)
        checked, rights = self._checked[matched], self._right[matched]
        for position in range(1, min(drafted, self.max_draft) + 1):
            checked[position] += 1
            if position <= right:
                rights[position] += 1
            if checked[position] > FADE_AFTER:
                checked[position] /= 2
                rights[position] /= 2
            if position > right:
                break  # the guesses after a wrong one were not tried

    def summary(self) -> dict[str, Any]:
        """For status: measured milliseconds per batch size, and the share of first guesses
        right per match length."""
        return {
            "batch_ms": {
                str(size): round(1000 * statistics.median(times), 1)
                for size, times in enumerate(self._times)
                if times
            },
            "first_guess_right": {
                str(n): round(self._share(n, 1), 2) for n in sorted(self._checked) if n > 1
            },
        }

    def _row(self, matched: int) -> int:
        return max(1, min(matched, max(PRIOR_RIGHT)))

    def _share(self, matched: int, position: int) -> float:
        return self._right[matched][position] / self._checked[matched][position]

    def _cost(self, size: int, slope: float) -> float:
        """Seconds a batch of ``size`` costs; in single evaluations while none is measured.
        ``slope``: what an unmeasured size is assumed to cost (see PRIOR_SLOPE)."""
        singles = self._times[1]
        if not singles:
            return 1.0 + slope * (size - 1)
        single = statistics.median(singles)
        assumed = single * (1.0 + slope * (size - 1))
        if size == 1:
            return single
        times = self._times[size]
        if not times:
            return assumed
        measured = statistics.median(times)
        return measured if len(times) >= MIN_SAMPLES else min(measured, assumed)
