"""`memlsp editor`: set an editor up for this install in one step.

`memlsp editor vscode` builds the extension's .vsix with node and npm (the same `npm ci` and
`npm run package` as in editors/vscode) and installs it with `code --install-extension`;
`memlsp editor nvim` prints the plugin snippet with this install's paths. The editors' sources
ship in the package (memlsp.server.editors), so both work from a wheel as from a checkout.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TextIO

# What the extension's build reads; node_modules, out and dist are made by the build.
VSCODE_SOURCES = (
    "package.json",
    "package-lock.json",
    "tsconfig.json",
    ".vscodeignore",
    "README.md",
    "LICENSE",
    "src",
    "images",
)
NODE_MAJOR = 20  # @vscode/vsce 3.9 needs node 20
NPM_TIMEOUT_S = 900  # a first `npm ci` downloads the packages
INSTALLED_STAMP = ".memlsp-package-lock.sha256"


class EditorSetupError(Exception):
    """A step failed; the message says what to do."""


def editors_folder() -> Path:
    """The editors/ shipped with this install: the checkout's own folder when the installed
    files link into one (an editable install), so a snippet names the files you edit."""
    # Not resolved: in a strict editable install the link tree, not the checkout, has editors/.
    installed = Path(__file__).parent.parent / "editors"
    marker = installed / "nvim" / "lua" / "memlsp" / "init.lua"
    if not marker.is_file():
        raise EditorSetupError(f"the editor sources are missing from this install ({installed})")
    return marker.resolve().parents[3]


def server_command() -> list[str]:
    """How an editor starts this install's server."""
    script = Path(sys.executable).parent / "memlsp"
    if script.is_file():
        return [str(script), "serve"]
    return [sys.executable, "-m", "memlsp.server.cli", "serve"]


# -- Neovim ------------------------------------------------------------------------------------


def nvim_snippet(plugin: Path, command: list[str]) -> str:
    folder = _lua_string(str(plugin))
    cmd = "{ " + ", ".join(_lua_string(part) for part in command) + " }"
    return f"""-- memlsp for Neovim 0.11+: this install's plugin, starting this install's server.
-- lazy.nvim (a plugin spec):
{{
  dir = {folder},
  name = "memlsp.nvim",
  event = {{ "BufReadPre", "BufNewFile" }},
  opts = {{ cmd = {cmd} }},
}}

-- Without a plugin manager (init.lua). vim.pack (Neovim 0.12) installs plugins from git
-- repositories; this plugin is a local folder, so it goes on the runtimepath:
vim.opt.runtimepath:append({folder})
require("memlsp").setup({{ cmd = {cmd} }})
"""


def _lua_string(text: str) -> str:
    """A double-quoted Lua literal (Lua 5.1 escapes only: LuaJIT knows no \\u)."""
    out = []
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 32 or ord(char) == 127:
            out.append(f"\\{ord(char):03d}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def cmd_editor_nvim(args: argparse.Namespace) -> int:
    try:
        plugin = editors_folder() / "nvim"
    except EditorSetupError as exc:
        sys.stderr.write(f"memlsp editor nvim: {exc}\n")
        return 1
    if args.path:
        sys.stdout.write(f"{plugin}\n")
    else:
        sys.stdout.write(nvim_snippet(plugin, server_command()))
    return 0


# -- VS Code -----------------------------------------------------------------------------------


def vscode_build_folder() -> Path:
    """Where the extension is built: outside the install (site-packages stays as installed),
    kept between runs so `npm ci` runs again only when package-lock.json changes."""
    from memlsp.config.paths import cache_root

    return cache_root() / "editors" / "vscode"


def build_vsix(sources: Path, build: Path, log: Path) -> Path:
    """Copy the extension's sources into `build`, `npm ci` when its lock file changed, then
    `npm run package` (tsc, then vsce); the .vsix path. Tool output goes to `log`."""
    _check_node()
    build.mkdir(parents=True, exist_ok=True)
    for name in VSCODE_SOURCES:
        _replace(sources / name, build / name)
    for made in ("out", "dist"):  # nothing left from an older build may end up in the .vsix
        shutil.rmtree(build / made, ignore_errors=True)
    lock_hash = hashlib.sha256((build / "package-lock.json").read_bytes()).hexdigest()
    stamp = build / "node_modules" / INSTALLED_STAMP
    with log.open("w", encoding="utf-8") as out:
        if not stamp.is_file() or stamp.read_text().strip() != lock_hash:
            _npm(["ci", "--no-audit", "--no-fund", "--loglevel=error"], build, out, log)
            stamp.write_text(lock_hash + "\n")
        _npm(["run", "--silent", "package"], build, out, log)
    vsix = build / "dist" / "memlsp.vsix"
    if not vsix.is_file():
        raise EditorSetupError(f"npm run package made no {vsix} (its output: {log})")
    return vsix


def _replace(source: Path, target: Path) -> None:
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)
    elif target.exists() or target.is_symlink():
        target.unlink()
    if source.is_dir():
        shutil.copytree(source, target)
    elif source.is_file():
        shutil.copyfile(source, target)


