"""Typing soak through the real server over stdio (issue #10): inline latency per window, counts,
server RSS (max, slope over the second half) against the pool budget plus a measured overhead,
then two editors on one workspace. Prints JSON.

Usage:
  .venv/bin/python tests/benchmarks/bench_soak.py [--duration 1800] [--window 300]
      [--pair-duration 120] [--model qwen2.5-coder-0.5b] [--quality-model NAME]
      [--save-every 30] [--external-every 45] [--rss-every 5] [--debounce 0.05]
      [--drain-timeout 300] [--seed 0] [--server-log PATH]

The driver lives in tests/soak_driver.py (tests/stress/test_soak.py runs a 2-minute version of
it); common puts tests/ on the import path.
"""

from __future__ import annotations

import json
import sys

import common  # noqa: F401  (puts tests/ on the import path)
import soak_driver


def main() -> int:
    result = soak_driver.main(sys.argv[1:])
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
