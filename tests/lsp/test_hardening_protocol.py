"""Issue #20 (1, 5, 6): frames, the JSON-RPC envelope, the LSP lifecycle and large documents,
through the real server over stdio with frames written by hand. No model is loaded."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from protocol_fuzzing import RawServer, frame

OPTIONS: dict[str, Any] = {"agents": {"quality": {"enabled": False}}, "memory": {"enabled": False}}
PARSE_ERROR, INVALID_REQUEST, NOT_INITIALIZED = -32700, -32600, -32002
SHORT = 30.0


async def _started(root: Path, user_config: str = "", **options: Any) -> RawServer:
    """A server on ``root``; ``user_config`` is the user's own config file (the only layer that
    may change the input limits)."""
    if user_config:
        (root / "cfg" / "memlsp").mkdir(parents=True, exist_ok=True)
        (root / "cfg" / "memlsp" / "config.yaml").write_text(user_config)
    server = await RawServer.start(root / "cfg")
    reply = await server.initialize(root, **{**OPTIONS, **options})
    assert "result" in reply, reply
    return server


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RawServer]:
    started = await _started(tmp_path)
    yield started
    assert not started.unframed, started.unframed[:3]
    assert await started.close() == 0


async def _status_answered(server: RawServer, timeout: float = SHORT) -> None:
    reply = await server.request("memlsp/status", {}, timeout=timeout)
    assert "result" in reply, reply


def _no_popups(server: RawServer) -> None:
    popups = [m for m in server.notifications if m["method"] == "window/showMessage"]
    assert not popups, popups


# -- frames (item 1) ------------------------------------------------------------------------


async def test_huge_content_length_is_refused_and_the_server_reads_on(server: RawServer) -> None:
    refused = server.expect(50)
    body = b'{"jsonrpc": "2.0", "id": 50, "method": "memlsp/status", "params": {}}'
    await server.write(b"Content-Length: 1000000000000\r\n\r\n" + body)
    await _status_answered(server)  # the old reader asked for a terabyte: MemoryError, exit 1
    assert (await asyncio.wait_for(refused, SHORT))["error"]["code"] == INVALID_REQUEST
    assert server.proc.returncode is None


async def test_message_over_the_configured_cap_gets_an_error(tmp_path: Path) -> None:
    server = await _started(tmp_path, "server: {max_message_bytes: 1048576}\n")
    refused = server.expect(51)
    params = {"padding": "x" * (2 << 20)}
    await server.send({"id": 51, "method": "memlsp/status", "params": params})
    error = (await asyncio.wait_for(refused, SHORT))["error"]
    assert error["code"] == INVALID_REQUEST and "max_message_bytes" in error["message"]
    await _status_answered(server)
    _no_popups(server)
    assert await server.close() == 0


# -- lifecycle (item 6) ---------------------------------------------------------------------


async def _exit_code(server: RawServer) -> int:
    await server.notify("exit")
    return await asyncio.wait_for(server.proc.wait(), SHORT)


async def test_exit_before_initialize_exits_1(tmp_path: Path) -> None:
    server = await RawServer.start(tmp_path / "cfg")
    assert await _exit_code(server) == 1


async def test_exit_without_shutdown_exits_1(tmp_path: Path) -> None:
    server = await _started(tmp_path)
    assert await _exit_code(server) == 1


async def test_requests_before_initialize_get_server_not_initialized(tmp_path: Path) -> None:
    server = await RawServer.start(tmp_path / "cfg")
    reply = await server.request("memlsp/status", {}, timeout=SHORT)
    assert reply["error"]["code"] == NOT_INITIALIZED
    uri = (tmp_path / "early.py").as_uri()
    await server.open(uri, "x = 1\n")  # a notification before initialize: dropped
    assert "result" in await server.initialize(tmp_path, **OPTIONS)
    reply = await server.request("memlsp/debugDocument", {"uri": uri, "position": None})
    assert reply.get("result") is None, reply
    assert await server.close() == 0


async def test_second_initialize_is_refused_and_keeps_the_workspace(
    server: RawServer, tmp_path: Path
) -> None:
    other = tmp_path / "elsewhere"
    other.mkdir()
    reply = await server.initialize(other, **OPTIONS)
    assert reply["error"]["code"] == INVALID_REQUEST
    status = await server.request("memlsp/status", {}, timeout=SHORT)
    assert status["result"]["workspace"] == str(tmp_path)


async def test_requests_after_shutdown_get_invalid_request(tmp_path: Path) -> None:
    server = await _started(tmp_path)
    assert "result" in await server.request("shutdown", timeout=SHORT)
    reply = await server.request("memlsp/status", {}, timeout=SHORT)  # was never answered
    assert reply["error"]["code"] == INVALID_REQUEST
    assert await _exit_code(server) == 0


# -- the JSON-RPC envelope (item 6) ---------------------------------------------------------

# raw body -> error code and id in the answer (null where the message has no usable id)
ENVELOPES: dict[str, tuple[bytes, int, int | None]] = {
    "batch": (b'[{"jsonrpc": "2.0", "id": 60, "method": "memlsp/status"}]', INVALID_REQUEST, None),
    "empty batch": (b"[]", INVALID_REQUEST, None),
    "scalar": (b"42", INVALID_REQUEST, None),
    "string": (b'"memlsp/status"', INVALID_REQUEST, None),
    "no jsonrpc": (b'{"id": 61, "method": "memlsp/status"}', INVALID_REQUEST, 61),
    "wrong jsonrpc": (
        b'{"jsonrpc": "1.0", "id": 62, "method": "memlsp/status"}',
        INVALID_REQUEST,
        62,
    ),
    "object id": (
        b'{"jsonrpc": "2.0", "id": {"a": 1}, "method": "memlsp/status"}',
        INVALID_REQUEST,
        None,
    ),
    "array id": (
        b'{"jsonrpc": "2.0", "id": [1], "method": "memlsp/status"}',
        INVALID_REQUEST,
        None,
    ),
    "method not a string": (b'{"jsonrpc": "2.0", "id": 63, "method": 5}', INVALID_REQUEST, 63),
    "deeply nested": (b"[" * 100_000 + b"]" * 100_000, PARSE_ERROR, None),
}


@pytest.mark.parametrize("name", list(ENVELOPES))
async def test_invalid_envelopes_get_an_error(server: RawServer, name: str) -> None:
    raw, code, request_id = ENVELOPES[name]
    waiting = server.expect(request_id)
    await server.write(frame(raw))
    reply = await asyncio.wait_for(waiting, SHORT)
    assert reply["error"]["code"] == code, reply
    await _status_answered(server)
    _no_popups(server)


async def test_nul_in_a_file_uri_logs_no_traceback(server: RawServer, tmp_path: Path) -> None:
    uri = tmp_path.as_uri() + "/bad%00name.py"
    await server.open(uri, "def f():\n    return 1\n")
    await server.request(
        "textDocument/codeAction",
        {
            "textDocument": {"uri": uri},
            "range": {"start": {"line": 0, "character": 0}, "end": {"line": 0, "character": 0}},
            "context": {"diagnostics": []},
        },
        timeout=SHORT,
    )
    await server.notify("textDocument/didSave", {"textDocument": {"uri": uri}})
    await server.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
    await _status_answered(server)
    await asyncio.sleep(0.5)  # let stderr catch up
    assert b"Traceback" not in server.stderr_tail, server.stderr_tail.decode(errors="replace")


# -- large documents (item 5) ---------------------------------------------------------------


def _rss(server: RawServer) -> int:
    return int(psutil.Process(server.proc.pid).memory_info().rss)


async def test_fifty_megabyte_document_stalls_nothing_and_is_freed(
    server: RawServer, tmp_path: Path
) -> None:
    await _status_answered(server)
    baseline = _rss(server)
    uri = (tmp_path / "huge.py").as_uri()
    source = "".join(
        f"value_{i} = {i} * 2\n" for i in range(2_000_000)
    )  # 54 MB: under the 64 MiB frame limit
    assert len(source) >= 50 << 20
    await server.open(uri, source)
    del source
    gc.collect()  # ours: the test's copy must not count in the server's numbers
    await _status_answered(server)  # the didOpen was handled
    everything = {"start": {"line": 0, "character": 0}, "end": {"line": 1_999_999, "character": 0}}
    actions = asyncio.ensure_future(
        server.request(
            "textDocument/codeAction",
            {"textDocument": {"uri": uri}, "range": everything, "context": {"diagnostics": []}},
            timeout=SHORT,
        )
    )
    started = time.monotonic()
    await _status_answered(server, timeout=1.0)  # took 6.9 s behind the code action before
    reply = await actions
    assert reply.get("result") in (None, []), reply
    assert time.monotonic() - started < 1.0
    # An edit to it is accepted (and ignored) without an error popup; a whole-text change that
    # brings it under the limit makes it a normal document again.
    await server.change(uri, 2, {"text": "small = 1\n"})
    assert (await server.document(uri))["text"] == "small = 1\n"
    _no_popups(server)
    assert any("max_document_bytes" in m["params"]["message"] for m in server.notifications)
    await server.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
    await _status_answered(server)
    # The server kept no copy: its memory comes back near where it was. The bound leaves room
    # for allocator slack (freed pages glibc keeps for reuse) and the reads' buffers; before,
    # the 50 MB text, its line lists and copies held about 800 MB after didClose.
    await asyncio.sleep(1.0)
    assert _rss(server) - baseline < 200 << 20, (baseline, _rss(server))
