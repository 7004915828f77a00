"""Cross-file completion: does the workspace memory improve inline completions?

Prints JSON. Usage:
  .venv/bin/python tests/benchmarks/bench_crossfile.py [--limit 60] [--seed 0]
      [--model qwen2.5-coder-0.5b] [--package networkx] [--scope a,b,...] [--details]
      [--typed N]  (the cursor N characters into the name: what a user has typed already)
      [--generator JSON]  (agents.generator settings for both runs)

A slice of an installed pure-Python package (networkx's graph algorithms and generators by
default, installed with ``.venv/bin/pip install -e ".[bench]"``; ``--scope ''`` copies every
non-test module) is copied into a temporary workspace. The
tasks (see crossfile_tasks.py) are lines that use a name defined in another module of that
workspace, cut at the start of the reference, e.g. ``    R = |build_residual_network(G, capacity)``.

The real server runs twice over stdio with the same tasks and model: memory ON (the workspace
indexed first: the run waits until the indexing progress has ended and the indexer is idle)
and memory OFF (``memory.enabled: false``). Each task opens the cut document at its real path
(so retrieval leaves that file out), asks for one inline completion and closes it; the context
ring of open files works the same in both runs.

Scores per task, on the suggestion's first non-blank line, stripped, against the masked rest of
the line, stripped: exact match; edit similarity, 1 - Levenshtein distance / the longer length
(character level); whether it writes the cross-file name right, to its end (the name is what
memory supplies; the arguments come from the code around). Also the request latency and where the
prompt's extra context came from (the generator's ``last_context`` in ``memlsp/status``): how
often it held the file defining the name. ``paired`` counts tasks only one run got exactly
right, with a two-sided sign test.

The model may know networkx from pre-training: OFF is then better than it would be on private
code, and the gain a lower bound.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import math
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import close_document, first_line, inline_text, lsp_session, open_document
from common import percentiles as latency_percentiles
from crossfile_probe import probe
from crossfile_tasks import Task, find_tasks, pick, typed
from lsprotocol import types as lsp
from pytest_lsp import LanguageClient

# networkx modules whose cross-references stay mostly inside the slice: ~100 files, ~1,100
# chunks, ~100 tasks; indexing everything (~3,800 chunks) takes too long on 2 shared cores.
DEFAULT_SCOPE = (
    "exception.py,relabel.py,generators,linalg,algorithms/components,algorithms/shortest_paths,"
    "algorithms/traversal,algorithms/flow,algorithms/tree,algorithms/operators,"
    "algorithms/connectivity,algorithms/minors"
)
INDEX_TIMEOUT_S = 3600
# Context chunk sources that come from the workspace memory (agents.context.ContextSource).
MEMORY_SOURCES = ("memory", "definition")


def copy_slice(package: str, scope: list[str], dest: Path) -> dict[str, Any]:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"package {package!r} is not installed in this venv")
    source = Path(next(iter(spec.submodule_search_locations)))
    copied = 0
    for path in sorted(source.rglob("*.py")):
        rel = path.relative_to(source)
        if "__pycache__" in rel.parts or "tests" in rel.parts:
            continue
        if scope and not any(rel.as_posix().startswith(s) for s in scope):
            continue
        target = dest / package / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        copied += 1
    return {"package": package, "source": str(source), "scope": scope, "files": copied}


# -- scoring ----------------------------------------------------------------------------------


def levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def edit_similarity(a: str, b: str) -> float:
    longest = max(len(a), len(b))
    return 1.0 if longest == 0 else 1 - levenshtein(a, b) / longest


def name_right(task: Task, got: str) -> bool:
    """Whether the suggestion writes the cross-file name (what memory is there to supply)
    right, up to its end: from the cursor, which may be inside the name (``--typed``), on to
    the name's last character, followed by no other identifier character."""
    line = task.prefix[task.prefix.rfind("\n") + 1 :]
    full = line + task.target
    end = full.find(task.name) + len(task.name)
    need = full[len(line) : end]
    return got.startswith(need) and not re.match(r"[\w$]", got[len(need) : len(need) + 1])


