"""`memlsp editor`: the editors' sources in the install, the Neovim snippet, and the VS Code
steps with a fake node, npm and `code` (the order of the steps, npm ci only when the lock file
changes, the install command, the messages when a tool is missing). The real build, the real
code-server and the real Neovim are in tests/editors/test_editor_setup.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from memlsp.server.cli import editor
from memlsp.server.cli.editor import (
    VSCODE_SOURCES,
    EditorSetupError,
    _lua_string,
    build_vsix,
    editors_folder,
    install_vsix,
    nvim_snippet,
)

ROOT = Path(__file__).resolve().parents[2]
MEMLSP = [sys.executable, "-m", "memlsp.server.cli"]

# A stand-in for npm: records each call; `ci` makes node_modules, `run package` a .vsix.
FAKE_NPM = """#!/bin/sh
echo "$*" >> "$FAKE_LOG"
case "$1" in
  ci) mkdir -p node_modules ;;
  run) mkdir -p dist && echo vsix > dist/memlsp.vsix ;;
esac
"""
FAKE_NODE = '#!/bin/sh\necho "${FAKE_NODE_VERSION:-v20.20.2}"\n'
FAKE_CODE = '#!/bin/sh\necho "$*" >> "$FAKE_LOG"\n'


def script(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


@pytest.fixture
def fake_tools(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """node, npm and code stand-ins first on PATH; their calls go to the returned log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script(bin_dir / "node", FAKE_NODE)
    script(bin_dir / "npm", FAKE_NPM)
    script(bin_dir / "code", FAKE_CODE)
    log = tmp_path / "calls.log"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_LOG", str(log))
    return log


def test_the_install_carries_the_editor_sources() -> None:
    # The strict editable install holds exactly the package data a wheel would: each file the
    # extension's build copies must be declared in pyproject.toml.
    installed = Path(editor.__file__).parent.parent / "editors"
    assert [n for n in VSCODE_SOURCES if not (installed / "vscode" / n).exists()] == []
    assert (installed / "nvim" / "lua" / "memlsp" / "init.lua").is_file()
    assert not (installed / "vscode" / "node_modules").exists()
    # ... and a snippet names the checkout's own files, the ones a developer edits.
    assert editors_folder() == ROOT / "editors"


def test_the_nvim_snippet_names_this_install() -> None:
    snippet = nvim_snippet(Path("/opt/memlsp/nvim"), ["/opt/bin/memlsp", "serve"])
    assert 'dir = "/opt/memlsp/nvim",' in snippet
    assert 'vim.opt.runtimepath:append("/opt/memlsp/nvim")' in snippet
    assert snippet.count('cmd = { "/opt/bin/memlsp", "serve" }') == 2


def test_lua_strings_are_escaped() -> None:
    assert _lua_string('a"b\\c\nd') == '"a\\"b\\\\c\\010d"'
    assert _lua_string("/home/zoë/x") == '"/home/zoë/x"'


def test_memlsp_editor_nvim_prints_the_plugin_and_the_server() -> None:
    result = subprocess.run(
        [*MEMLSP, "editor", "nvim"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (folder,) = set(re.findall(r'dir = "([^"]+)"', result.stdout))
    assert (Path(folder) / "lua" / "memlsp" / "init.lua").is_file()
    (server,) = set(re.findall(r'cmd = \{ "([^"]+)", "serve" \}', result.stdout))
    assert Path(server).is_file()


def test_vscode_builds_with_npm_then_installs_with_code(tmp_path: Path, fake_tools: Path) -> None:
    env = {**os.environ, "MEMLSP_CACHE_DIR": str(tmp_path / "cache")}
    command = [*MEMLSP, "editor", "vscode"]
    first = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert first.returncode == 0, first.stdout + first.stderr
    vsix = tmp_path / "cache" / "editors" / "vscode" / "dist" / "memlsp.vsix"
    assert f"built {vsix}" in first.stdout
    assert "installed with" in first.stdout
    # A second run keeps node_modules (same package-lock.json) and installs the new build.
    second = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert second.returncode == 0, second.stdout + second.stderr
    assert fake_tools.read_text().splitlines() == [
        "ci --no-audit --no-fund --loglevel=error",
        "run --silent package",
        f"--install-extension {vsix} --force",
        "run --silent package",
        f"--install-extension {vsix} --force",
    ]
    build = vsix.parents[1]
    assert (build / "src" / "extension.ts").is_file()
    assert json.loads((build / "package.json").read_text())["name"] == "memlsp"


def test_no_install_prints_the_command(tmp_path: Path, fake_tools: Path) -> None:
    out = tmp_path / "copy" / "memlsp.vsix"
    env = {**os.environ, "MEMLSP_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run(
        [*MEMLSP, "editor", "vscode", "--no-install", "--out", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert out.is_file()
    assert f"code --install-extension {out}" in result.stdout
    assert "--install-extension" not in fake_tools.read_text()


def test_without_node_the_build_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    with pytest.raises(EditorSetupError, match=r"node is not on PATH.*node >= 20 and npm"):
        build_vsix(editors_folder() / "vscode", tmp_path / "build", tmp_path / "build.log")


def test_an_old_node_is_refused(
    tmp_path: Path, fake_tools: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_NODE_VERSION", "v18.19.1")
    with pytest.raises(EditorSetupError, match=r"node >= 20 .* found v18\.19\.1"):
        build_vsix(editors_folder() / "vscode", tmp_path / "build", tmp_path / "build.log")


def test_a_failing_npm_shows_its_output(
    tmp_path: Path, fake_tools: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script(
        Path(os.environ["PATH"].split(os.pathsep)[0]) / "npm", "#!/bin/sh\necho E404 >&2\nexit 1\n"
    )
    with pytest.raises(EditorSetupError, match=r"(?s)npm ci .*failed.*E404"):
        build_vsix(editors_folder() / "vscode", tmp_path / "build", tmp_path / "build.log")


def test_install_failure_is_reported(tmp_path: Path) -> None:
    code = script(tmp_path / "code", "#!/bin/sh\necho 'not a vsix' >&2\nexit 3\n")
    with pytest.raises(EditorSetupError, match="failed \\(3\\):\nnot a vsix"):
        install_vsix(tmp_path / "memlsp.vsix", str(code))
