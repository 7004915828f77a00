"""Inline completion latency through the real server over stdio, against a bare llama-cpp call.

Prints JSON. Usage:
  .venv/bin/python tests/benchmarks/bench_inline.py [--model qwen2.5-coder-0.5b] [--cold 20]
      [--typed-tasks 6]

(a) cold: one request on each of N HumanEval-FIM Python tasks opened fresh (the hole is a whole
    line, so the cursor sits on an empty line);
(b) keystrokes: on a few tasks the user types the missing line char by char, one request per char,
    each awaited (what the editor shows after every keystroke);
(c) bare: the same cold prompts (same tokens the server builds) through a bare ``Llama`` with greedy
    decoding stopped at the end of the line, in the same run, after the server has exited.
Ratios: server cold / bare cold (goal <= 1.1), cold / keystroke (goal >= 3).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    HUMANEVAL_FIM,
    close_document,
    cursor_document,
    inline_text,
    line_hole,
    load_jsonl,
    lsp_session,
    open_document,
    percentiles,
    sample,
    type_char,
)

from memlsp.agents.fim_prompt import FimPromptBuilder, FimSpecialIds
from memlsp.config import load_config
from memlsp.models.assembly import resolve
from memlsp.models.runtime import llama_cpp


async def server_phase(
    model: str, cold_tasks: list[dict[str, Any]], typed_tasks: list[dict[str, Any]]
) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="memlsp-bench-ws-"))
    cold: list[float] = []
    keys: list[float] = []
    sources: dict[str, int] = {}
    async with lsp_session(root, agents={"generator": {"model": model}}) as client:
        # Warm-up: the model load is not a completion's latency (the pool keeps it loaded).
        warm = open_document(client, root / "warm.py", "def add(a, b):\n    ", "python")
        await inline_text(client, warm, 1, 4)
        for i, task in enumerate(cold_tasks):
            prefix, suffix = line_hole(task["prompt"], task["suffix"])
            text, line, char = cursor_document(prefix, suffix)
            uri = open_document(client, root / f"cold_{i}.py", text, "python")
            started = time.perf_counter()
            await inline_text(client, uri, line, char)
            cold.append(time.perf_counter() - started)
            close_document(client, uri)
        for i, task in enumerate(typed_tasks):
            prefix, suffix = line_hole(task["prompt"], task["suffix"])
            text, line, char = cursor_document(prefix, suffix)
            uri = open_document(client, root / f"typed_{i}.py", text, "python")
            await inline_text(client, uri, line, char)  # the suggestion when the line is empty
            for ch in task["canonical_solution"].rstrip():
                type_char(client, uri, line, char, ch)
                char += 1
                started = time.perf_counter()
                await inline_text(client, uri, line, char)
                keys.append(time.perf_counter() - started)
            close_document(client, uri)
        status = await client.protocol.send_request_async("memlsp/status", {})
        gen = status.generator
        sources = {
            "model_calls": gen.model_calls,
            "cache_hits": gen.cache_hits,
            "typed_through": gen.typed_through,
            "cancelled": gen.cancelled,
        }
    return {"cold": cold, "keystrokes": keys, "generator": sources}


def bare_phase(model: str, tasks: list[dict[str, Any]]) -> list[float]:
    """The same prompt tokens through a bare Llama: greedy, stop at the end of the line."""
    config = load_config(None).config
    spec = config.models[model]
    gen = config.agents.generator
    assert spec.fim is not None
    llama = llama_cpp().Llama(
        model_path=str(resolve(spec)), n_ctx=spec.n_ctx, n_batch=512, verbose=False
    )

    def special(text: str) -> int:
        return int(llama.tokenize(text.encode(), add_bos=False, special=True)[0])

    def tokenize(text: str) -> list[int]:
        return list(llama.tokenize(text.encode(), add_bos=False, special=False)) if text else []

    builder = FimPromptBuilder(
        FimSpecialIds.from_tokens(spec.fim, special),
        prefix_budget=gen.prefix_tokens,
        suffix_budget=gen.suffix_tokens,
        context_budget=gen.context_tokens,
    )
    warm = builder.build(
        tokenize, doc_key="warm", path="warm.py", prefix="def f():\n    ", suffix=""
    )
    llama.create_completion(warm.tokens, max_tokens=4, temperature=0.0)
    samples = []
    for i, task in enumerate(tasks):
        prefix, suffix = line_hole(task["prompt"], task["suffix"])
        prompt = builder.build(
            tokenize, doc_key=f"t{i}", path=f"cold_{i}.py", prefix=prefix, suffix=suffix
        )
        started = time.perf_counter()
        llama.create_completion(
            prompt.tokens, max_tokens=gen.max_tokens, temperature=0.0, stop=["\n"]
        )
        samples.append(time.perf_counter() - started)
    llama.close()
    return samples


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--cold", type=int, default=20)
    parser.add_argument("--typed-tasks", type=int, default=6)
    args = parser.parse_args()
    rows = [r for r in load_jsonl(HUMANEVAL_FIM) if r["language"] == "py"]
    tasks = sample(rows, args.cold + args.typed_tasks, seed=1)
    cold_tasks, typed_tasks = tasks[: args.cold], tasks[args.cold :]
    server = asyncio.run(server_phase(args.model, cold_tasks, typed_tasks))
    bare = bare_phase(args.model, cold_tasks)
    cold, keys = percentiles(server["cold"]), percentiles(server["keystrokes"])
    bare_p = percentiles(bare)
    result = {
        "model": args.model,
        "server_cold": cold,
        "server_keystroke": keys,
        "bare_cold": bare_p,
        "ratio_server_over_bare_cold_p50": round(cold["p50_ms"] / bare_p["p50_ms"], 3),
        "ratio_cold_over_keystroke_p50": round(cold["p50_ms"] / keys["p50_ms"], 2),
        "keystroke_sources": server["generator"],
    }
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
