"""The next suggestion ahead, over stdio (agents.generator.speculate, server/lsp/work_ahead.py):
while a suggestion is on screen the server computes the one after it, as if accepted; accepting it
(the edit, then the item's command) and asking again is answered without a model call, with the
text a model call there gives. With speculate off the same steps cost a model call."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsp_helpers import (
    TIMEOUT,
    initialize,
    inline,
    inline_params,
    insert,
    open_doc,
    server_config,
    status,
)
from lsprotocol import types as lsp
from pytest_lsp import LanguageClient

pytestmark = [pytest.mark.asyncio(loop_scope="function"), pytest.mark.model]

FIM = "qwen2.5-coder-0.5b"
BODY = "".join(
    f"def scale_{i}(values):\n    return [v * {i} for v in values]\n\n\n" for i in range(6)
)
TEXT = BODY + "def scale_6(values):\n    return [v"  # the cursor at the end


def generator_config(speculate: bool) -> dict[str, Any]:
    return {
        "model": FIM,
        "max_predict_ms": 0,
        "max_tokens": 24,
        "context_tokens": 0,
        "suffix_tokens": 32,
        "blank_line_suffix_tokens": 32,
        "speculate": speculate,
    }


@pytest_lsp.fixture(config=server_config(Path("/nonexistent-memlsp-config")))
async def client(lsp_client: LanguageClient, tmp_path: Path, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    await initialize(
        lsp_client,
        tmp_path,
        agents={"generator": generator_config(request.param)},
        memory={"enabled": False},
    )
    yield lsp_client
    await lsp_client.shutdown_session()


async def accept_and_ask_again(
    client: LanguageClient, workspace: Path, speculate: bool
) -> tuple[str, str, int, tuple[int, int]]:
    """(the suggestion shown, the one asked for after accepting it, model calls that cost, the
    cursor it was asked at)."""
    uri = open_doc(client, workspace / "scale.py", TEXT)
    line = TEXT.count("\n")
    char = len(TEXT.rsplit("\n", 1)[-1])
    shown = await inline(client, uri, line, char)
    assert shown, "the model suggested nothing at the cursor"
    deadline = time.monotonic() + TIMEOUT
    while speculate and time.monotonic() < deadline:  # the user reads the suggestion
        report = (await status(client))["generator"]
        # The answer after it, and at the next line's start (after Enter).
        if report["speculations"] + report["speculations_stopped"] >= 2:
            break
        await asyncio.sleep(0.2)
    if not speculate:
        await asyncio.sleep(1.0)  # as long as a speculation would have had
    before = (await status(client))["generator"]
    insert(client, uri, 2, line, char, shown)  # accepted: the editor inserts it ...
    await client.workspace_execute_command_async(  # ... and runs the item's command
        lsp.ExecuteCommandParams(
            command="memlsp.accepted", arguments=["python", FIM, len(shown), "full"]
        )
    )
    after_lines = (TEXT + shown).split("\n")
    at = (len(after_lines) - 1, len(after_lines[-1]))
    next_text = await inline(client, uri, *at)
    if not next_text:  # the line is done: Enter (the editor indents the new line) and ask
        insert(client, uri, 3, *at, "\n    ")
        at = (len(after_lines), 4)
        next_text = await inline(client, uri, *at)
    after = (await status(client))["generator"]
    return shown, next_text or "", after["model_calls"] - before["model_calls"], at


@pytest.mark.parametrize("client", [True], indirect=True)
async def test_after_accepting_the_next_suggestion_is_there_without_a_model_call(
    client: LanguageClient, tmp_path: Path
) -> None:
    shown, following, calls, at = await accept_and_ask_again(client, tmp_path, True)
    report = await status(client)
    assert report["work_ahead"]["scheduled"].get("shown", 0) >= 1, report["work_ahead"]
    assert report["generator"]["speculations"] >= 1, report["generator"]
    assert calls == 0, f"{calls} model calls after accepting {shown!r}"
    assert following, "nothing suggested after accepting and at the next line"
    # The explicit trigger skips the cache: the model's own answer there, greedy one first.
    params = inline_params((tmp_path / "scale.py").as_uri(), *at)
    params.context.trigger_kind = lsp.InlineCompletionTriggerKind.Invoked
    result = await asyncio.wait_for(client.text_document_inline_completion_async(params), TIMEOUT)
    items = result.items if isinstance(result, lsp.InlineCompletionList) else (result or [])
    fresh = items[0].insert_text if items else ""
    assert following == fresh, (following, fresh)


@pytest.mark.parametrize("client", [False], indirect=True)
async def test_without_speculation_accepting_costs_a_model_call(
    client: LanguageClient, tmp_path: Path
) -> None:
    _shown, _following, calls, _at = await accept_and_ask_again(client, tmp_path, False)
    assert calls >= 1
    assert (await status(client))["generator"]["speculations"] == 0
