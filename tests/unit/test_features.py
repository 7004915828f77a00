"""The feature registry (hooks in order, failures contained) and ConfigBound (an agent rebuilt
only when its part of the config changes). No server, no model."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from memlsp.base.context import ContextChunk, ContextProvider, ContextRequest
from memlsp.config import Config
from memlsp.server.lsp.documents import DocumentEvent
from memlsp.server.lsp.feature import Closer, ConfigBound, Feature, FeatureRegistry
from memlsp.server.lsp.session import Session

EVENT = DocumentEvent("file:///ws/a.py", 1, "python", "x = 1\n")


class Recorder(Feature):
    """Writes each hook it receives to a log shared by all recorders."""

    def __init__(self, name: str, calls: list[str], fail: Sequence[str] = ()) -> None:
        self.name = name
        self.calls = calls
        self.fail = set(fail)

    def _note(self, hook: str) -> None:
        self.calls.append(f"{self.name}.{hook}")
        if hook in self.fail:
            raise RuntimeError(f"{self.name} {hook} broke")

    def initialized(self) -> None:
        self._note("initialized")

    def config_changed(self, old: Config, new: Config) -> None:
        self._note("config_changed")

    def status(self) -> Mapping[str, Any]:
        self._note("status")
        return {self.name: "fine"}

    def document_opened(self, event: DocumentEvent) -> None:
        self._note("opened")

    def document_changed(self, event: DocumentEvent) -> None:
        self._note("changed")

    def document_saved(self, event: DocumentEvent) -> None:
        self._note("saved")

    def document_closed(self, event: DocumentEvent) -> None:
        self._note("closed")

    def related_snippets(self, path: str, code: str) -> list[str]:
        self._note("snippets")
        return [f"{self.name}:{path}"]

    def shutdown(self) -> None:
        self._note("shutdown")


class FixedContext:
    def __init__(self, text: str) -> None:
        self.text = text

    def context_for(self, request: ContextRequest, budget_chars: int) -> list[ContextChunk]:
        return []


def _run_every_hook(registry: FeatureRegistry) -> dict[str, Any]:
    registry.initialized()
    registry.config_changed(Config(), Config())
    registry.document_opened(EVENT)
    registry.document_changed(EVENT)
    registry.document_saved(EVENT)
    registry.document_closed(EVENT)
    report = registry.status()
    registry.shutdown()
    return report


def test_hooks_reach_every_feature_in_the_order_they_were_added() -> None:
    calls: list[str] = []
    registry = FeatureRegistry()
    registry.add(Recorder("a", calls), Recorder("b", calls))
    registry.add(Recorder("c", calls))

    report = _run_every_hook(registry)

    hooks = ["initialized", "config_changed", "opened", "changed", "saved", "closed", "status"]
    hooks.append("shutdown")
    assert calls == [f"{name}.{hook}" for hook in hooks for name in "abc"]
    assert report == {"a": "fine", "b": "fine", "c": "fine"}


def test_a_failing_hook_is_logged_and_the_other_features_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []
    every = ["initialized", "config_changed", "opened", "changed", "saved", "closed"]
    registry = FeatureRegistry()
    registry.add(Recorder("broken", calls, fail=[*every, "status", "shutdown", "snippets"]))
    registry.add(Recorder("healthy", calls))

    with caplog.at_level(logging.ERROR, logger="memlsp.server.lsp.feature"):
        report = _run_every_hook(registry)
        snippets = registry.related_snippets("a.py", "x = 1")

    for hook in [*every, "status", "shutdown", "snippets"]:
        assert f"healthy.{hook}" in calls, hook
    assert report == {"broken": {"error": "broken status broke"}, "healthy": "fine"}
    assert snippets == ["healthy:a.py"]
    failures = [r.getMessage() for r in caplog.records]
    assert "feature broken: initialized failed" in failures
    assert "feature broken: shutdown failed" in failures
    assert not any("healthy" in message for message in failures)


def test_shutdown_runs_once() -> None:
    calls: list[str] = []
    registry = FeatureRegistry()
    registry.add(Recorder("a", calls))
    registry.shutdown()
    registry.shutdown()
    assert calls == ["a.shutdown"]


def test_context_providers_keep_the_order_and_skip_a_failing_feature() -> None:
    first, second = FixedContext("first"), FixedContext("second")

    class Provides(Feature):
        def __init__(self, provider: ContextProvider) -> None:
            self.provider = provider

        def context_providers(self) -> Sequence[ContextProvider]:
            return [self.provider]

    class Broken(Feature):
        def context_providers(self) -> Sequence[ContextProvider]:
            raise RuntimeError("no providers today")

    registry = FeatureRegistry()
    registry.add(Provides(first), Broken(), Feature(), Provides(second))
    assert registry.context_providers() == [first, second]


# -- ConfigBound ----------------------------------------------------------------------------


def _with_refactor(config: Config, **changes: Any) -> Config:
    refactor = dataclasses.replace(config.agents.refactor, **changes)
    return dataclasses.replace(config, agents=dataclasses.replace(config.agents, refactor=refactor))


def _with_generator(config: Config, **changes: Any) -> Config:
    generator = dataclasses.replace(config.agents.generator, **changes)
    return dataclasses.replace(
        config, agents=dataclasses.replace(config.agents, generator=generator)
    )


class Agent:
    def __init__(self, kind: str, config: Config) -> None:
        self.kind = kind
        self.config = config
        self.closed = False


class Agents:
    """Two agents bound to their own parts of the config, as the server has them."""

    def __init__(self) -> None:
        self.built: list[Agent] = []
        self.generator = ConfigBound(
            "generator", lambda c: c.agents.generator, lambda c: self._build("generator", c)
        )
        self.refactor = ConfigBound(
            "refactor", lambda c: c.agents.refactor, lambda c: self._build("refactor", c), _close
        )
        self.registry = FeatureRegistry()
        self.registry.add(self.generator, self.refactor)

    def _build(self, kind: str, config: Config) -> Agent:
        agent = Agent(kind, config)
        self.built.append(agent)
        return agent


def _close(agent: Agent) -> None:
    agent.closed = True


def test_an_agent_is_built_on_first_use_and_then_kept() -> None:
    agents, config = Agents(), Config()
    assert agents.generator.current() is None  # nothing built before use
    first = agents.generator.get(config)
    assert agents.generator.get(config) is first
    assert agents.generator.current() is first
    assert [a.kind for a in agents.built] == ["generator"]


def test_a_config_change_rebuilds_only_the_agent_whose_part_changed() -> None:
    agents, old = Agents(), Config()
    generator, refactor = agents.generator.get(old), agents.refactor.get(old)

    new = _with_refactor(old, max_tokens=old.agents.refactor.max_tokens + 1)
    agents.registry.config_changed(old, new)

    assert agents.generator.current() is generator  # its part is the same: caches kept
    assert agents.refactor.current() is None  # dropped at once, not at its next use
    assert refactor.closed
    rebuilt = agents.refactor.get(new)
    assert rebuilt is not refactor and rebuilt.config is new
    assert agents.generator.get(new) is generator


def test_an_unchanged_config_keeps_every_agent() -> None:
    agents, old = Agents(), Config()
    generator, refactor = agents.generator.get(old), agents.refactor.get(old)
    same = dataclasses.replace(old, agents=dataclasses.replace(old.agents))  # equal, not identical
    agents.registry.config_changed(old, same)
    assert agents.generator.current() is generator
    assert agents.refactor.current() is refactor and not refactor.closed


def test_get_with_a_changed_part_rebuilds_even_without_the_hook() -> None:
    agents, old = Agents(), Config()
    generator = agents.generator.get(old)
    new = _with_generator(old, debounce_ms=old.agents.generator.debounce_ms + 5)
    assert agents.generator.get(new) is not generator
    assert len(agents.built) == 2


def test_a_failing_close_does_not_keep_the_new_agent_from_being_built(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken_close(agent: Agent) -> None:
        raise RuntimeError("close broke")

    bound = ConfigBound("flaky", lambda c: c.agents.refactor, lambda c: Agent("x", c), broken_close)
    old = Config()
    first = bound.get(old)
    new = _with_refactor(old, enabled=not old.agents.refactor.enabled)
    with caplog.at_level(logging.ERROR, logger="memlsp.server.lsp.feature"):
        second = bound.get(new)
    assert second is not first and second.config is new
    assert "flaky: closing the old agent failed" in [r.getMessage() for r in caplog.records]


# -- the session ----------------------------------------------------------------------------


def test_the_session_reports_and_shuts_down_through_its_features() -> None:
    session = Session(notify_user=lambda message: None)
    calls: list[str] = []
    session.features.add(Recorder("extra", calls), Closer("socket", lambda: calls.append("closed")))
    report = session.status()
    assert "requests" in report  # the session's own feature
    assert report["extra"] == "fine"
    assert report["generator"] is None  # never built
    session.close()
    session.close()
    assert calls == ["extra.status", "extra.shutdown", "closed"]
