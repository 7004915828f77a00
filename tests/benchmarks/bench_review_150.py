"""The review of a ~150-line file through the real server: seconds from the save to the model's
diagnostics, for a file never scored before and for one scored ahead as it opened, then edited a
third or two thirds down. Prints JSON.

Usage: .venv/bin/python tests/benchmarks/bench_review_150.py
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import common  # noqa: F401  (puts tests/ on the import path)
from bench_bugs import Recorder, review, server
from bench_surprise import edited, long_file
from common import close_document, open_document
from lsprotocol import types as lsp

READ_S = 15.0  # the user reads the opened file: scoring ahead runs


async def run() -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="memlsp-review-150-"))
    recorder = Recorder()
    text = "# first save\n" + long_file()  # bench_surprise's as-configured file
    out: dict[str, Any] = {"lines": text.count("\n")}
    quality = {"categories": []}
    async with server(root, recorder, agents={"quality": quality}, memory={"enabled": False}) as c:
        await review(c, recorder, root, "warm_up.py", "def f(x):\n    return x\n", 900)
        cold = await review(c, recorder, root, "cold.py", text, 900)
        assert cold is not None
        out["never_scored"] = {
            "linters_s": round(cold.published[0][0] - cold.saved_at, 2),
            "model_s": round(cold.published[-1][0] - cold.saved_at, 2),
        }
        for label, fraction in (("one_third", 1 / 3), ("two_thirds", 2 / 3)):
            name = f"ahead_{label}.py"
            path = root / name
            path.write_text(text)
            uri = open_document(c, path, text, "python")
            await asyncio.sleep(READ_S)
            new = edited(text, fraction)
            path.write_text(new)
            c.text_document_did_change(
                lsp.DidChangeTextDocumentParams(
                    text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=2),
                    content_changes=[lsp.TextDocumentContentChangeWholeDocument(text=new)],
                )
            )
            watch = recorder.watch(uri, name)
            c.text_document_did_save(
                lsp.DidSaveTextDocumentParams(text_document=lsp.TextDocumentIdentifier(uri=uri))
            )
            await asyncio.wait_for(watch.done.wait(), 900)
            await asyncio.sleep(0.3)
            out[f"scored_ahead_edit_{label}_down_model_s"] = round(
                watch.published[-1][0] - watch.saved_at, 2
            )
            watch.closed = True
            close_document(c, uri)
    return out


def main() -> int:
    json.dump(asyncio.run(run()), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
