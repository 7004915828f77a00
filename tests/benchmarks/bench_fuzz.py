"""Protocol fuzzer at scale: random didOpen/didChange sequences through the real server over
stdio, the server's text and cursor offsets compared with the reference model after every
notification, code action (and optionally inline completion) responses checked against the
lsprotocol types. The same machinery as tests/stress/test_protocol_fuzz.py, with many more examples.

Prints JSON (cases fuzzed, checks, failed cases by kind, the first failures). Usage:
  .venv/bin/python tests/benchmarks/bench_fuzz.py [--examples 1000] [--encodings utf-16,utf-8]
      [--model-calls] [--seed 0] [--plain]
To fuzz another commit's server, put a tree of its packages first on the server's PYTHONPATH
(the benchmark itself imports no memlsp code).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import common  # noqa: F401  (puts tests/ on the import path)
import protocol_fuzzing as fuzzing
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st


def fuzz(
    encoding: str, examples: int, model_calls: bool, run_seed: int, pieces: list[str]
) -> dict[str, Any]:
    loop = asyncio.new_event_loop()
    root = Path(tempfile.mkdtemp(prefix="memlsp-fuzz-"))
    server = loop.run_until_complete(fuzzing.RawServer.start(root / "cfg"))
    encodings = None if encoding == "utf-16" else [encoding]
    reply = loop.run_until_complete(
        server.initialize(root, encodings=encodings, **fuzzing.FUZZ_OPTIONS)
    )
    negotiated = reply["result"]["capabilities"].get("positionEncoding", "utf-16")
    counts: Counter[str] = Counter()
    failures: list[str] = []
    checks = 0

    @seed(run_seed)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.data())
    def one_case(data: Any) -> None:
        nonlocal checks
        counts["cases"] += 1
        if server.proc.returncode is not None:
            counts["server exited"] += 1
            return
        uri = (root / f"doc{counts['cases']}.py").as_uri()
        try:
            checks += loop.run_until_complete(
                fuzzing.fuzz_document(
                    server, data, uri, encoding, model_calls=model_calls, pieces=pieces
                )
            )
        except fuzzing.FuzzFailure as failure:
            counts[f"failed: {failure.kind}"] += 1
            if len(failures) < 5:
                failures.append(str(failure)[:400])
        except TimeoutError:
            counts["failed: no reply"] += 1

    started = time.perf_counter()
    one_case()
    seconds = time.perf_counter() - started
    exit_code = loop.run_until_complete(server.close())
    loop.close()
    failed = sum(n for kind, n in counts.items() if kind.startswith("failed"))
    return {
        "encoding": encoding,
        "negotiated": negotiated,
        "cases": counts.pop("cases", 0),
        "failed_cases": failed,
        "checks": checks,
        "by_kind": dict(counts),
        "first_failures": failures,
        "unframed_stdout": len(server.unframed),
        "exit_code": exit_code,
        "seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=1000, help="cases per encoding")
    parser.add_argument("--encodings", default="utf-16,utf-8,utf-32")
    parser.add_argument("--model-calls", action="store_true", help="also inline completions")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--plain",
        action="store_true",
        help="no characters that str.splitlines() breaks at but LSP does not (form feed, ...)",
    )
    args = parser.parse_args()
    pieces = fuzzing.PLAIN_PIECES if args.plain else fuzzing.PIECES
    runs = [
        fuzz(encoding, args.examples, args.model_calls, args.seed, pieces)
        for encoding in args.encodings.split(",")
    ]
    print(
        json.dumps(
            {
                "cases": sum(r["cases"] for r in runs),
                "failed_cases": sum(r["failed_cases"] for r in runs),
                "checks": sum(r["checks"] for r in runs),
                "runs": runs,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
