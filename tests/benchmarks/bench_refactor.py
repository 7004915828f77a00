"""Refactor agent benchmark: listing code actions (no model) and resolving each built-in action.

Prints JSON. Usage: .venv/bin/python tests/benchmarks/bench_refactor.py [--model NAME]
[--lines 3000] [--runs 50] [--skip-resolve] [--diffs]

Listing is timed on a generated Python file of ``--lines`` lines, at cursor positions spread over
it: "cold" (the document changed since the last request: a fresh parse) and "warm" (the cursor
moved on an unchanged document). Wall and CPU time are both reported: on a shared machine wall
time includes waiting for the CPU. Resolving runs each built-in action once on a small module,
with the model loaded beforehand (its load time is reported apart).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from common import percentiles

from memlsp.agents.refactor.actions import DiagnosticInfo
from memlsp.agents.refactor.agent import RefactorAgent, ResolveRequest
from memlsp.agents.refactor.text_edits import TextRange, apply_edits
from memlsp.config import load_config
from memlsp.models import ModelPool
from memlsp.models.assembly import assemble

MODULE = '''\
"""Orders and reports."""

import os


def total_size(paths):
    sizes = []
    for p in paths:
        if os.path.exists(p):
            sizes.append(os.path.getsize(p))
    result = 0
    for s in sizes:
        result = result + s
    return result


class Report:
    def __init__(self, rows):
        self.rows = rows

    def render(self, width):
        lines = []
        for row in self.rows:
            text = str(row)
            if len(text) > width:
                text = text[:width]
            lines.append(text)
        return "\\n".join(lines)


def squares(n):
    out = {}
    for i in range(n):
        out[i] = i * i
    return out


def report(orders):
    total = 0
    for order in orders:
        total += order.price * order.quantity
    tax = total * 0.2
    return total + tax
'''


def big_file(lines: int) -> str:
    parts: list[str] = []
    count = 0
    while sum(p.count("\n") + 2 for p in parts) < lines:
        part = MODULE.replace("def ", f"def f{count}_").replace("class Report", f"class R{count}")
        parts.append(part)
        count += 1
    return "\n\n".join(parts)


def find(text: str, needle: str) -> TextRange:
    line = next(i for i, s in enumerate(text.split("\n")) if needle in s)
    column = len(text.split("\n")[line]) - len(text.split("\n")[line].lstrip())
    return TextRange(line, column, line, column)


def bench_listing(agent: RefactorAgent, lines: int, runs: int) -> dict[str, Any]:
    text = big_file(lines)
    rows = text.split("\n")
    positions = [TextRange(i, 4, i, 4) for i in range(0, len(rows), max(1, len(rows) // runs))]
    results: dict[str, Any] = {"file_lines": len(rows), "file_chars": len(text)}
    for mode in ("cold", "warm"):
        walls, cpus, counts = [], [], []
        for n, where in enumerate(positions[:runs]):
            doc = text + f"\n# change {n}\n" if mode == "cold" else text
            started, cpu = time.perf_counter(), time.thread_time()
            offers = agent.list_actions(doc, "python", where)
            cpus.append(time.thread_time() - cpu)
            walls.append(time.perf_counter() - started)
            counts.append(len(offers))
        results[mode] = {
            "wall": percentiles(walls),
            "cpu": percentiles(cpus),
            "offers_mean": round(sum(counts) / len(counts), 2),
        }
    return results


CASES: list[tuple[str, str, str | None]] = [
    ("docstring", "sizes = []", None),
    ("type-hints", "sizes = []", None),
    ("simplify", "lines = []", None),
    ("extract-function", "total = 0|total += order.price", None),
    ("comprehension", "out[i] = i * i", None),
    ("explain", "text = str(row)", None),
    ("fix-diagnostics", "result = result + s", None),
    ("rewrite", "tax = total", "rename the variable tax to vat"),
]


def bench_resolve(agent: RefactorAgent, diffs: bool) -> list[dict[str, Any]]:
    out = []
    for action, where, instruction in CASES:
        text = (
            MODULE.replace("    result = 0\n", "    reslt = 0\n")
            if action.startswith("fix")
            else MODULE
        )
        if "|" in where:
            first, last = where.split("|")
            a, b = find(text, first), find(text, last)
            selection = TextRange(a.line, 0, b.line + 1, 0)
        else:
            selection = find(text, where)
        diagnostics: tuple[DiagnosticInfo, ...] = ()
        if action.startswith("fix"):
            line = selection.line
            diagnostics = (
                DiagnosticInfo(TextRange(line, 17, line, 23), "Undefined name `result`", "ruff"),
            )
        request = ResolveRequest(
            action, "file:///bench.py", text, "python", selection, 1, instruction, diagnostics
        )
        result = agent.resolve(request, threading.Event())
        parses, diff = False, ""
        if result.edits:
            new = apply_edits(text, result.edits)
            diff = "".join(difflib.unified_diff(text.splitlines(True), new.splitlines(True), n=0))
            try:
                ast.parse(new)
                parses = True
            except SyntaxError:
                pass
        out.append(
            {
                "action": action,
                "seconds": round(result.seconds, 2),
                "prompt_tokens": result.prompt_tokens,
                "generated_tokens": result.generated_tokens,
                "edits": len(result.edits),
                "parses": parses,
                "message": result.message,
                **({"diff": diff or result.answer} if diffs else {}),
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="")
    parser.add_argument("--lines", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--skip-resolve", action="store_true")
    parser.add_argument("--diffs", action="store_true", help="include each edit as a diff")
    args = parser.parse_args()
    config = load_config(None, user_file=Path("/nonexistent/memlsp.yaml")).config
    refactor = config.agents.refactor
    if args.model:
        refactor = dataclasses.replace(refactor, model=args.model)
    pool = ModelPool(config.models, config.pool)
    agent = RefactorAgent(pool, refactor)
    report: dict[str, Any] = {
        "model": refactor.model,
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in os.getloadavg()],
        "listing": bench_listing(agent, args.lines, args.runs),
    }
    if not args.skip_resolve:
        assemble(config.models[refactor.model])
        started = time.perf_counter()
        with pool.acquire(refactor.model):
            report["model_load_s"] = round(time.perf_counter() - started, 2)
        report["resolve"] = bench_resolve(agent, args.diffs)
        seconds = [r["seconds"] for r in report["resolve"]]
        report["resolve_total_s"] = round(sum(seconds), 1)
        report["resolve_ok"] = sum(1 for r in report["resolve"] if r["parses"])
    report["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    pool.close()
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
