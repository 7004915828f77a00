"""Where the cursor line goes in the prompt: after the FIM middle token, or at the end of the
prefix (`agents.generator.typed_line`), side by side in one run.

Prints JSON. Usage:
  cd tests/benchmarks && ../../.venv/bin/python bench_typed_line.py [--tasks 60]
      [--model qwen2.5-coder-0.5b] [--languages py] [--seed 0] [--details answers.jsonl]

HumanEval-FIM single-line holes whose line is at least 6 characters long. Per task, each layout
replays a line being written as the editor asks for it: the cursor on the new line's
indentation (the blank-line prompt, the same for both), then 1 and 3 characters typed, then
half the line; one model call each (the agent's suggestion cache is cleared before each, so
every step asks the model), one after the other on one agent, so each call finds the KV cache
the previous one left, as in the editor. The two layouts run on one model pool, who goes first
alternating per task. Per layout and step: exact match of the typed text plus the suggestion's
first line against the missing line, prompt tokens evaluated (not found in the KV cache), and
latency; and how often the two layouts gave the same suggestion.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from common import (
    EXTENSIONS,
    HUMANEVAL_FIM,
    LANGUAGE_IDS,
    first_line,
    line_hole,
    load_jsonl,
    percentiles,
    sample,
)

from memlsp.agents.completion.generator import GeneratorAgent, InlineRequest
from memlsp.config import load_config
from memlsp.config.schema import PoolConfig
from memlsp.models import ModelPool

LAYOUTS = ("middle", "prefix")
MIN_LINE_CHARS = 6


def steps_of(line: str) -> list[int]:
    """Characters typed at each step: 0 (the blank line), 1, 3, half the line."""
    return [0, 1, 3, max(4, len(line) // 2)]


def tasks_of(language: str, count: int | None, seed: int) -> list[dict[str, Any]]:
    rows = [r for r in load_jsonl(HUMANEVAL_FIM) if r["language"] == language]
    usable = []
    for row in rows:
        line = row["canonical_solution"].strip()
        if "\n" not in line and len(line) >= MIN_LINE_CHARS:
            usable.append(row)
    return sample(usable, count, seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--languages", default="py")
    parser.add_argument("--tasks", type=int, default=60, help="tasks per language")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--details", type=Path, help="write each task's answers here")
    args = parser.parse_args()

    config = load_config(None).config
    pool = ModelPool(config.models, PoolConfig(memory_budget_mb=8192))
    base = dataclasses.replace(config.agents.generator, context_tokens=0)
    agents = {
        layout: GeneratorAgent(pool, dataclasses.replace(base, typed_line=layout), args.model)
        for layout in LAYOUTS
    }
    step_names = ("blank", "typed_1", "typed_3", "typed_half")
    scores: dict[str, dict[str, dict[str, Any]]] = {
        layout: {s: {"exact": 0, "evaluated": [], "seconds": []} for s in step_names}
        for layout in LAYOUTS
    }
    same = {s: 0 for s in step_names}
    tasks_done = 0
    details = args.details.open("w") if args.details else None
    for language in args.languages.split(","):
        for n, task in enumerate(tasks_of(language, args.tasks, args.seed)):
            line = task["canonical_solution"].strip()
            prefix, suffix = line_hole(task["prompt"], task["suffix"], task["canonical_solution"])
            order = list(LAYOUTS) if n % 2 == 0 else list(LAYOUTS)[::-1]
            answers: dict[str, list[str]] = {}
            for layout in order:
                agent = agents[layout]
                answers[layout] = []
                for name, typed in zip(step_names, steps_of(line), strict=True):
                    agent.cache.clear()
                    request = InlineRequest(
                        doc_key=f"{layout}-{language}{n}",
                        path=f"task{n}.{EXTENSIONS.get(language, 'txt')}",
                        language_id=LANGUAGE_IDS.get(language, language),
                        prefix=prefix + line[:typed],
                        suffix=suffix,
                    )
                    started = time.perf_counter()
                    answer = agent.complete(request, threading.Event())
                    seconds = time.perf_counter() - started
                    text = answer.text
                    evaluated = answer.prompt_tokens - answer.reused_tokens
                    written = (line[:typed] + text.split("\n", 1)[0]).strip()
                    if typed == 0:
                        written = first_line(text)
                    score = scores[layout][name]
                    score["exact"] += written == line
                    score["evaluated"].append(evaluated)
                    score["seconds"].append(seconds)
                    answers[layout].append(written)
            for i, name in enumerate(step_names):
                same[name] += answers["middle"][i] == answers["prefix"][i]
            if details:
                details.write(json.dumps({"task": task["name"], "line": line, **answers}))
                details.write("\n")
            tasks_done += 1
            sys.stderr.write(f"{language} {n + 1}\n")
    pool.close()
    if details:
        details.close()
    report: dict[str, Any] = {"model": args.model, "tasks": tasks_done, "layouts": {}}
    for layout in LAYOUTS:
        report["layouts"][layout] = {
            name: {
                "exact_match": round(100 * s["exact"] / max(1, tasks_done), 1),
                "evaluated_tokens": {
                    "p50": sorted(s["evaluated"])[len(s["evaluated"]) // 2]
                    if s["evaluated"]
                    else 0,
                    "mean": round(sum(s["evaluated"]) / max(1, len(s["evaluated"])), 1),
                },
                "latency": percentiles(s["seconds"]),
            }
            for name, s in scores[layout].items()
        }
    report["same_answer"] = {
        name: round(100 * count / max(1, tasks_done), 1) for name, count in same.items()
    }
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
