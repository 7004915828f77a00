"""editors/emacs/memlsp.el in a real Emacs with Eglot, against the real server and 0.5B model.

``emacs --batch -Q`` runs ``tests/editors/emacs/driver.el``: it loads memlsp.el, opens a Python
file, starts ``memlsp serve`` through Eglot, collects what ``completion-at-point`` offers at the
end of the file, runs ``completion-at-point`` itself, and writes it all to JSON. Eglot has no
inline completion: memlsp's suggestion reaches Emacs as the classic completion item.

Emacs and Eglot come from Debian (``emacs-nox``, ``elpa-eglot``: Emacs 28, Eglot 1.9), installed
by ``editors/vscode/scripts/setup-test-env.sh`` (which ./setup.sh runs); without them the module
is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from test_nvim import FIM, with_model

from memlsp.config.paths import model_cache_dir

ROOT = Path(__file__).resolve().parents[2]
MEMLSP_EL = ROOT / "editors" / "emacs" / "memlsp.el"
DRIVER = Path(__file__).resolve().parent / "emacs" / "driver.el"
SERVER = [sys.executable, "-m", "memlsp.server.cli", "serve"]
WAIT_S = 240  # server start, model load and the first prompt on a busy 2-core box
SOURCE = "def add(a, b):\n    "  # the cursor goes at the end, inside the body
# -Q leaves out site-lisp, where Debian's elpa-* packages live: activate them from there (Emacs
# 29+ has Eglot built in and needs none of this).
ACTIVATE = """(progn
  (require 'package)
  (dolist (dir '("/usr/share/emacs/site-lisp/elpa" "/usr/local/share/emacs/site-lisp/elpa"))
    (when (file-directory-p dir) (add-to-list 'package-directory-list dir)))
  (package-initialize))"""


def find_emacs() -> tuple[str | None, str]:
    """Emacs with Eglot loadable under -Q, or None and what is missing."""
    emacs = shutil.which("emacs")
    if emacs is None:
        return None, "needs Emacs: apt-get install emacs-nox elpa-eglot (./setup.sh does)"
    probe = "(princ (if (require 'eglot nil t) 'yes 'no))"
    try:
        out = subprocess.run(
            [emacs, "--batch", "-Q", "--eval", ACTIVATE, "--eval", probe],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"Emacs does not run: {exc}"
    if out.strip() != "yes":
        return None, "needs Eglot: apt-get install elpa-eglot (./setup.sh does; Emacs 29+ has it)"
    return emacs, ""


EMACS, MISSING = find_emacs()

pytestmark = pytest.mark.skipif(EMACS is None, reason=MISSING)


def emacs_env(base: Path) -> dict[str, str]:
    """Emacs's home and the server's config dir in `base` (the developer's own stay out), but
    the server still finds the assembled models."""
    xdg = {k: base / "xdg" / k.lower() for k in ("CONFIG", "DATA", "STATE", "CACHE")}
    for folder in xdg.values():
        folder.mkdir(parents=True, exist_ok=True)
    return {
        **os.environ,
        "HOME": str(base / "home"),
        **{f"XDG_{k}_HOME": str(v) for k, v in xdg.items()},
        "MEMLSP_CACHE_DIR": str(model_cache_dir().parent),
        "PYTHONUNBUFFERED": "1",
    }


class Session:
    """What the Emacs run saw, with what explains a failure."""

    def __init__(self, data: dict[str, Any], stderr: str) -> None:
        self.data = data
        self.stderr = stderr

    def explain(self, problem: str) -> str:
        logs = "\n".join(
            f"-- {name}:\n{text[-3000:]}" for name, text in (self.data.get("logs") or {}).items()
        )
        shown = {k: v for k, v in self.data.items() if k != "logs"}
        return (
            f"{problem}\nresult: {json.dumps(shown, indent=1)[:3000]}\n"
            f"emacs stderr:\n{self.stderr[-3000:]}\nEglot buffers:\n{logs}"
        )


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    base = tmp_path_factory.mktemp("emacs")
    workspace = base / "ws"
    workspace.mkdir()
    (base / "home").mkdir()
    source = workspace / "add.py"
    source.write_text(SOURCE)
    out = base / "result.json"
    env = {
        **emacs_env(base),
        "MEMLSP_EMACS_OUT": str(out),
        "MEMLSP_EMACS_EL": str(MEMLSP_EL),
        "MEMLSP_EMACS_SERVER": json.dumps(SERVER),
        "MEMLSP_EMACS_OPTIONS": json.dumps({"agents": {"generator": {"model": FIM}}}),
        "MEMLSP_EMACS_WAIT_S": str(WAIT_S),
    }
    assert EMACS is not None
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [EMACS, "--batch", "-Q", "--eval", ACTIVATE, "-l", str(DRIVER), str(source)],
            cwd=workspace,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=2 * WAIT_S + 60,
        )
        returncode, stderr = proc.returncode, proc.stderr
    except subprocess.TimeoutExpired as exc:
        returncode, stderr = "timeout", str(exc.stderr or "")
    if not out.is_file():
        pytest.fail(
            f"Emacs wrote no result (exit {returncode}, {time.monotonic() - started:.0f} s)\n"
            f"stderr: {stderr[-4000:]}"
        )
    session = Session(json.loads(out.read_text()), stderr)
    assert session.data.get("ok"), session.explain(session.data.get("error") or "driver failed")
    return session


def test_memlsp_el_serves_each_language_with_its_id(tmp_path: Path) -> None:
    """memlsp.el's Eglot entries, without a server: the command, the options, the ids."""
    assert EMACS is not None
    probe = f"""(progn
      (load {json.dumps(str(MEMLSP_EL))} nil t)
      (setq memlsp-initialization-options '(:agents (:generator (:model "m"))))
      (princ (json-encode
        (vconcat (mapcar (lambda (mode)
                           (let ((found (eglot--lookup-mode mode)))
                             (vector (symbol-name mode) (nth 1 found)
                                     (vconcat (funcall (nth 2 found))))))
                         '(python-mode js-mode c++-mode go-mode))))))"""
    proc = subprocess.run(
        [EMACS, "--batch", "-Q", "--eval", ACTIVATE, "--eval", probe],
        capture_output=True,
        text=True,
        timeout=60,
        env=emacs_env(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    options = {"agents": {"generator": {"model": "m"}}}
    contact = ["memlsp", "serve", "initializationOptions", options]  # json-encode drops the colon
    assert json.loads(proc.stdout) == [
        ["python-mode", "python", contact],
        ["js-mode", "javascript", contact],
        ["c++-mode", "cpp", contact],
        ["go-mode", "go", contact],
    ]


@with_model
def test_eglot_starts_memlsp_for_python(session: Session) -> None:
    data = session.data
    assert data["mode"] == "python-mode"
    assert data["server"] == "memlsp", session.explain("serverInfo is not memlsp's")
    assert data["language_id"] == "python"
    assert any("eglot-completion-at-point" in f for f in data["capf_functions"])


@with_model
def test_completion_at_point_offers_memlsp_suggestion(session: Session) -> None:
    candidates = session.data["candidates"]
    assert len(candidates) == 1, session.explain("memlsp answers with one item")
    assert "return" in candidates[0], session.explain("no `return` in memlsp's item")
    assert f"memlsp · {FIM}" in session.data["annotations"][0]


@with_model
def test_completion_at_point_inserts_it(session: Session) -> None:
    before, after = session.data["buffer_before"], session.data["buffer_after"]
    assert before == SOURCE
    assert after.startswith(SOURCE), session.explain("the text before the cursor changed")
    inserted = after[len(SOURCE) :]
    assert inserted.startswith("return"), session.explain("completion-at-point inserted no item")
    assert "…" not in inserted  # the text edit's full text, not the list's label
