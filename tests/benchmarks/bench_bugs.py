"""Bug-finding benchmark: one-line bugs injected by mutation into correct code, reviewed on save.

Prints JSON. Usage:
  .venv/bin/python tests/benchmarks/bench_bugs.py [--limit N] [--kinds compare-op,and-or]
      [--seed 0] [--model qwen2.5-coder-1.5b] [--per-kind 30] [--linters-only] [--details]
      [--quality '{"instruct": true, "surprise": false}']

Cases (tests/mutation_cases.py): the HumanEval solutions in ../shared/data, the demo
workspace's clean files and a few modules of our own, each mutated once per case by one of the
kinds in tests/mutations.py (operator swaps, off-by-one, swapped arguments, wrong variable or
returned name, dropped ``not``, ``and``/``or``), balanced over the kinds; ``--limit`` takes a
prefix that stays balanced. A mutant whose source has tests is kept only when the tests catch
it (run in a subprocess with a timeout): an equivalent mutant is no bug to find. The unmutated
originals of the sources used are reviewed too.

Each file goes through the real server over stdio, as an editor drives it: didOpen, then
didSave, and the diagnostics it pushes until the review's progress has ended and its result
is published. Scores per source of the diagnostics: ``linters`` (ruff, py-compile: every
source but the model's), ``model`` (``memlsp``), split into ``surprise`` (code
``unusual-code``) and ``instruct`` (the chat review's codes), and ``all``; ``model_codes``
counts the model's findings per code (in mutants, on the bug line, in clean files):

- recall: mutants with a finding whose range covers the bug line and that the original did not
  have (same source, code and line);
- precision: findings on the bug line / all findings in the mutants (a real but unplanted
  problem counts against it: a lower bound);
- false findings per clean file: findings on the originals / originals;
- seconds from the save to the first and to the last published diagnostic of that source.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import close_document, open_document, require
from lsp_helpers import capabilities, plain
from lsprotocol import types as lsp
from mutation_cases import HUMANEVAL, Case, Source, build_cases, load_sources
from mutations import KINDS
from pytest_lsp import LanguageClient
from pytest_lsp.client import DEFAULT_CLIENT_FEATURES

from memlsp.config import load_config

MODEL_SOURCE = "memlsp"
SURPRISE_CODE = "unusual-code"  # the surprise stage's findings (agents/review/surprise.py)
GROUPS: dict[str, Callable[[lsp.Diagnostic], bool]] = {
    "linters": lambda d: d.source != MODEL_SOURCE,
    "model": lambda d: d.source == MODEL_SOURCE,
    "surprise": lambda d: d.source == MODEL_SOURCE and d.code == SURPRISE_CODE,
    "instruct": lambda d: d.source == MODEL_SOURCE and d.code != SURPRISE_CODE,
    "all": lambda d: True,
}
REVIEW_TITLE = "memlsp review"
TEST_TIMEOUT_S = 5.0
PUBLISH_GRACE_S = 10.0


# --- which mutants are bugs ------------------------------------------------------------------


class TestRunner:
    """Runs a source's tests against a text in a subprocess (never in this process)."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="memlsp-bench-bugs-tests-"))
        self._originals: dict[str, bool] = {}
        self.counts = {"caught": 0, "not_caught": 0, "untested": 0, "source_fails": 0}

    def passes(self, source: Source, text: str) -> bool:
        program = f"{text}\n\n{source.test}\n\ncheck({source.entry_point})\n"
        try:
            done = subprocess.run(
                [sys.executable, "-I", "-c", program],
                cwd=self.workdir,
                capture_output=True,
                timeout=TEST_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return False
        return done.returncode == 0

    def accept(self, case: Case) -> bool:
        """Whether the case is a bug: its tests fail on the mutant (and pass on the original)."""
        source = case.source
        if not source.test:
            self.counts["untested"] += 1
            return True
        if source.name not in self._originals:
            self._originals[source.name] = self.passes(source, source.text)
        if not self._originals[source.name]:
            self.counts["source_fails"] += 1
            return False
        caught = not self.passes(source, case.mutant.text)
        self.counts["caught" if caught else "not_caught"] += 1
        return caught


# --- the server --------------------------------------------------------------------------------


@dataclass
class Watch:
    """What the server published for one saved document, timed from the save."""

    saved_at: float
    published: list[tuple[float, list[lsp.Diagnostic]]] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)  # the review's progress ended
    any_published: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False


