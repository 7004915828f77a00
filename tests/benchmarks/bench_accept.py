"""Accepting suggestions one after another through the real server over stdio: how long the next
suggestion takes after an accept, with the next one computed ahead (agents.generator.speculate,
the default) and without. Prints JSON.

Usage:
  .venv/bin/python tests/benchmarks/bench_accept.py [--tasks 12] [--accepts 3] [--pause 1.0]
      [--model qwen2.5-coder-0.5b] [--seed 5]

Per task (held-out HumanEval-FIM Python: the code before a hole's line, the cursor at its
indentation, nothing after it, as when writing a function): ask, read the suggestion for
``--pause`` seconds, accept it (the edit, then the item's command, as VS Code does), ask at once
at the cursor after it; when that gives nothing (the line is done), press Enter (the editor's
indentation) and ask there; ``--accepts`` times. Both servers see the same tasks, one after the
other. Reported per side and kind of request (after an accept, after Enter): latency p50/p95 and
the share answered without a model call.
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

from bench_vs_llama_server import task_lines
from common import (
    HUMANEVAL_FIM,
    close_document,
    inline_text,
    load_jsonl,
    lsp_session,
    open_document,
    percentiles,
    sample,
)
from lsp_helpers import insert
from lsprotocol import types as lsp


def end_of(text: str) -> tuple[int, int]:
    lines = text.split("\n")
    return len(lines) - 1, len(lines[-1])


def enter(line: str) -> str:
    """What Enter inserts at the end of ``line`` in VS Code's Python mode: the line's
    indentation, one level more after a colon."""
    indent = line[: len(line) - len(line.lstrip(" \t"))]
    return "\n" + indent + ("    " if line.rstrip().endswith(":") else "")


async def run_side(
    model: str, tasks: list[dict[str, Any]], speculate: bool, accepts: int, pause: float
) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="memlsp-accept-ws-"))
    generator = {"model": model, "speculate": speculate}
    waits: dict[str, list[float]] = {"after_accept": [], "after_enter": []}
    by_model: dict[str, int] = {"after_accept": 0, "after_enter": 0}
    non_empty = 0
    async with lsp_session(root, agents={"generator": generator}) as client:
        version = 1

        async def model_calls() -> int:
            status = await client.protocol.send_request_async("memlsp/status", {})
            return int(status.generator.model_calls)

        def edit(uri: str, text: str, inserted: str) -> None:
            nonlocal version
            version += 1
            insert(client, uri, version, *end_of(text), inserted)  # at the end of ``text``

        async def ask(uri: str, text: str, kind: str) -> str:
            calls = await model_calls()
            started = time.perf_counter()
            answer = await inline_text(client, uri, *end_of(text))
            waits[kind].append(time.perf_counter() - started)
            by_model[kind] += await model_calls() > calls
            return answer

        warm = open_document(client, root / "warm.py", "def add(a, b):\n    ", "python")
        await inline_text(client, warm, 1, 4)  # the model load is not what is measured
        close_document(client, warm)
        for i, task in enumerate(tasks):
            prefix, _suffix, _line = task_lines(task)
            text = prefix  # writing the function from the hole on: nothing after the cursor
            uri = open_document(client, root / f"task_{i}.py", text, "python")
            version = 1
            suggestion = await inline_text(client, uri, *end_of(text))
            for _ in range(accepts):
                if not suggestion:
                    break
                await asyncio.sleep(pause)  # the user reads it, then takes it
                edit(uri, text, suggestion)
                await client.workspace_execute_command_async(
                    lsp.ExecuteCommandParams(
                        command="memlsp.accepted",
                        arguments=["python", model, len(suggestion), "full"],
                    )
                )
                text += suggestion
                suggestion = await ask(uri, text, "after_accept")  # the editor asks at once
                if not suggestion:  # the line is done: Enter, and the editor asks there
                    newline = enter(text.rsplit("\n", 1)[-1])
                    edit(uri, text, newline)
                    text += newline
                    suggestion = await ask(uri, text, "after_enter")
                non_empty += bool(suggestion)
            close_document(client, uri)
            sys.stderr.write(f"speculate={speculate} {i + 1}/{len(tasks)}\n")
        status = await client.protocol.send_request_async("memlsp/status", {})
        gen = status.generator
        spec = {
            "speculations": int(gen.speculations),
            "speculations_stopped": int(gen.speculations_stopped),
            "joined_speculations": int(gen.joined_speculations),
            "speculation_seconds": float(gen.speculation_seconds),
        }
    return {
        **{
            kind: {
                "requests": len(samples),
                "latency": percentiles(samples),
                "answered_without_a_model_call": round(
                    1 - by_model[kind] / max(1, len(samples)), 3
                ),
            }
            for kind, samples in waits.items()
        },
        "non_empty_next_suggestions": non_empty,
        **spec,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--tasks", type=int, default=12)
    parser.add_argument("--accepts", type=int, default=3)
    parser.add_argument("--pause", type=float, default=1.0, help="seconds reading a suggestion")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    rows = [r for r in load_jsonl(HUMANEVAL_FIM) if r["language"] == "py"]
    tasks = sample(rows, args.tasks, seed=args.seed)
    result: dict[str, Any] = {"model": args.model, "tasks": len(tasks), "pause_s": args.pause}
    for speculate in (True, False):
        side = "speculate" if speculate else "no_speculation"
        result[side] = asyncio.run(run_side(args.model, tasks, speculate, args.accepts, args.pause))
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
