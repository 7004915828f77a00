"""What memlsp knows of languages, in one table: LSP ids, file names, grammars, comment markers.

Each ``Language`` is one language as editors name it: its LSP language id (VS Code's), then
other clients' names for it (Neovim filetypes). Several may share one memlsp ``name``, the
memory's label of their files and the tree-sitter grammar's name: ``javascriptreact`` is parsed
and labelled as ``javascript``. Other modules derive what they need from ``LANGUAGES``; the
editors' default filetypes are the LSP ids of the parsed languages
(tests/unit/test_editor_filetypes.py).

Grammars load lazily, one package per language, and each thread gets its own parsers.
"""

from __future__ import annotations

import importlib
import re
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import PurePosixPath

from tree_sitter import Language as Grammar
from tree_sitter import Parser

__all__ = [
    "CPP_IN_HEADER",
    "LANGUAGES",
    "SYNTAX_LANGUAGES",
    "Language",
    "grammar",
    "language_by_lsp_id",
    "language_for",
    "language_of_path",
    "parser_for",
]


@dataclass(frozen=True, slots=True)
class Language:
    """One language: how clients name it, which files hold it, how memlsp reads it."""

    lsp_ids: tuple[str, ...]  # the LSP languageId, then other clients' names for it
    name: str  # memlsp's name: the memory's label of its files, its grammar's name
    # Lower-case suffixes (with the dot) and whole file names; the memory labels these `name`
    # (so adding one relabels files already indexed).
    extensions: tuple[str, ...] = ()
    filenames: tuple[str, ...] = ()
    tree_sitter: tuple[str, str] | None = None  # (grammar package, its function) if parsed
    # Line-comment markers, the usual one first: () for none, None where not recorded (callers
    # then guess).
    line_comments: tuple[str, ...] | None = None

    @property
    def lsp_id(self) -> str:
        return self.lsp_ids[0]

    @property
    def grammar(self) -> str | None:
        """The tree-sitter grammar's name (for `grammar`, `parser_for`); None if not parsed."""
        return self.name if self.tree_sitter else None


_SLASH, _HASH, _DASH = ("//",), ("#",), ("--",)

# The parsed languages come first, in the order the editors list them.
LANGUAGES: tuple[Language, ...] = (
    Language(
        ("python",), "python", (".py", ".pyi", ".pyw"),
        tree_sitter=("tree_sitter_python", "language"), line_comments=_HASH,
    ),
    Language(
        ("javascript",), "javascript", (".js", ".mjs", ".cjs"),
        tree_sitter=("tree_sitter_javascript", "language"), line_comments=_SLASH,
    ),
    Language(
        ("javascriptreact",), "javascript", (".jsx",),
        tree_sitter=("tree_sitter_javascript", "language"), line_comments=_SLASH,
    ),
    Language(
        ("typescript",), "typescript", (".ts", ".mts", ".cts"),
        tree_sitter=("tree_sitter_typescript", "language_typescript"), line_comments=_SLASH,
    ),
    Language(
        ("typescriptreact",), "tsx", (".tsx",),
        tree_sitter=("tree_sitter_typescript", "language_tsx"), line_comments=_SLASH,
    ),
    Language(
        ("go",), "go", (".go",),
        tree_sitter=("tree_sitter_go", "language"), line_comments=_SLASH,
    ),
    Language(
        ("rust",), "rust", (".rs",),
        tree_sitter=("tree_sitter_rust", "language"), line_comments=_SLASH,
    ),
    Language(
        ("java",), "java", (".java",),
        tree_sitter=("tree_sitter_java", "language"), line_comments=_SLASH,
    ),
    # A .h file is C unless it plainly holds C++ (see CPP_IN_HEADER).
    Language(
        ("c",), "c", (".c", ".h"),
        tree_sitter=("tree_sitter_c", "language"), line_comments=_SLASH,
    ),
    Language(
        ("cpp", "c++"), "cpp",
        (".cc", ".cpp", ".cxx", ".c++", ".hh", ".hpp", ".hxx", ".h++", ".ipp", ".inl", ".tpp"),
        tree_sitter=("tree_sitter_cpp", "language"), line_comments=_SLASH,
    ),
    # Not parsed: line windows in the memory, but the label helps filtering.
    Language(("markdown",), "markdown", (".md", ".markdown")),
    Language(("mdx",), "markdown", (".mdx",)),
    Language(("plaintext",), "text", (".txt",)),
    Language(("restructuredtext", "rst"), "text", (".rst",)),
    Language(("asciidoc",), "text", (".adoc",)),
    Language(("yaml",), "yaml", (".yaml", ".yml"), line_comments=_HASH),
    Language(("json",), "json", (".json",)),
    Language(("jsonc",), "json", (".jsonc",), line_comments=_SLASH),
    Language(("json5",), "json", (".json5",)),
    Language(("toml",), "toml", (".toml",), line_comments=_HASH),
    Language(("ini",), "ini", (".ini", ".cfg", ".conf")),
    Language(
        ("shellscript", "sh", "bash", "zsh"), "shell", (".sh", ".bash", ".zsh"),
        line_comments=_HASH,
    ),
    Language(("html",), "html", (".html", ".htm")),
    Language(("css",), "css", (".css",), line_comments=()),
    Language(("scss",), "css", (".scss",), line_comments=_SLASH),
    Language(("sass",), "css", (".sass",)),
    Language(("less",), "css", (".less",), line_comments=_SLASH),
    Language(("xml",), "xml", (".xml",)),
    Language(("sql",), "sql", (".sql",), line_comments=_DASH),
    Language(("proto",), "protobuf", (".proto",)),
    Language(("graphql",), "graphql", (".graphql", ".gql")),
    Language(("ruby",), "ruby", (".rb",), line_comments=_HASH),
    Language(("php",), "php", (".php",), line_comments=("//", "#")),
    Language(("kotlin",), "kotlin", (".kt", ".kts"), line_comments=_SLASH),
    Language(("swift",), "swift", (".swift",), line_comments=_SLASH),
    Language(("csharp",), "csharp", (".cs",), line_comments=_SLASH),
    Language(("lua",), "lua", (".lua",), line_comments=_DASH),
    Language(("scala",), "scala", (".scala",), line_comments=_SLASH),
    Language(("cmake",), "cmake", (".cmake",), ("cmakelists.txt",), line_comments=_HASH),
    Language(("vue",), "vue", (".vue",)),
    Language(("svelte",), "svelte", (".svelte",)),
    # Dockerfile.<anything> is one too (language_of_path).
    Language(
        ("dockerfile",), "dockerfile", (), ("dockerfile", "containerfile"), line_comments=_HASH
    ),
    Language(("makefile",), "makefile", (), ("makefile", "gnumakefile"), line_comments=_HASH),
    # Known by their comments only: the memory does not label their files.
    Language(("perl",), "perl", line_comments=_HASH),
    Language(("r",), "r", line_comments=_HASH),
    Language(("fish",), "fish", line_comments=_HASH),
    Language(("powershell",), "powershell", line_comments=_HASH),
    Language(("elixir",), "elixir", line_comments=_HASH),
    Language(("julia",), "julia", line_comments=_HASH),
    Language(("nim",), "nim", line_comments=_HASH),
    Language(("coffeescript",), "coffeescript", line_comments=_HASH),
    Language(("dart",), "dart", line_comments=_SLASH),
    Language(("objective-c",), "objective-c", line_comments=_SLASH),
    Language(("objective-cpp",), "objective-cpp", line_comments=_SLASH),
    Language(("groovy",), "groovy", line_comments=_SLASH),
    Language(("zig",), "zig", line_comments=_SLASH),
    Language(("haskell",), "haskell", line_comments=_DASH),
    Language(("elm",), "elm", line_comments=_DASH),
    Language(("ada",), "ada", line_comments=_DASH),
)  # fmt: skip

