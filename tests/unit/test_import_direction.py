"""Imports go one way: config -> base -> models -> memory -> agents -> server.

A module may import its own layer and the layers before it, never one after it; the base layer
imports nothing of memlsp at all; inside agents, the completion, review and refactor paths never
import each other (what they share sits beside them in agents/). Checked on the source text, so a
lazy import inside a function counts too.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAYERS = ["config", "base", "models", "memory", "agents", "server"]
FOLDERS = {"config": "config", "base": "config/base", "models": "models", "memory": "memory"}
FOLDERS |= {"agents": "agents", "server": "server"}
AGENT_PATHS = ("completion", "review", "refactor")


def _module_of(path: Path) -> str:
    """The dotted memlsp module of a source file."""
    rel = path.relative_to(ROOT)
    parts = ["base", *rel.parts[2:]] if rel.parts[:2] == ("config", "base") else list(rel.parts)
    parts[-1] = parts[-1].removesuffix(".py")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["memlsp", *parts])


def _sources() -> list[Path]:
    files = []
    for folder in ("config", "models", "memory", "agents", "server"):
        files += [p for p in (ROOT / folder).rglob("*.py") if "workspace" not in p.parts]
    return sorted(files)


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute memlsp module) of every import of memlsp in the file."""
    module = _module_of(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("memlsp.")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target.startswith("memlsp."):
                found += [(node.lineno, target)]
    return found


def _layer(module: str) -> str:
    return module.split(".")[1]


def _agent_path(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) > 3 and parts[1] == "agents" and parts[2] in AGENT_PATHS:
        return parts[2]
    return None


def _violations(path: Path) -> list[str]:
    module = _module_of(path)
    layer = _layer(module)
    bad = []
    for line, target in _imports(path):
        where = f"{path.relative_to(ROOT)}:{line} imports {target}"
        target_layer = _layer(target)
        if layer == "base":
            bad.append(f"{where} (the base layer imports nothing of memlsp)")
        elif LAYERS.index(target_layer) > LAYERS.index(layer):
            bad.append(f"{where} ({layer} comes before {target_layer})")
        own, other = _agent_path(module), _agent_path(target)
        if own and other and own != other:
            bad.append(f"{where} (agents.{own} and agents.{other} are separate paths)")
    return bad


def test_every_source_file_is_checked() -> None:
    modules = {_module_of(p) for p in _sources()}
    assert {"memlsp.base.languages", "memlsp.server.lsp.server", "memlsp.config.schema"} <= modules
    assert {_layer(m) for m in modules} == set(LAYERS)


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_go_one_way(path: Path) -> None:
    assert _violations(path) == []


def test_the_check_catches_an_upward_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rule itself must be able to fail: a memory module that imports the agents."""
    fake_root = tmp_path
    (fake_root / "memory").mkdir()
    bad = fake_root / "memory" / "leak.py"
    bad.write_text("from memlsp.agents.completion.generator import Generator\n")
    (fake_root / "config" / "base").mkdir(parents=True)
    base = fake_root / "config" / "base" / "edits.py"
    base.write_text("import memlsp.config\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", fake_root)
    assert _violations(bad) == [
        "memory/leak.py:1 imports memlsp.agents.completion.generator (memory comes before agents)"
    ]
    assert _violations(base) == [
        "config/base/edits.py:1 imports memlsp.config (the base layer imports nothing of memlsp)"
    ]