class Recorder:
    """Client handlers: every diagnostics push with its time; the end of each review."""

    def __init__(self) -> None:
        self.watches: dict[str, Watch] = {}  # uri -> the save being watched
        self._by_name: dict[str, str] = {}  # relative path -> uri
        self._tokens: dict[str, str] = {}  # progress token -> uri

    def watch(self, uri: str, relative: str) -> Watch:
        self._by_name[relative] = uri
        self.watches[uri] = Watch(time.perf_counter())
        return self.watches[uri]

    def published(self, params: lsp.PublishDiagnosticsParams) -> None:
        watch = self.watches.get(params.uri)
        if watch is not None and not watch.closed:
            watch.published.append((time.perf_counter(), list(params.diagnostics)))
            watch.any_published.set()

    def progress(self, params: lsp.ProgressParams) -> None:
        value = params.value if isinstance(params.value, dict) else {}
        token = str(params.token)
        if value.get("kind") == "begin" and value.get("title") == REVIEW_TITLE:
            uri = self._by_name.get(str(value.get("message") or ""))
            if uri is not None:
                self._tokens[token] = uri
        elif value.get("kind") == "end" and token in self._tokens:
            watch = self.watches.get(self._tokens.pop(token))
            if watch is not None:
                watch.done.set()


@asynccontextmanager
async def server(root: Path, recorder: Recorder, **init_options: Any) -> AsyncIterator[Any]:
    client = LanguageClient()
    # Plain functions: pygls marks each handler with attributes, which a bound method refuses.
    features = {
        **DEFAULT_CLIENT_FEATURES,
        lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS: lambda params: recorder.published(params),
        lsp.PROGRESS: lambda params: recorder.progress(params),
    }
    for method, handler in features.items():
        client.feature(method)(handler)
    config_home = Path(tempfile.mkdtemp(prefix="memlsp-bench-cfg-"))
    env = {**os.environ, "XDG_CONFIG_HOME": str(config_home)}
    await client.start_io(sys.executable, "-m", "memlsp.server.cli", "serve", env=env)
    caps = capabilities()
    assert caps.text_document is not None
    caps.text_document.diagnostic = None  # push diagnostics: each one can be timed
    await client.initialize_session(
        lsp.InitializeParams(
            capabilities=caps,
            root_uri=root.as_uri(),
            workspace_folders=[lsp.WorkspaceFolder(uri=root.as_uri(), name=root.name)],
            initialization_options=init_options,
        )
    )
    try:
        yield client
    finally:
        await asyncio.wait_for(client.shutdown_session(), 30)


async def review(
    client: LanguageClient, recorder: Recorder, root: Path, name: str, text: str, timeout: float
) -> Watch | None:
    """Open, save and wait for the review of one file; None when it did not end in time."""
    path = root / name
    path.write_text(text, encoding="utf-8")
    uri = open_document(client, path, text, "python")
    watch = recorder.watch(uri, name)
    client.text_document_did_save(
        lsp.DidSaveTextDocumentParams(text_document=lsp.TextDocumentIdentifier(uri=uri))
    )
    try:
        await asyncio.wait_for(watch.done.wait(), timeout)
        # The progress end may overtake the review's publish (both are queued on the loop).
        await asyncio.wait_for(watch.any_published.wait(), PUBLISH_GRACE_S)
        await asyncio.sleep(0.05)  # a publish right behind it belongs to this review too
    except TimeoutError:
        return None
    finally:
        watch.closed = True
        close_document(client, uri)
    return watch


# --- scores ------------------------------------------------------------------------------------


def final(watch: Watch) -> list[lsp.Diagnostic]:
    return watch.published[-1][1] if watch.published else []


