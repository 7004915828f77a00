"""The pygls language server: thin handlers translating LSP to session and agent calls."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
from collections.abc import Callable
from typing import Any, BinaryIO, cast

from lsprotocol import types as lsp
from pygls.io_ import run_async
from pygls.lsp.server import LanguageServer

from memlsp.server.lsp import (
    code_actions,
    completion,
    diagnostics,
    documents,
    logs,
    memory_feature,
    refactors,
    test_hooks,
    text_sync,
)
from memlsp.server.lsp.framing import BoundedStdin, BoundedStreamReader
from memlsp.server.lsp.rpc import MemlspProtocol
from memlsp.server.lsp.session import VERSION, Session, uri_to_path

log = logging.getLogger(__name__)

CONFIG_SECTION = "memlsp"
STATUS_COMMAND = "memlsp.showStatus"
SHUTDOWN_GRACE_S = 10.0  # how long `exit` waits for models and stores to close
_LOG_TYPES = {
    logging.ERROR: lsp.MessageType.Error,
    logging.WARNING: lsp.MessageType.Warning,
    logging.INFO: lsp.MessageType.Info,
}


class MemlspServer(LanguageServer):
    protocol: MemlspProtocol

    def __init__(self) -> None:
        super().__init__("memlsp", VERSION, max_workers=4, protocol_cls=MemlspProtocol)
        self.session = Session(notify_user=self.notify_user)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closing: threading.Thread | None = None
        self.exiting = False  # after `exit` the output stream closes: log to stderr only

    def notify_user(self, message: str) -> None:
        """window/showMessage, safe from any thread: for things the user must act on."""
        self.call_soon(
            lambda: self.window_show_message(
                lsp.ShowMessageParams(type=lsp.MessageType.Warning, message=message)
            )
        )

    def send_log(self, level: int, message: str) -> None:
        if self.exiting:
            return
        kind = next((t for lvl, t in _LOG_TYPES.items() if level >= lvl), lsp.MessageType.Log)
        self.call_soon(
            lambda: self.window_log_message(lsp.LogMessageParams(type=kind, message=message))
        )

    def report_server_error(self, error: Exception, source: Any) -> None:
        if not self.protocol.answered_unreadable(error):
            super().report_server_error(error, source)

    def max_message_bytes(self) -> int:
        return self.session.config.server.max_message_bytes

    def start_io(self, stdin: BinaryIO | None = None, stdout: BinaryIO | None = None) -> None:
        """pygls's stdio server behind the bounded frame reader. pygls swallows the SystemExit
        of `exit`, and with it the exit code: raised again here."""
        reader = BoundedStdin(stdin or sys.stdin.buffer, self.max_message_bytes)
        super().start_io(cast(BinaryIO, reader), stdout)
        if self.protocol.exit_code is not None:
            raise SystemExit(self.protocol.exit_code)

    def start_tcp(
        self,
        host: str,
        port: int,
        *,
        admit: Callable[[asyncio.StreamWriter], bool] | None = None,
    ) -> None:
        """Serve on TCP (pygls's own start_tcp reads frames unbounded): each connection is read
        through the bounded frame reader. A connection ``admit`` refuses (tcp.TcpGate: another
        user) is closed unread and does not end the server."""
        self._stop_event = stop_event = threading.Event()

        async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if admit is not None and not admit(writer):
                writer.close()
                return
            self.protocol.set_writer(writer)
            await run_async(
                stop_event=stop_event,
                reader=BoundedStreamReader(reader, self.max_message_bytes),
                protocol=self.protocol,
                logger=log,
                error_handler=self.report_server_error,
            )
            self.shutdown()  # type: ignore[no-untyped-call]

        async def serve() -> None:
            self._server = server = await asyncio.start_server(connection, host, port)
            log.info("serving on %s", [sock.getsockname() for sock in server.sockets])
            async with server:
                await server.serve_forever()

        with contextlib.suppress(asyncio.CancelledError):
            asyncio.run(serve())

    def call_soon(self, action: Callable[[], Any]) -> None:
        """Run ``action`` on the event loop (directly when already there), from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            action()
        else:
            loop.call_soon_threadsafe(action)


def build_server() -> MemlspServer:
    server = MemlspServer()

    @server.feature(lsp.INITIALIZE)
    def initialize(ls: MemlspServer, params: lsp.InitializeParams) -> None:
        ls._loop = asyncio.get_running_loop()
        text_sync.install(ls, lambda: ls.session.config.server.max_document_bytes)
        logging.getLogger().addHandler(logs.ClientLogHandler(ls.send_log, logging.INFO))
        root = None
        folders = [uri_to_path(f.uri) for f in params.workspace_folders or []]
        ls.session.folders = [f for f in folders if f is not None]
        if ls.session.folders:
            root = ls.session.folders[0]
        elif params.root_uri:
            root = uri_to_path(params.root_uri)
        options = params.initialization_options
        ls.session.configure(root, options if isinstance(options, dict) else None)
        logs.configure(ls.session.config.server.log_level, ls.session.config.server.log_file)

    @server.feature(lsp.INITIALIZED)
    async def initialized(ls: MemlspServer, params: lsp.InitializedParams) -> None:
        await _pull_client_settings(ls)
        ls.session.features.initialized()

    @server.feature(lsp.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(
        ls: MemlspServer, params: lsp.DidChangeConfigurationParams
    ) -> None:
        settings = params.settings
        if isinstance(settings, dict) and isinstance(settings.get(CONFIG_SECTION), dict):
            ls.session.configure(client_settings=settings[CONFIG_SECTION])
        else:  # the modern way: the notification only says "something changed"
            await _pull_client_settings(ls)

    @server.feature("memlsp/status")
    def status(ls: MemlspServer, params: Any) -> dict[str, Any]:
        return ls.session.status()

    @server.feature(lsp.SHUTDOWN)
    def shutdown(ls: MemlspServer, params: None) -> None:
        # Reply at once and release resources in a thread: clients often send `exit` right
        # after `shutdown`, and pygls exits on it even while an async shutdown is unanswered.
        ls.closing = threading.Thread(target=ls.session.close, name="memlsp-close", daemon=True)
        ls.closing.start()

    @server.feature(lsp.EXIT)
    def exit_(ls: MemlspServer, params: None) -> None:
        ls.exiting = True
        # pygls closes the output now; answers to requests still running would each log an
        # "Error sending data" traceback (hundreds after a busy session). Nothing can be sent.
        logging.getLogger("pygls.protocol.json_rpc").setLevel(logging.CRITICAL)
        if ls.closing is not None:
            ls.closing.join(timeout=SHUTDOWN_GRACE_S)

    @server.command(STATUS_COMMAND)
    def show_status(ls: Any, *args: Any) -> dict[str, Any]:
        """The same stats as the memlsp/status request, for editors' command palettes."""
        return ls.session.status()  # type: ignore[no-any-return]

    documents.register(server)
    completion.register(server)
    review = diagnostics.register(server)
    code_actions.register(server, review, refactors.register(server))
    memory_feature.register(server)
    test_hooks.register(server)
    return server


async def _pull_client_settings(ls: MemlspServer) -> None:
    caps = ls.client_capabilities.workspace
    if not (caps and caps.configuration):
        return
    try:
        result = await asyncio.wait_for(
            ls.workspace_configuration_async(
                lsp.ConfigurationParams(items=[lsp.ConfigurationItem(section=CONFIG_SECTION)])
            ),
            timeout=5,
        )
    except Exception:  # a client that cannot answer leaves the other layers in force
        log.debug("workspace/configuration failed", exc_info=True)
        return
    if result and isinstance(result[0], dict):
        ls.session.configure(client_settings=result[0])
