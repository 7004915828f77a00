"""Completion quality through the generator agent, beside the bare model on the same tasks.

Prints JSON. Usage:
  .venv/bin/python tests/benchmarks/bench_fim_quality.py --model qwen2.5-coder-0.5b --limit 100
      [--languages py,java,js] [--infilling-limit 100] [--no-bare] [--skip-infilling]
      [--details answers.jsonl]

- HumanEval-FIM (Qwen2.5-Coder report's set): exact match of the first non-empty line, per
  language and averaged; tasks sampled with random.Random(0) when --limit is given (the first
  --limit tasks with --first).
- HumanEval-Infilling single-line: pass@1, executing prefix + completion + suffix + tests in a
  subprocess with a timeout (never in this process).
The agent sees an editor's view (the missing line is an empty line at the cursor) and its output is
post-processed as in the server; "bare" is the raw PSM prompt of ../shared/data/README.md, greedy,
first non-empty line, so the agent's own effect (prompting, trimming) is visible side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from common import (
    EXTENSIONS,
    HUMANEVAL_FIM,
    HUMANEVAL_SINGLE,
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

PUBLISHED = {"qwen2.5-coder-0.5b": 77.7, "qwen2.5-coder-1.5b": 83.5}  # bf16 base models


class Runner:
    def __init__(self, model: str) -> None:
        config = load_config(None).config
        self.pool = ModelPool(config.models, PoolConfig(memory_budget_mb=8192))
        self.agent = GeneratorAgent(self.pool, config.agents.generator, model)
        self.model = model
        self.max_tokens = config.agents.generator.max_tokens

    def agent_line(self, key: str, language: str, prefix: str, suffix: str) -> tuple[str, float]:
        request = InlineRequest(
            doc_key=key,
            path=f"{key}.{EXTENSIONS.get(language, 'txt')}",
            language_id=LANGUAGE_IDS.get(language, language),
            prefix=prefix,
            suffix=suffix,
        )
        started = time.perf_counter()
        suggestion = self.agent.complete(request, threading.Event())
        return suggestion.text, time.perf_counter() - started

    def bare_line(self, prompt: str, suffix: str) -> tuple[str, float]:
        with self.pool.acquire(self.model) as model:
            llama, fim = model.llama, model.spec.fim
            assert fim is not None

            def special(text: str) -> list[int]:
                return list(llama.tokenize(text.encode(), add_bos=False, special=True))

            def plain(text: str) -> list[int]:
                return list(llama.tokenize(text.encode(), add_bos=False, special=False))

            tokens = (
                special(fim.prefix)
                + plain(prompt)
                + special(fim.suffix)
                + plain(suffix)
                + special(fim.middle)
            )
            started = time.perf_counter()
            # Greedy, so stopping once the first non-empty line is complete changes nothing
            # that is scored, and saves most of the 64 tokens (the full set's run time).
            text = ""
            stream = llama.create_completion(
                tokens, max_tokens=self.max_tokens, temperature=0.0, stream=True
            )
            try:
                for chunk in stream:
                    text += chunk["choices"][0]["text"]
                    if "\n" in text.lstrip():
                        break
            finally:
                stream.close()
            return text, time.perf_counter() - started


def humaneval_fim(
    runner: Runner,
    languages: list[str],
    limit: int | None,
    bare: bool,
    details: Any = None,
    first: bool = False,
) -> dict[str, Any]:
    rows = load_jsonl(HUMANEVAL_FIM)
    report: dict[str, Any] = {}
    for language in languages:
        of_language = [r for r in rows if r["language"] == language]
        tasks = of_language[:limit] if first else sample(of_language, limit)
        agent_hits = bare_hits = 0
        agent_times: list[float] = []
        bare_times: list[float] = []
        for i, task in enumerate(tasks):
            expected = task["canonical_solution"].strip()
            prefix, suffix = line_hole(task["prompt"], task["suffix"], task["canonical_solution"])
            text, seconds = runner.agent_line(f"{language}{i}", language, prefix, suffix)
            agent_ok = first_line(text) == expected
            agent_hits += agent_ok
            agent_times.append(seconds)
            row = {"task": task.get("task_id", i), "expected": expected, "agent": text}
            row["agent_ok"] = agent_ok
            if bare:
                raw, seconds = runner.bare_line(task["prompt"], task["suffix"])
                row["bare"], row["bare_ok"] = raw, first_line(raw) == expected
                bare_hits += row["bare_ok"]
                bare_times.append(seconds)
            if details is not None:  # one JSON line per task, to study where the two differ
                details.write(json.dumps({"language": language, **row}) + "\n")
                details.flush()
        n = len(tasks)
        report[language] = {
            "tasks": n,
            "agent_exact_match": round(100 * agent_hits / n, 1),
            "agent_latency": percentiles(agent_times),
            "agent_seconds": round(sum(agent_times), 1),
            **(
                {
                    "bare_exact_match": round(100 * bare_hits / n, 1),
                    "bare_latency": percentiles(bare_times),
                }
                if bare
                else {}
            ),
        }
    report["average_agent_exact_match"] = round(
        sum(report[lang]["agent_exact_match"] for lang in languages) / len(languages), 1
    )
    if bare:
        report["average_bare_exact_match"] = round(
            sum(report[lang]["bare_exact_match"] for lang in languages) / len(languages), 1
        )
    return report


def passes(program: str, timeout: float = 10.0) -> bool:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "candidate.py"
        path.write_text(program)
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONHASHSEED": "0"}
        try:
            result = subprocess.run(
                [sys.executable, "-I", str(path)],
                cwd=tmp,
                env=env,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return False
        return result.returncode == 0


def humaneval_infilling(runner: Runner, limit: int | None, bare: bool) -> dict[str, Any]:
    tasks = sample(load_jsonl(HUMANEVAL_SINGLE), limit)
    agent_pass = bare_pass = 0
    for i, task in enumerate(tasks):
        tests = f"\n\n{task['test']}\n\ncheck({task['entry_point']})\n"
        prefix, suffix = line_hole(task["prompt"], task["suffix"], task["canonical_solution"])
        text, _ = runner.agent_line(f"inf{i}", "py", prefix, suffix)
        agent_pass += passes(prefix + text.split("\n")[0] + suffix + tests)
        if bare:
            raw, _ = runner.bare_line(task["prompt"], task["suffix"])
            line = next((ln for ln in raw.split("\n") if ln.strip()), "")
            bare_pass += passes(prefix + line.strip() + suffix + tests)  # prefix: its indent
    n = len(tasks)
    return {
        "tasks": n,
        "agent_pass_at_1": round(100 * agent_pass / n, 1),
        **({"bare_pass_at_1": round(100 * bare_pass / n, 1)} if bare else {}),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--languages", default="py,java,js")
    parser.add_argument("--limit", type=int, default=None, help="tasks per language")
    parser.add_argument(
        "--first", action="store_true", help="the first --limit tasks, not a random sample"
    )
    parser.add_argument("--infilling-limit", type=int, default=None)
    parser.add_argument("--no-bare", action="store_true")
    parser.add_argument("--skip-infilling", action="store_true")
    parser.add_argument("--details", type=Path, help="write each HumanEval-FIM task's answers here")
    args = parser.parse_args()
    details = args.details.open("w") if args.details else None
    runner = Runner(args.model)
    started = time.perf_counter()
    result: dict[str, Any] = {
        "model": args.model,
        "checkpoint": "Qwen2.5-Coder Instruct, GGUF Q4_K_M",
        "published_humaneval_fim_average_bf16_base": PUBLISHED.get(args.model),
        "humaneval_fim": humaneval_fim(
            runner, args.languages.split(","), args.limit, not args.no_bare, details, args.first
        ),
    }
    if not args.skip_infilling:
        result["humaneval_infilling_single_line"] = humaneval_infilling(
            runner, args.infilling_limit, not args.no_bare
        )
    result["seconds"] = round(time.perf_counter() - started, 1)
    runner.pool.close()
    if details is not None:
        details.close()
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
