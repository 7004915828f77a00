"""A document keeps the context chunks it was last shown while they still serve."""

from __future__ import annotations

from memlsp.agents.completion.sticky_context import STICKY_LINES, STICKY_MAX_S, StickyContext
from memlsp.base.context import ContextChunk


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def chunk(path: str, text: str, source: str = "open") -> ContextChunk:
    return ContextChunk(path, text, 0, source)


UTILS = chunk("utils.py", "def slugify(text):\n    return text.lower().replace(' ', '-')")
MODELS = chunk("models.py", "class Invoice:\n    total_cents: int\n    paid: bool")
MODELS_EDITED = chunk(
    "models.py", "class Invoice:\n    total_cents: int\n    paid: bool\n    due: date"
)
AROUND = "def report(invoices):\n    lines = []\n"


def test_kept_byte_for_byte_while_the_cursor_stays_near() -> None:
    clock = Clock()
    sticky = StickyContext(clock=clock)
    first = sticky.choose("a.py", 10, [UTILS, MODELS], AROUND)
    assert first == [UTILS, MODELS]
    clock.now += 30
    # A save in models.py rewrote its chunk and moved it: the prompt's head would change.
    again = sticky.choose("a.py", 10 + STICKY_LINES, [MODELS_EDITED, UTILS], AROUND)
    assert again == [UTILS, MODELS] and sticky.kept == 1
    # Documents do not share: another one gets its own fresh chunks.
    assert sticky.choose("b.py", 10, [MODELS_EDITED], AROUND) == [MODELS_EDITED]


def test_given_up_far_away_after_the_time_limit_and_when_forgotten() -> None:
    clock = Clock()
    sticky = StickyContext(clock=clock)
    sticky.choose("a.py", 10, [UTILS], AROUND)
    assert sticky.choose("a.py", 11 + STICKY_LINES, [MODELS], AROUND) == [MODELS]
    clock.now += STICKY_MAX_S + 1
    assert sticky.choose("a.py", 11 + STICKY_LINES, [UTILS], AROUND) == [UTILS]
    sticky.forget("a.py")
    assert sticky.choose("a.py", 11 + STICKY_LINES, [MODELS], AROUND) == [MODELS]
    assert sticky.kept == 0


def test_given_up_when_a_chunk_repeats_the_code_at_the_cursor() -> None:
    sticky = StickyContext(clock=Clock())
    sticky.choose("a.py", 10, [MODELS], AROUND)
    # The user now writes (a copy of) what the kept chunk shows: it would be parroted.
    around = "class Invoice:\n    total_cents: int\n    paid: bool\n"
    assert sticky.choose("a.py", 12, [UTILS], around) == [UTILS]


def test_a_new_best_memory_hit_replaces_the_kept_chunks() -> None:
    sticky = StickyContext(clock=Clock())
    sticky.choose("a.py", 10, [UTILS], AROUND)
    # The first memory hits (indexing finished) are worth one evaluation.
    found = chunk("billing/tax.py", "def vat_rate(country):\n    return RATES[country]", "memory")
    assert sticky.choose("a.py", 11, [found, UTILS], AROUND) == [found, UTILS]
    # Lower hits coming and going while the best stays: the kept chunks stay.
    other = chunk("billing/net.py", "def net(gross):\n    return gross * 100 // 119", "memory")
    assert sticky.choose("a.py", 12, [found, other], AROUND) == [found, UTILS]
    # A new best hit (say the definition of a name just typed): replaced.
    assert sticky.choose("a.py", 13, [other, found], AROUND) == [other, found]
    assert sticky.kept == 1


def test_keeping_can_be_turned_off() -> None:
    sticky = StickyContext(0, clock=Clock())
    sticky.choose("a.py", 10, [UTILS], AROUND)
    assert sticky.choose("a.py", 10, [MODELS], AROUND) == [MODELS]
    assert sticky.kept == 0


def test_context_where_there_was_none_is_taken() -> None:
    sticky = StickyContext(clock=Clock())
    assert sticky.choose("a.py", 10, [], AROUND) == []  # no other file open yet
    assert sticky.choose("a.py", 11, [UTILS], AROUND) == [UTILS]
    assert sticky.choose("a.py", 12, [], AROUND) == [UTILS]  # kept while it serves


def test_given_up_for_the_definition_of_a_name_being_typed() -> None:
    sticky = StickyContext(clock=Clock())
    memory = chunk("models.py", MODELS.text, "memory")
    sticky.choose("a.py", 10, [UTILS, memory], AROUND)
    # Same best hit, but the user typed the start of a name whose definition was found: the
    # one chunk that answers what is being written must reach the prompt.
    definition = chunk("slugs.py", "def slug_of(invoice):\n    return invoice.id", "definition")
    fresh = [UTILS, memory, definition]
    assert sticky.choose("a.py", 11, fresh, AROUND) == fresh and sticky.kept == 0
    # Typing on: the same definition keeps the list as it is.
    assert sticky.choose("a.py", 11, [memory, UTILS, definition], AROUND) == fresh
    assert sticky.kept == 1


def test_time_in_other_documents_does_not_age_the_chunks() -> None:
    clock = Clock()
    sticky = StickyContext(clock=clock)
    sticky.choose("a.py", 10, [UTILS], AROUND)
    clock.now += STICKY_MAX_S - 20  # most of the limit spent in a.py
    assert sticky.choose("a.py", 10, [MODELS], AROUND) == [UTILS]
    sticky.choose("b.py", 10, [MODELS], AROUND)
    clock.now += 10 * STICKY_MAX_S  # a long while in b.py
    sticky.choose("b.py", 10, [MODELS], AROUND)
    # Back in a.py: its chunks are as old as the time spent with it, so its prompt is reused.
    assert sticky.choose("a.py", 10, [MODELS], AROUND) == [UTILS]
    clock.now += 21  # ... until that passes the limit
    assert sticky.choose("a.py", 10, [MODELS], AROUND) == [MODELS]
