"""How a feature plugs into the server: a ``Feature`` with the hooks it needs, and a registry.

Every service (completion, diagnostics, memory, ...) is a ``Feature`` added to the session's
``FeatureRegistry``; the server calls each hook on every feature in the order they were added.
A hook that raises is logged and skipped: one broken feature never stops the others.
``ConfigBound`` is the one way an agent follows the config: built on first use from its part of
the config, dropped when that part changes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from memlsp.base.context import ContextProvider
    from memlsp.config import Config
    from memlsp.server.lsp.documents import DocumentEvent

log = logging.getLogger(__name__)

AgentT = TypeVar("AgentT")


class Feature:
    """Override the hooks a feature needs; the defaults do nothing."""

    name = "feature"  # in logs, and the status key if ``status`` fails

    def initialized(self) -> None:
        """The client sent `initialized` and its settings are in: start background work."""

    def config_changed(self, old: Config, new: Config) -> None:
        """The configuration was reloaded (``new`` may equal ``old``)."""

    def status(self) -> Mapping[str, Any]:
        """Entries for the memlsp/status report."""
        return {}

    def document_opened(self, event: DocumentEvent) -> None: ...

    def document_changed(self, event: DocumentEvent) -> None: ...

    def document_saved(self, event: DocumentEvent) -> None: ...

    def document_closed(self, event: DocumentEvent) -> None: ...

    def context_providers(self) -> Sequence[ContextProvider]:
        """Context for the generator, placed ahead of the recently edited files."""
        return ()

    def related_snippets(self, path: str, code: str) -> list[str]:
        """Workspace snippets related to ``code``, for the review agent (worker threads)."""
        return []

    def shutdown(self) -> None:
        """Release what the feature holds (called once, from the closing thread)."""


class FeatureRegistry:
    def __init__(self) -> None:
        self._features: list[Feature] = []
        self._shut_down = False

    def add(self, *features: Feature) -> None:
        self._features.extend(features)

    def __iter__(self) -> Iterator[Feature]:
        return iter(list(self._features))

    def _each(self, hook: str, call: Callable[[Feature], None]) -> None:
        for feature in list(self._features):
            try:
                call(feature)
            except Exception:
                log.exception("feature %s: %s failed", feature.name, hook)

    def initialized(self) -> None:
        self._each("initialized", lambda f: f.initialized())

    def config_changed(self, old: Config, new: Config) -> None:
        self._each("config_changed", lambda f: f.config_changed(old, new))

    def document_opened(self, event: DocumentEvent) -> None:
        self._each("document_opened", lambda f: f.document_opened(event))

    def document_changed(self, event: DocumentEvent) -> None:
        self._each("document_changed", lambda f: f.document_changed(event))

    def document_saved(self, event: DocumentEvent) -> None:
        self._each("document_saved", lambda f: f.document_saved(event))

    def document_closed(self, event: DocumentEvent) -> None:
        self._each("document_closed", lambda f: f.document_closed(event))

    def status(self) -> dict[str, Any]:
        report: dict[str, Any] = {}
        for feature in list(self._features):
            try:
                report.update(feature.status())
            except Exception as exc:  # a broken feature must not break status
                log.debug("feature %s: status failed", feature.name, exc_info=True)
                report[feature.name] = {"error": str(exc)}
        return report

    def context_providers(self) -> list[ContextProvider]:
        providers: list[ContextProvider] = []
        self._each("context_providers", lambda f: providers.extend(f.context_providers()))
        return providers

    def related_snippets(self, path: str, code: str) -> list[str]:
        snippets: list[str] = []
        self._each("related_snippets", lambda f: snippets.extend(f.related_snippets(path, code)))
        return snippets

    def shutdown(self) -> None:
        """Shut every feature down; idempotent (shutdown, then exit or EOF, may both call it)."""
        if self._shut_down:
            return
        self._shut_down = True
        self._each("shutdown", lambda f: f.shutdown())


class ConfigBound(Feature, Generic[AgentT]):
    """An agent built from one part of the config and rebuilt when that part changes.

    ``section(config)`` picks the part (compared with ``==``; it may add state the agent depends
    on, such as the workspace root); ``build(config)`` makes the agent. A change elsewhere in the
    config keeps the agent and its caches; a change to its part drops it (``close``-ing it, if
    given) and the next ``get`` builds a new one.
    """

    def __init__(
        self,
        name: str,
        section: Callable[[Config], object],
        build: Callable[[Config], AgentT],
        close: Callable[[AgentT], None] | None = None,
    ) -> None:
        self.name = name
        self._section = section
        self._build = build
        self._close = close
        self._agent: AgentT | None = None
        self._built_from: object = None
        self._lock = threading.Lock()  # building may be slow: one build, the others wait on it

    def get(self, config: Config) -> AgentT:
        """The agent for ``config`` (built here if needed: worker threads only)."""
        wanted = self._section(config)
        with self._lock:
            if self._agent is None or wanted != self._built_from:
                self._drop_locked()
                self._agent = self._build(config)
                self._built_from = wanted
            return self._agent

    def current(self) -> AgentT | None:
        """The agent if one is built; never builds, never waits (safe on the event loop)."""
        return self._agent

    def config_changed(self, old: Config, new: Config) -> None:
        if self._agent is None:
            return
        wanted = self._section(new)
        with self._lock:
            if self._agent is not None and wanted != self._built_from:
                self._drop_locked()

    def _drop_locked(self) -> None:
        agent, self._agent = self._agent, None
        if agent is None or self._close is None:
            return
        try:
            self._close(agent)
        except Exception:  # the old agent's failure must not keep its successor from being built
            log.exception("%s: closing the old agent failed", self.name)


class Closer(Feature):
    """A feature that only releases one thing at shutdown (a socket, an exporter)."""

    def __init__(self, name: str, close: Callable[[], None]) -> None:
        self.name = name
        self._close = close

    def shutdown(self) -> None:
        self._close()
