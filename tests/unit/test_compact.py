"""Chunks made compact for the prompt: long doc comments shortened, code untouched."""

from __future__ import annotations

from memlsp.memory.compact import compact_chunk

NUMPY_STYLE = '''def shortest_path(G, source=None, target=None):
    """Compute shortest paths in the graph.

    Parameters
    ----------
    G : NetworkX graph
    """
    if source is None:
        return dict(all_pairs(G))
    return single_source(G, source)'''


def test_a_long_docstring_becomes_its_summary_line_and_the_code_stays() -> None:
    assert compact_chunk(NUMPY_STYLE, "python") == (
        "def shortest_path(G, source=None, target=None):\n"
        '    """Compute shortest paths in the graph."""\n'
        "    if source is None:\n"
        "        return dict(all_pairs(G))\n"
        "    return single_source(G, source)"
    )


def test_a_summary_on_the_line_after_the_quotes_and_a_class_docstring() -> None:
    text = "class Edge:\n    r'''\n    A residual edge.\n\n    More.\n    '''\n\n    flow = 0"
    want = "class Edge:\n    r'''A residual edge.'''\n\n    flow = 0"
    assert compact_chunk(text, "python") == want


def test_strings_that_are_not_docstrings_stay_whole() -> None:
    text = 'def f():\n    x = 1\n    sql = """SELECT a\n    FROM t"""\n    """a\n    b"""\n'
    assert compact_chunk(text, "python") == text
    # One-line docstrings and an unterminated one (a chunk window that ends inside it) too.
    one = 'def f():\n    """Short."""\n    return 1'
    assert compact_chunk(one, "python") == one
    cut = 'def f():\n    """Starts here\n    and the window ends'
    assert compact_chunk(cut, "python") == cut


def test_block_doc_comments_in_other_languages() -> None:
    text = "/**\n * Adds two numbers.\n * @param a\n */\nfunction add(a, b) {\n  /* kept */\n}"
    assert compact_chunk(text, "javascript") == (
        "/** Adds two numbers. */\nfunction add(a, b) {\n  /* kept */\n}"
    )
    assert compact_chunk("/** One line. */\nint f();", "c") == "/** One line. */\nint f();"
