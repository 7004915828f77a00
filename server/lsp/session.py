"""One editor session's state: config layers, the model pool and the agents.

The LSP handlers in ``lsp.py`` stay thin and call into this. Everything slow (imports, model
loads, inference) runs in executors, never on the event loop.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from memlsp.agents.completion.context import CompositeContextProvider, RecentContextRing
from memlsp.agents.completion.generator import GeneratorAgent
from memlsp.base.context import ContextProvider, ContextRequest, first_lines, prefetch
from memlsp.config import Config, ConfigIssue, load_config
from memlsp.models import ModelError, ModelPool
from memlsp.server.lsp.metrics import RequestMetrics

log = logging.getLogger(__name__)

VERSION = "0.1.0"
FIM_DEFAULT_CPU = "qwen2.5-coder-0.5b"
FIM_DEFAULT_GPU = "qwen2.5-coder-1.5b"


def auto_fim_model() -> str:
    """The completion model 'auto' stands for on this machine (may import llama.cpp: worker
    threads only): the larger one where llama.cpp can offload to a GPU."""
    from memlsp.models.runtime import supports_gpu_offload

    return FIM_DEFAULT_GPU if supports_gpu_offload() else FIM_DEFAULT_CPU


# A file just opened is searched for with its first lines (most files are opened at the top).
OPEN_PREFETCH_LINES = 40


def uri_to_path(uri: str) -> Path | None:
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        return None
    # Normalised, so that `file:///ws/../elsewhere/x.py` is not taken to be inside /ws.
    return Path(os.path.normpath(unquote(parsed.path)))


def _resolves_within(path: Path, folder: Path) -> bool:
    """Whether ``path``, links followed, is still in ``folder`` (links followed too)."""
    try:
        real, root = path.resolve(), folder.resolve()
    except (OSError, RuntimeError):  # a link loop
        return False
    return real == root or root in real.parents


def _listed(pool_stats: dict[str, Any]) -> dict[str, Any]:
    """Models as a list of records: JSON clients (pygls among them) mangle dotted keys."""
    models = [{"name": name, **info} for name, info in pool_stats["models"].items()]
    return {**pool_stats, "models": models}


class Session:
    def __init__(self, notify_user: Callable[[str], None]) -> None:
        self._notify_user = notify_user  # window/showMessage: only when the user must act
        self.workspace_root: Path | None = None
        self.folders: list[Path] = []  # all workspace folders (multi-root); the first is the root
        self.init_options: Mapping[str, Any] | None = None
        self.client_settings: Mapping[str, Any] | None = None
        self.config = Config()
        self.config_issues: tuple[ConfigIssue, ...] = ()
        self.pool: ModelPool | None = None
        self.context = RecentContextRing()
        # Providers ahead of the ring (workspace memory), set by features before first use.
        self.extra_context: list[ContextProvider] = []
        self._generator: GeneratorAgent | None = None
        self._generator_lock = threading.Lock()
        # Completions get their own small executor: background work must never queue ahead.
        self.completion_executor = ThreadPoolExecutor(2, thread_name_prefix="memlsp-complete")
        # Reviews one at a time: they share one model, so a second would only hold a thread
        # while it waits for the first; refactors (the user waits) keep the background pool.
        self.review_executor = ThreadPoolExecutor(1, thread_name_prefix="memlsp-review")
        self.background_executor = ThreadPoolExecutor(2, thread_name_prefix="memlsp-background")
        self._shutdown_hooks: list[Callable[[], None]] = []
        self._status_sources: dict[str, Callable[[], Any]] = {}
        self.metrics = RequestMetrics()
        # Set by the memory feature once the workspace memory is available.
        self.memory_snippets: Callable[[str, str], list[str]] | None = None
        self.add_status_source("requests", self.metrics.snapshot)
        self._reported_errors: set[str] = set()

    # -- configuration -------------------------------------------------------------------

    def configure(
        self,
        root: Path | None = None,
        init_options: Mapping[str, Any] | None = None,
        client_settings: Mapping[str, Any] | None = None,
    ) -> None:
        """(Re)load every layer and apply it live."""
        if root is not None:
            self.workspace_root = root
            if root not in self.folders:
                self.folders.insert(0, root)
        if init_options is not None:
            self.init_options = init_options
        if client_settings is not None:
            self.client_settings = client_settings
        loaded = load_config(
            self.workspace_root,
            self.init_options,
            extra_layers=[("workspace/configuration", self.client_settings)],
        )
        self.config = loaded.config
        new_issues = [i for i in loaded.issues if i not in self.config_issues]
        self.config_issues = loaded.issues
        for issue in loaded.issues:
            log.warning("config: %s", issue)
        if new_issues:
            more = f" (and {len(new_issues) - 1} more; see the log)" if len(new_issues) > 1 else ""
            self._notify_user(f"memlsp config: {new_issues[0]}{more}")
        if self.pool is None:
            self.pool = ModelPool.from_config(self.config)
            self.pool.start_reaper()
        else:
            self.pool.reconfigure(self.config.models, self.config.pool)
        with self._generator_lock:
            self._generator = None  # rebuilt on next use with the new settings

    def reset_generator(self) -> None:
        """Rebuild the generator on next use (its context providers changed)."""
        with self._generator_lock:
            self._generator = None

    def current_generator(self) -> GeneratorAgent | None:
        """The agent if it exists (cheap; for the event loop's cache lookups)."""
        return self._generator

    def generator(self) -> GeneratorAgent:
        """The generator agent; resolving the 'auto' model may import llama.cpp (worker only)."""
        with self._generator_lock:
            if self._generator is None:
                assert self.pool is not None
                gen_config = self.config.agents.generator
                providers: list[ContextProvider] = [*self.extra_context, self.context]
                self._generator = GeneratorAgent(
                    self.pool,
                    gen_config,
                    self.fim_model_name(),
                    context=CompositeContextProvider(providers),
                )
            return self._generator

    def fim_model_name(self) -> str:
        chosen = self.config.agents.generator.model
        return auto_fim_model() if chosen == "auto" else chosen

    # -- documents -----------------------------------------------------------------------

    def folder_of(self, uri: str) -> Path | None:
        """The workspace folder holding the document (the deepest, for nested folders)."""
        path = uri_to_path(uri)
        if path is None:
            return None
        holding = [
            f
            for f in self.folders
            if (path == f or f in path.parents) and _resolves_within(path, f)
        ]
        return max(holding, key=lambda f: len(f.parts)) if holding else None

    def relative_path(self, uri: str) -> str:
        """The document's path relative to its workspace folder (what the model and the
        memory see); the file name alone outside every folder."""
        path = uri_to_path(uri)
        if path is None:
            return uri
        folder = self.folder_of(uri)
        return path.relative_to(folder).as_posix() if folder else path.name

    def note_opened(self, uri: str, text: str) -> None:
        path = self.relative_path(uri)
        self.context.note_open(path, text)
        # The first completion in a file would otherwise wait for a search from scratch and, on
        # a busy machine, go without memory: search for the file's opening lines now, which
        # also gives the file's later first requests a fallback while their own search runs.
        opening = first_lines(text, OPEN_PREFETCH_LINES)  # on the loop: no split of it all
        self.prefetch_context(ContextRequest(path, opening, "", "", uri))

    def prefetch_context(self, request: ContextRequest) -> None:
        """Let the slow context providers (memory search) start on ``request`` (on the loop:
        only submits work)."""
        if self.config.agents.generator.context_tokens > 0:
            prefetch(self.extra_context, request)

    def note_edited(self, uri: str, text: str, line: int) -> None:
        self.context.note_edit(self.relative_path(uri), text, line)

    def note_closed(self, uri: str) -> None:
        self.context.note_close(self.relative_path(uri))
        if self._generator is not None:
            self._generator.forget(uri)

    def report_model_error(self, exc: ModelError) -> None:
        log.error("%s", exc)
        message = str(exc)
        if message not in self._reported_errors:  # tell the user once, not per keystroke
            self._reported_errors.add(message)
            self._notify_user(f"memlsp: {message}")

    def snippets_for(self, path: str, code: str) -> list[str]:
        """Workspace snippets related to ``code`` for the review and refactor agents."""
        provider = self.memory_snippets
        return provider(path, code) if provider is not None else []

    # -- status and shutdown -------------------------------------------------------------

    def add_status_source(self, name: str, source: Callable[[], Any]) -> None:
        self._status_sources[name] = source

    def on_shutdown(self, hook: Callable[[], None]) -> None:
        self._shutdown_hooks.append(hook)

    def status(self) -> dict[str, Any]:
        report: dict[str, Any] = {
            "version": VERSION,
            "workspace": str(self.workspace_root) if self.workspace_root else None,
            "config_issues": [str(i) for i in self.config_issues],
            "pool": _listed(self.pool.stats()) if self.pool else None,
            "generator": self._generator.stats() if self._generator else None,
        }
        for name, source in self._status_sources.items():
            try:
                report[name] = source()
            except Exception as exc:  # a broken feature must not break status
                report[name] = {"error": str(exc)}
        return report

    def close(self) -> None:
        """Stop everything; idempotent (shutdown, then exit or EOF, may both call it)."""
        hooks, self._shutdown_hooks = self._shutdown_hooks, []
        for hook in hooks:
            try:
                hook()
            except Exception:
                log.exception("shutdown hook failed")
        self.completion_executor.shutdown(wait=False, cancel_futures=True)
        self.review_executor.shutdown(wait=False, cancel_futures=True)
        self.background_executor.shutdown(wait=False, cancel_futures=True)
        if self.pool is not None:
            self.pool.close()
