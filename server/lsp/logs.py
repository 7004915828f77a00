"""Logging for the server: stderr (the editor's log), an optional file, and the client's log."""

from __future__ import annotations

import logging
import os
import stat
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


def _create_private(path: Path) -> None:
    """The log file, created 0600 (it quotes the user's code); an existing one of ours, looser,
    is tightened. Only new folders on the way are made 0700: the user chose where it lives."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        info = os.fstat(fd)
        if info.st_uid == os.getuid() and info.st_mode & 0o077:
            os.fchmod(fd, stat.S_IMODE(info.st_mode) & ~0o077)
    finally:
        os.close(fd)


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
        _create_private(path)
        file_handler = logging.FileHandler(path, encoding="utf-8")
        file_handler.setFormatter(logging.Formatter(FORMAT))
        root.addHandler(file_handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    # pygls logs every message at INFO/DEBUG: keep it quiet unless debugging.
    logging.getLogger("pygls").setLevel(logging.WARNING if level != "debug" else logging.DEBUG)
