"""Cross-file completion tasks from a real Python package, for bench_crossfile.py.

A task is one line of a module that uses a name defined at the top level of ANOTHER module of the
copied workspace: a name imported from a sibling module (``from .utils import build_residual``)
or a module attribute (``nx.shortest_path``, ``utils.CurrentEdge``). The line is cut at the start
of that reference (for ``nx.foo(G)`` at ``nx``); the rest of the line is what the model must write.

What keeps the task fair, i.e. answerable from the other file and not from the current one:

* the name is defined at the top level of exactly one workspace file, and not in the current
  file (a name defined twice has no single right answer);
* the name does not appear anywhere else in the current file (docstrings and comments included),
  except in its ``import`` statement; so neither the prefix nor the suffix the model sees spells
  it out, only the other file does (an import line names it, but says nothing of its arguments);
* the line is a whole statement or clause (brackets balanced at its start and its end), so its
  rest is a complete answer, of 4 to 100 characters.

A line that appears verbatim in another file (copied code) is kept: that is what memory is for.
"""

from __future__ import annotations

import ast
import io
import random
import re
import tokenize
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

MIN_TARGET_CHARS = 4
MAX_TARGET_CHARS = 100


@dataclass(frozen=True)
class Task:
    path: str  # relative to the workspace root, POSIX
    line: int  # 0-based
    column: int  # characters into the line where the target starts
    name: str  # the cross-file name the line uses
    defined_in: str  # the workspace file defining it
    prefix: str  # the document up to the cursor
    suffix: str  # the rest of the document (starts with the line's end)
    target: str  # the masked rest of the line


def top_level_names(tree: ast.Module) -> set[str]:
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return {n for n in names if not (n.startswith("__") and n.endswith("__"))}


def import_lines(tree: ast.Module) -> set[int]:
    """1-based line numbers covered by import statements."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return lines


def module_aliases(tree: ast.Module, package: str) -> set[str]:
    """Local names bound to the package or one of its modules (``nx``, ``utils``)."""
    aliases: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == package:
                    aliases.add(alias.asname or alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            inside = node.level > 0 or (node.module or "").split(".")[0] == package
            if inside:
                # ``from . import utils``: may be a module; a function imported this way is not
                # an alias, but then ``utils.x`` never occurs, so over-approximating is harmless.
                aliases.update(a.asname or a.name for a in node.names)
    return aliases


def imported_names(tree: ast.Module, package: str) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        inside = isinstance(node, ast.ImportFrom) and (
            node.level > 0 or (node.module or "").split(".")[0] == package
        )
        if inside:
            names.update(a.asname or a.name for a in node.names if a.name != "*")
    return names


def bracket_depths(source: str) -> dict[int, tuple[int, int]]:
    """Per 1-based line: bracket depth at its start and at its end (strings ignored)."""
    depths: dict[int, tuple[int, int]] = {}
    depth = 0
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    line_start: dict[int, int] = {}
    for tok in tokens:
        row = tok.start[0]
        line_start.setdefault(row, depth)
        if tok.type == tokenize.OP and tok.string in "([{":
            depth += 1
        elif tok.type == tokenize.OP and tok.string in ")]}":
            depth -= 1
        for r in range(tok.start[0], tok.end[0] + 1):
            line_start.setdefault(r, depth)
            depths[r] = (line_start[r], depth)
    return depths


def char_column(line: str, byte_offset: int) -> int:
    return len(line.encode("utf-8")[:byte_offset].decode("utf-8", errors="ignore"))


def find_tasks(root: Path, package: str) -> list[Task]:
    files = sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)
    trees: dict[str, tuple[str, ast.Module]] = {}
    for path in files:
        text = path.read_text(encoding="utf-8")
        try:
            trees[path.relative_to(root).as_posix()] = (text, ast.parse(text))
        except SyntaxError:
            continue
    defined: dict[str, set[str]] = defaultdict(set)
    for rel, (_, tree) in trees.items():
        for name in top_level_names(tree):
            defined[name].add(rel)
    tasks: list[Task] = []
    for rel, (text, tree) in trees.items():
        tasks += _tasks_in_file(rel, text, tree, package, defined)
    return tasks


def _tasks_in_file(
    rel: str, text: str, tree: ast.Module, package: str, defined: dict[str, set[str]]
) -> list[Task]:
    own = top_level_names(tree)
    aliases = module_aliases(tree, package)
    imported = imported_names(tree, package)
    imports = import_lines(tree)
    lines = text.split("\n")
    word_lines: dict[str, Counter[int]] = {}
    try:
        depths = bracket_depths(text)
    except (tokenize.TokenError, SyntaxError):
        return []
    found: dict[tuple[int, str], ast.expr] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
            name, ref = node.id, node
            if name not in imported:
                continue
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in aliases
        ):
            name, ref = node.attr, node
        else:
            continue
        homes = defined.get(name, set())
        if len(homes) != 1 or rel in homes or name in own:
            continue
        if node.lineno != node.end_lineno:
            continue
        key = (node.lineno, name)
        if key not in found or ref.col_offset < found[key].col_offset:
            found[key] = ref
    tasks = []
    for (lineno, name), ref in sorted(found.items(), key=lambda kv: kv[0]):
        # Anywhere else in the file (imports aside)? Then the file itself gives it away.
        counts = word_lines.get(name)
        if counts is None:
            pattern = re.compile(rf"\b{re.escape(name)}\b")
            counts = Counter(
                {n: len(pattern.findall(line)) for n, line in enumerate(lines, 1) if name in line}
            )
            word_lines[name] = counts
        elsewhere = [n for n in counts if n != lineno and n not in imports and counts[n]]
        if elsewhere or counts[lineno] != 1:
            continue
        start, end = depths.get(lineno, (1, 1))
        line = lines[lineno - 1]
        if start != 0 or end != 0 or line.rstrip().endswith("\\"):
            continue
        column = char_column(line, ref.col_offset)
        target = line[column:].rstrip()
        if not MIN_TARGET_CHARS <= len(target) <= MAX_TARGET_CHARS:
            continue
        prefix = "\n".join(lines[: lineno - 1]) + "\n" + line[:column]
        suffix = line[len(line.rstrip()) :] + "\n" + "\n".join(lines[lineno:])
        home = next(iter(defined[name]))
        tasks.append(Task(rel, lineno - 1, column, name, home, prefix, suffix, target))
    return tasks


def typed(task: Task, chars: int) -> Task:
    """The task after the user has typed the first ``chars`` characters of the name (and the
    alias before it: ``nx.dij|``), as one does before a suggestion for a call appears."""
    start = task.target.find(task.name)
    if chars <= 0 or start < 0:
        return task
    cut = start + min(chars, len(task.name) - 1)
    return replace(
        task,
        column=task.column + cut,
        prefix=task.prefix + task.target[:cut],
        target=task.target[cut:],
    )


def pick(tasks: list[Task], n: int, seed: int, per_file: int = 3, per_name: int = 2) -> list[Task]:
    """A seeded sample, at most ``per_file`` tasks from one file and ``per_name`` for one
    name, so no file or popular helper dominates."""
    shuffled = list(tasks)
    random.Random(seed).shuffle(shuffled)
    files: Counter[str] = Counter()
    names: Counter[str] = Counter()
    chosen = []
    for task in shuffled:
        if files[task.path] >= per_file or names[task.name] >= per_name:
            continue
        files[task.path] += 1
        names[task.name] += 1
        chosen.append(task)
        if len(chosen) == n:
            break
    return chosen