def key(d: lsp.Diagnostic) -> tuple[str, str, int]:
    return (d.source or "", str(d.code or ""), d.range.start.line)


def on_line(d: lsp.Diagnostic, line: int) -> bool:
    return d.range.start.line <= line <= d.range.end.line


def times(watch: Watch, keep: Callable[[lsp.Diagnostic], bool]) -> tuple[float, float] | None:
    """Seconds from the save to the first and the last publish holding such a diagnostic."""
    stamps = [at - watch.saved_at for at, diags in watch.published if any(map(keep, diags))]
    return (stamps[0], stamps[-1]) if stamps else None


def seconds(samples: list[float]) -> dict[str, Any]:
    if not samples:
        return {"n": 0}
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "n": len(ordered),
        "p50_s": round(statistics.median(ordered), 3),
        "p95_s": round(p95, 3),
        "max_s": round(ordered[-1], 3),
    }


@dataclass
class Tally:
    cases: int = 0
    hits: int = 0
    findings: int = 0  # in the mutants
    on_bug: int = 0
    clean_files: int = 0
    clean_findings: int = 0
    first: list[float] = field(default_factory=list)
    last: list[float] = field(default_factory=list)
    by_kind: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))

    def timed(self, watch: Watch, keep: Callable[[lsp.Diagnostic], bool]) -> None:
        span = times(watch, keep)
        if span is not None:
            self.first.append(span[0])
            self.last.append(span[1])

    def report(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "hits": self.hits,
            "recall": round(self.hits / self.cases, 3) if self.cases else None,
            "findings": self.findings,
            "on_bug_line": self.on_bug,
            "precision": round(self.on_bug / self.findings, 3) if self.findings else None,
            "clean_files": self.clean_files,
            "false_findings_per_clean_file": (
                round(self.clean_findings / self.clean_files, 3) if self.clean_files else None
            ),
            "seconds_to_first": seconds(self.first),
            "seconds_to_last": seconds(self.last),
            "recall_by_kind": {
                kind: round(hit / n, 3) for kind, (hit, n) in sorted(self.by_kind.items()) if n
            },
        }


def score_mutant(
    tally: Tally, keep: Callable[[lsp.Diagnostic], bool], case: Case, watch: Watch, clean: Watch
) -> bool:
    mine = [d for d in final(watch) if keep(d)]
    before = {key(d) for d in final(clean) if keep(d)}
    bug = case.mutant.line
    found = [d for d in mine if on_line(d, bug) and key(d) not in before]
    hit = bool(found)
    tally.cases += 1
    tally.hits += hit
    tally.findings += len(mine)
    tally.on_bug += sum(on_line(d, bug) for d in mine)
    tally.by_kind[case.mutant.kind][0] += hit
    tally.by_kind[case.mutant.kind][1] += 1
    tally.timed(watch, keep)
    return hit


def count_codes(
    codes: dict[str, Counter[str]], diagnostics: list[lsp.Diagnostic], bug: int | None
) -> None:
    """Per model finding code: findings in mutants, those on the bug line, those in clean files."""
    for d in diagnostics:
        if d.source != MODEL_SOURCE:
            continue
        counter = codes[str(d.code)]
        if bug is None:
            counter["clean_findings"] += 1
        else:
            counter["findings"] += 1
            counter["on_bug_line"] += on_line(d, bug)


# --- main --------------------------------------------------------------------------------------


