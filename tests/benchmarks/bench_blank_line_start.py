"""A blank-line request's decoding with and without its expected start (the newline and the
indentation, agents/completion/blank_line.py ``expected_start``) evaluated in the prompt's batch.
A probe, not a test: prints JSON.

    flock /tmp/memlsp-cpu.lock nice -n 5 .venv/bin/python \
        tests/benchmarks/bench_blank_line_start.py [--model qwen2.5-coder-1.5b] [--tasks 12]

HumanEval-FIM Python holes (the benchmark's side-by-side tasks, seed 3), the cursor on the hole's
line after its indentation, the prompt cut at the line above as the generator cuts it; each hole
decoded from a cold cache both ways, in alternating order. Reports the seconds of ``_decode``
(prompt and generation), the expected tokens the model picked, and whether the answers are the
same tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from bench_draft import stops
from common import HUMANEVAL_FIM, line_hole, load_jsonl, sample

from memlsp.agents.completion.blank_line import cut_at_line_above, expected_start
from memlsp.agents.completion.generator import Decoded, _decode
from memlsp.config import PoolConfig, load_config
from memlsp.models import LoadedModel, ModelPool
from memlsp.models.abort import Cancel
from memlsp.models.kv_states import KvStates
from memlsp.models.token_pieces import token_bytes


def decode(model: LoadedModel, tokens: list[int], expect: list[int]) -> tuple[Decoded, float]:
    model.llama.n_tokens = 0  # a cold request: the file was just opened
    started = time.perf_counter()
    decoded = _decode(
        model,
        KvStates(0),
        "file:///bench.py",
        tokens,
        0,
        stops(model.llama),
        "single",
        64,
        8,
        "",
        Cancel(),
        draft="off",
        max_predict_ms=1000,
        expect=expect,
    )
    return decoded, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--tasks", type=int, default=12)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    config = load_config(None).config
    rows = [r for r in load_jsonl(HUMANEVAL_FIM) if r["language"] == "py"]
    pool = ModelPool(config.models, PoolConfig())
    seconds = {"plain": 0.0, "expected": 0.0}
    holes = identical = guessed = right = 0
    try:
        with pool.acquire(args.model) as model:
            llama = model.llama

            def tokenize(text: str) -> list[int]:
                return list(llama.tokenize(text.encode(), add_bos=False))

            for n, task in enumerate(sample(rows, args.tasks, seed=args.seed)):
                prefix, suffix = line_hole(
                    task["prompt"], task["suffix"], task["canonical_solution"]
                )
                cut = cut_at_line_above(prefix)
                if cut is None:
                    continue
                text = f"<|fim_prefix|>{cut[0]}<|fim_suffix|>{suffix}<|fim_middle|>"
                tokens = list(llama.tokenize(text.encode(), add_bos=False, special=True))
                expect = expected_start(cut[1], tokenize, lambda t: token_bytes(llama, t))
                answers: dict[str, Decoded] = {}
                for variant in ("plain", "expected") if n % 2 else ("expected", "plain"):
                    answers[variant], took = decode(model, tokens, expect * (variant != "plain"))
                    seconds[variant] += took
                holes += 1
                identical += answers["plain"].tokens == answers["expected"].tokens
                guessed += answers["expected"].expected
                right += answers["expected"].expected_right
                print(json.dumps({"task": task["name"], "prompt": len(tokens)}), file=sys.stderr)
    finally:
        pool.close()
    report: dict[str, Any] = {
        "model": args.model,
        "cpus": os.cpu_count(),
        "holes": holes,
        "seconds_plain": round(seconds["plain"], 3),
        "seconds_expected": round(seconds["expected"], 3),
        "saved_ms_per_request": round(1000 * (seconds["plain"] - seconds["expected"]) / holes, 1),
        "expected_tokens": guessed,
        "expected_right": right,
        "identical_answers": f"{identical}/{holes}",
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
