"""Accepting suggestions one after another through the real server over stdio: how long the next
suggestion takes after an accept, with the next one computed ahead (agents.generator.speculate,
the default) and without. Prints JSON.

Usage:
  .venv/bin/python tests/benchmarks/bench_accept.py [--tasks 12] [--accepts 3] [--pause 1.0]
      [--model qwen2.5-coder-0.5b] [--seed 5]

Per task (held-out HumanEval-FIM Python: the code before a hole, nothing after it, as when
writing a function): ask at the end, read the suggestion for ``--pause`` seconds, accept it (the
edit, then the item's command, as VS Code does), ask at once at the cursor after it; ``--accepts``
times. Both servers see the same tasks, one after the other. Reported per side: the latency of
the request right after an accept (p50/p95), the share of them answered without a model call,
and how many of the suggestions after an accept were non-empty.
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
    inline_text,
    load_jsonl,
    lsp_session,
    open_document,
    percentiles,
    sample,
)
from lsprotocol import types as lsp


def end_of(text: str) -> tuple[int, int]:
    lines = text.split("\n")
    return len(lines) - 1, len(lines[-1])


async def run_side(
    model: str, tasks: list[dict[str, Any]], speculate: bool, accepts: int, pause: float
) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="memlsp-accept-ws-"))
    generator = {"model": model, "speculate": speculate}
    after_accept: list[float] = []
    by_model = non_empty = 0
    async with lsp_session(root, agents={"generator": generator}) as client:

        async def model_calls() -> int:
            status = await client.protocol.send_request_async("memlsp/status", {})
            return int(status.generator.model_calls)

        warm = open_document(client, root / "warm.py", "def add(a, b):\n    ", "python")
        await inline_text(client, warm, 1, 4)  # the model load is not what is measured
        close_document(client, warm)
        for i, task in enumerate(tasks):
            text = task["prompt"]
            uri = open_document(client, root / f"task_{i}.py", text, "python")
            version = 1
            suggestion = await inline_text(client, uri, *end_of(text))
            for _ in range(accepts):
                if not suggestion:
                    break
                await asyncio.sleep(pause)  # the user reads it
                line, char = end_of(text)
                version += 1
                here = lsp.Position(line=line, character=char)
                client.text_document_did_change(
                    lsp.DidChangeTextDocumentParams(
                        text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=version),
                        content_changes=[
                            lsp.TextDocumentContentChangePartial(
                                range=lsp.Range(start=here, end=here), text=suggestion
                            )
                        ],
                    )
                )
                await client.workspace_execute_command_async(
                    lsp.ExecuteCommandParams(
                        command="memlsp.accepted",
                        arguments=["python", model, len(suggestion), "full"],
                    )
                )
                text += suggestion
                calls = await model_calls()
                started = time.perf_counter()
                suggestion = await inline_text(client, uri, *end_of(text))
                after_accept.append(time.perf_counter() - started)
                by_model += await model_calls() > calls
                non_empty += bool(suggestion)
            close_document(client, uri)
            sys.stderr.write(f"speculate={speculate} {i + 1}/{len(tasks)}\n")
        status = await client.protocol.send_request_async("memlsp/status", {})
        gen = status.generator
        spec = {
            "speculations": int(gen.speculations),
            "speculations_stopped": int(gen.speculations_stopped),
            "speculation_seconds": float(gen.speculation_seconds),
        }
    return {
        "requests_after_an_accept": len(after_accept),
        "latency_after_an_accept": percentiles(after_accept),
        "answered_without_a_model_call": round(1 - by_model / max(1, len(after_accept)), 3),
        "non_empty": non_empty,
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
