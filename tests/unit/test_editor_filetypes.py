"""The editors' default filetypes are the languages memlsp parses (memlsp.base.languages).

Each plugin keeps its list once: Neovim in lua/memlsp/config.lua (lsp/memlsp.lua reads it from
there), VS Code in package.json (the ``memlsp.enabledLanguages`` default, which settings.ts reads
back); the Neovim help repeats it. Every literal list of language names under editors/ is found
by a regex and must name exactly the parsed languages, in the table's order, so a filetype added
to one list only fails here. Neovim lists filetypes, which resolve to the table's languages
through their ``lsp_ids`` (the table holds Neovim's names where they differ, e.g. ``sh``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from memlsp.base.languages import LANGUAGES, Language, language_by_lsp_id

EDITORS = Path(__file__).resolve().parents[2] / "editors"
NVIM, VSCODE = EDITORS / "nvim", EDITORS / "vscode"
# Where a list may be written out; anywhere else it must be derived from one of these.
LIST_HOMES = {
    NVIM / "lua" / "memlsp" / "config.lua",
    NVIM / "doc" / "memlsp.txt",
    VSCODE / "package.json",
}
_SOURCES = (".lua", ".ts", ".json", ".txt", ".md")
# A Lua table or JSON/TypeScript array of quoted strings only.
_LIST = re.compile(r"""[\[{](\s*(?:(['"])[^'"\n]*\2\s*,?\s*)+)[\]}]""")
_ITEM = re.compile(r"""(['"])([^'"\n]*)\1""")
_KNOWN_IDS = {lsp_id for language in LANGUAGES for lsp_id in language.lsp_ids}


def _language_lists() -> list[tuple[Path, int, list[str]]]:
    """(file, line, items) of every quoted-string list under editors/ naming a known language."""
    found = []
    for path in sorted(EDITORS.rglob("*")):
        if path.suffix not in _SOURCES or "node_modules" in path.parts:
            continue
        if path.name == "package-lock.json":
            continue
        text = path.read_text(encoding="utf-8")
        for match in _LIST.finditer(text):
            items = [item for _, item in _ITEM.findall(match.group(1))]
            # Vim mode lists ({ 'n', 'c' }) are not filetypes.
            if any(item in _KNOWN_IDS for item in items) and any(len(i) > 1 for i in items):
                found.append((path, text.count("\n", 0, match.start()) + 1, items))
    return found


LISTS = _language_lists()
PARSED = [language for language in LANGUAGES if language.grammar]


def test_lists_are_found_where_they_live() -> None:
    """Each home holds one list and nothing else holds one (a new copy must read the old one)."""
    where = sorted(str(path.relative_to(EDITORS)) for path, _, _ in LISTS)
    assert where == sorted(str(path.relative_to(EDITORS)) for path in LIST_HOMES)


@pytest.mark.parametrize(
    ("path", "line", "items"),
    LISTS,
    ids=[f"{path.relative_to(EDITORS)}:{line}" for path, line, _ in LISTS],
)
def test_list_names_the_parsed_languages(path: Path, line: int, items: list[str]) -> None:
    unknown = [item for item in items if language_by_lsp_id(item) is None]
    assert not unknown, f"{path.name}:{line}: not in memlsp.base.languages: {unknown}"
    languages: list[Language | None] = [language_by_lsp_id(item) for item in items]
    assert languages == PARSED, (
        f"{path.name}:{line} lists {items}; the parsed languages are "
        f"{[language.lsp_id for language in PARSED]}"
    )


def test_vscode_names_lsp_ids() -> None:
    """VS Code matches documents by language id: its list holds the ids themselves."""
    (items,) = [items for path, _, items in LISTS if path.parent == VSCODE]
    assert items == [language.lsp_id for language in PARSED]


def test_nvim_lsp_config_reads_setup_defaults() -> None:
    """lsp/memlsp.lua (vim.lsp.enable without setup) takes setup()'s filetypes."""
    text = (NVIM / "lsp" / "memlsp.lua").read_text(encoding="utf-8")
    assert re.search(r"""require\(['"]memlsp\.config['"]\)\.defaults""", text)
    assert re.search(r"filetypes\s*=\s*vim\.deepcopy\(defaults\.filetypes\)", text)


def test_vscode_fallback_reads_package_json_default() -> None:
    """settings.ts falls back to the package.json default, not a list of its own."""
    text = (VSCODE / "src" / "settings.ts").read_text(encoding="utf-8")
    assert re.search(r"inspect<unknown>\('enabledLanguages'\)\?\.defaultValue", text)
