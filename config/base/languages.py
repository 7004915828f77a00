"""What memlsp knows of languages: file names to language names, and the tree-sitter grammars.

Grammars load lazily, one package per language, and each thread gets its own parsers.
"""

from __future__ import annotations

import re
import threading
from functools import cache
from pathlib import PurePosixPath

from tree_sitter import Language, Parser

__all__ = [
    "CPP_IN_HEADER",
    "SYNTAX_LANGUAGES",
    "grammar",
    "language_for",
    "parser_for",
]

SYNTAX_LANGUAGES = frozenset(
    {"python", "javascript", "typescript", "tsx", "go", "rust", "java", "c", "cpp"}
)

_EXTENSIONS: dict[str, str] = {
    **dict.fromkeys((".py", ".pyi", ".pyw"), "python"),
    **dict.fromkeys((".js", ".mjs", ".cjs", ".jsx"), "javascript"),
    **dict.fromkeys((".ts", ".mts", ".cts"), "typescript"),
    ".tsx": "tsx",
    ".go": "go",
    ".rs": "rust",
    ".java": "java",
    **dict.fromkeys((".c", ".h"), "c"),
    **dict.fromkeys(
        (".cc", ".cpp", ".cxx", ".c++", ".hh", ".hpp", ".hxx", ".h++", ".ipp", ".inl", ".tpp"),
        "cpp",
    ),
    # Languages without a grammar here: line windows, but the label helps filtering.
    **dict.fromkeys((".md", ".markdown", ".mdx"), "markdown"),
    **dict.fromkeys((".rst", ".txt", ".adoc"), "text"),
    **dict.fromkeys((".yaml", ".yml"), "yaml"),
    **dict.fromkeys((".json", ".jsonc", ".json5"), "json"),
    ".toml": "toml",
    **dict.fromkeys((".ini", ".cfg", ".conf"), "ini"),
    **dict.fromkeys((".sh", ".bash", ".zsh"), "shell"),
    **dict.fromkeys((".html", ".htm"), "html"),
    **dict.fromkeys((".css", ".scss", ".sass", ".less"), "css"),
    ".xml": "xml",
    ".sql": "sql",
    ".proto": "protobuf",
    **dict.fromkeys((".graphql", ".gql"), "graphql"),
    ".rb": "ruby",
    ".php": "php",
    **dict.fromkeys((".kt", ".kts"), "kotlin"),
    ".swift": "swift",
    ".cs": "csharp",
    ".lua": "lua",
    ".scala": "scala",
    ".cmake": "cmake",
    ".vue": "vue",
    ".svelte": "svelte",
}
_FILENAMES: dict[str, str] = {
    "dockerfile": "dockerfile",
    "containerfile": "dockerfile",
    "makefile": "makefile",
    "gnumakefile": "makefile",
    "cmakelists.txt": "cmake",
}
# A .h file is C unless it plainly holds C++ (a C++ grammar would then see its classes).
CPP_IN_HEADER = re.compile(
    r"^\s*(?:class\s+\w+[^;]*$|namespace\b|template\s*<|(?:public|private|protected)\s*:)",
    re.MULTILINE,
)


def language_for(path: str) -> str | None:
    """The language of a workspace file, from its name; None when unknown."""
    name = PurePosixPath(path.replace("\\", "/")).name.lower()
    if name in _FILENAMES:
        return _FILENAMES[name]
    if name.startswith("dockerfile."):
        return "dockerfile"
    return _EXTENSIONS.get(PurePosixPath(name).suffix)


@cache
def grammar(name: str) -> Language:
    """The tree-sitter grammar ``name`` (one of SYNTAX_LANGUAGES); ValueError for others."""
    # Imported here so that a file of one language never loads the other grammars.
    match name:
        case "python":
            import tree_sitter_python

            return Language(tree_sitter_python.language())
        case "javascript":
            import tree_sitter_javascript

            return Language(tree_sitter_javascript.language())
        case "typescript":
            import tree_sitter_typescript

            return Language(tree_sitter_typescript.language_typescript())
        case "tsx":
            import tree_sitter_typescript

            return Language(tree_sitter_typescript.language_tsx())
        case "go":
            import tree_sitter_go

            return Language(tree_sitter_go.language())
        case "rust":
            import tree_sitter_rust

            return Language(tree_sitter_rust.language())
        case "java":
            import tree_sitter_java

            return Language(tree_sitter_java.language())
        case "c":
            import tree_sitter_c

            return Language(tree_sitter_c.language())
        case "cpp":
            import tree_sitter_cpp

            return Language(tree_sitter_cpp.language())
    raise ValueError(f"no grammar for {name!r}")


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
