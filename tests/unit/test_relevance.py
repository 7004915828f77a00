"""Other-file context chunks go into the prompt only when the code at the cursor needs them."""

from __future__ import annotations

from memlsp.agents.completion.relevance import CursorNames, chunk_definitions, relevant_chunks
from memlsp.base.context import ContextChunk

# A HumanEval-like file: stdlib imports, a docstring full of words, locals only.
UNRELATED_PREFIX = '''from typing import List


def below_zero(operations: List[int]) -> bool:
    """ You're given a list of deposit and withdrawal operations on a bank account that
    starts with zero balance. Detect if at any point the balance falls below zero.
    >>> below_zero([1, 2, -4, 5])
    True
    """
    balance = 0
    for op in operations:
        '''
UNRELATED_SUFFIX = """
        if balance < 0:
            return True
    return False
"""
# The chunk another task's file left in the ring: stdlib names and its own functions.
OTHER_TASK = ContextChunk(
    "task_0.py",
    "from typing import List\n\n\ndef mean_absolute_deviation(numbers: List[float]) -> float:\n"
    '    """ For a given list of input numbers, calculate Mean Absolute Deviation\n'
    '    around the mean of this dataset. """\n'
    "    mean = sum(numbers) / len(numbers)\n"
    "    return sum(abs(x - mean) for x in numbers) / len(numbers)\n",
    0,
    "open",
)

FLOW_PREFIX = """import networkx as nx
from networkx.algorithms.flow.utils import build_residual_network
from .helpers import check_capacity


def maximum_flow(G, s, t, capacity="capacity"):
    check_capacity(G, capacity)
    R = """
FLOW_SUFFIX = "\n    return R.graph['flow_value']\n"
RESIDUAL = ContextChunk(
    "networkx/algorithms/flow/utils.py",
    "def build_residual_network(G, capacity):\n    R = nx.DiGraph()\n    return R\n",
    10,
    "memory",
)
UNRELATED_MEMORY = ContextChunk(
    "networkx/generators/classic.py",
    "def path_graph(n, create_using=None):\n    G = empty_graph(0, create_using)\n    return G\n",
    40,
    "memory",
)


def test_unrelated_chunks_are_dropped_and_nothing_is_sent() -> None:
    names = CursorNames(UNRELATED_PREFIX, UNRELATED_SUFFIX)
    # ``List`` comes from the standard library: sharing it makes no chunk relevant.
    assert "List" not in names.workspace_imports
    assert relevant_chunks([OTHER_TASK], names, 10_000) == []


def test_a_chunk_defining_an_imported_workspace_name_is_kept() -> None:
    names = CursorNames(FLOW_PREFIX, FLOW_SUFFIX)
    assert "build_residual_network" in names.wanted
    kept = relevant_chunks([UNRELATED_MEMORY, RESIDUAL], names, 10_000)
    assert RESIDUAL in kept


def test_a_chunk_using_a_workspace_module_alias_near_the_cursor_is_kept() -> None:
    prefix = "import networkx as nx\n\n\ndef f(G):\n    H = nx."
    names = CursorNames(prefix, "\n")
    assert "nx" in names.workspace_imports
    uses_nx = ContextChunk("a.py", "def g(G):\n    return nx.is_connected(G)\n", 0, "memory")
    assert relevant_chunks([uses_nx, OTHER_TASK], names, 10_000) == [uses_nx]


def test_an_unused_workspace_import_counts_its_users_too() -> None:
    # check_capacity is used; the flow import is not: likely what comes next.
    names = CursorNames(FLOW_PREFIX, FLOW_SUFFIX)
    assert "build_residual_network" in names.workspace_imports
    user = ContextChunk("b.py", "    R = build_residual_network(G, 'capacity')\n", 3, "edit")
    assert relevant_chunks([user], names, 10_000) == [user]


def test_a_method_called_near_the_cursor_makes_its_definition_relevant() -> None:
    prefix = "def run(store):\n    rows = store.fetch_rows(10)\n    "
    names = CursorNames(prefix, "")
    chunk = ContextChunk(
        "store.py", "class Store:\n    def fetch_rows(self, n):\n        return []\n", 0, "open"
    )
    assert relevant_chunks([chunk], names, 10_000) == [chunk]


def test_a_name_the_current_file_defines_itself_does_not_count() -> None:
    prefix = "def helper(x):\n    return x\n\n\ndef main():\n    y = helper(2)\n    "
    names = CursorNames(prefix, "")
    other = ContextChunk("other.py", "def helper(x):\n    return x * 2\n", 0, "open")
    assert relevant_chunks([other], names, 10_000) == []


