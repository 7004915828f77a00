"""Inline completion over stdio: the real server, the real 0.5B FIM model, pytest-lsp as client."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

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

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.model]

FIM = "qwen2.5-coder-0.5b"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ws")


@pytest_lsp.fixture(
    scope="module",
    config=server_config(Path("/nonexistent-memlsp-config")),
)
async def client(lsp_client: LanguageClient, workspace: Path):  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    # No time cap on generation: a loaded machine must not cut the lines the tests check.
    generator = {"model": FIM, "max_predict_ms": 0}
    result = await initialize(lsp_client, workspace, agents={"generator": generator})
    lsp_client.initialize_seconds = time.perf_counter() - started  # type: ignore[attr-defined]
    lsp_client.capabilities_result = result  # type: ignore[attr-defined]
    yield lsp_client
    await lsp_client.shutdown_session()


async def test_initialize_is_fast_and_advertises_inline_completion(
    client: LanguageClient,
) -> None:
    result: lsp.InitializeResult = client.capabilities_result  # type: ignore[attr-defined]
    assert result.capabilities.inline_completion_provider is not None
    assert result.capabilities.completion_provider is not None
    assert result.capabilities.text_document_sync is not None
    assert client.initialize_seconds < 5  # type: ignore[attr-defined]  # generous for CI
    loaded = (await status(client))["pool"]["models"]
    assert not any(m["loaded"] for m in loaded.values()), "a model was loaded at start-up"


async def test_obvious_body(client: LanguageClient, workspace: Path) -> None:
    uri = open_doc(client, workspace / "add.py", "def add(a, b):\n    ")
    text = await inline(client, uri, 1, 4)
    assert text is not None
    assert text.replace(" ", "").startswith("returna+b")
    assert "\n" not in text.strip()


async def test_a_blank_line_whose_cut_prompt_gives_nothing_is_asked_again(
    client: LanguageClient, workspace: Path
) -> None:
    """On a line holding only indentation the prompt ends at the line above. Under an unfinished
    expression the model goes on with that line, which has no place at the cursor: the prompt
    ending at the cursor is then asked, and gives the continuation."""
    source = "def total(a, b, c):\n    result = (a +\n              \n    return result\n"
    uri = open_doc(client, workspace / "continued.py", source)
    before = await status(client)
    text = await inline(client, uri, 2, 14)
    after = await status(client)
    assert text is not None and "b" in text, text

    def grew(key: str) -> int:  # the generator is made by the first completion: None before
        return int(after["generator"][key]) - int((before["generator"] or {}).get(key, 0))

    assert grew("asked_again") == 1
    assert grew("model_calls") == 1
    # Both prompts' decoded tokens are counted (bench_inline's bare side decodes as many).
    assert grew("generated_tokens") >= 2, grew("generated_tokens")


async def test_multi_line_body(client: LanguageClient, workspace: Path) -> None:
    source = "class Point:\n    def __init__(self, x, y):\n        "
    uri = open_doc(client, workspace / "point.py", source)
    text = await inline(client, uri, 2, 8)
    assert text is not None
    assert "self.x = x" in text and "self.y = y" in text
    assert "\n" in text
    assert "class " not in text  # stopped at the end of the block


async def test_mid_line(client: LanguageClient, workspace: Path) -> None:
    source = "def total(prices):\n    return sum()\n"
    uri = open_doc(client, workspace / "total.py", source)
    text = await inline(client, uri, 1, 15)  # between the parentheses
    assert text is not None
    assert "\n" not in text
    assert "prices" in text
    assert not text.endswith(")")  # the closing parenthesis is already there


async def test_suggestion_repeating_the_suffix_is_dropped(
    client: LanguageClient, workspace: Path
) -> None:
    source = "def add(a, b):\n    \n    return a + b\n"
    uri = open_doc(client, workspace / "dup.py", source)
    text = await inline(client, uri, 1, 4)
    assert text is None or text.strip() != "return a + b"


async def test_completion_item_carries_the_suggestion(
    client: LanguageClient, workspace: Path
) -> None:
    uri = open_doc(client, workspace / "comp.py", "def add(a, b):\n    ret")
    result = await asyncio.wait_for(
        client.text_document_completion_async(
            lsp.CompletionParams(
                text_document=lsp.TextDocumentIdentifier(uri=uri),
                position=lsp.Position(line=1, character=7),
            )
        ),
        TIMEOUT,
    )
    assert isinstance(result, lsp.CompletionList)
    assert len(result.items) == 1
    edit = result.items[0].text_edit
    assert isinstance(edit, lsp.TextEdit)
    assert edit.range.start == lsp.Position(line=1, character=4)  # replaces "ret"
    assert edit.new_text.replace(" ", "").startswith("returna+b")


async def test_typed_through_reuse_needs_no_model_call(
    client: LanguageClient, workspace: Path
) -> None:
    uri = open_doc(client, workspace / "typed.py", "def mul(a, b):\n    ")
    first = await inline(client, uri, 1, 4)
    assert first is not None and len(first) > 3
    before = await status(client)
    insert(client, uri, 2, 1, 4, first[:3])
    second = await inline(client, uri, 1, 7)
    after = await status(client)
    assert second == first[3:]
    pool_before, pool_after = before["pool"]["models"][FIM], after["pool"]["models"][FIM]
    assert (pool_after["hits"], pool_after["misses"]) == (
        pool_before["hits"],
        pool_before["misses"],
    )
    assert after["generator"]["typed_through"] == before["generator"]["typed_through"] + 1
    assert after["generator"]["model_calls"] == before["generator"]["model_calls"]


async def test_a_key_typed_re_evaluates_only_the_end_of_the_prompt(
    client: LanguageClient, workspace: Path
) -> None:
    body = "".join(f"def helper_{i}(x):\n    return x * {i}\n\n\n" for i in range(12))
    uri = open_doc(client, workspace / "reuse.py", body + "def total(values):\n    ")
    await inline(client, uri, 49, 4)
    before = await status(client)
    # Not what was suggested (no typed-through answer): the model runs again.
    insert(client, uri, 2, 49, 4, "z")
    await inline(client, uri, 49, 5)
    after = await status(client)
    calls = after["generator"]["model_calls"] - before["generator"]["model_calls"]
    prompt = after["generator"]["prompt_tokens"] - before["generator"]["prompt_tokens"]
    reused = after["generator"]["reused_tokens"] - before["generator"]["reused_tokens"]
    assert calls == 1 and prompt > 120, after["generator"]
    # The cursor line follows the suffix in the prompt (typed_line: middle): a key evaluates
    # the key, no more (the suffix too with typed_line: prefix; here it is empty).
    assert prompt - reused < 40, f"{prompt - reused} of {prompt} prompt tokens evaluated again"


async def test_a_file_switched_back_to_re_evaluates_only_what_changed(
    client: LanguageClient, workspace: Path
) -> None:
    """Its prompt's context stays as it was and its KV cache comes back from a saved state."""
    ending = "def total(values):\n    "
    left = "".join(f"def left_{i}(x):\n    return x + {i}\n\n\n" for i in range(12))
    right = "".join(f"def right_{i}(x):\n    return x - {i}\n\n\n" for i in range(12))
    left_uri = open_doc(client, workspace / "left.py", left + ending)
    await inline(client, left_uri, 49, 4)
    # Another file: opening it adds context that left.py's next prompt would otherwise show.
    right_uri = open_doc(client, workspace / "right.py", right + ending)
    await inline(client, right_uri, 49, 4)
    before = await status(client)
    insert(client, left_uri, 2, 49, 4, "z")
    await inline(client, left_uri, 49, 5)
    after = await status(client)
    gen_before, gen_after = before["generator"], after["generator"]
    prompt = gen_after["prompt_tokens"] - gen_before["prompt_tokens"]
    reused = gen_after["reused_tokens"] - gen_before["reused_tokens"]
    assert gen_after["model_calls"] == gen_before["model_calls"] + 1 and prompt > 120
    assert gen_after["kv_states"]["restored"] == gen_before["kv_states"]["restored"] + 1
    assert prompt - reused < 40, f"{prompt - reused} of {prompt} prompt tokens evaluated again"