def select(args: argparse.Namespace, runner: TestRunner | None) -> list[Case]:
    kinds = args.kinds.split(",") if args.kinds else list(KINDS)
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise SystemExit(f"unknown kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
    per_kind = args.per_kind
    if args.limit is not None:
        per_kind = min(per_kind, math.ceil(args.limit / len(kinds)))
    accept = runner.accept if runner is not None else None
    cases = build_cases(load_sources(), per_kind, args.seed, kinds, accept)
    return cases[: args.limit] if args.limit is not None else cases


async def run(args: argparse.Namespace) -> dict[str, Any]:
    runner = None if args.no_verify else TestRunner()
    cases = select(args, runner)
    originals = list({case.source.name: case.source for case in cases}.values())
    root = Path(tempfile.mkdtemp(prefix="memlsp-bench-bugs-")).resolve()
    recorder = Recorder()
    quality = {"model": args.model, "enabled": not args.linters_only, **json.loads(args.quality)}
    tallies = {group: Tally() for group in GROUPS}
    codes: dict[str, Counter[str]] = defaultdict(Counter)
    details: list[dict[str, Any]] = []
    timeouts = 0
    async with server(
        root, recorder, agents={"quality": quality}, memory={"enabled": False}
    ) as client:
        # The model's load is not a review's latency.
        await review(client, recorder, root, "warm_up.py", "def f(x):\n    return x\n", 900)
        clean: dict[str, Watch] = {}
        for source in originals:
            watch = await review(client, recorder, root, f"{source.name}.py", source.text, 900)
            if watch is None:
                timeouts += 1
                continue
            clean[source.name] = watch
            count_codes(codes, final(watch), None)
            for group, keep in GROUPS.items():
                tallies[group].clean_files += 1
                tallies[group].clean_findings += sum(map(keep, final(watch)))
                tallies[group].timed(watch, keep)
        for i, case in enumerate(cases):
            name = f"{case.source.name}_{i}.py"  # nothing in the name tells the bug
            watch = await review(client, recorder, root, name, case.mutant.text, args.timeout)
            if watch is None or case.source.name not in clean:
                timeouts += 1
                continue
            hits = {
                group: score_mutant(tallies[group], keep, case, watch, clean[case.source.name])
                for group, keep in GROUPS.items()
            }
            count_codes(codes, final(watch), case.mutant.line)
            sys.stderr.write(f"{i + 1}/{len(cases)} {case.name}: {hits}\n")
            if args.details:
                details.append(
                    {
                        "case": case.name,
                        "line": case.mutant.line,
                        "change": case.mutant.description,
                        "hits": hits,
                        "diagnostics": [
                            {"line": d.range.start.line, "source": d.source, "message": d.message}
                            for d in final(watch)
                        ],
                    }
                )
        agent = plain(await client.protocol.send_request_async("memlsp/status", {}))
    out: dict[str, Any] = {
        "model": None if args.linters_only else args.model,
        "seed": args.seed,
        "path": "real server over stdio (didOpen + didSave, push diagnostics)",
        "cases": len(cases),
        "clean_files": len(originals),
        "kinds": dict(sorted(Counter(c.mutant.kind for c in cases).items())),
        "verification": runner.counts if runner is not None else None,
        "timeouts": timeouts,
        "sources": {group: tally.report() for group, tally in tallies.items()},
        "model_codes": {code: dict(counter) for code, counter in sorted(codes.items())},
        "quality_config": quality,
        "agent_stats": agent.get("quality"),
    }
    if args.details:
        out["details"] = details
    return out


def main() -> int:
    config = load_config(None, user_file=Path("/nonexistent/memlsp.yaml")).config
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=None, help="mutants to review (a prefix)")
    parser.add_argument("--kinds", default="", help=f"comma-separated, of: {', '.join(KINDS)}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=config.agents.quality.model)
    parser.add_argument("--per-kind", type=int, default=30, help="mutants of each kind at most")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per review")
    parser.add_argument("--linters-only", action="store_true", help="no model review")
    parser.add_argument(
        "--quality",
        default="{}",
        help="more agents.quality settings as JSON, e.g. '{\"surprise\": false}' or "
        "'{\"categories\": []}' (no instruct review)",
    )
    parser.add_argument("--no-verify", action="store_true", help="keep mutants tests miss")
    parser.add_argument("--details", action="store_true", help="every case's diagnostics")
    args = parser.parse_args()
    require(HUMANEVAL)
    started = time.perf_counter()
    load_before = os.getloadavg()
    out = asyncio.run(run(args))
    out["seconds"] = round(time.perf_counter() - started, 1)
    out["load_average"] = {"before": load_before, "after": os.getloadavg()}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
