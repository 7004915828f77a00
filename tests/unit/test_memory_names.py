"""Whether any stored chunk could serve a cursor (memory/names.py, LexicalIndex.could_match),
checked against the completion's own relevance filter on the same chunks."""

from __future__ import annotations

import itertools

import pytest

from memlsp.agents.completion.relevance import CursorNames
from memlsp.base.context import ContextChunk
from memlsp.memory import lexical as lexical_module
from memlsp.memory import names as names_module
from memlsp.memory.lexical import LexicalIndex
from memlsp.memory.names import DefinedNames, SearchNeeds, described_by, name_words

NONE: frozenset[str] = frozenset()


def needs(
    names: tuple[str, ...] = (),
    typed: str = "",
    words: tuple[str, ...] = (),
    uses: tuple[str, ...] = (),
) -> SearchNeeds:
    return SearchNeeds(frozenset(names), typed, frozenset(words), frozenset(uses))


STORED = {
    "shop/pricing.py": [
        (
            "apply_loyalty_discount",
            "def apply_loyalty_discount(order, customer):\n    return order.total * 0.9\n",
        ),
        ("TAX_RATE", "TAX_RATE = 0.2\nCURRENCY, LOCALE = 'EUR', 'fr'\n"),
    ],
    "shop/cart.py": [
        (
            "Cart",
            "class Cart:\n    def add_item(self, item):\n        self.items.append(item)\n",
        ),
        (
            "checkout",
            "import numpy as np\n\ndef checkout(cart):\n    return np.sum(cart.prices)\n",
        ),
    ],
}


def index() -> LexicalIndex:
    lexical = LexicalIndex()
    for path, chunks in STORED.items():
        lexical.replace_path(
            path, [(f"{path}#{n}", symbol, text) for n, (symbol, text) in enumerate(chunks)]
        )
    return lexical


def test_words_and_description() -> None:
    assert name_words("apply_loyalty_discount") == {"apply", "loyalty", "discount"}
    assert name_words("parseHTTPHeader2") == {"parse", "http", "header"}
    words = frozenset({"after", "the", "loyalty", "discount"})
    assert described_by("apply_loyalty_discount", words)  # 2 of 3
    assert not described_by("loyalty_card_number_check", words)  # 1 of 4 words
    assert not described_by("discount", words)  # one word is not enough


def test_each_kind_of_need() -> None:
    lexical = index()
    assert lexical.could_match(needs(names=("apply_loyalty_discount",)))
    assert lexical.could_match(needs(names=("add_item",)))  # a method, inside its class
    assert lexical.could_match(needs(names=("LOCALE",)))  # a module constant
    assert not lexical.could_match(needs(names=("order", "customer", "items")))
    assert lexical.could_match(needs(typed="apply_lo"))
    assert not lexical.could_match(needs(typed="apply_loyalty_discount"))  # typed whole
    assert not lexical.could_match(needs(typed="zzz"))
    assert lexical.could_match(needs(words=("loyalty", "discount")))
    assert not lexical.could_match(needs(words=("discount", "coupon")))
    assert lexical.could_match(needs(uses=("np",)))
    assert not lexical.could_match(needs(uses=("pandas",)))
    assert lexical.could_match(needs(uses=("x",)))  # one character: no term, cannot tell
    assert not lexical.could_match(needs())


def test_the_current_file_does_not_count() -> None:
    lexical = index()
    assert not lexical.could_match(needs(names=("Cart",)), "shop/cart.py")
    assert lexical.could_match(needs(names=("Cart",)), "shop/pricing.py")
    assert not lexical.could_match(needs(uses=("np",)), "shop/cart.py")
    assert not lexical.could_match(needs(typed="add_"), "shop/cart.py")
    assert not lexical.could_match(needs(words=("loyalty", "discount")), "shop/pricing.py")