def score(task: Task, suggestion: str) -> dict[str, Any]:
    got, want = first_line(suggestion), task.target.strip()
    return {
        "exact": got == want,
        "edit_sim": round(edit_similarity(got, want), 4),
        "name_right": name_right(task, got),
        "empty": not got,
    }


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact binomial p-value of ``wins`` against ``losses`` (ties left out)."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(wins, losses) + 1)) / 2**n
    return round(min(1.0, 2 * tail), 4)


# -- the server runs ---------------------------------------------------------------------------


def plain(value: Any) -> Any:
    """pygls hands custom results back as namedtuples: plain dicts and lists."""
    if hasattr(value, "_asdict"):
        return {k: plain(v) for k, v in value._asdict().items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


async def status(client: LanguageClient) -> dict[str, Any]:
    raw = await asyncio.wait_for(client.protocol.send_request_async("memlsp/status", {}), 60)
    return plain(raw)  # type: ignore[no-any-return]


def indexing_ended(client: LanguageClient) -> bool:
    """Whether an ``indexing`` progress bar has begun and ended."""
    for reports in client.progress_reports.values():
        kinds = [type(r) for r in reports]
        begun = any(
            isinstance(r, lsp.WorkDoneProgressBegin) and r.title.startswith("indexing")
            for r in reports
        )
        if begun and lsp.WorkDoneProgressEnd in kinds:
            return True
    return False


async def wait_for_index(client: LanguageClient) -> dict[str, Any]:
    """Until the indexing progress has ended (or the pass ended before its bar existed) and the
    indexer is idle with nothing queued and the store not being optimized."""
    started = time.monotonic()
    while True:
        folders = (await status(client))["memory"]["folders"]
        folder = folders[0] if folders else {}
        ready = (
            folder.get("state") == "idle"
            and folder.get("lag", 1) == 0
            and folder.get("chunks", 0) > 0
            and not folder.get("optimizing", True)
        )
        if ready and (indexing_ended(client) or time.monotonic() - started > 30):
            return {
                "seconds": round(time.monotonic() - started, 1),
                "progress_ended": indexing_ended(client),
                "files": folder.get("files_indexed"),
                "chunks": folder.get("chunks"),
                "skipped": folder.get("skipped"),
                "failed": folder.get("files_failed"),
            }
        if folder.get("last_error"):
            sys.exit(f"indexing failed: {folder['last_error']}")
        if time.monotonic() - started > INDEX_TIMEOUT_S:
            sys.exit(f"indexing did not finish: {folder}")
        await asyncio.sleep(2)


_request_ids = iter(range(1, 10**9))


async def ask(
    client: LanguageClient, uri: str, line: int, character: int, timeout: float
) -> tuple[str, bool]:
    """The inline suggestion, and whether it timed out. A timed-out request is cancelled and
    its answer awaited: left running, it would hold the model and starve the next ones."""
    msg_id = f"crossfile-{next(_request_ids)}"
    params = lsp.InlineCompletionParams(
        text_document=lsp.TextDocumentIdentifier(uri=uri),
        position=lsp.Position(line=line, character=character),
        context=lsp.InlineCompletionContext(trigger_kind=lsp.InlineCompletionTriggerKind.Automatic),
    )
    future = asyncio.ensure_future(
        client.protocol.send_request_async(lsp.TEXT_DOCUMENT_INLINE_COMPLETION, params, msg_id)
    )
    try:
        result = await asyncio.wait_for(asyncio.shield(future), timeout)
    except TimeoutError:
        client.protocol.notify(lsp.CANCEL_REQUEST, lsp.CancelParams(id=msg_id))
        with contextlib.suppress(Exception):
            await asyncio.wait_for(future, 300)
        return "", True
    items = result.items if isinstance(result, lsp.InlineCompletionList) else (result or [])
    if not items:
        return "", False
    text = items[0].insert_text
    return (text if isinstance(text, str) else text.value), False


async def run_session(
    root: Path, tasks: list[Task], args: argparse.Namespace, memory: bool, store: Path
) -> dict[str, Any]:
    label = "memory on " if memory else "memory off"
    result: dict[str, Any] = {"memory": memory, "tasks": []}
    async with lsp_session(
        root,
        user_config={"memory": {"path": str(store)}},
        agents={"generator": {"model": args.model, **args.generator}},
        memory={"enabled": memory, "context_budget_ms": args.context_budget_ms},
    ) as client:
        if memory:
            result["index"] = await wait_for_index(client)
        # Warm-up: the model load is not a completion's latency.
        warm = open_document(client, root / "warm_up.py", "def add(a, b):\n    ", "python")
        await inline_text(client, warm, 1, 4)
        close_document(client, warm)
        for n, task in enumerate(tasks, 1):
            text = task.prefix + task.suffix
            uri = open_document(client, root / task.path, text, "python")
            character = len(task.prefix.rsplit("\n", 1)[-1].encode("utf-16-le")) // 2
            started = time.perf_counter()
            suggestion, timed_out = await ask(client, uri, task.line, character, args.task_timeout)
            seconds = time.perf_counter() - started
            close_document(client, uri)
            generator = (await status(client))["generator"]
            context = [tuple(pair) for pair in generator["last_context"]]
            row = {
                "suggestion": suggestion,
                "seconds": seconds,
                "timed_out": timed_out,
                "context": context,
                **score(task, suggestion),
            }
            result["tasks"].append(row)
            sys.stderr.write(
                f"[{label}] {n}/{len(tasks)} {seconds:.1f} s exact={row['exact']} "
                f"sim={row['edit_sim']} {first_line(suggestion)!r} want {task.target.strip()!r}\n"
            )
        final = await status(client)
        result["generator"] = {
            k: final["generator"][k] for k in ("model", "model_calls", "cache_hits", "empty")
        }
    return result


async def both_sessions(
    root: Path, tasks: list[Task], args: argparse.Namespace, store: Path
) -> tuple[dict[str, Any], dict[str, Any]]:
    """ON and OFF, at the same time by default: on a shared machine both then see the same
    load (--sequential: one after the other)."""
    if args.sequential:
        on = await run_session(root, tasks, args, True, store)
        return on, await run_session(root, tasks, args, False, store)
    on, off = await asyncio.gather(
        run_session(root, tasks, args, True, store), run_session(root, tasks, args, False, store)
    )
    return on, off


def summarize(run: dict[str, Any], tasks: list[Task]) -> dict[str, Any]:
    rows = run["tasks"]
    n = len(rows)

    def share(flags: list[bool]) -> float:
        return round(sum(flags) / n, 3) if n else 0.0

    pairs = list(zip(rows, tasks, strict=True))
    home_by = {
        source: share([(source, t.defined_in) in r["context"] for r, t in pairs])
        for source in ("memory", "definition", "open", "edit")
    }
    return {
        "tasks": n,
        "exact_match": share([r["exact"] for r in rows]),
        "edit_similarity_mean": round(statistics.fmean(r["edit_sim"] for r in rows), 3),
        "name_right": share([r["name_right"] for r in rows]),
        "empty_suggestions": sum(r["empty"] for r in rows),
        "timed_out": sum(r["timed_out"] for r in rows),
        "latency": latency_percentiles([r["seconds"] for r in rows]),
        "context_had_memory_chunks": share(
            [any(s in MEMORY_SOURCES for s, _ in r["context"]) for r in rows]
        ),
        "context_had_defining_file": share(
            [any(p == t.defined_in for _, p in r["context"]) for r, t in pairs]
        ),
        "context_had_defining_file_by_source": home_by,
        "generator": run["generator"],
        **({"index": run["index"]} if "index" in run else {}),
    }


def paired(on: dict[str, Any], off: dict[str, Any]) -> dict[str, Any]:
    pairs = list(zip(on["tasks"], off["tasks"], strict=True))
    wins = sum(a["exact"] and not b["exact"] for a, b in pairs)
    losses = sum(b["exact"] and not a["exact"] for a, b in pairs)
    name_wins = sum(a["name_right"] and not b["name_right"] for a, b in pairs)
    name_losses = sum(b["name_right"] and not a["name_right"] for a, b in pairs)
    sim_wins = sum(a["edit_sim"] > b["edit_sim"] for a, b in pairs)
    sim_losses = sum(a["edit_sim"] < b["edit_sim"] for a, b in pairs)
    return {
        "exact_only_with_memory": wins,
        "exact_only_without_memory": losses,
        "exact_sign_test_p": sign_test(wins, losses),
        "name_right_only_with_memory": name_wins,
        "name_right_only_without_memory": name_losses,
        "name_right_sign_test_p": sign_test(name_wins, name_losses),
        "edit_sim_better_with_memory": sim_wins,
        "edit_sim_worse_with_memory": sim_losses,
        "edit_sim_sign_test_p": sign_test(sim_wins, sim_losses),
        "edit_sim_mean_gain": round(
            statistics.fmean(a["edit_sim"] - b["edit_sim"] for a, b in pairs), 3
        ),
    }


def details(tasks: list[Task], on: dict[str, Any], off: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for task, a, b in zip(tasks, on["tasks"], off["tasks"], strict=True):
        rows.append(
            {
                "where": f"{task.path}:{task.line + 1}:{task.column + 1}",
                "name": task.name,
                "defined_in": task.defined_in,
                "target": task.target.strip(),
                "with_memory": first_line(a["suggestion"]),
                "without": first_line(b["suggestion"]),
                "memory_context": [p for s, p in a["context"] if s in MEMORY_SOURCES],
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--package", default="networkx")
    parser.add_argument("--scope", default=DEFAULT_SCOPE, help="comma-separated path prefixes")
    parser.add_argument(
        "--context-budget-ms",
        type=int,
        default=2000,
        help="memory.context_budget_ms; the server's 150 ms default expires before the query "
        "embedding on a loaded machine, and the first request in a region then gets no memory",
    )
    parser.add_argument(
        "--typed",
        type=int,
        default=0,
        help="the cursor this many characters into the name (typed already: `nx.dij|`)",
    )
    parser.add_argument("--task-timeout", type=float, default=400.0, help="seconds per request")
    parser.add_argument("--sequential", action="store_true", help="ON, then OFF")
    parser.add_argument(
        "--generator",
        type=json.loads,
        default={},
        help='agents.generator settings for both runs, as JSON (e.g. {"context_filter": "all"})',
    )
    parser.add_argument("--details", action="store_true", help="per-task suggestions too")
    parser.add_argument(
        "--no-imports",
        action="store_true",
        help="retrieval-only: without the definitions of imported names (ablation)",
    )
    parser.add_argument(
        "--retrieval-only", action="store_true", help="no server: what retrieval would show"
    )
    parser.add_argument("--workdir", default="", help="keep workspace and store here (reruns)")
    args = parser.parse_args()

    scope = [s for s in args.scope.split(",") if s]
    results: dict[str, Any] = {"argv": sys.argv[1:], "model": args.model}
    with tempfile.TemporaryDirectory(prefix="memlsp-bench-crossfile-") as tmp:
        # --workdir keeps the workspace and its store: a rerun re-embeds nothing.
        work = Path(args.workdir) if args.workdir else Path(tmp)
        root = work / "ws"
        results["codebase"] = copy_slice(args.package, scope, root)
        found = find_tasks(root, args.package)
        tasks = [typed(task, args.typed) for task in pick(found, args.limit, args.seed)]
        results["tasks"] = {
            "candidates": len(found),
            "sampled": len(tasks),
            "seed": args.seed,
            "typed_chars": args.typed,
        }
        if args.retrieval_only:
            results["retrieval"] = probe(root, work / "store", tasks, not args.no_imports)
            if not args.details:
                del results["retrieval"]["rows"]
            json.dump(results, sys.stdout, indent=2)
            sys.stdout.write("\n")
            return
        on, off = asyncio.run(both_sessions(root, tasks, args, work / "store"))
    results["memory_on"] = summarize(on, tasks)
    results["memory_off"] = summarize(off, tasks)
    results["paired"] = paired(on, off)
    if args.details:
        results["details"] = details(tasks, on, off)
    json.dump(results, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
