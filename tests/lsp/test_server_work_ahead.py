"""Work-ahead over stdio (server/lsp/work_ahead.py): after a document opens, the server prefills
the prompt at its end in idle time, so the first request in it evaluates only what changed.
Controlled by agents.generator.work_ahead: the same steps with it off evaluate the whole prompt."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import pytest_lsp
from lsp_helpers import TIMEOUT, initialize, inline, open_doc, server_config, status
from pytest_lsp import LanguageClient

pytestmark = [pytest.mark.asyncio(loop_scope="function"), pytest.mark.model]

FIM = "qwen2.5-coder-0.5b"
BODY = "".join(
    f"def helper_{i}(values):\n    return sum(v * {i} for v in values)\n\n\n" for i in range(20)
)
CURSOR_LINE = BODY[: BODY.index("def helper_18")].count("\n") + 1  # helper_18's body
CURSOR_CHAR = len("    return sum(v")


def generator_config(work_ahead: bool) -> dict[str, Any]:
    # No context (nothing else would change the prompt), a short suffix, a short answer.
    return {
        "model": FIM,
        "max_predict_ms": 0,
        "max_tokens": 4,
        "context_tokens": 0,
        "suffix_tokens": 32,
        "blank_line_suffix_tokens": 32,
        "work_ahead": work_ahead,
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


async def first_request_cost(client: LanguageClient, workspace: Path) -> tuple[int, int]:
    """(prompt tokens evaluated by the first request in a just-opened file, of how many)."""
    # Work-ahead never loads the model: a first request elsewhere does.
    warm = open_doc(client, workspace / "warm.py", "def f(x):\n    ")
    await inline(client, warm, 1, 4)
    uri = open_doc(client, workspace / "opened.py", BODY)
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:  # the work-ahead of the open, if any, has finished
        report = await status(client)
        if not report["work_ahead"]["enabled"] or report["generator"]["work_ahead"] >= 1:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.5)
    before = (await status(client))["generator"]
    await inline(client, uri, CURSOR_LINE, CURSOR_CHAR)
    after = (await status(client))["generator"]
    assert after["model_calls"] == before["model_calls"] + 1
    prompt = after["prompt_tokens"] - before["prompt_tokens"]
    reused = after["reused_tokens"] - before["reused_tokens"]
    return prompt - reused, prompt


@pytest.mark.parametrize("client", [True], indirect=True)
async def test_the_first_request_in_an_opened_file_pays_only_for_the_change(
    client: LanguageClient, tmp_path: Path
) -> None:
    evaluated, prompt = await first_request_cost(client, tmp_path)
    report = await status(client)
    assert report["work_ahead"]["scheduled"].get("open") == 1, report["work_ahead"]
    assert report["generator"]["work_ahead_tokens"] > 300, report["generator"]
    assert prompt > 300 and evaluated < 60, f"{evaluated} of {prompt} evaluated"


@pytest.mark.parametrize("client", [False], indirect=True)
async def test_without_work_ahead_the_first_request_evaluates_its_whole_prompt(
    client: LanguageClient, tmp_path: Path
) -> None:
    evaluated, prompt = await first_request_cost(client, tmp_path)
    assert (await status(client))["generator"]["work_ahead"] == 0
    assert evaluated > 300, f"{evaluated} of {prompt} evaluated"
