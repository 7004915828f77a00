"""Completion latency while a review runs, with and without completions-first (models/priority.py).

Prints JSON. Usage:
  .venv/bin/python tests/benchmarks/bench_priority.py [--completions 8] [--coder qwen2.5-coder-0.5b]
      [--reviewer qwen2.5-coder-1.5b]

In one process, a real pool and the generator agent (no other-file context, no debounce): a
completion at a typing pause is the agent's call after one more key on a HumanEval-FIM task whose
prompt the KV cache already holds. Three phases, side by side in one run:
  alone    - no review running;
  paced    - a review of a 60-line file runs on the reviewer model all the time, its model call
             paced as the quality agent paces it (pauses while a completion computes);
  unpaced  - the same review with no pacing: what every save did before.
Ratios: paced / alone (goal close to 1) and unpaced / alone. Run it alone on the machine: the
point is what two models on the same cores do to each other.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

from common import HUMANEVAL_FIM, line_hole, load_jsonl, percentiles, sample

from memlsp.agents.chat import chat_tokens
from memlsp.agents.completion.generator import GeneratorAgent, InlineRequest
from memlsp.agents.review.model import generate_json
from memlsp.agents.review.prompt import CodeView, build_messages
from memlsp.agents.review.schema import review_schema
from memlsp.agents.review.types import ReviewCancelled
from memlsp.config import load_config
from memlsp.config.schema import PoolConfig
from memlsp.models import ModelPool

REVIEWED = "".join(
    f"def total_{i}(orders, tax=[]):\n"
    f"    count = len(orders)\n"
    f"    result = 0\n"
    f"    for order in orders:\n"
    f"        result += order['price'] * order['qty'] * {i}\n"
    f"    return result\n\n"
    for i in range(9)
)


class Reviewer:
    """Reviews REVIEWED over and over in a thread until stopped."""

    def __init__(self, pool: ModelPool, model: str, paced: bool) -> None:
        self.pool, self.model, self.paced = pool, model, paced
        self.stop = threading.Event()
        self.reviews = 0
        self.generated = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        rows = tuple(enumerate(REVIEWED.split("\n")))
        self.messages = build_messages(CodeView("orders.py", "python", rows, False), [], [])

    def _run(self) -> None:
        while not self.stop.is_set():
            with self.pool.acquire(self.model) as model:
                tokens = chat_tokens(model.llama, self.messages)
                model.llama.n_tokens = 0  # a fresh prompt each time, as for a changed file
                pacer = self.pool.priority.background(model.name, self.stop) if self.paced else None
                try:
                    answer = generate_json(
                        model, tokens, review_schema(5), 384, self.stop, pacer=pacer
                    )
                except ReviewCancelled:
                    return
            self.reviews += 1
            self.generated += answer.generated_tokens

    def __enter__(self) -> Reviewer:
        self.thread.start()
        time.sleep(3.0)  # well inside its prompt evaluation
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=600)


def pauses(agent: GeneratorAgent, tasks: list[dict[str, Any]], phase: str) -> list[float]:
    """Per task: the suggestion for the empty line (warms the KV cache), then one more key and
    the timed suggestion."""
    latencies = []
    for i, task in enumerate(tasks):
        prefix, suffix = line_hole(task["prompt"], task["suffix"], task["canonical_solution"])
        key = f"{phase}-{i}"
        agent.complete(InlineRequest(key, f"{key}.py", "python", prefix, suffix), threading.Event())
        typed = prefix + task["canonical_solution"].strip()[:1]
        started = time.perf_counter()
        agent.complete(InlineRequest(key, f"{key}.py", "python", typed, suffix), threading.Event())
        latencies.append(time.perf_counter() - started)
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--completions", type=int, default=8)
    parser.add_argument("--coder", default="qwen2.5-coder-0.5b")
    parser.add_argument("--reviewer", default="qwen2.5-coder-1.5b")
    args = parser.parse_args()
    config = load_config(None).config
    pool = ModelPool(config.models, PoolConfig(memory_budget_mb=8192))
    generator = config.agents.generator
    agent = GeneratorAgent(pool, generator, args.coder)
    tasks = sample(
        [r for r in load_jsonl(HUMANEVAL_FIM) if r["language"] == "py"], args.completions * 3
    )
    with pool.acquire(args.reviewer):
        pass  # both loaded before timing
    pauses(agent, tasks[:1], "warm")
    result: dict[str, Any] = {"coder": args.coder, "reviewer": args.reviewer, "phases": {}}
    p50 = {}
    for n, phase in enumerate(("alone", "paced", "unpaced")):
        chosen = tasks[n * args.completions : (n + 1) * args.completions]
        before = pool.priority.stats()
        if phase == "alone":
            latencies = pauses(agent, chosen, phase)
            reviewer = None
        else:
            with Reviewer(pool, args.reviewer, paced=phase == "paced") as reviewer:
                latencies = pauses(agent, chosen, phase)
        paused = pool.priority.stats()["background_paused_s"] - before["background_paused_s"]
        summary = percentiles(latencies)
        p50[phase] = summary["p50_ms"]
        result["phases"][phase] = {
            "completion": summary,
            "reviews_finished": reviewer.reviews if reviewer else 0,
            "review_tokens_generated": reviewer.generated if reviewer else 0,
            "review_paused_s": round(paused, 1),
        }
    result["ratio_p50_paced_to_alone"] = round(p50["paced"] / p50["alone"], 2)
    result["ratio_p50_unpaced_to_alone"] = round(p50["unpaced"] / p50["alone"], 2)
    pool.close()
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