def test_names_follow_replacements_removals_and_compaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lexical_module, "_COMPACT_MIN_DEAD", 2)
    lexical = index()
    cart = needs(names=("add_item",))
    lexical.replace_path("shop/cart.py", [("c#0", "Basket", "class Basket:\n    pass\n")])
    assert not lexical.could_match(cart)
    assert lexical.could_match(needs(typed="Bask"))
    lexical.remove_path("shop/cart.py")
    assert not lexical.could_match(needs(typed="Bask"))
    for n in range(6):  # dead chunks pile up and are compacted away
        lexical.replace_path("shop/cart.py", [(f"c#{n}", "Cart", STORED["shop/cart.py"][0][1])])
    assert lexical.could_match(cart) and not lexical.could_match(cart, "shop/cart.py")
    assert lexical.could_match(needs(names=("TAX_RATE",)), "shop/cart.py")
    assert len(lexical._ids) < 8  # compacted
    # apply_loyalty_discount, TAX_RATE, CURRENCY, LOCALE; Cart, add_item (checkout is gone)
    assert lexical.defined_names() == 6


def test_defined_names_forget_a_name_with_its_last_chunk() -> None:
    names = DefinedNames()
    names.add(0, ["parse_header"])
    names.add(1, ["parse_header", "Reader"])

    def every(doc: int) -> bool:
        return True

    names.remove(0, ["parse_header"])
    assert names.any_defines(["parse_header"], every)
    assert names.any_described(frozenset({"parse", "header"}), every)
    names.remove(1, ["parse_header", "Reader"])
    assert not names.any_defines(["parse_header", "Reader"], every)
    assert not names.any_described(frozenset({"parse", "header"}), every)
    assert not names.any_starting_with("pars", every) and len(names) == 0


def test_words_too_common_to_rule_out_cheaply_let_the_search_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names = DefinedNames()
    for n in range(40):
        names.add(n, [f"get_value_{n}", f"set_record_{n}"])

    def every(doc: int) -> bool:
        return True

    words = frozenset({"get", "set", "other"})  # one word of each name: none described
    assert not names.any_described(words, every)
    monkeypatch.setattr(names_module, "MAX_DESCRIBED_VISITS", 50)
    assert names.any_described(words, every)  # 80 pairs to look at: not ruled out


# The gate must say yes whenever the completion's filter would keep a stored chunk: cursors of
# every kind against the chunks above, the filter's answer computed on the chunks themselves.
CURSORS = [
    ("from shop.pricing import apply_loyalty_discount\n\ndef pay(o, c):\n    return ", ""),
    ("def pay(order):\n    # after the loyalty discount\n    total = ", "\n"),
    ("def pay(order):\n    total = order.total\n    return to", "\n"),
    ("import numpy as np\n\ndef mean(xs):\n    return ", ""),
    ("def mean(xs):\n    return sum(xs) / len(xs)\n", ""),
    ("def grow(cart):\n    cart.add_", "(x)\n"),
    ("def grow(cart):\n    cart.", "\n"),
    ("class Cart:\n    pass\n\ndef grow(c):\n    c = Ca", "\n"),
    ("def rate():\n    return TAX_", "\n"),
    ("import pandas as pd\n\ndef load(p):\n    return pd.", "\n"),
    ("def f(x):\n    return x + 1\n", "\ndef g():\n    checkout(None)\n"),
]


@pytest.mark.parametrize(
    ("cursor", "exclude"), list(itertools.product(CURSORS, [None, "shop/cart.py"]))
)
def test_the_answer_agrees_with_the_relevance_filter(
    cursor: tuple[str, str], exclude: str | None
) -> None:
    prefix, suffix = cursor
    names = CursorNames(prefix, suffix)
    kept = any(
        names.relevance(ContextChunk(path, text, 0, "memory")).score > 0
        for path, chunks in STORED.items()
        if path != exclude
        for _, text in chunks
    )
    assert index().could_match(names.needs(), exclude) == kept