SYNTAX_LANGUAGES = frozenset(lang.name for lang in LANGUAGES if lang.tree_sitter)

_BY_LSP_ID = {lsp_id: lang for lang in LANGUAGES for lsp_id in lang.lsp_ids}
_BY_EXTENSION = {ext: lang for lang in LANGUAGES for ext in lang.extensions}
_BY_FILENAME = {name: lang for lang in LANGUAGES for name in lang.filenames}
_GRAMMAR_PACKAGES = {lang.name: lang.tree_sitter for lang in LANGUAGES if lang.tree_sitter}

# A .h file is C unless it plainly holds C++ (a C++ grammar would then see its classes).
CPP_IN_HEADER = re.compile(
    r"^\s*(?:class\s+\w+[^;]*$|namespace\b|template\s*<|(?:public|private|protected)\s*:)",
    re.MULTILINE,
)


def language_by_lsp_id(lsp_id: str) -> Language | None:
    """The language a client names ``lsp_id`` (an LSP id or a Neovim filetype); None if unknown."""
    return _BY_LSP_ID.get(lsp_id)


def language_of_path(path: str) -> Language | None:
    """The language of a file, from its name (case-insensitive); None when unknown."""
    name = PurePosixPath(path.replace("\\", "/")).name.lower()
    if name in _BY_FILENAME:
        return _BY_FILENAME[name]
    if name.startswith("dockerfile."):
        return _BY_FILENAME["dockerfile"]
    return _BY_EXTENSION.get(PurePosixPath(name).suffix)


def language_for(path: str) -> str | None:
    """The memlsp name of a workspace file's language, from its file name; None when unknown."""
    language = language_of_path(path)
    return language.name if language else None


@cache
def grammar(name: str) -> Grammar:
    """The tree-sitter grammar ``name`` (one of SYNTAX_LANGUAGES); ValueError for others."""
    if name not in _GRAMMAR_PACKAGES:
        raise ValueError(f"no grammar for {name!r}")
    package, function = _GRAMMAR_PACKAGES[name]
    # Imported here so that a file of one language never loads the other grammars.
    return Grammar(getattr(importlib.import_module(package), function)())


# A Parser is not safe to share between threads; the indexer may chunk on several.
_local = threading.local()


def parser_for(name: str) -> Parser:
    """A parser of grammar ``name``, one per thread (a Parser is not thread-safe)."""
    parsers: dict[str, Parser] | None = getattr(_local, "parsers", None)
    if parsers is None:
        parsers = _local.parsers = {}
    parser = parsers.get(name)
    if parser is None:
        parser = parsers[name] = Parser(grammar(name))
    return parser
