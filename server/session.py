"""One editor session's state: config layers, the model pool and the agents.

The LSP handlers in ``lsp.py`` stay thin and call into this. Everything slow (imports, model
loads, inference) runs in executors, never on the event loop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from memlsp.agents.context import RecentContextRing
from memlsp.agents.generator import GeneratorAgent
from memlsp.config import Config, ConfigIssue, load_config
from memlsp.models import ModelError, ModelPool

from .metrics import RequestMetrics

log = logging.getLogger(__name__)

VERSION = "0.1.0"
FIM_DEFAULT_CPU = "qwen2.5-coder-0.5b"
FIM_DEFAULT_GPU = "qwen2.5-coder-1.5b"


def uri_to_path(uri: str) -> Path | None:
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        return None
    return Path(unquote(parsed.path))


def _listed(pool_stats: dict[str, Any]) -> dict[str, Any]:
    """Models as a list of records: JSON clients (pygls among them) mangle dotted keys."""
    models = [{"name": name, **info} for name, info in pool_stats["models"].items()]
    return {**pool_stats, "models": models}


class Session:
    def __init__(self, notify_user: Callable[[str], None]) -> None:
        self._notify_user = notify_user  # window/showMessage: only when the user must act
        self.workspace_root: Path | None = None
        self.init_options: Mapping[str, Any] | None = None
        self.client_settings: Mapping[str, Any] | None = None
        self.config = Config()
        self.config_issues: tuple[ConfigIssue, ...] = ()
        self.pool: ModelPool | None = None
        self.context = RecentContextRing()
        self._generator: GeneratorAgent | None = None
        self._generator_lock = threading.Lock()
        # Completions get their own small executor: background work must never queue ahead.
        self.completion_executor = ThreadPoolExecutor(2, thread_name_prefix="memlsp-complete")
        self.background_executor = ThreadPoolExecutor(2, thread_name_prefix="memlsp-background")
        self._shutdown_hooks: list[Callable[[], None]] = []
        self._status_sources: dict[str, Callable[[], Any]] = {}
        self.metrics = RequestMetrics()
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

    def current_generator(self) -> GeneratorAgent | None:
        """The agent if it exists (cheap; for the event loop's cache lookups)."""
        return self._generator

    def generator(self) -> GeneratorAgent:
        """The generator agent; resolving the 'auto' model may import llama.cpp (worker only)."""
        with self._generator_lock:
            if self._generator is None:
                assert self.pool is not None
                gen_config = self.config.agents.generator
                self._generator = GeneratorAgent(
                    self.pool, gen_config, self.fim_model_name(), context=self.context
                )
            return self._generator

    def fim_model_name(self) -> str:
        chosen = self.config.agents.generator.model
        if chosen != "auto":
            return chosen
        from memlsp.models.runtime import supports_gpu_offload

        return FIM_DEFAULT_GPU if supports_gpu_offload() else FIM_DEFAULT_CPU

    # -- documents -----------------------------------------------------------------------

    def relative_path(self, uri: str) -> str:
        path = uri_to_path(uri)
        if path is None:
            return uri
        if self.workspace_root is not None:
            try:
                return str(path.relative_to(self.workspace_root))
            except ValueError:
                pass
        return path.name

    def note_opened(self, uri: str, text: str) -> None:
        self.context.note_open(self.relative_path(uri), text)

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
        self.background_executor.shutdown(wait=False, cancel_futures=True)
        if self.pool is not None:
            self.pool.close()
