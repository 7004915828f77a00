"""What a switch back to a file costs: the first suggestion after coming back, side by side.

Prints JSON. Usage:
  cd tests/benchmarks && ../../.venv/bin/python bench_switch.py [--files 4] [--rounds 3]

A user works on a few files in turn: in each, writes a line where one is missing, waits for the
suggestion on the next, saves, and moves to the next file. Each file is two complete
HumanEval-FIM Python functions and a third with its line missing (the cursor on that line): small
modules, whose saves change their chunk in the other files' context (a file's first 64
lines). Three server runs on the same workspace and the same steps, one after the other:

- ``fresh``: every request chooses its context afresh and no KV state is saved
  (``context_keep_s: 0``, ``kv_state_mb: 0``): the behaviour before both existed;
- ``saved_states_only``: KV states saved and restored, context chosen afresh
  (``context_keep_s: 0``);
- ``kept``: the defaults: a file keeps its context chunks while the cursor stays near, and the
  state of the file being left is saved and restored when the user comes back.

Reported per run: latency p50/p95 of the suggestion right after a switch (the first round, when
no file has been visited with a line written yet, is left out of all), prompt tokens evaluated per
request (status ``prompt_tokens - reused_tokens``), saved-state restores, and the ratio
fresh/kept. Reviews are off (their model would share the 2 cores); memory is on (the default),
so the context holds search hits from the other files besides the ring of open and saved files.
Each visit writes one line and asks for the next, as the soak's typist does.
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

from bench_crossfile import wait_for_index
from common import (
    HUMANEVAL_FIM,
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
from lsprotocol import types as lsp


def build_files(rows: list[dict[str, Any]], n_files: int) -> list[tuple[str, int, int]]:
    """(text, cursor line, cursor character) per file."""
    files = []
    for i in range(n_files):
        done, hole = rows[3 * i : 3 * i + 2], rows[3 * i + 2]
        body = "".join(r["prompt"] + r["canonical_solution"] + r["suffix"] + "\n\n" for r in done)
        prefix, suffix = line_hole(hole["prompt"], hole["suffix"], hole["canonical_solution"])
        files.append(cursor_document(body + prefix, suffix))
    return files


async def session(
    files: list[tuple[str, int, int]], rounds: int, model: str, generator: dict[str, Any]
) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="memlsp-bench-switch-"))
    agents = {"generator": {"model": model, **generator}, "quality": {"enabled": False}}
    latencies: list[float] = []
    evaluated: list[int] = []
    for i, (text, _, _) in enumerate(files):  # on disk first: the initial indexing finds them
        (root / f"module_{i}.py").write_text(text)
    async with lsp_session(root, agents=agents) as client:

        async def generator_status() -> Any:
            return (await client.protocol.send_request_async("memlsp/status", {})).generator

        await wait_for_index(client)
        cursors = []
        for i, (text, line, char) in enumerate(files):
            uri = open_document(client, root / f"module_{i}.py", text, "python")
            cursors.append([uri, line, char])
        for uri, line, char in cursors:  # warm: the model loads, each file is seen once
            await inline_text(client, uri, line, char)
        for round_no in range(rounds):
            for cursor in cursors:
                uri, line, char = cursor
                # A line written and the next one started: the memory search for the cursor
                # region runs again, and the file's chunk in the ring changes on save.
                typed = f"step_{round_no} = len(str({round_no}))\n" + " " * char
                type_char(client, uri, line, char, typed)
                cursor[1] = line = line + 1
                before = await generator_status()
                started = time.perf_counter()
                await inline_text(client, uri, line, char)
                seconds = time.perf_counter() - started
                after = await generator_status()
                if round_no > 0:
                    latencies.append(seconds)
                    prompt = after.prompt_tokens - before.prompt_tokens
                    evaluated.append(prompt - (after.reused_tokens - before.reused_tokens))
                client.text_document_did_save(
                    lsp.DidSaveTextDocumentParams(text_document=lsp.TextDocumentIdentifier(uri))
                )
        final = await generator_status()
    kv = final.kv_states
    return {
        "switch_back": percentiles(latencies),
        "evaluated_tokens": token_counts(evaluated),
        "restored": kv.restored,
        "restored_tokens": kv.restored_tokens,
        "context_kept": final.context_kept,
        "model_calls": final.model_calls,
    }


def token_counts(counts: list[int]) -> dict[str, float]:
    ordered = sorted(counts) or [0]
    return {
        "p50": ordered[len(ordered) // 2],
        "p95": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "mean": round(sum(ordered) / len(ordered), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rows = [r for r in load_jsonl(HUMANEVAL_FIM) if r["language"] == "py"]
    files = build_files(sample(rows, 3 * args.files, seed=3), args.files)
    fresh = asyncio.run(
        session(files, args.rounds, args.model, {"context_keep_s": 0, "kv_state_mb": 0})
    )
    # Saved states alone: the context, chosen afresh, changes under them.
    states_only = asyncio.run(session(files, args.rounds, args.model, {"context_keep_s": 0}))
    kept = asyncio.run(session(files, args.rounds, args.model, {}))
    result = {
        "model": args.model,
        "threads": os.cpu_count(),
        "files": args.files,
        "rounds_measured": args.rounds - 1,
        "fresh": fresh,
        "saved_states_only": states_only,
        "kept": kept,
        "ratio_fresh_over_kept_p50": round(
            fresh["switch_back"]["p50_ms"] / kept["switch_back"]["p50_ms"], 2
        ),
    }
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
