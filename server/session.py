"""One editor session's state: config layers, the model pool and the agents.

The LSP handlers in ``lsp.py`` stay thin and call into this. Everything slow (imports, model
loads, inference) runs in executors, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from memlsp.agents.context import RecentContextRing
from memlsp.agents.generator import Cancelled, GeneratorAgent, InlineRequest, Suggestion
from memlsp.config import Config, ConfigIssue, load_config
from memlsp.models import ModelError, ModelPool

log = logging.getLogger(__name__)

VERSION = "0.1.0"
FIM_DEFAULT_CPU = "qwen2.5-coder-0.5b"
FIM_DEFAULT_GPU = "qwen2.5-coder-1.5b"


def uri_to_path(uri: str) -> Path | None:
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        return None
    return Path(unquote(parsed.path))


@dataclass(frozen=True)
class CursorText:
    uri: str
    language_id: str
    prefix: str
    suffix: str


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
        self._inflight: dict[str, threading.Event] = {}
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

    # -- completion ----------------------------------------------------------------------

    async def suggest(self, cursor: CursorText) -> Suggestion | None:
        """The suggestion at a cursor; None when superseded, cancelled or failed."""
        request = InlineRequest(
            doc_key=cursor.uri,
            path=self.relative_path(cursor.uri),
            language_id=cursor.language_id,
            prefix=cursor.prefix,
            suffix=cursor.suffix,
            repo_name=self.workspace_root.name if self.workspace_root else "",
        )
        # A newer request for a document supersedes the older one (typing ahead of the model).
        previous = self._inflight.pop(cursor.uri, None)
        if previous is not None:
            previous.set()
        generator = self._generator
        if generator is not None:
            hit = generator.cached(request)
            if hit is not None:
                return hit
        cancel = threading.Event()
        self._inflight[cursor.uri] = cancel
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                self.completion_executor, self._complete_blocking, request, cancel
            )
        except asyncio.CancelledError:  # $/cancelRequest: stop the worker between tokens
            cancel.set()
            raise
        except Cancelled:
            return None
        except ModelError as exc:
            self.report_model_error(exc)
            return None
        finally:
            if self._inflight.get(cursor.uri) is cancel:
                del self._inflight[cursor.uri]

    def _complete_blocking(self, request: InlineRequest, cancel: threading.Event) -> Suggestion:
        generator = self.generator()
        # The first request (before the agent existed) could not use the cache on the loop.
        hit = generator.cached(request)
        if hit is not None:
            return hit
        return generator.complete(request, cancel)

    def report_model_error(self, exc: ModelError) -> None:
        log.error("%s", exc)
        message = str(exc)
        if message not in self._reported_errors:  # tell the user once, not per keystroke
            self._reported_errors.add(message)
            self._notify_user(f"memlsp: {message}")

    # -- status and shutdown -------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "workspace": str(self.workspace_root) if self.workspace_root else None,
            "config_issues": [str(i) for i in self.config_issues],
            "pool": _listed(self.pool.stats()) if self.pool else None,
            "generator": self._generator.stats() if self._generator else None,
        }

    def cancel_all(self) -> None:
        for event in self._inflight.values():
            event.set()
        self._inflight.clear()

    def close(self) -> None:
        self.cancel_all()
        self.completion_executor.shutdown(wait=False, cancel_futures=True)
        if self.pool is not None:
            self.pool.close()