def test_words_in_docstrings_and_comments_are_not_names() -> None:
    prefix = 'def f(x):\n    """Uses frobnicate somehow."""\n    # see frobnicate\n    '
    names = CursorNames(prefix, "")
    assert "frobnicate" not in names.wanted
    chunk = ContextChunk("g.py", "def frobnicate():\n    pass\n", 0, "open")
    assert relevant_chunks([chunk], names, 10_000) == []
    # Once the code calls it, its definition is wanted.
    called = CursorNames(prefix + "frobnicate()\n    ", "")
    assert relevant_chunks([chunk], called, 10_000) == [chunk]


def test_a_definition_looked_up_for_the_typed_name_is_always_kept() -> None:
    names = CursorNames(UNRELATED_PREFIX, UNRELATED_SUFFIX)
    lookup = ContextChunk("x.py", "def whatever():\n    pass\n", 0, "definition")
    assert relevant_chunks([lookup], names, 10_000) == [lookup]


def test_the_name_being_typed_finds_definitions_starting_with_it() -> None:
    prefix = "def f(G):\n    R = bui"
    names = CursorNames(prefix, "\n")
    assert names.typed == "bui"
    assert relevant_chunks([RESIDUAL], names, 10_000) == [RESIDUAL]
    # ... unless the file has a name starting so itself: that is more likely what it is.
    local = CursorNames("def f(G):\n    build_it = 1\n    R = bui", "\n")
    assert local.typed == ""
    assert relevant_chunks([RESIDUAL], local, 10_000) == []


def test_over_budget_the_most_relevant_stay_in_their_order() -> None:
    names = CursorNames(FLOW_PREFIX, FLOW_SUFFIX)
    weak = ContextChunk("w.py", "x = nx.Graph()  # " + "pad " * 30 + "\n", 0, "open")
    lookup = ContextChunk("d.py", "def other():\n    pass\n", 0, "definition")
    chunks = [weak, RESIDUAL, lookup]
    budget = len(RESIDUAL.text) + len(lookup.text)
    assert relevant_chunks(chunks, names, budget) == [RESIDUAL, lookup]
    assert relevant_chunks(chunks, names, 10_000) == chunks


def test_chunk_definitions() -> None:
    text = (
        "import os\nLIMIT = 3\ndef top(a):\n    inner = 1\n    return a\n"
        "class Box:\n    def open(self):\n        pass\n"
        "export const makeBox = () => 1;\nfunction paint(c) {}\nfn grow(x: u8) {}\n"
    )
    assert chunk_definitions(text) == {"LIMIT", "top", "Box", "open", "makeBox", "paint", "grow"}


def test_javascript_imports_count_as_workspace_names() -> None:
    prefix = "import { makeBox } from './box';\n\nconst b = "
    names = CursorNames(prefix, ";\n")
    chunk = ContextChunk("box.js", "export const makeBox = () => ({});\n", 0, "open")
    assert relevant_chunks([chunk], names, 10_000) == [chunk]


CHECKOUT = '''def checkout_total(order):
    """The order's subtotal after the loyalty discount of the customer's tier, in cents."""
    subtotal = order.subtotal_cents()
    return '''
PRICING = (
    "def apply_loyalty_discount(order_total_cents, tier):\n"
    "    percent = LOYALTY_TIERS.get(tier, 0)\n"
    "    return order_total_cents - order_total_cents * percent // 100\n"
)


def test_a_memory_hit_whose_name_the_docstring_describes_is_kept() -> None:
    names = CursorNames(CHECKOUT, "\n")
    hit = ContextChunk("pricing.py", PRICING, 6, "memory")
    assert relevant_chunks([hit], names, 10_000) == [hit]
    # The ring's chunks are there for being recent: prose alone does not make them relevant.
    assert relevant_chunks([ContextChunk("pricing.py", PRICING, 6, "open")], names, 10_000) == []
    # One word in common is not enough.
    vat = ContextChunk("pricing.py", "def add_vat_discount(amount):\n    pass\n", 0, "memory")
    assert relevant_chunks([vat], names, 10_000) == []


def test_a_long_file_keeps_its_imports_and_the_code_at_the_cursor() -> None:
    filler = "".join(f"def local_{i}(x):\n    return x + {i}\n\n\n" for i in range(3000))
    prefix = FLOW_PREFIX.rsplit("\n", 2)[0] + "\n\n\n" + filler + "def g(G):\n    R = "
    names = CursorNames(prefix, FLOW_SUFFIX)
    assert "build_residual_network" in names.workspace_imports  # from the file's top
    assert relevant_chunks([RESIDUAL], names, 10_000) == [RESIDUAL]