async def test_burst_of_requests_while_typing(client: LanguageClient, workspace: Path) -> None:
    """50 keystrokes, a request each, nobody waiting: the last is answered, the rest cancelled."""
    uri = open_doc(client, workspace / "burst.py", "import math\n\n\ndef area(r):\n    ")
    before = await status(client)
    typed = "return math.pi * r * r  # area of a circle with radius r, in square units"[:50]
    pending: list[asyncio.Future[object]] = []
    for i, char in enumerate(typed):
        insert(client, uri, 2 + i, 4, 4 + i, char)
        future = asyncio.ensure_future(
            client.protocol.send_request_async(
                lsp.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, 4, 5 + i)
            )
        )
        pending.append(future)
        await asyncio.sleep(0.01)
        if i % 10 == 5:  # some the client cancels explicitly, as editors do
            client.protocol.notify(lsp.CANCEL_REQUEST, lsp.CancelParams(id=_last_id(client)))
    results = await asyncio.wait_for(asyncio.gather(*pending, return_exceptions=True), TIMEOUT)
    assert len(results) == 50
    assert not isinstance(results[-1], BaseException)
    after = await status(client)
    calls = after["generator"]["model_calls"] - before["generator"]["model_calls"]
    # Superseded during the debounce (no model call) or stopped in the model.
    cancelled = after["generator"]["cancelled"] - before["generator"]["cancelled"]
    debounced = after["debounce"]["superseded"] - before["debounce"]["superseded"]
    assert calls < 10, f"{calls} model calls for 50 superseded requests"
    assert cancelled + debounced >= 40, f"only {cancelled}+{debounced} of 50 were cancelled"
    assert debounced > 0 and after["debounce"]["ms"] > 0  # the default debounce is on
    # Still healthy: an ordinary request right after is answered.
    uri2 = open_doc(client, workspace / "after_burst.py", "def add(a, b):\n    ")
    assert await inline(client, uri2, 1, 4)


