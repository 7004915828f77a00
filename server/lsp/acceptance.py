"""Local acceptance statistics: how often suggestions are shown and taken, per language and model.

Each inline item carries a ``command`` the editor runs when the user accepts it; the server counts
shown / accepted / partially accepted. Kept in memory for this session, on this machine only:
nothing is ever sent anywhere. The per-day counts that outlive the session are in stats_store.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

ACCEPT_COMMAND = "memlsp.accepted"


@dataclass
class _Counts:
    shown: int = 0
    accepted: int = 0
    partially_accepted: int = 0
    accepted_chars: int = 0


@dataclass
class AcceptanceStats:
    _counts: dict[tuple[str, str], _Counts] = field(default_factory=lambda: defaultdict(_Counts))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def shown(self, language: str, model: str) -> None:
        with self._lock:
            self._counts[(language, model)].shown += 1

    def accepted(self, language: str, model: str, chars: int, partial: bool) -> None:
        with self._lock:
            counts = self._counts[(language, model)]
            if partial:
                counts.partially_accepted += 1
            else:
                counts.accepted += 1
            counts.accepted_chars += max(0, chars)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            rows = []
            for (language, model), c in sorted(self._counts.items()):
                taken = c.accepted + c.partially_accepted
                rows.append(
                    {
                        "language": language,
                        "model": model,
                        "shown": c.shown,
                        "accepted": c.accepted,
                        "partially_accepted": c.partially_accepted,
                        "accepted_chars": c.accepted_chars,
                        "acceptance_rate": round(taken / c.shown, 3) if c.shown else None,
                    }
                )
            return rows
