"""Server-initiated `$/progress` (work done progress), usable from worker threads.

Only when the client advertises ``window.workDoneProgress``. Cancelling the progress in the
editor sets a ``threading.Event`` the worker checks, so "cancel" in the UI stops the work.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from typing import TYPE_CHECKING

from lsprotocol import types as lsp

if TYPE_CHECKING:
    from memlsp.server.lsp.server import MemlspServer

log = logging.getLogger(__name__)
_ids = itertools.count(1)


class Progress:
    """One progress bar. ``report``/``end`` may be called from any thread."""

    def __init__(self, server: MemlspServer, token: str | None, cancel: threading.Event) -> None:
        self._server = server
        self.token = token
        self.cancel = cancel
        self._ended = False

    def report(self, message: str, percentage: int | None = None) -> None:
        if self.token is None or self._ended:
            return
        value = lsp.WorkDoneProgressReport(message=message, percentage=percentage)
        token = self.token
        self._server.call_soon(lambda: self._server.work_done_progress.report(token, value))

    def end(self, message: str = "") -> None:
        if self.token is None or self._ended:
            return
        self._ended = True
        token = self.token
        value = lsp.WorkDoneProgressEnd(message=message or None)

        def finish() -> None:
            self._server.work_done_progress.end(token, value)
            self._server.work_done_progress.tokens.pop(token, None)

        self._server.call_soon(finish)


async def start_progress(
    server: MemlspServer,
    title: str,
    message: str = "",
    *,
    cancellable: bool = True,
    cancel: threading.Event | None = None,
) -> Progress:
    """Begin a progress bar if the client supports it; a no-op Progress otherwise."""
    cancel = cancel or threading.Event()
    window = server.client_capabilities.window
    if not (window and window.work_done_progress):
        return Progress(server, None, cancel)
    token = f"memlsp-{next(_ids)}"
    try:
        await asyncio.wait_for(server.work_done_progress.create_async(token), 5)
    except Exception:  # the client refused or is slow: work goes on without a bar
        log.debug("window/workDoneProgress/create failed", exc_info=True)
        return Progress(server, None, cancel)
    server.work_done_progress.begin(
        token,
        lsp.WorkDoneProgressBegin(
            title=title, message=message or None, cancellable=cancellable, percentage=0
        ),
    )
    future = server.work_done_progress.tokens.get(token)
    if future is not None:
        # Cancelled by window/workDoneProgress/cancel from the client.
        future.add_done_callback(lambda f: cancel.set() if f.cancelled() else None)
    return Progress(server, token, cancel)
