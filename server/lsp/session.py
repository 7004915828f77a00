"""One editor session's state: config layers, the model pool and the agents.

The LSP handlers in ``lsp.py`` stay thin and call into this. Everything slow (imports, model
loads, inference) runs in executors, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from memlsp.agents.completion.context import CompositeContextProvider, RecentContextRing
from memlsp.agents.completion.generator import GeneratorAgent
from memlsp.base.context import ContextRequest, first_lines, prefetch
from memlsp.config import Config, ConfigIssue, load_config
from memlsp.models import ModelError, ModelPool
from memlsp.server.lsp.documents import DocumentEvent
from memlsp.server.lsp.feature import ConfigBound, Feature, FeatureRegistry
from memlsp.server.lsp.metrics import RequestMetrics
from memlsp.server.version import VERSION as VERSION  # re-exported for server and demo

log = logging.getLogger(__name__)

FIM_DEFAULT_CPU = "qwen2.5-coder-0.5b"
FIM_DEFAULT_GPU = "qwen2.5-coder-1.5b"


def auto_fim_model() -> str:
    """The completion model 'auto' stands for on this machine (may import llama.cpp: worker
    threads only): the larger one where llama.cpp can offload to a GPU."""
    from memlsp.models.runtime import supports_gpu_offload

    return FIM_DEFAULT_GPU if supports_gpu_offload() else FIM_DEFAULT_CPU


# A file just opened is searched for with its first lines (most files are opened at the top).
OPEN_PREFETCH_LINES = 40
# ... once nothing else asked for the file this long: an editor asking for a completion as the
# file opens starts the search of the cursor's region, which would otherwise wait for the
# opening one (one search at a time: the embedder). Measured on bench_vs_llama_server's cold
# requests: 50-130 ms from the request to its context, ~half of it that wait.
OPEN_PREFETCH_QUIET_S = 0.15


def uri_to_path(uri: str) -> Path | None:
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        return None
    path = unquote(parsed.path)
    if "\0" in path:  # no file has this name; os calls on it raise ValueError, not OSError
        return None
    # Normalised, so that `file:///ws/../elsewhere/x.py` is not taken to be inside /ws.
    return Path(os.path.normpath(path))


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
        self._opening_searches: dict[str, asyncio.TimerHandle] = {}  # uri -> due search
        self.opening_searches = {"started": 0, "superseded": 0}  # status
        self.context = RecentContextRing()
        # Every feature plugs in here (features add themselves before `initialize`).
        self.features = FeatureRegistry()
        # Its caches (KV states, prompt builders) belong to the model: rebuilt when either changes.
        self.generator_agent = ConfigBound(
            "generator", lambda c: (c.agents.generator, c.models), self._build_generator
        )
        # Completions get their own small executor: background work must never queue ahead.
        self.completion_executor = ThreadPoolExecutor(2, thread_name_prefix="memlsp-complete")
        # Reviews one at a time: they share one model, so a second would only hold a thread
        # while it waits for the first; refactors (the user waits) keep the background pool.
        self.review_executor = ThreadPoolExecutor(1, thread_name_prefix="memlsp-review")
        self.background_executor = ThreadPoolExecutor(2, thread_name_prefix="memlsp-background")
        self.metrics = RequestMetrics()
        self._reported_errors: set[str] = set()
        self.features.add(_SessionFeature(self), self.generator_agent)

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
        old, self.config = self.config, loaded.config
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
        self.features.config_changed(old, self.config)

    def current_generator(self) -> GeneratorAgent | None:
        """The agent if it exists (cheap; for the event loop's cache lookups)."""
        return self.generator_agent.current()

    def generator(self) -> GeneratorAgent:
        """The generator agent; resolving the 'auto' model may import llama.cpp (worker only)."""
        return self.generator_agent.get(self.config)

    def _build_generator(self, config: Config) -> GeneratorAgent:
        assert self.pool is not None
        providers = [*self.features.context_providers(), self.context]  # the ring comes last
        return GeneratorAgent(
            self.pool,
            config.agents.generator,
            self.fim_model_name(),
            context=CompositeContextProvider(providers),
        )

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
        request = ContextRequest(path, opening, "", "", uri)
        self._drop_opening_search(uri)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on the server's loop (a direct call): search now
            self.prefetch_context(request)
            return
        self._opening_searches[uri] = loop.call_later(
            OPEN_PREFETCH_QUIET_S, self._opening_search_due, request
        )

    def _opening_search_due(self, request: ContextRequest) -> None:
        self._opening_searches.pop(request.uri, None)
        self.opening_searches["started"] += 1
        self.prefetch_context(request)

    def _drop_opening_search(self, uri: str) -> bool:
        """Forget ``uri``'s opening search if it is still due; whether it was."""
        due = self._opening_searches.pop(uri, None)
        if due is not None:
            due.cancel()
        return due is not None

    def prefetch_context(self, request: ContextRequest) -> None:
        """Let the slow context providers (memory search) start on ``request`` (on the loop:
        only submits work). A request for a document supersedes its opening search."""
        if self._drop_opening_search(request.uri):
            self.opening_searches["superseded"] += 1
        if self.config.agents.generator.context_tokens > 0:
            prefetch(self.features.context_providers(), request)

    def note_edited(self, uri: str, text: str, line: int) -> None:
        self.context.note_edit(self.relative_path(uri), text, line)

    def note_closed(self, uri: str) -> None:
        self._drop_opening_search(uri)
        self.context.note_close(self.relative_path(uri))
        generator = self.generator_agent.current()
        if generator is not None:
            generator.forget(uri)

    def report_model_error(self, exc: ModelError) -> None:
        log.error("%s", exc)
        message = str(exc)
        if message not in self._reported_errors:  # tell the user once, not per keystroke
            self._reported_errors.add(message)
            self._notify_user(f"memlsp: {message}")

    # -- status and shutdown -------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        report: dict[str, Any] = {
            "version": VERSION,
            "workspace": str(self.workspace_root) if self.workspace_root else None,
            "config_issues": [str(i) for i in self.config_issues],
            "pool": _listed(self.pool.stats()) if self.pool else None,
            "generator": generator.stats() if (generator := self.current_generator()) else None,
        }
        report.update(self.features.status())
        return report

    def close(self) -> None:
        """Stop everything; idempotent (shutdown, then exit or EOF, may both call it)."""
        self.features.shutdown()
        self.completion_executor.shutdown(wait=False, cancel_futures=True)
        self.review_executor.shutdown(wait=False, cancel_futures=True)
        self.background_executor.shutdown(wait=False, cancel_futures=True)
        if self.pool is not None:
            self.pool.close()


class _SessionFeature(Feature):
    """The session's own part: documents feed the recently-edited ring; request metrics."""

    name = "session"

    def __init__(self, session: Session) -> None:
        self._session = session

    def status(self) -> dict[str, Any]:
        return {
            "requests": self._session.metrics.snapshot(),
            "opening_searches": dict(self._session.opening_searches),
        }

    def document_opened(self, event: DocumentEvent) -> None:
        self._session.note_opened(event.uri, event.text)

    def document_saved(self, event: DocumentEvent) -> None:
        self._session.note_edited(event.uri, event.text, 0)

    def document_closed(self, event: DocumentEvent) -> None:
        self._session.note_closed(event.uri)
