"""Quality agent benchmark: review latency by file size, and precision/recall on planted bugs.

Prints JSON. Usage:
  .venv/bin/python tests/benchmarks/bench_review.py [--model qwen2.5-coder-1.5b] [--runs 3]
      [--sizes small,medium,large]

Files are assembled from realistic functions (an inventory/order service), some with one
planted bug each; the planted lines are known, nothing in the file marks them.

Latency, per size, each run on a fresh document (first review; the text differs per run so no
cache answers): ``first`` (tools + model), ``edit`` (a second save with one line in the middle
of the file changed: a small file goes to the model whole again, its KV cache reused up to the
edit; a large one sends that function and, budget allowing, chunks not reviewed yet), ``cached``
(a third save of the same text: the hash cache).

Precision/recall per size and overall, on the published findings once every chunk has been
reviewed (a large file takes several saves within the token budget; each later save only
touches a trailing comment): precision = findings on planted lines / all findings, recall =
planted lines with a finding / planted lines. A finding on a real but unplanted problem counts
against precision, so precision is a lower bound. Measured for the model alone (no tools), the
linters alone (ruff + py_compile through the tool executor), and both (the agent's output).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from common import percentiles

from memlsp.agents.review.quality import QualityAgent
from memlsp.agents.review.tools import ToolExecutor
from memlsp.agents.review.types import ReviewFinding, ReviewRequest, ReviewResult
from memlsp.config import load_config
from memlsp.config.schema import QualityConfig
from memlsp.models import ModelPool

BUG = "  #@BUG"

CLEAN = [
    '''def parse_sku(raw):
    """Split 'AB-123' into its prefix and number."""
    prefix, _, number = raw.partition("-")
    if not prefix or not number.isdigit():
        raise ValueError(f"bad SKU: {raw!r}")
    return prefix.upper(), int(number)''',
    '''def format_price(cents, currency="EUR"):
    units, rest = divmod(cents, 100)
    return f"{units}.{rest:02d} {currency}"''',
    """class Inventory:
    def __init__(self):
        self._stock = {}

    def add(self, sku, quantity):
        if quantity <= 0:
            raise ValueError("quantity must be positive")
        self._stock[sku] = self._stock.get(sku, 0) + quantity

    def take(self, sku, quantity):
        available = self._stock.get(sku, 0)
        if quantity > available:
            raise LookupError(f"only {available} of {sku} left")
        self._stock[sku] = available - quantity
        return quantity""",
    '''def chunked(items, size):
    """Yield lists of at most `size` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]''',
    """def merge_orders(first, second):
    merged = dict(first)
    for sku, quantity in second.items():
        merged[sku] = merged.get(sku, 0) + quantity
    return merged""",
    """def read_lines(path):
    with open(path, encoding="utf-8") as handle:
        return [line.rstrip("\\n") for line in handle]""",
    """def discount(total, percent):
    if not 0 <= percent <= 100:
        raise ValueError("percent must be within 0..100")
    return round(total * (100 - percent) / 100, 2)""",
    """class OrderLog:
    def __init__(self, path):
        self.path = path

    def append(self, order_id, status):
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(f"{order_id}\\t{status}\\n")

    def statuses(self):
        with open(self.path, encoding="utf-8") as handle:
            return dict(line.rstrip("\\n").split("\\t") for line in handle)""",
    """def average_basket(orders):
    if not orders:
        return 0.0
    return sum(len(order["items"]) for order in orders) / len(orders)""",
    '''def normalise_email(address):
    local, _, domain = address.strip().partition("@")
    return f"{local}@{domain.lower()}"''',
]

BUGGY = [
    (
        "mutable-default",
        """def add_line(order, line, lines=[]):  #@BUG
    lines.append((order, line))
    return lines""",
    ),
    (
        "none-comparison",
        """def customer_name(customer):
    if customer.get("name") == None:  #@BUG
        return "anonymous"
    return customer["name"].title()""",
    ),
    (
        "bare-except",
        """def load_prices(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except:  #@BUG
        return {}""",
    ),
    (
        "unused-variable",
        """def order_weight(order):
    count = len(order["items"])  #@BUG
    weight = 0
    for item in order["items"]:
        weight += item["weight"] * item["quantity"]
    return weight""",
    ),
    (
        "off-by-one",
        """def last_orders(orders, n):
    recent = []
    for i in range(len(orders) - n, len(orders) + 1):  #@BUG
        recent.append(orders[i])
    return recent""",
    ),
    (
        "resource-leak",
        """def export_csv(rows, path):
    handle = open(path, "w", encoding="utf-8")  #@BUG
    for row in rows:
        handle.write(",".join(str(value) for value in row) + "\\n")""",
    ),
    (
        "security",
        """def apply_rule(order, rule_text):
    return eval(rule_text, {"order": order})  #@BUG""",
    ),
    (
        "wrong-return",
        """def find_order(orders, order_id):
    for order in orders:
        if order["id"] == order_id:
            order  #@BUG
    return None""",
    ),
]

# (clean functions, buggy functions) per size.
SIZES = {"small": (2, 4), "medium": (10, 8), "large": (40, 8)}


def build_file(size: str, seed: int) -> tuple[str, set[int]]:
    """A module of the given size and the 0-based lines of its planted bugs."""
    n_clean, n_buggy = SIZES[size]
    rng = random.Random(seed)
    clean = [CLEAN[i % len(CLEAN)] for i in range(n_clean)]
    # Repeated clean functions get fresh names, as in a real module.
    clean = [
        code.replace("(", f"_{i}(", 1) if i >= len(CLEAN) else code for i, code in enumerate(clean)
    ]
    buggy = [code for _, code in BUGGY[:n_buggy]]
    blocks = clean + buggy
    rng.shuffle(blocks)
    header = f'"""Order service helpers (build {seed})."""\n\nimport json\n\n\n'
    lines = header.split("\n")[:-1]
    planted: set[int] = set()
    for block in blocks:
        for line in block.split("\n"):
            if line.endswith(BUG):
                planted.add(len(lines))
                line = line[: -len(BUG)]
            lines.append(line)
        lines += ["", ""]
    return "\n".join(lines), planted


def score(findings: list[ReviewFinding], planted: set[int]) -> dict[str, Any]:
    on_planted = [f for f in findings if any(f.line <= p <= f.end_line for p in planted)]
    hit = {p for p in planted if any(f.line <= p <= f.end_line for f in findings)}
    return {"findings": len(findings), "on_planted": len(on_planted), "planted_hit": len(hit)}


def ratios(counts: dict[str, int], planted: int) -> dict[str, Any]:
    findings = counts["findings"]
    return {
        **counts,
        "planted": planted,
        "precision": round(counts["on_planted"] / findings, 3) if findings else None,
        "recall": round(counts["planted_hit"] / planted, 3) if planted else None,
    }


def add(total: dict[str, int], part: dict[str, Any]) -> None:
    for key in ("findings", "on_planted", "planted_hit"):
        total[key] = total.get(key, 0) + int(part[key])


class Workspace:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="memlsp-bench-review-")).resolve()
        self.version = 0

    def save(self, name: str, text: str) -> ReviewRequest:
        path = self.root / name
        path.write_text(text, encoding="utf-8")
        self.version += 1
        return ReviewRequest(path.as_uri(), str(path), name, "python", text, self.version)


def review(agent: QualityAgent, request: ReviewRequest) -> ReviewResult:
    return agent.review(request, threading.Event())


def full_review(agent: QualityAgent, ws: Workspace, name: str, text: str) -> ReviewResult:
    """Save until no chunk is left unreviewed; the last result holds every finding."""
    result = review(agent, ws.save(name, text))
    touch = 0
    while any("left for later saves" in note for note in result.notes) and touch < 20:
        touch += 1
        result = review(agent, ws.save(name, f"{text}\n# saved {touch}\n"))
    return result


def edit_middle(text: str) -> str:
    """The text with one statement in the middle of the file changed, as a typical save."""
    lines = text.split("\n")
    body = [i for i, line in enumerate(lines) if line.startswith("    ") and line.strip()]
    row = body[len(body) // 2]
    lines[row] += "  # checked"
    return "\n".join(lines)


def latency(agent: QualityAgent, ws: Workspace, size: str, runs: int) -> dict[str, Any]:
    first: list[float] = []
    edit: list[float] = []
    cached: list[float] = []
    lines = 0
    for run in range(runs):
        text, _ = build_file(size, seed=1000 + run)
        lines = text.count("\n") + 1
        name = f"lat_{size}_{run}.py"
        first.append(review(agent, ws.save(name, text)).seconds)
        edited = edit_middle(text)
        edit.append(review(agent, ws.save(name, edited)).seconds)
        result = review(agent, ws.save(name, edited))
        assert result.from_cache
        cached.append(result.seconds)
    return {
        "lines": lines,
        "first": percentiles(first),
        "edit": percentiles(edit),
        "cached": percentiles(cached),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    config = load_config(None, user_file=Path("/nonexistent/memlsp.yaml")).config
    parser.add_argument("--model", default=config.agents.quality.model)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default="small,medium,large")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="override the model's n_threads (0: the catalogue's). On a machine whose cores "
        "are busy with other work, llama.cpp with one thread per core slows down many times.",
    )
    args = parser.parse_args()
    sizes = args.sizes.split(",")
    models = config.models
    if args.threads:
        models = {k: dataclasses.replace(v, n_threads=args.threads) for k, v in models.items()}
    pool = ModelPool(models, config.pool)
    quality = QualityConfig(model=args.model, instruct=True)  # what this benchmark measures
    ws = Workspace()
    out: dict[str, Any] = {
        "model": args.model,
        "runs": args.runs,
        "n_threads": args.threads or models[args.model].n_threads or os.cpu_count(),
        "load_average_before": os.getloadavg(),
        "latency": {},
        "quality": {},
    }
    started = time.perf_counter()
    with ToolExecutor.from_config(config.agents.tools, ws.root) as tools:
        with pool.acquire(args.model):
            pass  # load once: the load is not a review's latency
        agent = QualityAgent(pool, quality, tools)
        for size in sizes:
            out["latency"][size] = latency(agent, ws, size, args.runs)
            sys.stderr.write(f"latency {size}: {json.dumps(out['latency'][size])}\n")
        totals: dict[str, dict[str, int]] = {"llm": {}, "tools": {}, "combined": {}}
        planted_total = 0
        for size in sizes:
            text, planted = build_file(size, seed=7)
            name = f"q_{size}.py"
            llm_only = QualityAgent(pool, quality, None)
            llm = full_review(llm_only, ws, name, text).findings
            combined = full_review(QualityAgent(pool, quality, tools), ws, "c_" + name, text)
            ws.save(name, text)  # the linters read the saved file
            tool_findings = [f for r in tools.run_all(ws.root / name, "python") for f in r.findings]
            parts = {
                "llm": score(list(llm), planted),
                "tools": score(
                    [
                        ReviewFinding(
                            f.line,
                            f.column,
                            f.end_line,
                            f.end_column,
                            f.severity,
                            f.code,
                            f.message,
                            f.source,
                            "tool",
                        )
                        for f in tool_findings
                    ],
                    planted,
                ),
                "combined": score(list(combined.findings), planted),
            }
            out["quality"][size] = {k: ratios(v, len(planted)) for k, v in parts.items()}
            for key, part in parts.items():
                add(totals[key], part)
            planted_total += len(planted)
            sys.stderr.write(f"quality {size}: {json.dumps(out['quality'][size])}\n")
        out["quality"]["all"] = {k: ratios(v, planted_total) for k, v in totals.items()}
        out["agent_stats"] = agent.stats()
    out["seconds"] = round(time.perf_counter() - started, 1)
    out["load_average_after"] = os.getloadavg()
    pool.close()
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
