"""The bug-finding benchmark's cases: correct programs and one-line mutants of them.

Sources: the HumanEval solutions in ../shared/data (prompt + canonical solution + suffix of the
random-span infilling set: one complete program per task, with its tests), the clean files of
the demo workspace (``legacy_report.py`` is left out: its problems are planted on purpose), and
a few modules written here with their own tests.

A source's ``test`` (when it has one) calls ``check(<entry point>)``; the benchmark runs each
mutant against it to keep only mutants that really change behaviour.
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from mutations import KINDS, Mutant, mutants

__all__ = ["Case", "Source", "build_cases", "load_sources"]

REPO = Path(__file__).resolve().parents[1]
HUMANEVAL = (
    REPO.parent / "shared/data/humaneval-infilling/HumanEval-RandomSpanInfillingLight.jsonl.gz"
)
DEMO = REPO / "server/demo/workspace"
DEMO_CLEAN = ("pricing.py", "orders.py")


@dataclass(frozen=True)
class Source:
    name: str  # also the file name stem the benchmark saves it under
    text: str
    test: str = ""  # defines check(candidate); empty: no tests
    entry_point: str = ""


@dataclass(frozen=True)
class Case:
    source: Source
    mutant: Mutant

    @property
    def name(self) -> str:
        return f"{self.source.name}_{self.mutant.kind}_{self.mutant.line + 1}"


# Our own correct code: small functions of the kinds the demo's users write, with tests.
OWN: tuple[Source, ...] = (
    Source(
        "own_stock",
        '''def restock(levels, minimum, batch):
    """The items below `minimum` and how many batches of `batch` bring each back up."""
    orders = {}
    for item, level in levels.items():
        if level < minimum:
            missing = minimum - level
            orders[item] = (missing + batch - 1) // batch
    return orders


def busiest_day(sales):
    """The index of the day with the most sales; the first one on a tie."""
    best = 0
    for day in range(1, len(sales)):
        if sales[day] > sales[best]:
            best = day
    return best
''',
        """def check(restock):
    assert restock({"a": 1, "b": 9}, 5, 2) == {"a": 2}
    assert restock({"a": 5}, 5, 3) == {}
    assert restock({"a": 0, "b": 4}, 4, 4) == {"a": 1}
    assert busiest_day([3, 7, 7, 1]) == 1
    assert busiest_day([9]) == 0
    assert busiest_day([1, 2, 5]) == 2
""",
        "restock",
    ),
    Source(
        "own_text",
        '''def wrap(words, width):
    """Greedy line wrapping: lines of at most `width` characters (longer words alone)."""
    lines = []
    current = ""
    for word in words:
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        elif current:
            current = current + " " + word
        else:
            current = word
    if current:
        lines.append(current)
    return lines


def is_palindrome(text):
    letters = [c.lower() for c in text if c.isalnum()]
    return letters == letters[::-1]


def window_sums(values, size):
    """The sums of every `size` consecutive values."""
    if size <= 0 or size > len(values):
        return []
    total = sum(values[:size])
    sums = [total]
    for i in range(size, len(values)):
        total += values[i] - values[i - size]
        sums.append(total)
    return sums
''',
        """def check(wrap):
    assert wrap(["ab", "cd", "efg"], 5) == ["ab cd", "efg"]
    assert wrap(["abcdef", "g"], 3) == ["abcdef", "g"]
    assert wrap([], 4) == []
    assert wrap(["a", "b", "c"], 5) == ["a b c"]
    assert is_palindrome("No lemon, no melon")
    assert not is_palindrome("abca")
    assert window_sums([1, 2, 3, 4], 2) == [3, 5, 7]
    assert window_sums([1, 2], 3) == []
    assert window_sums([5, 1, 2], 1) == [5, 1, 2]
    assert window_sums([4, 1], 2) == [5]
""",
        "wrap",
    ),
    Source(
        "own_schedule",
        '''def overlaps(first, second):
    """Whether two (start, end) intervals share time; touching ends do not overlap."""
    return first[0] < second[1] and second[0] < first[1]


def merge_intervals(intervals):
    merged = []
    for start, end in sorted(intervals):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def free_slots(busy, day_start, day_end):
    slots = []
    cursor = day_start
    for start, end in merge_intervals(busy):
        if start > cursor:
            slots.append((cursor, start))
        cursor = max(cursor, end)
    if cursor < day_end:
        slots.append((cursor, day_end))
    return slots
''',
        """def check(free_slots):
    assert overlaps((1, 3), (2, 4)) and not overlaps((1, 2), (2, 3))
    assert not overlaps((5, 6), (1, 2))
    assert merge_intervals([(3, 4), (1, 2), (2, 3)]) == [(1, 4)]
    assert merge_intervals([(1, 2), (4, 5)]) == [(1, 2), (4, 5)]
    assert free_slots([(9, 10), (12, 13)], 8, 17) == [(8, 9), (10, 12), (13, 17)]
    assert free_slots([(8, 17)], 8, 17) == []
    assert free_slots([], 8, 9) == [(8, 9)]
""",
        "free_slots",
    ),
)


def _humaneval(path: Path) -> list[Source]:
    if not path.exists():
        return []
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    return [
        Source(
            f"humaneval_{row['task_id'].split('/')[2]}",
            row["prompt"] + row["canonical_solution"] + row["suffix"],
            row["test"],
            row["entry_point"],
        )
        for row in rows
    ]


def load_sources(humaneval: Path = HUMANEVAL) -> list[Source]:
    """Every source (HumanEval only when ../shared/data is there)."""
    demo = [Source(f"demo_{name[:-3]}", (DEMO / name).read_text()) for name in DEMO_CLEAN]
    return [*_humaneval(humaneval), *demo, *OWN]


def build_cases(
    sources: Iterable[Source],
    per_kind: int,
    seed: int = 0,
    kinds: Iterable[str] = KINDS,
    accept: Callable[[Case], bool] | None = None,
) -> list[Case]:
    """Up to ``per_kind`` mutants of each kind, spread over the sources (each source's first
    candidate before anyone's second), in kind round-robin order: any prefix is balanced.
    ``accept`` (run lazily, in order) may refuse a case, e.g. one its tests do not catch."""
    sources = list(sources)
    by_kind: list[list[Case]] = []
    for kind in kinds:
        rng = random.Random(f"{seed}:{kind}:order")
        pools = []
        for source in sources:
            found = mutants(source.text, kind, f"{seed}:{source.name}")
            rng.shuffle(found)
            pools.append([Case(source, m) for m in found])
        rng.shuffle(pools)
        depth = max(map(len, pools), default=0)
        spread = [pool[i] for i in range(depth) for pool in pools if i < len(pool)]
        chosen: list[Case] = []
        for case in spread:
            if len(chosen) == per_kind:
                break
            if accept is None or accept(case):
                chosen.append(case)
        by_kind.append(chosen)
    rounds = max(map(len, by_kind), default=0)
    return [chosen[i] for i in range(rounds) for chosen in by_kind if i < len(chosen)]
