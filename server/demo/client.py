"""The LSP client of `memlsp demo`: pygls's LanguageClient speaking JSON-RPC over the pipes of
a `memlsp serve` subprocess, recording what the server sends on its own (progress, diagnostics,
messages) so that the demo can wait for it."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from lsprotocol import types as lsp
from pygls.lsp.client import LanguageClient

from memlsp.server.lsp.session import VERSION

STDERR_KEPT_LINES = 40


@dataclass(frozen=True)
class ProgressEvent:
    token: str
    kind: str  # begin, report or end
    title: str
    message: str
    percentage: int | None


def client_capabilities() -> lsp.ClientCapabilities:
    """What an editor with inline completion, work-done progress, code action resolve and pushed
    diagnostics advertises. No pull diagnostics: the server then pushes after each save."""
    return lsp.ClientCapabilities(
        window=lsp.WindowClientCapabilities(work_done_progress=True),
        text_document=lsp.TextDocumentClientCapabilities(
            synchronization=lsp.TextDocumentSyncClientCapabilities(did_save=True),
            inline_completion=lsp.InlineCompletionClientCapabilities(),
            publish_diagnostics=lsp.PublishDiagnosticsClientCapabilities(version_support=True),
            code_action=lsp.CodeActionClientCapabilities(
                code_action_literal_support=lsp.ClientCodeActionLiteralOptions(
                    code_action_kind=lsp.ClientCodeActionKindOptions(
                        value_set=[lsp.CodeActionKind.QuickFix, lsp.CodeActionKind.Refactor]
                    )
                ),
                resolve_support=lsp.ClientCodeActionResolveOptions(properties=["edit"]),
                data_support=True,
            ),
        ),
    )


class DemoClient(LanguageClient):
    def __init__(self) -> None:
        super().__init__("memlsp-demo", VERSION)
        self.progress_events: list[ProgressEvent] = []
        self.diagnostics: dict[str, lsp.PublishDiagnosticsParams] = {}
        self.messages: list[str] = []
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_KEPT_LINES)
        self.on_progress: Callable[[ProgressEvent], None] | None = None
        self._titles: dict[str, str] = {}
        self._arrived = asyncio.Event()  # pulsed by every notification the demo may wait for
        self._process: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

        self._handle(lsp.WINDOW_WORK_DONE_PROGRESS_CREATE, lambda params: None)
        self._handle(lsp.PROGRESS, self._note_progress)
        self._handle(lsp.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS, self._note_diagnostics)
        self._handle(lsp.WINDOW_SHOW_MESSAGE, lambda params: self.messages.append(params.message))
        # The server's log also goes to its stderr, kept in stderr_tail.
        self._handle(lsp.WINDOW_LOG_MESSAGE, lambda params: None)

    def _handle(self, method: str, handler: Callable[[Any], None]) -> None:
        """Register what answers a server-to-client request or notification (wrapped: pygls
        sets attributes on the function, which a bound method refuses)."""
        self.feature(method)(lambda params: handler(params))

    # -- the server process --------------------------------------------------------------

    async def start_server(self, argv: list[str], env: Mapping[str, str]) -> int:
        """Spawn the server in its own session (a Ctrl-C in the terminal reaches only us, and
        we stop the whole group) and speak LSP over its stdin/stdout; returns its pid."""
        await self.start_io(argv[0], *argv[1:], env=dict(env), start_new_session=True)
        process = self._server  # set by start_io; pygls keeps it private
        assert process is not None and process.stderr is not None
        self._process = process
        # The server logs to stderr: read it, or a full pipe would block it mid-write.
        self._drain = asyncio.create_task(self._drain_stderr(process.stderr))
        return process.pid

    async def _drain_stderr(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            self.stderr_tail.append(line.decode(errors="replace").rstrip())

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process else None

    async def wait_exit(self, timeout_s: float) -> int | None:
        """The server's exit code, once it has exited by itself (None if it has not)."""
        if self._process is None:
            return None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._process.wait(), timeout_s)
        return self._process.returncode

    def kill(self) -> None:
        """Stop the server and anything it started (linters), at once."""
        process = self._process
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)

    async def close(self) -> None:
        """Kill the server if it still runs, then end the reader tasks."""
        self.kill()
        if self._process is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._process.wait(), 5)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.stop(), 5)  # type: ignore[no-untyped-call]
        if self._drain is not None:
            self._drain.cancel()

    # -- what the server sends -----------------------------------------------------------

    def _note_diagnostics(self, params: lsp.PublishDiagnosticsParams) -> None:
        self.diagnostics[params.uri] = params
        self._arrived.set()

    def _note_progress(self, params: lsp.ProgressParams) -> None:
        value = params.value if isinstance(params.value, Mapping) else {}
        token = str(params.token)
        kind = str(value.get("kind", ""))
        if kind == "begin":
            self._titles[token] = str(value.get("title", ""))
        percentage = value.get("percentage")
        event = ProgressEvent(
            token=token,
            kind=kind,
            title=self._titles.get(token, ""),
            message=str(value.get("message") or ""),
            percentage=percentage if isinstance(percentage, int) else None,
        )
        self.progress_events.append(event)
        if self.on_progress is not None:
            self.on_progress(event)
        self._arrived.set()

    async def wait_until(self, ready: Callable[[], Any], timeout_s: float) -> Any:
        """Wait for something the server pushes; raises TimeoutError after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not (result := ready()):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), min(left, 0.5))
        return result


def server_argv(log_level: str = "warning") -> list[str]:
    return [sys.executable, "-m", "memlsp.server.cli", "--log-level", log_level, "serve"]
