"""Inline completion latency through the real server over stdio, against a bare llama-cpp call.

Prints JSON. Usage:
  .venv/bin/python tests/benchmarks/bench_inline.py [--model qwen2.5-coder-0.5b] [--cold 20]
      [--typed-tasks 6]

(a) cold: one request on each of N HumanEval-FIM Python tasks opened fresh (the hole is a whole
    line, so the cursor sits on an empty line);
(b) keystrokes: on a few tasks the user types the missing line char by char, one request per char,
    each awaited (what the editor shows after every keystroke);
(c) bare: the same cold prompts through a bare ``Llama`` loaded as the pool loads it (threads,
    batch), greedy decoding stopped by the agent's own rule for the cursor's mode (a multi-line
    suggestion decodes its lines on both sides), and the agent's second prompt where it asked
    again (like with like: what the server adds, not what the agent chose to decode), in the
    same run, after the server has exited. Its prompts hold the document alone, so the overhead
    ratio compares it with a second server run whose other-file context and debounce are off
    (identical tokens, no deliberate wait); the first run, with the defaults, shows what context
    costs. Keystrokes are also reported alone for those that needed a model call (the others
    were served from the cache or by typed-through reuse).
Ratios: server cold / bare cold (goal <= 1.1), cold / keystroke (goal >= 3).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
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

from memlsp.agents.completion.blank_line import cut_at_line_above
from memlsp.agents.completion.fim_prompt import FimPromptBuilder, FimSpecialIds
from memlsp.agents.completion.generator import should_stop
from memlsp.agents.completion.postprocess import decide_mode
from memlsp.config import load_config
from memlsp.models.assembly import resolve
from memlsp.models.pool import N_BATCH
from memlsp.models.runtime import llama_cpp


async def server_phase(
    model: str,
    cold_tasks: list[dict[str, Any]],
    typed_tasks: list[dict[str, Any]],
    context_tokens: int | None = None,
    debounce_ms: int | None = None,
) -> dict[str, Any]:
    """``context_tokens`` overrides the generator's budget for other-file context (0: the
    prompt holds the document alone, as the bare phase's does); ``debounce_ms`` its wait."""
    root = Path(tempfile.mkdtemp(prefix="memlsp-bench-ws-"))
    cold: list[float] = []
    keys: list[float] = []
    keys_by_model: list[float] = []  # keystrokes whose suggestion needed a model call
    generator: dict[str, Any] = {"model": model}
    if context_tokens is not None:
        generator["context_tokens"] = context_tokens
    if debounce_ms is not None:
        generator["debounce_ms"] = debounce_ms

    asked_again: list[bool] = []  # per cold task: the blank-line prompt gave nothing

    async def generator_count(key: str) -> int:
        status = await client.protocol.send_request_async("memlsp/status", {})
        return int(getattr(status.generator, key))

    async with lsp_session(root, agents={"generator": generator}) as client:
        # Warm-up: the model load is not a completion's latency (the pool keeps it loaded).
        warm = open_document(client, root / "warm.py", "def add(a, b):\n    ", "python")
        await inline_text(client, warm, 1, 4)
        for i, task in enumerate(cold_tasks):
            prefix, suffix = line_hole(task["prompt"], task["suffix"], task["canonical_solution"])
            text, line, char = cursor_document(prefix, suffix)
            uri = open_document(client, root / f"cold_{i}.py", text, "python")
            before = await generator_count("asked_again")
            started = time.perf_counter()
            await inline_text(client, uri, line, char)
            cold.append(time.perf_counter() - started)
            asked_again.append(await generator_count("asked_again") > before)
            close_document(client, uri)
        for i, task in enumerate(typed_tasks):
            prefix, suffix = line_hole(task["prompt"], task["suffix"], task["canonical_solution"])
            text, line, char = cursor_document(prefix, suffix)
            uri = open_document(client, root / f"typed_{i}.py", text, "python")
            await inline_text(client, uri, line, char)  # the suggestion when the line is empty
            for ch in task["canonical_solution"].strip():  # the editor indented the line
                type_char(client, uri, line, char, ch)
                char += 1
                calls = await generator_count("model_calls")
                started = time.perf_counter()
                await inline_text(client, uri, line, char)
                keys.append(time.perf_counter() - started)
                if await generator_count("model_calls") > calls:
                    keys_by_model.append(keys[-1])
            close_document(client, uri)
        status = await client.protocol.send_request_async("memlsp/status", {})
        gen = status.generator
        sources = {
            "model_calls": gen.model_calls,
            "cache_hits": gen.cache_hits,
            "typed_through": gen.typed_through,
            "cancelled": gen.cancelled,
        }
    return {
        "cold": cold,
        "keystrokes": keys,
        "by_model": keys_by_model,
        "asked_again": asked_again,
        "generator": sources,
    }


