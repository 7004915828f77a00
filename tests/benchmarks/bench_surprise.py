"""Calibration of the surprise reviewer (agents/review/surprise.py): in process, no server.

Prints JSON. Usage:
  .venv/bin/python tests/benchmarks/bench_surprise.py [--limit N] [--seed 0]
      [--model qwen2.5-coder-0.5b] [--per-kind 30] [--candidates 4] [--dump FILE]
  .venv/bin/python tests/benchmarks/bench_surprise.py --analyze FILE  (no model: scores a dump)

The cases are bench_bugs.py's (tests/mutation_cases.py: one-line mutants that the sources'
tests catch, balanced over the kinds; ``--limit`` takes a balanced prefix) plus the unmutated
originals. Every file is reviewed whole with the threshold at -inf: each candidate line comes
back with its features (first-pass gap, FIM log-probabilities of the written and the proposed
line, whether the proposal differs and parses), and the findings a threshold would keep are
computed here for a grid of thresholds and a few ways to score, without running the model
again (``--dump`` keeps the features; ``--analyze`` scores them again).

For each scoring and threshold: recall (a finding on the bug line), precision (findings on the
bug line / findings in the mutants), false findings per clean original, recall by kind. The
sources are split in two halves (alternate sources by name): the threshold is chosen on the
first (the lowest one that keeps false findings per clean file <= 0.1) and reported on both.
Seconds per file (p50/p95), and the seconds of a ~150-line file (HumanEval programs one after
another).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_bugs import TestRunner, seconds, select
from common import require
from mutation_cases import HUMANEVAL, load_sources

from memlsp.agents.review.surprise import SMALL_EDIT, Candidate, SurpriseReviewer
from memlsp.agents.review.token_scores import changed_lexemes
from memlsp.config import load_config

DEFAULTS = load_config(None, user_file=Path("/nonexistent/memlsp.yaml")).config

FALSE_PER_CLEAN = 0.1
THRESHOLDS = [round(0.5 * i, 1) for i in range(0, 41)]


def _features(c: Candidate) -> dict[str, Any]:
    return {
        "line": c.line,
        "gap": round(c.gap, 3),
        "written_logp": round(c.written_logp, 3),
        "proposal_logp": round(c.proposal_logp, 3),
        "differs": c.differs,
        "parses": c.parses,
        "knowable": c.knowable,
        "same_code": c.same_code,
        "edit": c.edit,
        "written": c.written,
        "proposal": c.proposal,
    }


# Ways to score a candidate from its features (what the reviewer's threshold applies to).
SCORINGS: dict[str, Callable[[dict[str, Any]], float]] = {
    "delta": lambda f: f["proposal_logp"] - f["written_logp"],
    "gap": lambda f: f["gap"],
    "delta+gap/2": lambda f: f["proposal_logp"] - f["written_logp"] + f["gap"] / 2,
    "min(delta,gap)": lambda f: min(f["proposal_logp"] - f["written_logp"], f["gap"]),
}


def findings(
    cands: list[dict[str, Any]], score: Callable[[dict[str, Any]], float], t: float, top: int
) -> list[int]:
    kept = [
        c
        for c in cands
        if c["differs"] and c["parses"] and c.get("knowable", True) and score(c) >= t
    ]
    kept.sort(key=lambda c: -score(c))
    return [c["line"] for c in kept[:top]]


def metrics(
    files: list[dict[str, Any]], score: Callable[[dict[str, Any]], float], t: float, top: int
) -> dict[str, Any]:
    mutants = [f for f in files if f["kind"] != "clean"]
    clean = [f for f in files if f["kind"] == "clean"]
    hits = on_bug = total = 0
    by_kind: dict[str, list[int]] = {}
    for f in mutants:
        lines = findings(f["candidates"], score, t, top)
        hit = f["bug_line"] in lines
        hits += hit
        on_bug += sum(line == f["bug_line"] for line in lines)
        total += len(lines)
        by_kind.setdefault(f["kind"], [0, 0])
        by_kind[f["kind"]][0] += hit
        by_kind[f["kind"]][1] += 1
    false = sum(len(findings(f["candidates"], score, t, top)) for f in clean)
    return {
        "threshold": t,
        "recall": round(hits / len(mutants), 3) if mutants else None,
        "precision": round(on_bug / total, 3) if total else None,
        "false_per_clean": round(false / len(clean), 3) if clean else None,
        "mutants": len(mutants),
        "clean": len(clean),
        "recall_by_kind": {k: round(h / n, 3) for k, (h, n) in sorted(by_kind.items())},
    }


def two_thresholds(files: list[dict[str, Any]], top: int) -> dict[str, Any]:
    """The product's rule (``Candidate.finds``): small edits (<= SMALL_EDIT lexemes) against
    one threshold, rewrites against another, restyles (same syntax tree) never. The pair is
    chosen where both halves keep <= 0.1 false findings per clean file, for the best recall of
    the worse half."""
    for f in files:
        for c in f["candidates"]:
            if "edit" not in c:  # a dump from before these features
                c["edit"] = changed_lexemes(c["written"], c["proposal"] or "")
    names = sorted({f["source"] for f in files})
    half_of = {name: i % 2 for i, name in enumerate(names)}
    halves = [[f for f in files if half_of[f["source"]] == h] for h in (0, 1)]

    def score(c: dict[str, Any]) -> float:
        return float(min(c["proposal_logp"] - c["written_logp"], c["gap"]))

    def rule(small: float, rewrite: float) -> Callable[[dict[str, Any]], float]:
        def adjusted(c: dict[str, Any]) -> float:  # below both thresholds when not a finding
            if c.get("same_code"):
                return float("-inf")
            bar = small if c["edit"] <= SMALL_EDIT else rewrite
            return score(c) - bar  # >= 0: a finding

        return adjusted

    grid = [round(0.25 * i, 2) for i in range(20, 41)]
    best: tuple[float, float, float] | None = None
    for small in grid:
        for rewrite in [g for g in grid if g >= small]:
            a, b = (metrics(h, rule(small, rewrite), 0.0, top) for h in halves)
            if max(a["false_per_clean"], b["false_per_clean"]) > FALSE_PER_CLEAN:
                continue
            worse = min(a["recall"], b["recall"])
            if best is None or worse > best[0]:
                best = (worse, small, rewrite)
    if best is None:
        return {"chosen": None}
    _, small, rewrite = best
    return {
        "small_edit_lexemes": SMALL_EDIT,
        "chosen": {"threshold": small, "rewrite_threshold": rewrite},
        "half_a": metrics(halves[0], rule(small, rewrite), 0.0, top),
        "half_b": metrics(halves[1], rule(small, rewrite), 0.0, top),
        "all": metrics(files, rule(small, rewrite), 0.0, top),
    }


def calibrate(files: list[dict[str, Any]], top: int) -> dict[str, Any]:
    names = sorted({f["source"] for f in files})
    half_of = {name: i % 2 for i, name in enumerate(names)}
    halves = [[f for f in files if half_of[f["source"]] == h] for h in (0, 1)]
    out: dict[str, Any] = {}
    for name, score in SCORINGS.items():
        grid = [metrics(files, score, t, top) for t in THRESHOLDS]
        fit = next(
            (
                t
                for t in THRESHOLDS
                if metrics(halves[0], score, t, top)["false_per_clean"] <= FALSE_PER_CLEAN
            ),
            None,
        )
        out[name] = {
            "grid": [
                {k: g[k] for k in ("threshold", "recall", "precision", "false_per_clean")}
                for g in grid
            ],
            "threshold_for_false_per_clean_le_0.1_on_half_a": fit,
            "half_a": None if fit is None else metrics(halves[0], score, fit, top),
            "half_b": None if fit is None else metrics(halves[1], score, fit, top),
            "all": None if fit is None else metrics(files, score, fit, top),
        }
    return out


def long_file() -> str:
    """A ~150-line file: HumanEval programs one after another."""
    parts, count = [], 0
    for source in load_sources():
        if count >= 150:
            break
        parts.append(source.text.rstrip() + "\n\n")
        count += source.text.rstrip().count("\n") + 3
    return "".join(parts)


def edited(text: str, fraction: float) -> str:
    """``text`` with a comment added to the first non-blank line from ``fraction`` down."""
    lines = text.split("\n")
    row = int(len(lines) * fraction)
    while not lines[row].strip():
        row += 1
    lines[row] = lines[row] + "  # edited"
    return "\n".join(lines)


def collect(args: argparse.Namespace) -> dict[str, Any]:
    from fim_pool import fim_pool

    runner = None if args.no_verify else TestRunner()
    args.kinds = ""
    cases = select(args, runner)
    originals = list({case.source.name: case.source for case in cases}.values())
    pool = fim_pool()
    reviewer = SurpriseReviewer(
        pool,
        args.model,
        float("-inf"),
        args.top,
        candidates=args.candidates,
        suffix_tokens=args.suffix_tokens,
        batch=args.batch,
    )
    cancel = threading.Event()
    reviewer.candidates("def f(x):\n    return x\n", "python", None, cancel)  # load, warm
    files: list[dict[str, Any]] = []
    times: list[float] = []

    def review(source: str, kind: str, text: str, bug_line: int, change: str) -> None:
        started = time.perf_counter()
        cands = reviewer.candidates(text, "python", None, cancel)
        times.append(time.perf_counter() - started)
        files.append(
            {
                "source": source,
                "kind": kind,
                "bug_line": bug_line,
                "change": change,
                "seconds": round(times[-1], 3),
                "candidates": [_features(c) for c in cands],
            }
        )

    for source in originals:
        review(source.name, "clean", source.text, -1, "")
    for i, case in enumerate(cases):
        m = case.mutant
        review(case.source.name, m.kind, m.text, m.line, m.description)
        sys.stderr.write(f"{i + 1}/{len(cases)} {case.name} {times[-1]:.2f}s\n")
    text = long_file()
    started = time.perf_counter()
    reviewer.candidates(text, "python", None, cancel)
    big_s = time.perf_counter() - started

    # As configured (the threshold the server uses): only lines whose first-pass gap reaches
    # it get the second pass. A first save (a text the reviewer has not seen), then a save after
    # one line two thirds down changed (the document's last first pass is kept: only what
    # follows the change is evaluated again). Then as the server does with
    # agents.quality.surprise_ahead: the file scored as it opened (untimed: the user reads it),
    # then saved after one edit a third or two thirds down.
    def product() -> SurpriseReviewer:
        return SurpriseReviewer(
            pool, args.model, args.threshold, args.top, rewrite_threshold=args.rewrite_threshold
        )

    first = "# first save\n" + text

    key = "file:///150_lines.py"
    configured: dict[str, float] = {}
    saved = product()
    for label, version in (("first_save", first), ("save_after_an_edit", edited(first, 2 / 3))):
        started = time.perf_counter()
        saved.review(version, "python", None, cancel, key)
        configured[label] = round(time.perf_counter() - started, 3)
    for label, fraction in (("one_third", 1 / 3), ("two_thirds", 2 / 3)):
        ahead = product()
        ahead.score_ahead(first, "python", cancel, key)
        started = time.perf_counter()
        ahead.review(edited(first, fraction), "python", None, cancel, key)
        configured[f"scored_ahead_then_edit_{label}_down"] = round(time.perf_counter() - started, 3)
    pool.close()
    return {
        "model": args.model,
        "seed": args.seed,
        "candidates_per_file": args.candidates,
        "suffix_tokens": args.suffix_tokens,
        "batch": args.batch,
        "verification": runner.counts if runner is not None else None,
        "seconds_per_file": seconds(times),
        "seconds_150_lines": {"lines": text.count("\n"), "seconds": round(big_s, 3)},
        "seconds_150_lines_as_configured": {"threshold": args.threshold, **configured},
        "reviewer_stats": reviewer.stats(),
        "files": files,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, default=None, help="mutants (a balanced prefix)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--per-kind", type=int, default=30)
    parser.add_argument("--candidates", type=int, default=4, help="lines scored in pass 2")
    parser.add_argument("--suffix-tokens", type=int, default=160)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--top", type=int, default=1, help="findings per file at most")
    parser.add_argument(
        "--threshold",
        type=float,
        default=load_config(
            None, user_file=Path("/nonexistent/memlsp.yaml")
        ).config.agents.quality.surprise_threshold,
        help="the server's threshold, for the as-configured timing",
    )
    parser.add_argument(
        "--rewrite-threshold",
        type=float,
        default=DEFAULTS.agents.quality.surprise_rewrite_threshold,
        help="the server's threshold for rewrites, for the as-configured timing",
    )
    parser.add_argument("--no-verify", action="store_true", help="keep mutants tests miss")
    parser.add_argument("--dump", type=Path, help="write the raw candidates here")
    parser.add_argument("--analyze", type=Path, help="score a dump again (no model)")
    args = parser.parse_args()
    started = time.perf_counter()
    if args.analyze:
        raw = json.loads(args.analyze.read_text())
    else:
        require(HUMANEVAL)
        load_before = os.getloadavg()
        raw = collect(args)
        raw["load_average"] = {"before": load_before, "after": os.getloadavg()}
        raw["collect_seconds"] = round(time.perf_counter() - started, 1)
        if args.dump:
            args.dump.write_text(json.dumps(raw))
    files = raw["files"]
    out = {k: v for k, v in raw.items() if k != "files"}
    out["top_findings_per_file"] = args.top
    out["mutants"] = sum(f["kind"] != "clean" for f in files)
    out["clean_files"] = sum(f["kind"] == "clean" for f in files)
    out["scorings"] = calibrate(files, args.top)
    out["two_thresholds"] = two_thresholds(files, args.top)
    out["ceiling_bug_line_is_candidate"] = round(
        sum(
            any(
                c["line"] == f["bug_line"] and c["differs"] and c["parses"] for c in f["candidates"]
            )
            for f in files
            if f["kind"] != "clean"
        )
        / max(1, out["mutants"]),
        3,
    )
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
