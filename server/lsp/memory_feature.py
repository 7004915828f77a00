"""Workspace memory in the server: one WorkspaceMemory per workspace folder.

Started after `initialized` (never before `initialize` answers), indexing in the background with
`$/progress` (cancelling the bar stops the full pass); kept current from saves, watched-file
events (registered dynamically) and renames; folders added or removed at run time get their own
memory. Retrieval feeds the generator (as a context provider) and the review/refactor agents.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types as lsp

from memlsp.agents.completion.relevance import CursorNames
from memlsp.base.context import ContextChunk, ContextProvider, ContextRequest
from memlsp.memory.coordinator import WorkspaceMemory
from memlsp.memory.indexer import IndexProgress
from memlsp.memory.names import SearchNeeds
from memlsp.memory.retrieval import imported_names
from memlsp.server.lsp.documents import DocumentEvent
from memlsp.server.lsp.feature import Feature
from memlsp.server.lsp.progress import Progress, start_progress
from memlsp.server.lsp.session import uri_to_path

if TYPE_CHECKING:
    from memlsp.server.lsp.server import MemlspServer

log = logging.getLogger(__name__)

REINDEX_COMMAND = "memlsp.reindex"
SNIPPETS_K = 3


class MemoryService(Feature):
    name = "memory"

    def __init__(self, server: MemlspServer) -> None:
        self.server = server
        self.session = server.session
        self.memories: dict[Path, WorkspaceMemory] = {}
        self._progress: dict[Path, Progress | None] = {}
        self._tasks: set[asyncio.Future[None]] = set()
        self._latest: dict[Path, IndexProgress] = {}
        self._lock = threading.Lock()

    # -- lifecycle -----------------------------------------------------------------------

    def initialized(self) -> None:
        self.start()
        _watch_files(self.server)

    def shutdown(self) -> None:
        self.close()

    def start(self) -> None:
        if not self.session.config.memory.enabled:
            log.info("memory: disabled in config")
            return
        for folder in self.session.folders:
            self.add_folder(folder)

    def add_folder(self, folder: Path) -> None:
        with self._lock:
            if folder in self.memories or self.session.pool is None:
                return
            memory = WorkspaceMemory(
                folder,
                self.session.config.memory,
                self.session.pool,
                on_progress=functools.partial(self._on_progress, folder),
                needs_of=self._needs_of,
            )
            self.memories[folder] = memory
        memory.start()  # non-blocking: opening the store and indexing run in threads

    def remove_folder(self, folder: Path) -> None:
        with self._lock:
            memory = self.memories.pop(folder, None)
        if memory is not None:
            self.session.background_executor.submit(memory.close)

    def close(self) -> None:
        with self._lock:
            memories, self.memories = list(self.memories.values()), {}
        for memory in memories:
            memory.close()

    def _needs_of(self, request: ContextRequest) -> SearchNeeds | None:
        """What a memory chunk must define or use to reach the prompt at ``request``'s cursor;
        None when the generator keeps whatever fits (``context_filter: all``)."""
        if self.session.config.agents.generator.context_filter != "relevant":
            return None
        return CursorNames.of(request).needs()

    def _memory_for(self, uri: str) -> WorkspaceMemory | None:
        folder = self.session.folder_of(uri)
        return self.memories.get(folder) if folder is not None else None

    # -- progress ------------------------------------------------------------------------

    def _on_progress(self, folder: Path, event: IndexProgress) -> None:
        """From the indexer's thread: drive one progress bar per folder's full pass."""
        self.server.call_soon(lambda: self._progress_on_loop(folder, event))

    def _progress_on_loop(self, folder: Path, event: IndexProgress) -> None:
        self._latest[folder] = event
        if folder not in self._progress:
            if event.done:
                return  # a pass that ended before its bar existed: nothing to show
            self._progress[folder] = None  # creating
            task = asyncio.ensure_future(self._begin(folder))
            self._tasks.add(task)  # the loop keeps only weak references to tasks
            task.add_done_callback(self._tasks.discard)
            return
        bar = self._progress.get(folder)
        if bar is not None:
            self._show(folder, bar, event)
        # else: the bar is being created; _begin shows the latest event once it exists

    def _show(self, folder: Path, bar: Progress, event: IndexProgress) -> None:
        if event.done:
            bar.end(f"{event.files_done} files, {event.chunks} chunks")
            self._progress.pop(folder, None)
        else:
            pct = int(100 * event.files_done / event.files_total) if event.files_total else None
            bar.report(f"{event.files_done}/{event.files_total} files", pct)

    async def _begin(self, folder: Path) -> None:
        cancel = threading.Event()
        bar = await start_progress(self.server, f"indexing {folder.name}", cancel=cancel)
        self._progress[folder] = bar
        threading.Thread(target=self._watch_cancel, args=(folder, cancel), daemon=True).start()
        latest = self._latest.get(folder)
        if latest is not None:  # the pass may have moved on, or even ended, meanwhile
            self._show(folder, bar, latest)

    def _watch_cancel(self, folder: Path, cancel: threading.Event) -> None:
        while not cancel.wait(1.0):
            if folder not in self._progress:
                return
        memory = self.memories.get(folder)
        if memory is not None:
            log.info("memory: indexing of %s cancelled by the user", folder)
            memory.cancel_indexing()

    # -- file events ---------------------------------------------------------------------

    def document_saved(self, event: DocumentEvent) -> None:
        memory, path = self._memory_for(event.uri), uri_to_path(event.uri)
        if memory is not None and path is not None:
            memory.file_changed([path])

    def on_watched(self, changes: list[lsp.FileEvent]) -> None:
        for change in changes:
            memory, path = self._memory_for(change.uri), uri_to_path(change.uri)
            if memory is None or path is None:
                continue
            if change.type == lsp.FileChangeType.Deleted:
                memory.file_deleted([path])
            else:
                memory.file_changed([path])

    def on_renamed(self, renames: list[lsp.FileRename]) -> None:
        for rename in renames:
            memory = self._memory_for(rename.new_uri)
            old, new = uri_to_path(rename.old_uri), uri_to_path(rename.new_uri)
            if memory is not None and old is not None and new is not None:
                memory.file_renamed(old, new)

    # -- retrieval -----------------------------------------------------------------------

    def context_providers(self) -> list[ContextProvider]:
        return [self]  # ahead of the recently edited files

    def context_for(self, request: ContextRequest, budget_chars: int) -> list[ContextChunk]:
        """ContextProvider for the generator: the memory of the document's folder."""
        memory = self._memory_for(request.uri) if request.uri else None
        if memory is None:
            return []
        return memory.context_provider().context_for(request, budget_chars)

    def prefetch(self, request: ContextRequest) -> None:
        """PrefetchingProvider: start the memory search of the document's folder (on the loop:
        only submits it)."""
        memory = self._memory_for(request.uri) if request.uri else None
        if memory is not None:
            memory.context_provider().prefetch(request)

    def related_snippets(self, path: str, code: str) -> list[str]:
        """Snippets for the review and refactor agents (blocking; worker threads only)."""
        for memory in list(self.memories.values()):
            hits = memory.search(
                code[-2000:], SNIPPETS_K, exclude_path=path, definitions_of=imported_names(code)
            )
            if hits:
                return [f"# {h.record.path}\n{h.record.text}" for h in hits]
        return []

    def reindex(self, rebuild: bool) -> int:
        for memory in list(self.memories.values()):
            memory.reindex(rebuild=rebuild)
        return len(self.memories)

    def status(self) -> dict[str, Any]:
        folders = []
        for root, memory in list(self.memories.items()):
            folders.append({"root": str(root), **memory.status()})
        return {"memory": {"enabled": self.session.config.memory.enabled, "folders": folders}}


