"""Keystroke latency while the workspace indexes, against the same typing with no indexing.

Prints JSON. Usage:
  .venv/bin/python tests/benchmarks/bench_index_typing.py [--package DIR] [--keys 40]
      [--pause-ms 150] [--model qwen2.5-coder-0.5b] [--out FILE]

Three fresh servers over stdio, each typing the same line into the same file, an inline request
per key (awaited, as an editor showing ghost text does), ``--pause-ms`` between keys:
  indexing   - memory on, the workspace a copy of ``--package`` (default: the installed pygls
               source), indexed from scratch (own store folder) while the keys are typed;
  idle       - memory on, the same store, typing once its indexing has finished: every request
               searches the memory as above, nothing else computes;
  memory_off - memory off (no search either).
The model is loaded, and one request answered, before the keys start. Reports latency
percentiles per phase, the ratio indexing / idle (p50, p95, mean; goal within 1.2: embeddings
take their turn between completions, models/priority.py), indexing / memory off, and how far
indexing got while typing (if it finished before the last key, raise --keys). Run it alone on
the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import inline_text, lsp_session, open_document, percentiles, type_char

FIM = "qwen2.5-coder-0.5b"
INDEX_DEADLINE_S = 900.0
DOCUMENT = "import json\nfrom pathlib import Path\n\n\ndef load_settings(path):\n    "
TYPED = "with open(path, encoding='utf-8') as handle: return json.load(handle)  # settings"


def plain(value: Any) -> Any:
    """pygls hands custom results back as namedtuple-like objects: plain dicts and lists."""
    if hasattr(value, "_asdict"):
        value = value._asdict()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def default_package() -> Path:
    import pygls

    return Path(pygls.__file__).resolve().parent


async def memory_progress(client: Any) -> dict[str, Any]:
    report = plain(await client.protocol.send_request_async("memlsp/status", {}))
    folders = report.get("memory", {}).get("folders", [])
    folder = folders[0] if folders else {}
    keys = ("state", "files_indexed", "chunks", "embedded", "lag")
    return {key: folder.get(key) for key in keys}


async def indexed(client: Any, deadline_s: float) -> dict[str, Any]:
    """Wait until the memory has indexed the whole workspace; its progress then."""
    deadline = time.monotonic() + deadline_s
    while True:
        progress = await memory_progress(client)
        if progress.get("state") == "idle" and progress.get("lag") == 0:
            return progress
        if time.monotonic() > deadline:
            raise SystemExit(f"indexing did not finish in {deadline_s:.0f} s: {progress}")
        await asyncio.sleep(1.0)


async def phase(
    workspace: Path,
    *,
    index: bool,
    keys: int,
    pause_s: float,
    model: str,
    store: Path,
    wait_indexed: bool = False,
) -> dict[str, Any]:
    generator = {"model": model, "max_predict_ms": 0}
    memory = {"enabled": index, "path": str(store)}
    async with lsp_session(
        workspace, user_config={"memory": memory}, agents={"generator": generator}
    ) as client:
        path = workspace / "typing_here.py"
        uri = open_document(client, path, DOCUMENT, "python")
        line, column = DOCUMENT.count("\n"), len(DOCUMENT.rsplit("\n", 1)[-1])
        await inline_text(client, uri, line, column)  # loads the model: not a keystroke
        if wait_indexed:
            await indexed(client, INDEX_DEADLINE_S)
        before = await memory_progress(client) if index else {}
        latencies: list[float] = []
        for i, char in enumerate(TYPED[:keys]):
            type_char(client, uri, line, column + i, char)
            started = time.perf_counter()
            await inline_text(client, uri, line, column + i + 1)
            latencies.append(time.perf_counter() - started)
            await asyncio.sleep(pause_s)
        after = await memory_progress(client) if index else {}
        report = plain(await client.protocol.send_request_async("memlsp/status", {}))
    return {
        "latency": percentiles(latencies),
        "slowest": [
            {"key": i, "ms": round(1000 * latencies[i])}
            for i in sorted(range(len(latencies)), key=latencies.__getitem__)[-6:]
        ],
        "priority": report.get("pool", {}).get("priority"),
        "memory_before_typing": before,
        "memory_after_typing": after,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="memlsp-bench-index-typing-"))
    try:
        workspace = scratch / "ws"
        shutil.copytree(args.package, workspace / args.package.name)
        common = {"keys": args.keys, "pause_s": args.pause_ms / 1000, "model": args.model}
        store = scratch / "store"
        indexing = await phase(workspace, index=True, store=store, **common)
        idle = await phase(workspace, index=True, store=store, wait_indexed=True, **common)
        memory_off = await phase(workspace, index=False, store=scratch / "unused", **common)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {
        "package": str(args.package),
        "keys": args.keys,
        "pause_ms": args.pause_ms,
        "model": args.model,
        "indexing": indexing,
        "idle": idle,
        "memory_off": memory_off,
        "ratio_indexing_to_idle": ratio(indexing, idle),
        "ratio_indexing_to_memory_off": ratio(indexing, memory_off),
    }


def ratio(ours: dict[str, Any], base: dict[str, Any]) -> dict[str, float]:
    return {
        q: round(ours["latency"][q] / max(base["latency"][q], 1e-3), 2)
        for q in ("p50_ms", "p95_ms", "mean_ms")
        if q in ours["latency"] and q in base["latency"]
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--package", type=Path, default=None)
    parser.add_argument("--keys", type=int, default=40)
    parser.add_argument("--pause-ms", type=int, default=150)
    parser.add_argument("--model", default=FIM)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    args.package = (args.package or default_package()).resolve()
    args.keys = max(1, min(args.keys, len(TYPED)))
    result = asyncio.run(run(args))
    text = json.dumps(result, indent=2)
    if args.out is not None:
        args.out.write_text(text + "\n")
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
