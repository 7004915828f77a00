"""Model pool benchmark: load time and memory per shipped model, and the pool's per-call overhead.

Prints JSON. Usage: .venv/bin/python tests/benchmarks/bench_pool.py [--models a,b] [--calls N]
Each model is measured in the same process one after another (evicted in between), and the pool's
overhead is compared against a bare ``llama_cpp.Llama`` on the same model in the same run.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from typing import Any

import psutil

from memlsp.config import load_config
from memlsp.config.schema import PoolConfig
from memlsp.models import ModelPool
from memlsp.models.assembly import resolve
from memlsp.models.runtime import llama_cpp


def rss_mb() -> float:
    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def measure_model(pool: ModelPool, name: str) -> dict[str, Any]:
    before = rss_mb()
    started = time.perf_counter()
    with pool.acquire(name) as model:
        load_s = time.perf_counter() - started
        loaded_only = rss_mb()
        # A full batch of prompt plus generation: compute buffers and logits get touched.
        text = ("def add(a, b):\n    return a + b\n\n" * 60).encode()
        prompt = model.llama.tokenize(text, add_bos=False)[:512]
        model.llama.reset()
        model.llama.eval(prompt)
        model.llama.create_completion(prompt[:8], max_tokens=16, temperature=0.0)
    loaded = rss_mb()
    estimate = pool.stats()["models"][name]["bytes"] / 2**20
    pool.evict(name)
    after = rss_mb()
    return {
        "load_s": round(load_s, 3),
        "rss_before_mb": round(before, 1),
        "rss_after_load_mb": round(loaded_only, 1),
        "rss_after_use_mb": round(loaded, 1),
        "rss_growth_mb": round(loaded - before, 1),
        "pool_estimate_mb": round(estimate, 1),
        "rss_after_eviction_mb": round(after, 1),
    }


def overhead(pool: ModelPool, name: str, calls: int) -> dict[str, Any]:
    """Per-call cost of pool.acquire around a tiny llama call, against the bare call."""
    spec = pool.spec(name)
    bare = llama_cpp().Llama(model_path=str(resolve(spec)), n_ctx=spec.n_ctx, verbose=False)
    tokens = bare.tokenize(b"def add(a, b):\n    return", add_bos=False)

    def bare_call() -> None:
        bare.tokenize(b"def add(a, b):", add_bos=False)

    def pooled_call() -> None:
        with pool.acquire(name) as model:
            model.llama.tokenize(b"def add(a, b):", add_bos=False)

    def timed(fn: Any) -> float:
        samples = []
        for _ in range(calls):
            t = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t)
        return statistics.median(samples)

    pooled_call()  # load
    tiny_bare, tiny_pooled = timed(bare_call), timed(pooled_call)

    def bare_eval() -> None:
        bare.reset()
        bare.eval(tokens)

    def pooled_eval() -> None:
        with pool.acquire(name) as model:
            model.llama.reset()
            model.llama.eval(tokens)

    eval_calls = max(5, calls // 50)
    samples_bare, samples_pooled = [], []
    for _ in range(eval_calls):  # interleaved so machine noise hits both alike
        t = time.perf_counter()
        bare_eval()
        samples_bare.append(time.perf_counter() - t)
        t = time.perf_counter()
        pooled_eval()
        samples_pooled.append(time.perf_counter() - t)
    bare.close()
    eval_bare, eval_pooled = statistics.median(samples_bare), statistics.median(samples_pooled)
    return {
        "acquire_overhead_us": round((tiny_pooled - tiny_bare) * 1e6, 1),
        "tiny_call_bare_us": round(tiny_bare * 1e6, 1),
        "tiny_call_pooled_us": round(tiny_pooled * 1e6, 1),
        "prompt_eval_bare_ms": round(eval_bare * 1e3, 2),
        "prompt_eval_pooled_ms": round(eval_pooled * 1e3, 2),
        "prompt_eval_ratio_pooled_over_bare": round(eval_pooled / eval_bare, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="gemma3-270m,qwen2.5-coder-0.5b,qwen2.5-coder-1.5b")
    parser.add_argument("--calls", type=int, default=2000)
    args = parser.parse_args()
    config = load_config(None).config
    pool = ModelPool(config.models, PoolConfig(memory_budget_mb=16384))
    llama_cpp()  # import cost is not a model's load cost
    results: dict[str, Any] = {"models": {}}
    for name in args.models.split(","):
        results["models"][name] = measure_model(pool, name)
    results["overhead"] = {
        "model": "qwen2.5-coder-0.5b",
        **overhead(pool, "qwen2.5-coder-0.5b", args.calls),
    }
    pool.close()
    json.dump(results, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
