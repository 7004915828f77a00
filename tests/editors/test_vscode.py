"""The VS Code extension (editors/vscode) in a real VS Code against the real server and model.

code-server (VS Code 1.100 served over HTTP) runs on 127.0.0.1 with the extension's .vsix
installed and a small workspace (``FILES``) open; headless Chromium, driven by playwright-core
from ``tests/editors/vscode/drive.cjs``, types into it like a user. The extension starts the
server through a wrapper (this interpreter, an empty config home, a cache folder of its own
linked to the model cache) named by ``memlsp.serverPath`` in the workspace settings. One session
runs every step and writes what it saw to JSON; each test below checks one step. Screenshots,
the extension's log and that JSON go to ``test-output/vscode/``.

Checks of optional server features follow what the server advertises: diagnostics on save and
code actions are skipped while it lacks them; reindex and rewrite-selection check the clear "not
supported yet" warning instead. They switch over by themselves when the server has them.

Needs ``editors/vscode/scripts/setup-test-env.sh`` (chromium, code-server, playwright-core, the
.vsix); without it the module is skipped with that instruction.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memlsp.config.paths import model_cache_dir

ROOT = Path(__file__).resolve().parents[2]
EXTENSION = ROOT / "editors" / "vscode"
VSIX = EXTENSION / "dist" / "memlsp.vsix"
# What code-server is given of the session's environment (its own home and XDG folders).
CODE_SERVER_ENV = ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME")
SETUP = EXTENSION / "scripts" / "setup-test-env.sh"
DRIVER = Path(__file__).resolve().parent / "vscode" / "drive.cjs"
OUT = ROOT / "test-output" / "vscode"

# The workspace (kept here, not as files: the repository's linters would flag lint.py).
FILES = {
    "add.py": "def add(a, b):\n\n\nprint(add(1, 2))\n",
    "lint.py": 'import os\n\n\ndef greet(name):\n    return "hello " + name\n',
}
FIM = "qwen2.5-coder-0.5b"
FIM_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
BUDGET_MB = 3000  # set in the workspace settings; the status report must show it
# One step's wait (model load + first prompt on a busy 2-core box); MEMLSP_VSCODE_STEP_TIMEOUT_S
# changes it.
STEP_TIMEOUT_MS = int(float(os.environ.get("MEMLSP_VSCODE_STEP_TIMEOUT_S", "180")) * 1000)
RUN_TIMEOUT_S = 900  # the whole browser session


def vscode_test_dir() -> Path:
    """Where setup-test-env.sh installs code-server and playwright-core."""
    explicit = os.environ.get("MEMLSP_VSCODE_TEST_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "memlsp" / "vscode-test"


TEST_ENV = vscode_test_dir()
CODE_SERVER = TEST_ENV / "node_modules" / ".bin" / "code-server"
PLAYWRIGHT = TEST_ENV / "node_modules" / "playwright-core"
NODE = shutil.which("node")
CHROMIUM = os.environ.get("MEMLSP_CHROMIUM") or shutil.which("chromium")


def missing_tools() -> list[str]:
    missing = []
    if NODE is None:
        missing.append("node")
    if CHROMIUM is None:
        missing.append("chromium")
    if not CODE_SERVER.exists():
        missing.append(f"code-server (in {TEST_ENV})")
    if not PLAYWRIGHT.is_dir():
        missing.append(f"playwright-core (in {TEST_ENV})")
    if not (EXTENSION / "node_modules").is_dir() and not VSIX.is_file():
        missing.append("the extension's npm packages and .vsix")
    return missing


MISSING = missing_tools()

pytestmark = [
    pytest.mark.model,
    pytest.mark.skipif(
        bool(MISSING),
        reason=f"VS Code test environment not set up (missing: {', '.join(MISSING)}); "
        f"run {SETUP.relative_to(ROOT)}",
    ),
    pytest.mark.skipif(
        not (model_cache_dir() / FIM_FILE).is_file(),
        reason=f"{FIM} is not assembled: run ./setup.sh (or `memlsp models install`)",
    ),
]


# -- helpers -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)


def stop_group(proc: subprocess.Popen[Any]) -> None:
    """Stop a process started in its own session and everything it started (by its group id):
    code-server leaves extension hosts, and they the language server."""
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        if not _group_alive(proc.pid):
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and _group_alive(proc.pid):
            proc.poll()  # reap the leader: a zombie still counts as a group member
            time.sleep(0.1)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_wrapper(path: Path, config_home: Path, cache: Path) -> None:
    """The server as the extension starts it: this interpreter, an empty config home, and a
    cache folder of its own (the workspace memory lands there) that links to the model cache
    this test process sees. code-server itself runs with a temporary HOME."""
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "models").symlink_to(model_cache_dir(), target_is_directory=True)
    env = {
        "HOME": str(Path.home()),
        "XDG_CONFIG_HOME": str(config_home),
        "MEMLSP_CACHE_DIR": str(cache),
        "PYTHONUNBUFFERED": "1",
    }
    exports = "\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items())
    path.write_text(
        f'#!/bin/sh\n{exports}\nexec {shlex.quote(sys.executable)} -m memlsp.server.cli "$@"\n',
        encoding="utf-8",
    )
    path.chmod(0o755)


def user_settings() -> dict[str, Any]:
    """VS Code's own settings for a quiet, deterministic window."""
    return {
        "workbench.startupEditor": "none",
        "workbench.tips.enabled": False,
        "workbench.enableExperiments": False,
        "workbench.welcomePage.walkthroughs.openOnInstall": False,
        "window.restoreWindows": "none",
        "telemetry.telemetryLevel": "off",
        "update.mode": "none",
        "extensions.autoCheckUpdates": False,
        "extensions.autoUpdate": False,
        "extensions.ignoreRecommendations": True,
        "git.enabled": False,
        "security.workspace.trust.enabled": False,
        "editor.inlineSuggest.enabled": True,
        # The driver types indentation itself: no race with the language's indentation rules
        "editor.autoIndent": "none",
        "editor.quickSuggestions": {"other": False, "comments": False, "strings": False},
        "files.autoSave": "off",
        "chat.commandCenter.enabled": False,
    }