def _check_node() -> None:
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            raise EditorSetupError(
                f"{tool} is not on PATH: building the extension needs node >= {NODE_MAJOR} "
                "and npm (e.g. apt-get install nodejs npm, or nodejs.org)"
            )
    found = subprocess.run(
        ["node", "--version"], capture_output=True, text=True, check=False, timeout=30
    ).stdout.strip()
    major = found.lstrip("v").split(".")[0]
    if not major.isdigit() or int(major) < NODE_MAJOR:
        raise EditorSetupError(
            f"node >= {NODE_MAJOR} is needed to build the extension, found {found}"
        )


def _npm(args: list[str], cwd: Path, out: TextIO, log: Path) -> None:
    command = ["npm", *args]
    try:
        subprocess.run(
            command,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=NPM_TIMEOUT_S,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-20:]
        raise EditorSetupError(
            f"`{' '.join(command)}` failed in {cwd} ({exc}); its output ({log}) ends with:\n"
            + "\n".join(tail)
        ) from None


def install_vsix(vsix: Path, code: str) -> None:
    """`code --install-extension` (also code-server's, VSCodium's); --force replaces an
    installed memlsp of the same version with this build."""
    result = subprocess.run(
        [code, "--install-extension", str(vsix), "--force"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if result.returncode != 0:
        raise EditorSetupError(
            f"{code} --install-extension failed ({result.returncode}):\n"
            + (result.stderr or result.stdout).strip()
        )


def cmd_editor_vscode(args: argparse.Namespace) -> int:
    build = vscode_build_folder()
    try:
        vsix = build_vsix(editors_folder() / "vscode", build, build.parent / "vscode-build.log")
        if args.out:
            target = Path(args.out).resolve()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(vsix, target)
            vsix = target
        sys.stdout.write(f"built {vsix}\n")
        code = None if args.no_install else args.code or shutil.which("code")
        if code is None:
            how = "" if args.no_install else " (`code` is not on PATH)"
            sys.stdout.write(f"install it{how}: code --install-extension {vsix}\n")
        else:
            install_vsix(vsix, code)
            sys.stdout.write(f"installed with {code} --install-extension\n")
    except EditorSetupError as exc:
        sys.stderr.write(f"memlsp editor vscode: {exc}\n")
        return 1
    _server_hint()
    return 0


def _server_hint() -> None:
    """The extension starts `memlsp` from PATH unless memlsp.serverPath names one."""
    script = Path(sys.executable).parent / "memlsp"
    on_path = shutil.which("memlsp")
    if not script.is_file() or (on_path and Path(on_path).resolve() == script.resolve()):
        return
    sys.stdout.write(
        "the extension starts `memlsp` from PATH; to start this install's server, set "
        f'"memlsp.serverPath": "{script}" in the VS Code settings\n'
    )


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    editor = sub.add_parser("editor", help="set up VS Code or Neovim for this install")
    editors = editor.add_subparsers(dest="editor_command", required=True)

    vscode = editors.add_parser(
        "vscode",
        help="build the extension's .vsix (node >= 20 and npm) and install it with "
        "`code --install-extension`",
    )
    vscode.add_argument("--no-install", action="store_true", help="only build; print the path")
    vscode.add_argument(
        "--code",
        metavar="PROGRAM",
        help="the VS Code command to install with (default: `code` on PATH; code-server and "
        "codium take the same --install-extension)",
    )
    vscode.add_argument("--out", metavar="FILE", help="also copy the .vsix here")
    vscode.set_defaults(func=cmd_editor_vscode)

    nvim = editors.add_parser(
        "nvim", help="print the lazy.nvim and init.lua snippets with this install's paths"
    )
    nvim.add_argument("--path", action="store_true", help="print only the plugin's folder")
    nvim.set_defaults(func=cmd_editor_nvim)
