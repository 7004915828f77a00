"""The one language table (memlsp.base.languages) and what the other modules derive from it.

The answers pinned here are the ones the modules' own tables gave before they were merged into
it, so the merge changed nothing a client sees for the languages they knew.
"""

from __future__ import annotations

import pytest

from memlsp.agents.completion.postprocess import _comment_markers
from memlsp.agents.refactor.text_edits import comment_prefix, grammar_for
from memlsp.agents.review.scope import chunk_language
from memlsp.base.languages import (
    LANGUAGES,
    SYNTAX_LANGUAGES,
    grammar,
    language_by_lsp_id,
    language_for,
    parser_for,
)
from memlsp.server.lsp.documents import language_from_uri

PARSED_IDS = {
    "python": "python",
    "javascript": "javascript",
    "javascriptreact": "javascript",
    "typescript": "typescript",
    "typescriptreact": "tsx",
    "go": "go",
    "rust": "rust",
    "java": "java",
    "c": "c",
    "cpp": "cpp",
}


def test_table_is_consistent() -> None:
    ids = [lsp_id for language in LANGUAGES for lsp_id in language.lsp_ids]
    extensions = [ext for language in LANGUAGES for ext in language.extensions]
    filenames = [name for language in LANGUAGES for name in language.filenames]
    for names in (ids, extensions, filenames):
        assert len(names) == len(set(names)), "each name belongs to one language"
    assert all(ext.startswith(".") and ext == ext.lower() for ext in extensions)
    assert all(name == name.lower() for name in filenames)
    assert all(language.lsp_ids for language in LANGUAGES)
    # Languages sharing a name share its grammar (javascriptreact is parsed as javascript).
    for language in LANGUAGES:
        twins = [other for other in LANGUAGES if other.name == language.name]
        assert {twin.tree_sitter for twin in twins} == {language.tree_sitter}


def test_syntax_languages() -> None:
    assert set(PARSED_IDS.values()) == SYNTAX_LANGUAGES


@pytest.mark.parametrize("name", sorted(SYNTAX_LANGUAGES))
def test_every_grammar_parses(name: str) -> None:
    assert parser_for(name).parse(b"x").root_node is not None
    assert grammar(name) is grammar(name)


def test_no_grammar_for_other_names() -> None:
    with pytest.raises(ValueError):
        grammar("markdown")


def test_lookups_by_lsp_id_and_path() -> None:
    assert language_by_lsp_id("sh") is language_by_lsp_id("shellscript")
    assert language_by_lsp_id("c++") is language_by_lsp_id("cpp")
    assert language_by_lsp_id("tsx") is None  # a grammar name, not an LSP id
    assert language_by_lsp_id("Python") is None
    assert language_for("web/App.jsx") == "javascript"
    assert language_for("CMakeLists.txt") == "cmake"
    assert language_for("notes.txt") == "text"
    assert language_for("Dockerfile.dev") == "dockerfile"
    assert language_for("GNUmakefile") == "makefile"
    assert language_for("x.fish") is None  # known by its comments only


def test_grammar_for_lsp_ids() -> None:
    for lsp_id, name in PARSED_IDS.items():
        assert grammar_for(lsp_id) == name
    for lsp_id in ("tsx", "markdown", "shellscript", "", "unknown"):
        assert grammar_for(lsp_id) is None


def test_chunk_language() -> None:
    for lsp_id, name in PARSED_IDS.items():
        assert chunk_language(lsp_id, "") == name
    assert chunk_language("c++", "") == "cpp"
    assert chunk_language("tsx", "") == "tsx"  # the chunker's own names pass through
    assert chunk_language("plaintext", "src/a.py") == "python"  # else the file name decides
    assert chunk_language("markdown", "README.md") == "markdown"
    assert chunk_language("unknown", "") is None


@pytest.mark.parametrize(
    ("lsp_id", "markers"),
    [
        ("python", ("#",)),
        ("shellscript", ("#",)),
        ("sh", ("#",)),
        ("yaml", ("#",)),
        ("typescriptreact", ("//",)),
        ("jsonc", ("//",)),
        ("scss", ("//",)),
        ("sql", ("--",)),
        ("elm", ("--",)),
        ("php", ("//", "#")),
        ("css", ()),
        # Not recorded, or unknown: both common markers.
        ("json", ("//", "#")),
        ("markdown", ("//", "#")),
        ("unknown", ("//", "#")),
    ],
)
def test_completion_comment_markers(lsp_id: str, markers: tuple[str, ...]) -> None:
    assert _comment_markers(lsp_id) == markers


def test_comment_prefix() -> None:
    assert comment_prefix("python") == "#"
    assert comment_prefix("javascriptreact") == "//"
    assert comment_prefix("php") == "//"
    assert comment_prefix("haskell") == "--"
    assert comment_prefix("dockerfile") == "#"
    for lsp_id in ("css", "json", "markdown", "unknown", ""):
        assert comment_prefix(lsp_id) is None


def test_language_from_uri() -> None:
    old_table = {
        "py": "python", "js": "javascript", "ts": "typescript", "tsx": "typescriptreact",
        "go": "go", "rs": "rust", "java": "java", "c": "c", "h": "c", "cpp": "cpp",
        "cc": "cpp", "hpp": "cpp",
    }  # fmt: skip
    for suffix, lsp_id in old_table.items():
        assert language_from_uri(f"file:///w/src/a.{suffix}") == lsp_id
        assert language_from_uri(f"file:///w/src/A.{suffix.upper()}") == lsp_id
    assert language_from_uri("file:///w/web/App.jsx") == "javascriptreact"
    assert language_from_uri("file:///w/Dockerfile") == "dockerfile"
    assert language_from_uri("file:///w/notes.md") == "markdown"
    # Unknown: the file's extension, or nothing.
    assert language_from_uri("file:///w/a.ZZ") == "zz"
    assert language_from_uri("file:///w.d/LICENSE") == ""
    assert language_from_uri("untitled:Untitled-1") == ""
