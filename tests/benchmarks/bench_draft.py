"""Decoding speed with and without drafts (agents.generator.draft) on HumanEval-FIM holes: plain
greedy, prompt-lookup drafts as the server checks them (a ``DraftPlanner`` kept across tasks,
agents/completion/draft_plan.py) and checking every guess, and the 0.5B drafting for the 1.5B
(agents/completion/draft_model.py). A probe, not a test: prints JSON.

    flock /tmp/memlsp-cpu.lock nice -n 5 .venv/bin/python tests/benchmarks/bench_draft.py \
        [--tasks 10] [--spans 0] [--threads 2] [--model qwen2.5-coder-1.5b] \
        [--draft-model qwen2.5-coder-0.5b] [--variants off,prompt-lookup,...]

``--tasks``: single-line holes; ``--spans``: multi-line random spans (HumanEval-Infilling), where
answers are longer and repeat more of the prompt.

Each answer is decoded from a KV cache that already holds its prompt (the typing case: the
prompt was evaluated by the keystroke before, or by work-ahead), the draft model's too; the
draft model's cold prompt evaluation is reported apart. Tokens/s: tokens generated over the
time ``_decode`` took (the last prompt token evaluated again, then decoding). Every variant's
tokens are compared with plain greedy's.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import DATA, HUMANEVAL_FIM, line_hole, load_jsonl, sample

from memlsp.agents.completion import draft_model as draft_model_module
from memlsp.agents.completion.draft import MAX_DRAFT
from memlsp.agents.completion.draft_plan import DraftPlanner
from memlsp.agents.completion.generator import Decoded, _decode
from memlsp.config import Config, PoolConfig, load_config
from memlsp.models import LoadedModel, ModelPool
from memlsp.models.assembly import assemble
from memlsp.models.kv_states import KvStates
from memlsp.models.prefill import prefill
from memlsp.models.runtime import llama_cpp

VARIANTS = ("off", "prompt-lookup", "prompt-lookup-every", "model", "model-p0")
SPANS = DATA / "humaneval-infilling" / "HumanEval-RandomSpanInfillingLight.jsonl.gz"


def fim_tokens(llama: Any, prefix: str, suffix: str) -> list[int]:
    text = f"<|fim_prefix|>{prefix}<|fim_suffix|>{suffix}<|fim_middle|>"
    return list(llama.tokenize(text.encode(), add_bos=False, special=True))


def stops(llama: Any) -> frozenset[int]:
    return frozenset(
        int(llama.tokenize(f"<|fim_{name}|>".encode(), add_bos=False, special=True)[0])
        for name in ("prefix", "suffix", "middle", "pad")
    )


def run(
    target: LoadedModel,
    draft: LoadedModel,
    tokens: list[int],
    variant: str,
    line_start: str,
    planner: DraftPlanner,
) -> tuple[Decoded, float]:
    never = threading.Event()
    prefill(target.llama, tokens, never)  # warm: the prompt is in the cache
    if variant.startswith("model"):
        prefill(draft.llama, tokens, never)
    p_min = 0.0 if variant == "model-p0" else draft_model_module.MODEL_P_MIN
    defaults = draft_model_module.ModelDraft.__init__.__kwdefaults__
    defaults["p_min"] = p_min
    started = time.perf_counter()
    decoded = _decode(
        target,
        KvStates(0),
        "file:///bench.py",
        tokens,
        0,
        stops(target.llama),
        "multi",
        64,
        8,
        line_start,
        never,
        draft="model" if variant.startswith("model") else variant.removesuffix("-every"),
        draft_model=draft if variant.startswith("model") else None,
        planner=planner if variant == "prompt-lookup" else None,
    )
    return decoded, time.perf_counter() - started


def divergence(
    llama: Any, prompt: list[int], plain: tuple[int, ...], other: tuple[int, ...]
) -> dict[str, Any]:
    """Where a drafted answer left plain greedy's, and by how much the plain path's logits
    preferred its token there (a near tie that a batch's arithmetic decides otherwise)."""
    at = next(i for i, (a, b) in enumerate(zip([*plain, -1], [*other, -1], strict=False)) if a != b)
    llama.n_tokens = 0
    prefill(llama, prompt, threading.Event())
    for token in plain[:at]:
        llama.eval([token])
    logits = np.ctypeslib.as_array(
        llama_cpp().llama_get_logits_ith(llama.ctx, -1), shape=(int(llama.n_vocab()),)
    )
    mine = plain[at] if at < len(plain) else None
    theirs = other[at] if at < len(other) else None
    margin = None
    if mine is not None and theirs is not None:
        margin = round(float(logits[mine] - logits[theirs]), 4)
    return {"at": at, "plain": mine, "drafted": theirs, "logit_margin": margin}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--draft-model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--spans", type=int, default=0)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    variants = [v for v in VARIANTS if v in args.variants.split(",")]
    if variants[:1] != ["off"]:
        parser.error("--variants must start with off (every variant is compared with it)")
    config = Config() if Config().models else load_config(None, user_file=Path("/no.yaml")).config
    models = {
        name: dataclasses.replace(spec, n_threads=args.threads)
        for name, spec in config.models.items()
    }
    for name in (args.model, args.draft_model):
        assemble(models[name])
    rows = [r for r in load_jsonl(HUMANEVAL_FIM) if r["language"] == "py"]
    holes = []
    for task in sample(rows, args.tasks):
        prefix, suffix = line_hole(task["prompt"], task["suffix"], task["canonical_solution"])
        holes.append((task["name"], prefix, suffix))
    if args.spans:
        spans = sample(load_jsonl(SPANS), args.spans)
        holes += [(t["task_id"], t["prompt"], t["suffix"]) for t in spans]
    pool = ModelPool(models, PoolConfig())
    totals = {v: {"tokens": 0, "seconds": 0.0, "drafted": 0, "accepted": 0} for v in variants}
    identical = {v: 0 for v in variants}
    planner = DraftPlanner(MAX_DRAFT)  # the server keeps one per model for the session
    draft_prompt_s: list[float] = []
    differs: list[dict[str, Any]] = []  # answers not identical to plain greedy's
    prompt_lengths: list[int] = []
    try:
        with contextlib.ExitStack() as stack:
            target = stack.enter_context(pool.acquire(args.model))
            draft = target  # unused unless a "model" variant runs
            if any(v.startswith("model") for v in variants):
                draft = stack.enter_context(pool.acquire(args.draft_model))
            for name, prefix, suffix in holes:
                tokens = fim_tokens(target.llama, prefix, suffix)
                prompt_lengths.append(len(tokens))
                if draft is not target:
                    started = time.perf_counter()  # the draft model's cold prompt
                    draft.llama.n_tokens = 0
                    prefill(draft.llama, tokens, threading.Event())
                    draft_prompt_s.append(time.perf_counter() - started)
                plain: Decoded | None = None
                for variant in variants:
                    decoded, seconds = run(
                        target, draft, tokens, variant, prefix.rsplit("\n", 1)[-1], planner
                    )
                    if plain is None:
                        plain = decoded
                    identical[variant] += decoded.tokens == plain.tokens
                    if decoded.tokens != plain.tokens:
                        differs.append(
                            {
                                "task": name,
                                "variant": variant,
                                **divergence(target.llama, tokens, plain.tokens, decoded.tokens),
                            }
                        )
                    total = totals[variant]
                    total["tokens"] += decoded.generated
                    total["seconds"] += seconds
                    total["drafted"] += decoded.drafted
                    total["accepted"] += decoded.accepted
                print(
                    json.dumps({"task": name, "tokens": len(plain.tokens) if plain else 0}),
                    file=sys.stderr,
                )
    finally:
        pool.close()
    report: dict[str, Any] = {
        "model": args.model,
        "draft_model": args.draft_model,
        "threads": args.threads,
        "cpus": os.cpu_count(),
        "tasks": args.tasks,
        "spans": args.spans,
        "prompt_tokens_mean": round(sum(prompt_lengths) / len(prompt_lengths), 1),
        "draft_model_cold_prompt_s_mean": round(sum(draft_prompt_s) / len(draft_prompt_s), 3)
        if draft_prompt_s
        else None,
        "p_min": draft_model_module.MODEL_P_MIN,
        "variants": {},
    }
    for variant, total in totals.items():
        report["variants"][variant] = {
            "generated_tokens": total["tokens"],
            "seconds": round(total["seconds"], 3),
            "tokens_per_s": round(total["tokens"] / total["seconds"], 2),
            "drafted": total["drafted"],
            "accepted": total["accepted"],
            "accepted_rate": round(total["accepted"] / total["drafted"], 3)
            if total["drafted"]
            else None,
            "accepted_per_generated": round(total["accepted"] / total["tokens"], 3)
            if total["tokens"]
            else None,
            "identical_to_plain": f"{identical[variant]}/{len(holes)}",
        }
    report["draft_plan"] = planner.summary()
    report["differs"] = differs
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