def tail(path: Path, lines: int = 60) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} not found)"


# -- the session -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("vscode")
    home, user_data, extensions = tmp / "home", tmp / "user-data", tmp / "extensions"
    for folder in (home, user_data / "User", extensions):
        folder.mkdir(parents=True)
    (user_data / "User" / "settings.json").write_text(json.dumps(user_settings(), indent=2))
    config_home = tmp / "memlsp-config"  # empty: no user config file
    config_home.mkdir()
    wrapper = tmp / "memlsp-server"
    write_wrapper(wrapper, config_home, tmp / "memlsp-cache")

    workspace = tmp / "workspace"
    (workspace / ".vscode").mkdir(parents=True)
    for name, content in FILES.items():
        (workspace / name).write_text(content, encoding="utf-8")
    (workspace / ".vscode" / "settings.json").write_text(
        json.dumps(
            {
                "memlsp.serverPath": str(wrapper),
                "memlsp.agents.generator.model": FIM,
                "memlsp.pool.memory_budget_mb": BUDGET_MB,
                # MEMLSP_VSCODE_TRACE=1: the LSP traffic in the memlsp log (test-output/vscode/)
                **(
                    {"memlsp.trace.server": "verbose", "memlsp.server.log_level": "debug"}
                    if os.environ.get("MEMLSP_VSCODE_TRACE")
                    else {}
                ),
            },
            indent=2,
        )
    )

    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    env = {
        **os.environ,
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
    }
    dirs = ["--user-data-dir", str(user_data), "--extensions-dir", str(extensions)]
    # Installed the way users install it: `memlsp editor vscode` builds the .vsix with npm and
    # hands it to `code --install-extension`; here `code` is code-server with this session's
    # folders (the build itself uses the developer's cache: warm, a few seconds).
    code = tmp / "code"
    exports = " ".join(f"{k}={shlex.quote(str(env[k]))}" for k in CODE_SERVER_ENV)
    code.write_text(
        f"#!/bin/sh\nexport {exports}\n"
        f'exec {shlex.quote(str(CODE_SERVER))} {" ".join(shlex.quote(d) for d in dirs)} "$@"\n'
    )
    code.chmod(0o755)
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "memlsp.server.cli", "editor", "vscode", "--code", str(code)],
        check=True,
        capture_output=True,
        timeout=900,
        start_new_session=True,
    )
    installed = time.monotonic() - started

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    server_log = tmp / "code-server.log"
    with server_log.open("wb") as log_file:
        code_server = subprocess.Popen(
            [
                str(CODE_SERVER),
                "--bind-addr",
                f"127.0.0.1:{port}",
                "--auth",
                "none",
                *dirs,
                "--disable-telemetry",
                "--disable-update-check",
                "--disable-workspace-trust",
                "--disable-getting-started-override",
                str(workspace),
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stop_group ends the whole tree
        )
    driver: subprocess.Popen[str] | None = None
    record: dict[str, Any] = {}
    try:
        wait_http(url + "healthz", 120)
        result_path = tmp / "result.json"
        config = {
            "url": f"{url}?folder={workspace}",
            "playwright": str(PLAYWRIGHT),
            "chromium": CHROMIUM,
            "outDir": str(OUT),
            "result": str(result_path),
            "stepTimeoutMs": STEP_TIMEOUT_MS,
            "files": {"add": "add.py", "lint": "lint.py"},
            "settingsFile": str(workspace / ".vscode" / "settings.json"),
        }
        config_path = tmp / "drive.json"
        config_path.write_text(json.dumps(config, indent=2))
        assert NODE is not None
        driver = subprocess.Popen(
            [NODE, str(DRIVER), str(config_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # Chromium and its helpers go with it
        )
        try:
            output, _ = driver.communicate(timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            stop_group(driver)
            output, _ = driver.communicate()
        record = json.loads(result_path.read_text()) if result_path.is_file() else {}
        record["driver_output"] = output
        record["driver_rc"] = driver.returncode
    finally:
        if driver is not None:
            stop_group(driver)
        stop_group(code_server)
    logs = sorted(user_data.glob("logs/**/memlsp.memlsp/memlsp.log"))
    for i, log in enumerate(logs):
        shutil.copy(log, OUT / f"memlsp-{i}.log")
    shutil.copy(server_log, OUT / "code-server.log")
    record["server_log"] = "\n\n".join(tail(log) for log in logs) or "(no memlsp log)"
    record["timings"] = {
        "install_extension_s": round(installed, 1),
        "total_s": round(time.monotonic() - started, 1),
    }
    (OUT / "result.json").write_text(json.dumps(record, indent=2))
    yield record


def check(session: dict[str, Any], name: str) -> dict[str, Any]:
    """The step's record; fails with the driver's log and the server's log when it failed."""
    steps = session.get("steps", {})
    record = steps.get(name)
    if record is None:
        pytest.fail(
            f"step {name!r} did not run\n"
            f"driver (rc {session.get('driver_rc')}):\n{session.get('driver_output', '')}\n"
            f"server log:\n{session.get('server_log', '')}"
        )
    if record.get("skipped"):
        pytest.skip(f"{name}: {record['skipped']}")
    if not record.get("ok"):
        pytest.fail(
            f"step {name!r} failed: {record.get('detail')}\n"
            f"screenshot: {record.get('screenshot')}\n"
            f"driver:\n{session.get('driver_output', '')}\n"
            f"server log:\n{session.get('server_log', '')}"
        )
    return record


# -- the checks --------------------------------------------------------------------------------


def test_server_starts_and_status_bar_shows_it(session: dict[str, Any]) -> None:
    check(session, "workbench")
    record = check(session, "server_ready")
    assert "memlsp: " in record["detail"]


def test_ghost_text_from_the_model(session: dict[str, Any]) -> None:
    record = check(session, "ghost_text")
    assert "return" in record["detail"]
    if record.get("retyped"):
        warnings.warn(
            f"VS Code made no inline request for the first keystrokes; ghost text came after "
            f"retyping {record['retyped']}x",
            stacklevel=1,
        )
    assert (OUT / "inline-completion.png").is_file()


def test_word_by_word_accept(session: dict[str, Any]) -> None:
    check(session, "word_accept")


def test_tab_accepts_the_ghost_text(session: dict[str, Any]) -> None:
    record = check(session, "tab_accepts")
    assert '"    return ' in record["detail"], record["detail"]  # indented, in the function


def test_suggest_widget_shows_our_item(session: dict[str, Any]) -> None:
    check(session, "suggest_widget")


def test_show_status_reports_features_model_and_settings(session: dict[str, Any]) -> None:
    check(session, "show_status")
    features = session.get("features") or []
    assert "inline completion" in features, features
    assert "completion" in features, features
    status = session.get("statusText", "")
    # The workspace settings reached the server through the client (initializationOptions and
    # workspace/configuration), and VS Code's defaults did not override the server's own.
    assert f"Pool budget: {BUDGET_MB} MB" in status, status
    assert f"Completion model: {FIM}" in status, status
    assert "Config issues: none" in status, status
    assert f"model {FIM}" in session.get("statusBar", ""), session.get("statusBar")


def test_reindex_command(session: dict[str, Any]) -> None:
    """Runs memlsp.reindex, or says clearly that the server has no such command."""
    check(session, "reindex_command")


def test_rewrite_selection_command(session: dict[str, Any]) -> None:
    """Rewrites the selection through memlsp.rewriteSelection, or says the server cannot."""
    check(session, "rewrite_selection")


def test_restart_server_command(session: dict[str, Any]) -> None:
    check(session, "restart_server")


def test_missing_server_is_reported(session: dict[str, Any]) -> None:
    """A changed memlsp.serverPath restarts the client; a wrong one gives a clear message."""
    check(session, "server_not_found")


def test_diagnostics_on_save_in_problems_panel(session: dict[str, Any]) -> None:
    check(session, "diagnostics_on_save")


def test_code_action_applies(session: dict[str, Any]) -> None:
    check(session, "code_action")