async def test_a_documents_first_request_skips_the_debounce(
    client: LanguageClient, workspace: Path
) -> None:
    """The editor's request as a file opens starts at once (the cold prompt is the longest wait
    a user sees); the requests after it wait for the debounce, and a newer one supersedes them
    there. Without the exception the first request would be superseded in its debounce too."""

    def debounce(settings: dict[str, object]) -> None:
        client.workspace_did_change_configuration(
            lsp.DidChangeConfigurationParams(settings={"memlsp": settings})
        )

    debounce({"agents": {"generator": {"debounce_ms": 1500}}})
    try:
        assert (await status(client))["debounce"]["ms"] == 1500
        uri = open_doc(client, workspace / "first_request.py", "def cube(x):\n    ")
        before = await status(client)
        first = client.protocol.send_request_async(
            lsp.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, 1, 4)
        )
        await asyncio.sleep(0.05)  # it has started in the model, not in a debounce
        insert(client, uri, 2, 1, 4, "r")
        second = client.protocol.send_request_async(
            lsp.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, 1, 5)
        )
        await asyncio.sleep(0.05)
        insert(client, uri, 3, 1, 5, "e")
        third = client.protocol.send_request_async(
            lsp.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, 1, 6)
        )
        await asyncio.wait_for(asyncio.gather(first, second, third), TIMEOUT)
        after = await status(client)
    finally:
        debounce({})
    superseded = after["debounce"]["superseded"] - before["debounce"]["superseded"]
    assert superseded == 1, f"{superseded} requests superseded in the debounce (the second only)"


async def test_an_invoked_request_offers_alternatives(
    client: LanguageClient, workspace: Path
) -> None:
    """The editor's trigger key: 2-3 distinct suggestions from one prompt, the best first; a
    request while typing gets one (here the first, from the cache)."""
    source = (
        "class Point:\n    def __init__(self, x, y):\n        self.x = x\n        self.y = y\n\n"
        "    def "
    )
    uri = open_doc(client, workspace / "alternatives.py", source)
    before = await status(client)
    params = inline_params(uri, 5, 8)
    params.context.trigger_kind = lsp.InlineCompletionTriggerKind.Invoked
    result = await asyncio.wait_for(client.text_document_inline_completion_async(params), TIMEOUT)
    assert isinstance(result, lsp.InlineCompletionList)
    texts = [item.insert_text for item in result.items]
    assert 2 <= len(texts) <= 3 and len(set(texts)) == len(texts), texts
    for item in result.items:  # each its own acceptance: the length of its text
        assert isinstance(item.insert_text, str) and item.insert_text.strip()
        assert item.command is not None and item.command.arguments is not None
        assert item.command.arguments[2] == len(item.insert_text)
    after = await status(client)
    earlier = before["generator"] or {}  # None before the first completion made the agent
    assert after["generator"]["model_calls"] == earlier.get("model_calls", 0) + 1
    assert after["generator"]["alternatives"] == earlier.get("alternatives", 0) + len(texts) - 1
    automatic = await asyncio.wait_for(
        client.text_document_inline_completion_async(inline_params(uri, 5, 8)), TIMEOUT
    )
    assert isinstance(automatic, lsp.InlineCompletionList)
    assert [item.insert_text for item in automatic.items] == texts[:1]


def _last_id(client: LanguageClient) -> int:
    ids = [k for k in client.protocol._request_futures if isinstance(k, int)]
    return max(ids) if ids else 0
