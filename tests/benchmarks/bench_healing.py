"""Token healing: suggestions with the cursor inside a word, healing on vs off, same run.

Prints JSON. Usage:
  cd tests/benchmarks && ../../.venv/bin/python bench_healing.py [--limit 100] [--typed 3]
      [--languages py,java,js] [--model qwen2.5-coder-0.5b]

HumanEval-FIM single-line tasks whose missing line starts with a word longer than ``--typed``
characters; the editor's view is that line with its first ``--typed`` characters typed (the
cursor inside the word, as when a user pauses while typing). Two generator agents on one model
pool, one with ``token_healing`` off, answer each task in turn (who goes first alternates: the
second finds most of the first's prompt in the KV cache). Scored on the typed characters
plus the suggestion's first line against the missing line: exact match, and whether the word
the cursor was in came out right.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import threading
import time
from typing import Any

from common import EXTENSIONS, HUMANEVAL_FIM, LANGUAGE_IDS, line_hole, load_jsonl, percentiles
from common import sample as sample_rows

from memlsp.agents.completion.generator import GeneratorAgent, InlineRequest
from memlsp.config import load_config
from memlsp.config.schema import PoolConfig
from memlsp.models import ModelPool

_WORD = re.compile(r"[\w$]+")


def first_line(text: str) -> str:
    return text.split("\n", 1)[0]


def tasks_of(language: str, limit: int | None, typed: int) -> list[dict[str, Any]]:
    rows = [r for r in load_jsonl(HUMANEVAL_FIM) if r["language"] == language]
    usable = []
    for row in rows:
        line = row["canonical_solution"].strip()
        word = _WORD.match(line)
        if "\n" not in line and word is not None and len(word.group()) > typed:
            usable.append(row)
    return sample_rows(usable, limit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--languages", default="py,java,js")
    parser.add_argument("--limit", type=int, default=100, help="tasks per language")
    parser.add_argument("--typed", type=int, default=3, help="characters of the word typed")
    args = parser.parse_args()

    config = load_config(None).config
    pool = ModelPool(config.models, PoolConfig(memory_budget_mb=8192))
    base = dataclasses.replace(config.agents.generator, context_tokens=0)
    agents = {
        "healing": GeneratorAgent(pool, dataclasses.replace(base, token_healing=True), args.model),
        "no_healing": GeneratorAgent(
            pool, dataclasses.replace(base, token_healing=False), args.model
        ),
    }
    report: dict[str, Any] = {"model": args.model, "typed_chars": args.typed, "languages": {}}
    totals = {name: [0, 0, 0] for name in agents}  # exact, word right, tasks
    for language in args.languages.split(","):
        tasks = tasks_of(language, args.limit, args.typed)
        scores: dict[str, dict[str, Any]] = {
            name: {"exact": 0, "word": 0, "seconds": []} for name in agents
        }
        for n, task in enumerate(tasks):
            line = task["canonical_solution"].strip()
            prefix, suffix = line_hole(task["prompt"], task["suffix"], task["canonical_solution"])
            prefix += line[: args.typed]
            word = _WORD.match(line)
            assert word is not None
            # Alternate who goes first: the second finds the first's prompt in the KV cache.
            order = list(agents.items()) if n % 2 == 0 else list(agents.items())[::-1]
            for name, agent in order:
                request = InlineRequest(
                    doc_key=f"{name}-{language}{n}",
                    path=f"task{n}.{EXTENSIONS.get(language, 'txt')}",
                    language_id=LANGUAGE_IDS.get(language, language),
                    prefix=prefix,
                    suffix=suffix,
                )
                started = time.perf_counter()
                text = agent.complete(request, threading.Event()).text
                scores[name]["seconds"].append(time.perf_counter() - started)
                written = (line[: args.typed] + first_line(text)).strip()
                scores[name]["exact"] += written == line
                got = _WORD.match(written)
                scores[name]["word"] += got is not None and got.group() == word.group()
            sys.stderr.write(f"{language} {n + 1}/{len(tasks)}\n")
        report["languages"][language] = {
            name: {
                "tasks": len(tasks),
                "exact_match": round(100 * s["exact"] / max(1, len(tasks)), 1),
                "word_right": round(100 * s["word"] / max(1, len(tasks)), 1),
                "latency": percentiles(s["seconds"]),
            }
            for name, s in scores.items()
        }
        for name, s in scores.items():
            totals[name][0] += s["exact"]
            totals[name][1] += s["word"]
            totals[name][2] += len(tasks)
    report["all"] = {
        name: {
            "tasks": t[2],
            "exact_match": round(100 * t[0] / max(1, t[2]), 1),
            "word_right": round(100 * t[1] / max(1, t[2]), 1),
        }
        for name, t in totals.items()
    }
    pool.close()
    json.dump(report, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
