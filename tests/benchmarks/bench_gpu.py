"""GPU offload through the model pool: the same model loaded CPU-only and with n_gpu_layers=auto.

Prints JSON: whether this llama.cpp build can offload, what the pool decided, load time, prompt
evaluation and generation speed on each, whether greedy output agrees, GPU memory used after
the load and after the pool closed (nvidia-smi, when there is one) against the pool's estimate,
and one fill-in-the-middle completion through the generator agent on the offloaded model.

  .venv/bin/python tests/benchmarks/bench_gpu.py [--model qwen2.5-coder-1.5b]
  .venv/bin/python tests/benchmarks/bench_gpu.py --model-file tiny.gguf --like qwen2.5-coder-0.5b

``--model-file`` loads any GGUF with the catalogue entry ``--like``'s settings (FIM tokens,
n_ctx): tiny_fim_model.py writes one small enough to carry to a machine that has no models.
On a build without GPU offload both runs are on the CPU and the JSON says so.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from memlsp.models import runtime

# Before numpy (models.runtime.load_first_if_gpu_build says why); the imports below bring it.
runtime.load_first_if_gpu_build()

from memlsp.agents.completion.generator import GeneratorAgent, InlineRequest  # noqa: E402
from memlsp.config import load_config  # noqa: E402
from memlsp.config.schema import ModelSource, ModelSpec, PoolConfig  # noqa: E402
from memlsp.models import ModelPool  # noqa: E402
from memlsp.models.runtime import resolve_gpu_layers, supports_gpu_offload  # noqa: E402

PROMPT = "def fibonacci(n):\n    if n < 2:\n        return n\n" * 40


def gpu_memory_mb() -> int | None:
    """Memory in use on the first GPU, from nvidia-smi; None without one."""
    if shutil.which("nvidia-smi") is None:
        return None
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        return int(out.stdout.split()[0])
    except (IndexError, ValueError):
        return None


def run(spec: ModelSpec, prompt_tokens: int, generate: int, fim: bool) -> dict[str, Any]:
    before = gpu_memory_mb()
    pool = ModelPool({spec.name: spec}, PoolConfig(memory_budget_mb=1 << 16))
    result: dict[str, Any] = {"setting": spec.n_gpu_layers}
    started = time.perf_counter()
    with pool.acquire(spec.name) as model:
        result["load_s"] = round(time.perf_counter() - started, 3)
        llama = model.llama
        tokens = llama.tokenize(PROMPT.encode(), add_bos=False)[:prompt_tokens]
        llama.create_completion(tokens[:16], max_tokens=2, temperature=0.0)  # warm-up
        llama.reset()
        started = time.perf_counter()
        llama.create_completion(tokens, max_tokens=1, temperature=0.0)
        prefill = time.perf_counter() - started
        started = time.perf_counter()  # the prompt is in the KV cache now: this is decoding
        out = llama.create_completion(tokens, max_tokens=generate, temperature=0.0)
        decode = time.perf_counter() - started
        generated = out["usage"]["completion_tokens"]
        result.update(
            prompt_tokens=len(tokens),
            prompt_eval_tok_s=round(len(tokens) / prefill, 1),
            generated_tokens=generated,
            generate_tok_s=round(generated / decode, 1) if generated else None,
            text=out["choices"][0]["text"],
        )
    stats = pool.stats()["models"][spec.name]
    result.update(
        gpu=stats["gpu"],
        n_gpu_layers=stats["n_gpu_layers"],
        pool_estimate_mb=stats["bytes"] >> 20,
    )
    loaded = gpu_memory_mb()
    if fim:
        config = load_config(None).config.agents.generator
        agent = GeneratorAgent(pool, config, spec.name)
        request = InlineRequest("file:///bench/fib.py", "fib.py", "python", PROMPT, "\n")
        started = time.perf_counter()
        suggestion = agent.complete(request, threading.Event())
        result["fim_completion_ms"] = round((time.perf_counter() - started) * 1000, 1)
        result["fim_source"] = suggestion.source
    pool.close()
    after = gpu_memory_mb()
    if before is not None and loaded is not None and after is not None:
        result["gpu_memory_mb"] = {
            "before": before,
            "loaded": loaded,
            "after_close": after,
            "used_by_model": loaded - before,
        }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="qwen2.5-coder-1.5b")
    parser.add_argument("--model-file", type=Path, help="a GGUF to load with --like's settings")
    parser.add_argument("--like", default="qwen2.5-coder-0.5b")
    parser.add_argument("--prompt-tokens", type=int, default=1024)
    parser.add_argument("--generate", type=int, default=32)
    args = parser.parse_args()
    catalogue = load_config(None).config.models
    if args.model_file:
        spec = dataclasses.replace(
            catalogue[args.like],
            name=args.model_file.stem,
            source=ModelSource(kind="path", path=str(args.model_file.resolve())),
            sha256="",
            size_bytes=0,
        )
    else:
        spec = catalogue[args.model]
    fim = spec.fim is not None
    cpu = run(dataclasses.replace(spec, n_gpu_layers=0), args.prompt_tokens, args.generate, fim)
    gpu = run(
        dataclasses.replace(spec, n_gpu_layers="auto"), args.prompt_tokens, args.generate, fim
    )
    result = {
        "model": spec.name,
        "supports_gpu_offload": supports_gpu_offload(),
        "auto_decision": resolve_gpu_layers("auto")[1],
        "cpu": cpu,
        "gpu": gpu,
        "prompt_eval_speedup": round(gpu["prompt_eval_tok_s"] / cpu["prompt_eval_tok_s"], 2),
        "generate_speedup": (
            round(gpu["generate_tok_s"] / cpu["generate_tok_s"], 2)
            if gpu["generate_tok_s"] and cpu["generate_tok_s"]
            else None
        ),
        "same_greedy_text": cpu["text"] == gpu["text"],
    }
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