def register(server: MemlspServer) -> MemoryService:
    service = MemoryService(server)
    server.session.features.add(service)

    @server.feature(lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def did_change_watched_files(ls: MemlspServer, params: lsp.DidChangeWatchedFilesParams) -> None:
        service.on_watched(list(params.changes))

    @server.feature(
        lsp.WORKSPACE_DID_RENAME_FILES,
        lsp.FileOperationRegistrationOptions(
            filters=[lsp.FileOperationFilter(pattern=lsp.FileOperationPattern(glob="**/*"))]
        ),
    )
    def did_rename_files(ls: MemlspServer, params: lsp.RenameFilesParams) -> None:
        service.on_renamed(list(params.files))

    @server.feature(lsp.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
    def did_change_folders(ls: MemlspServer, params: lsp.DidChangeWorkspaceFoldersParams) -> None:
        for removed in params.event.removed:
            path = uri_to_path(removed.uri)
            if path is not None:
                ls.session.folders = [f for f in ls.session.folders if f != path]
                service.remove_folder(path)
        for added in params.event.added:
            path = uri_to_path(added.uri)
            if path is not None and path not in ls.session.folders:
                ls.session.folders.append(path)
                if ls.session.config.memory.enabled:
                    service.add_folder(path)

    @server.command(REINDEX_COMMAND)
    def reindex(ls: Any, *args: Any) -> dict[str, Any]:
        """Re-index every workspace folder; argument {"rebuild": true} drops the index first."""
        rebuild = bool(args and isinstance(args[0], dict) and args[0].get("rebuild"))
        return {"folders": service.reindex(rebuild), "rebuild": rebuild}

    return service


def _watch_files(server: MemlspServer) -> None:
    """Ask the client to tell us about file changes on disk (if it can register dynamically)."""
    workspace = server.client_capabilities.workspace
    watched = workspace.did_change_watched_files if workspace else None
    if not (watched and watched.dynamic_registration):
        return
    registration = lsp.Registration(
        id="memlsp-watched-files",
        method=lsp.WORKSPACE_DID_CHANGE_WATCHED_FILES,
        register_options=lsp.DidChangeWatchedFilesRegistrationOptions(
            watchers=[lsp.FileSystemWatcher(glob_pattern="**/*")]
        ),
    )
    server.client_register_capability(lsp.RegistrationParams(registrations=[registration]))
