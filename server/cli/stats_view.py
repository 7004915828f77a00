"""`memlsp stats`: the lasting statistics, read straight from the file (no server needed)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from memlsp.server.lsp.stats_store import StatsUnreadable, WeekRow, read_weeks

_COLUMNS = ("week", "language", "model", "shown", "accepted", "partial", "rate", "median ms")


@dataclass
class StatsReport:
    file: Path
    weeks: int
    enabled: bool
    rows: list[WeekRow] = field(default_factory=list)
    exists: bool = True
    error: str | None = None

    @property
    def exit_code(self) -> int:
        return 1 if self.error else 0

    def as_json(self) -> str:
        data: dict[str, Any] = {
            "file": str(self.file),
            "exists": self.exists,
            "enabled": self.enabled,
            "weeks": self.weeks,
            "rows": [row.as_dict() for row in self.rows],
        }
        if self.error:
            data["error"] = self.error
        return json.dumps(data, indent=2)

    def as_text(self) -> str:
        lines = []
        if not self.enabled:
            lines.append("statistics are off (server.statistics: false): nothing new is recorded")
        if not self.exists:
            lines.append(f"no statistics yet: {self.file} does not exist")
        elif self.error:
            lines.append(
                f"{self.file} cannot be read ({self.error}); a server moves a corrupt file "
                "aside and starts a fresh one"
            )
        elif not self.rows:
            lines.append(f"no suggestions recorded in the last {self.weeks} weeks ({self.file})")
        else:
            lines.append(f"suggestions in the last {self.weeks} weeks ({self.file}):")
            lines.append(_table([_COLUMNS, *(_cells(row) for row in self.rows)]))
        return "\n".join(lines)


def stats_report(path: Path, weeks: int, enabled: bool) -> StatsReport:
    report = StatsReport(file=path, weeks=weeks, enabled=enabled)
    try:
        report.rows = read_weeks(path, weeks)
    except FileNotFoundError:
        report.exists = False
    except StatsUnreadable as exc:
        report.error = str(exc)
    return report


def _cells(row: WeekRow) -> tuple[str, ...]:
    rate = "-" if row.acceptance_rate is None else f"{row.acceptance_rate:.0%}"
    median = "-" if row.median_latency_ms is None else f"{row.median_latency_ms:.0f}"
    counts = (row.shown, row.accepted, row.partially_accepted)
    return (row.week, row.language, row.model, *map(str, counts), rate, median)


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    text_columns = 3  # week, language, model: left-aligned; the numbers right-aligned
    return "\n".join(
        "  ".join(
            cell.ljust(widths[i]) if i < text_columns else cell.rjust(widths[i])
            for i, cell in enumerate(row)
        ).rstrip()
        for row in rows
    )
