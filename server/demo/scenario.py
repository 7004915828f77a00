"""What `memlsp demo` does in which file: the bundled sample's script, or one picked from a
folder the user gives (where nothing is written: edits stay in the editor's memory)."""

from __future__ import annotations

import ast
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from lsprotocol import types as lsp

from memlsp.server.demo.text import end_position

SAMPLE_PACKAGE_DIR = "workspace"
SKIPPED_DIRS = {"node_modules", "venv", "build", "dist", "site-packages", "__pycache__"}
MAX_PICKED_FILE_BYTES = 200_000


@dataclass(frozen=True)
class InlineEdit:
    """Open ``path``, change its text (unsaved) to ``text`` and ask for a suggestion at the
    cursor."""

    path: Path
    text: str
    cursor: lsp.Position


@dataclass(frozen=True)
class CrossFileTask:
    """A new file that never names ``expected``, defined in another file of the workspace."""

    path: Path
    text: str
    cursor: lsp.Position
    expected: str
    defined_in: str


@dataclass(frozen=True)
class Scenario:
    root: Path
    inline: InlineEdit | None
    cross_file: CrossFileTask | None
    review: Path | None  # saved as it is on disk, then reviewed
    action_range: lsp.Range | None  # in ``review``
    expected_codes: tuple[str, ...] = ()  # the problems planted in ``review``
    skipped: str = ""  # why steps have no file to work on


# -- the bundled sample -----------------------------------------------------------------

ORDERS_TYPED = """
    def total_quantity(self):
        return """

CHECKOUT_PY = '''"""Checkout: what a customer pays for an order."""


def checkout_total(order):
    """The order's subtotal after the loyalty discount of the customer's tier, in cents."""
    subtotal = order.subtotal_cents()
    return '''


def copy_sample(target: Path) -> Path:
    """Copy the bundled sample workspace into ``target`` (never run in the package folder)."""
    source = resources.files("memlsp.server.demo").joinpath(SAMPLE_PACKAGE_DIR)
    with resources.as_file(source) as folder:
        shutil.copytree(folder, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def sample_scenario(root: Path) -> Scenario:
    orders = root / "orders.py"
    orders_text = orders.read_text(encoding="utf-8") + ORDERS_TYPED
    report = root / "legacy_report.py"
    report_text = report.read_text(encoding="utf-8")
    return Scenario(
        root=root,
        inline=InlineEdit(orders, orders_text, end_position(orders_text)),
        cross_file=CrossFileTask(
            path=root / "checkout.py",
            text=CHECKOUT_PY,
            cursor=end_position(CHECKOUT_PY),
            expected="apply_loyalty_discount",
            defined_in="pricing.py",
        ),
        review=report,
        action_range=_function_range(report_text, "best_customer"),
        expected_codes=("B006", "E711", "E722"),
    )


# -- a folder of the user's -------------------------------------------------------------


def folder_scenario(root: Path) -> Scenario:
    """Work on the first Python file with a function: its body's last statement is removed
    (in memory only) for the inline step; it is saved unchanged for the review."""
    for path in _python_files(root):
        picked = _pick_function(path)
        if picked is None:
            continue
        function, text = picked
        last = function.body[-1]
        lines = text.split("\n")
        first, end_line = last.lineno - 1, (last.end_lineno or last.lineno) - 1
        indent = lines[first][: len(lines[first]) - len(lines[first].lstrip())]
        # The statement's lines become one line holding just its indentation: the cursor.
        removed = "\n".join([*lines[:first], indent, *lines[end_line + 1 :]])
        start = lsp.Position(line=first, character=len(indent))
        action_range = lsp.Range(
            start=lsp.Position(line=function.lineno - 1, character=0),
            end=lsp.Position(line=(function.end_lineno or function.lineno) - 1, character=0),
        )
        return Scenario(
            root=root,
            inline=InlineEdit(path, removed, start),
            cross_file=None,
            review=path,
            action_range=action_range,
            skipped="the cross-file step needs the bundled sample (run `memlsp demo` alone)",
        )
    return Scenario(root, None, None, None, None, skipped=f"no Python function found in {root}")


def _python_files(root: Path) -> list[Path]:
    found = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).parts[:-1]
        if any(p.startswith(".") or p in SKIPPED_DIRS for p in parts):
            continue
        if path.is_file() and path.stat().st_size <= MAX_PICKED_FILE_BYTES:
            found.append(path)
    return found


def _pick_function(path: Path) -> tuple[ast.FunctionDef, str] | None:
    """The file's first function whose body has a statement besides its docstring."""
    try:
        text = path.read_text(encoding="utf-8")
        tree = ast.parse(text)
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and _has_code(node):
            return node, text
    return None


def _has_code(function: ast.FunctionDef) -> bool:
    body = function.body
    has_docstring = isinstance(body[0], ast.Expr) and isinstance(
        getattr(body[0], "value", None), ast.Constant
    )
    return len(body) > (1 if has_docstring else 0)


def _function_range(text: str, name: str) -> lsp.Range:
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return lsp.Range(
                start=lsp.Position(line=node.lineno - 1, character=0),
                end=lsp.Position(line=(node.end_lineno or node.lineno) - 1, character=0),
            )
    raise ValueError(f"no function {name} in the sample")
