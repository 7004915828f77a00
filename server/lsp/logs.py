"""Logging for the server: stderr (the editor's log), an optional file, and the client's log."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class ClientLogHandler(logging.Handler):
    """Forwards records to ``window/logMessage`` through a thread-safe sender."""

    def __init__(self, send: Callable[[int, str], None], level: int = logging.INFO) -> None:
        super().__init__(level)
        self._send = send
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("pygls"):  # pygls logs its own traffic: no echo loops
            return
        try:
            self._send(record.levelno, self.format(record))
        except Exception:
            self.handleError(record)


def configure(level: str = "info", log_file: str = "") -> None:
    root = logging.getLogger()
    for handler in list(root.handlers):
        if not isinstance(handler, ClientLogHandler):
            root.removeHandler(handler)
    stderr = logging.StreamHandler(sys.__stderr__)
    stderr.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(stderr)
    if log_file:
        path = Path(log_file).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(path, encoding="utf-8")
        file_handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(file_handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # pygls logs every message at INFO/DEBUG: keep it quiet unless debugging.
    logging.getLogger("pygls").setLevel(logging.WARNING if level != "debug" else logging.DEBUG)
