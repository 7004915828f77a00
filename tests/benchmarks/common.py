"""Helpers shared by the benchmarks: tasks from ../shared/data and a real LSP client session."""

from __future__ import annotations

import asyncio
import gzip
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import random
import statistics
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

from lsprotocol import types as lsp
from pytest_lsp import LanguageClient

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"


class _TestHelpers(importlib.abc.MetaPathFinder):
    """Finds the tests' helper modules (tests/*.py: lsp_helpers, fim_pool, embedding_pool,
    soak_driver, protocol_fuzzing, ...) for benchmarks run as scripts, as pytest's
    ``pythonpath`` does for the tests. Last on ``sys.meta_path`` and without touching
    ``sys.path``: only names nothing else provides, so nothing installed is shadowed."""

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if path is not None or "." in name:
            return None
        candidate = TESTS / f"{name}.py"
        return (
            importlib.util.spec_from_file_location(name, candidate) if candidate.is_file() else None
        )


if not any(isinstance(finder, _TestHelpers) for finder in sys.meta_path):
    sys.meta_path.append(_TestHelpers())
DATA = REPO.parent / "shared" / "data"
HUMANEVAL_FIM = DATA / "humaneval-fim" / "humaneval-fim.jsonl.gz"
HUMANEVAL_SINGLE = DATA / "humaneval-infilling" / "HumanEval-SingleLineInfilling.jsonl.gz"
LANGUAGE_IDS = {"py": "python", "java": "java", "js": "javascript"}
EXTENSIONS = {"py": "py", "java": "java", "js": "js"}


def require(path: Path) -> None:
    if not path.exists():
        sys.stderr.write(f"benchmark data not found: {path} (it lives in ../shared/data)\n")
        sys.exit(2)


def load_jsonl(path: Path) -> list[dict[str, Any]]:
    require(path)
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def sample(rows: list[dict[str, Any]], n: int | None, seed: int = 0) -> list[dict[str, Any]]:
    if n is None or n >= len(rows):
        return rows
    return random.Random(seed).sample(rows, n)


def percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"n": 0}
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {
        "n": len(samples),
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(p95 * 1000, 1),
        "mean_ms": round(statistics.fmean(ordered) * 1000, 1),
    }


def first_line(text: str) -> str:
    for line in text.split("\n"):
        if line.strip():
            return line.strip()
    return ""


def cursor_document(prefix: str, suffix: str) -> tuple[str, int, int]:
    """The document text and the cursor (line, UTF-16 character) where prefix ends."""
    line = prefix.count("\n")
    character = utf16_len(prefix[prefix.rfind("\n") + 1 :])
    return prefix + suffix, line, character


def line_hole(prompt: str, suffix: str, line: str = "") -> tuple[str, str]:
    """HumanEval-FIM removes one whole line (its prompt and suffix lack the newlines around it):
    the editor's view is a new line with the cursor where that line's code starts (its
    indentation typed or auto-indented, as before asking for code in an editor); ``line`` is
    the removed line, whose indentation alone is used."""
    prefix = prompt if prompt.endswith("\n") else prompt + "\n"
    after = suffix if suffix.startswith("\n") else "\n" + suffix
    first = next((ln for ln in line.split("\n") if ln.strip()), "")
    return prefix + first[: len(first) - len(first.lstrip())], after


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@asynccontextmanager
async def lsp_session(
    root: Path, *, user_config: dict[str, Any] | None = None, **init_options: Any
) -> Any:
    """The real server over stdio with a real LSP client. ``user_config`` becomes the user's own
    config file (the only layer that may set e.g. ``memory.path``)."""
    client = LanguageClient()
    config_home = Path(tempfile.mkdtemp(prefix="memlsp-bench-cfg-"))
    if user_config:
        (config_home / "memlsp").mkdir()
        (config_home / "memlsp" / "config.yaml").write_text(json.dumps(user_config))
    env = {**os.environ, "XDG_CONFIG_HOME": str(config_home)}
    await client.start_io(sys.executable, "-m", "memlsp.server.cli", "serve", env=env)
    caps = lsp.ClientCapabilities(
        text_document=lsp.TextDocumentClientCapabilities(
            inline_completion=lsp.InlineCompletionClientCapabilities(),
            synchronization=lsp.TextDocumentSyncClientCapabilities(did_save=True),
        ),
    )
    await client.initialize_session(
        lsp.InitializeParams(
            capabilities=caps,
            root_uri=root.as_uri(),
            workspace_folders=[lsp.WorkspaceFolder(uri=root.as_uri(), name=root.name)],
            initialization_options=init_options or None,
        )
    )
    try:
        yield client
    finally:
        await asyncio.wait_for(client.shutdown_session(), 30)


_version = iter(range(2, 10**9))


def open_document(client: LanguageClient, path: Path, text: str, language: str) -> str:
    uri = path.as_uri()
    client.text_document_did_open(
        lsp.DidOpenTextDocumentParams(
            text_document=lsp.TextDocumentItem(uri=uri, language_id=language, version=1, text=text)
        )
    )
    return uri


def close_document(client: LanguageClient, uri: str) -> None:
    client.text_document_did_close(
        lsp.DidCloseTextDocumentParams(text_document=lsp.TextDocumentIdentifier(uri=uri))
    )


def type_char(client: LanguageClient, uri: str, line: int, character: int, char: str) -> None:
    here = lsp.Position(line=line, character=character)
    client.text_document_did_change(
        lsp.DidChangeTextDocumentParams(
            text_document=lsp.VersionedTextDocumentIdentifier(uri=uri, version=next(_version)),
            content_changes=[
                lsp.TextDocumentContentChangePartial(
                    range=lsp.Range(start=here, end=here), text=char
                )
            ],
        )
    )


async def inline_text(client: LanguageClient, uri: str, line: int, character: int) -> str:
    result = await asyncio.wait_for(
        client.text_document_inline_completion_async(
            lsp.InlineCompletionParams(
                text_document=lsp.TextDocumentIdentifier(uri=uri),
                position=lsp.Position(line=line, character=character),
                context=lsp.InlineCompletionContext(
                    trigger_kind=lsp.InlineCompletionTriggerKind.Automatic
                ),
            )
        ),
        300,
    )
    items = result.items if isinstance(result, lsp.InlineCompletionList) else (result or [])
    if not items:
        return ""
    text = items[0].insert_text
    return text if isinstance(text, str) else text.value


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
