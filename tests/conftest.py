"""Fixtures and markers shared by every tier (unit, lsp, editors, stress).

Markers: `editor` and `stress` go on every test by its folder, so a new module cannot forget
them; `model` goes on every test handed one of the model fixtures below (directly or through
another fixture). Modules that load a model some other way (their own pool, a server asked for
completions) mark themselves. The plain builders stay in fim_pool.py and embedding_pool.py for
the benchmarks.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from embedding_pool import embedding_pool
from fim_pool import fim_pool

from memlsp.memory.embedder import Embedder
from memlsp.models import ModelPool, runtime

TESTS = Path(__file__).resolve().parent
FOLDER_MARKERS = {"editors": "editor", "stress": "stress"}
# The fixtures below that load a GGUF model when used.
MODEL_FIXTURES = frozenset({"fim_model_pool", "embedding_model_pool", "embedder"})


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        try:
            folder = item.path.resolve().relative_to(TESTS).parts[0]
        except ValueError:  # a test file outside tests/ named on the command line
            folder = ""
        if marker := FOLDER_MARKERS.get(folder):
            item.add_marker(marker)
        if MODEL_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker("model")


@pytest.fixture(scope="session", autouse=True)
def _no_model_without_the_marker(request: pytest.FixtureRequest) -> Iterator[None]:
    """Where the run leaves `model` tests out (`-m "not model"`), a test that loads a model in
    this process anyway fails with a pointer to the marker instead of quietly being slow."""
    if "not model" not in (request.config.option.markexpr or ""):
        yield
        return

    def refuse() -> NoReturn:
        raise AssertionError("this test loads a model: mark it `model` (see tests/conftest.py)")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runtime, "llama_cpp", refuse)
        yield


@pytest.fixture(scope="module")
def fim_model_pool() -> Iterator[ModelPool]:
    """The shipped catalogue with the 0.5B FIM model assembled; one per module."""
    pool = fim_pool()
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def embedding_model_pool() -> Iterator[ModelPool]:
    """The shipped catalogue with MiniLM embedding on one thread; one per module."""
    pool = embedding_pool()
    yield pool
    pool.close()


@pytest.fixture(scope="module")
def embedder(embedding_model_pool: ModelPool) -> Embedder:
    return Embedder(embedding_model_pool)