def bare_phase(model: str, tasks: list[dict[str, Any]], asked_again: list[bool]) -> list[float]:
    """The model work the agent did, through a bare Llama: the same prompts (and the second one
    where the agent asked again), greedy, stopped by the agent's rule for the cursor's mode."""
    config = load_config(None).config
    spec = config.models[model]
    gen = config.agents.generator
    assert spec.fim is not None
    threads = spec.n_threads or (os.cpu_count() or 1)  # as the pool loads it
    llama = llama_cpp().Llama(
        model_path=str(resolve(spec)),
        n_ctx=spec.n_ctx,
        n_batch=N_BATCH,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )

    def special(text: str) -> int:
        return int(llama.tokenize(text.encode(), add_bos=False, special=True)[0])

    def tokenize(text: str) -> list[int]:
        return list(llama.tokenize(text.encode(), add_bos=False, special=False)) if text else []

    builder = FimPromptBuilder(
        FimSpecialIds.from_tokens(spec.fim, special),
        prefix_budget=gen.prefix_tokens,
        suffix_budget=gen.suffix_tokens,
        context_budget=0,  # compared with the server phase run without other-file context
    )
    warm = builder.build(
        tokenize, doc_key="warm", path="warm.py", prefix="def f():\n    ", suffix=""
    )
    llama.create_completion(warm.tokens, max_tokens=4, temperature=0.0)
    samples = []
    for i, task in enumerate(tasks):
        prefix, suffix = line_hole(task["prompt"], task["suffix"], task["canonical_solution"])
        mode = decide_mode(prefix, suffix, "python")
        # The agent's prompt for a cursor on a line holding only indentation (blank_line), then
        # the prompt ending at the cursor where the agent asked again.
        cut = cut_at_line_above(prefix)
        prefixes = [cut[0], prefix] if cut and asked_again[i] else [cut[0] if cut else prefix]
        started = time.perf_counter()
        for model_prefix in prefixes:
            prompt = builder.build(
                tokenize,
                doc_key=f"t{i}",
                path=f"cold_{i}.py",
                prefix=model_prefix,
                suffix=suffix,
                suffix_budget=gen.blank_line_suffix_tokens if cut else gen.suffix_tokens,
            )
            line_start = model_prefix.rsplit("\n", 1)[-1] if model_prefix == prefix else ""
            text = ""
            stream = llama.create_completion(
                prompt.tokens, max_tokens=gen.max_tokens, temperature=0.0, stream=True
            )
            try:
                for chunk in stream:
                    text += chunk["choices"][0]["text"]  # type: ignore[index]
                    if should_stop(text, mode, gen.multiline_max_lines, line_start):
                        break
            finally:
                stream.close()  # type: ignore[union-attr]
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
    # The debounce is a wait by design (typing supersedes it): not the server's overhead.
    same_prompt = asyncio.run(
        server_phase(args.model, cold_tasks, [], context_tokens=0, debounce_ms=0)
    )
    bare = bare_phase(args.model, cold_tasks, same_prompt["asked_again"])
    cold, keys = percentiles(server["cold"]), percentiles(server["keystrokes"])
    plain, bare_p = percentiles(same_prompt["cold"]), percentiles(bare)
    by_model = percentiles(server["by_model"]) if server["by_model"] else {}
    result = {
        "model": args.model,
        "threads": os.cpu_count(),
        "server_cold": cold,
        "server_keystroke": keys,
        "server_keystroke_model_calls": by_model,
        "server_cold_no_context": plain,
        "bare_cold": bare_p,
        # Overhead on identical prompts (the document alone): the server's own cost.
        "ratio_server_over_bare_cold_p50": round(plain["p50_ms"] / bare_p["p50_ms"], 3),
        # What other-file context (open documents, memory) costs a cold request.
        "ratio_context_over_no_context_cold_p50": round(cold["p50_ms"] / plain["p50_ms"], 3),
        "ratio_cold_over_keystroke_p50": round(cold["p50_ms"] / keys["p50_ms"], 2),
        "keystroke_sources": server["generator"],
    }
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
