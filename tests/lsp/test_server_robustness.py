"""The server stays usable: stdout carries JSON-RPC only, a missing model leaves it up."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest_lsp
from lsp_helpers import (
    TIMEOUT,
    free_port,
    initialize,
    inline,
    open_doc,
    server_config,
    status,
)
from lsprotocol import types as lsp
from pytest_lsp import LanguageClient

# A server whose process also prints, from Python and from C-level writes to fd 1, while serving.
NOISY_SERVER = textwrap.dedent(
    """
    import os, sys, threading, time
    from memlsp.server.cli.commands import main

    original = sys.stdout

    def noise():
        # Prints while serving: the process's first instants, before `serve` claims stdout,
        # are the interpreter's (nothing of ours runs then).
        while sys.stdout is original:
            time.sleep(0.01)
        for _ in range(20):
            print("stray print from a library")
            os.write(1, b"stray bytes on fd 1 without a newline")
            time.sleep(0.05)

    threading.Thread(target=noise, daemon=True).start()
    sys.exit(main(["serve"]))
    """
)


def _frame(payload: dict[str, object]) -> bytes:
    body = json.dumps(payload).encode()
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


def _parse_frames(raw: bytes) -> list[dict[str, object]]:
    """Strict JSON-RPC framing: any byte outside a frame is a failure."""
    messages = []
    rest = raw
    while rest:
        header, sep, rest = rest.partition(b"\r\n\r\n")
        assert sep, f"unframed bytes on stdout: {header[:80]!r}"
        assert header.startswith(b"Content-Length: "), f"stray bytes on stdout: {header[:80]!r}"
        length = int(header.split(b"\r\n")[0].split(b": ")[1])
        body, rest = rest[:length], rest[length:]
        messages.append(json.loads(body))
    return messages


def test_tcp_mode_serves_lsp(tmp_path: Path) -> None:
    """`serve --tcp` speaks the same protocol over a socket (what some editors connect to)."""
    import socket

    port = free_port()
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "memlsp.server.cli", "serve", "--tcp", f"127.0.0.1:{port}"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "no listener"
                time.sleep(0.2)
        with conn:
            params = {"processId": None, "rootUri": tmp_path.as_uri(), "capabilities": {}}
            for message in (
                {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params},
                {"jsonrpc": "2.0", "method": "initialized", "params": {}},
                {"jsonrpc": "2.0", "id": 2, "method": "memlsp/status", "params": {}},
                {"jsonrpc": "2.0", "id": 3, "method": "shutdown"},
            ):
                conn.sendall(_frame(message))
            conn.settimeout(TIMEOUT)
            raw = b""
            answered: dict[object, dict[str, object]] = {}
            while 3 not in answered:
                chunk = conn.recv(65536)
                assert chunk, f"connection closed; answered {sorted(answered, key=str)}"
                raw += chunk
                try:
                    messages = _parse_frames(raw)
                except (AssertionError, json.JSONDecodeError, IndexError, ValueError):
                    continue  # a frame still arriving
                answered = {m.get("id"): m for m in messages if "result" in m}
        init = answered[1]["result"]
        assert isinstance(init, dict) and "inlineCompletionProvider" in init["capabilities"]
        status_result = answered[2]["result"]
        assert isinstance(status_result, dict) and "pool" in status_result
    finally:
        proc.kill()
        proc.wait()


def test_stray_prints_never_reach_the_protocol_stream(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    proc = subprocess.Popen(
        [sys.executable, "-c", NOISY_SERVER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdin is not None
    requests = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {"processId": None, "rootUri": tmp_path.as_uri(), "capabilities": {}},
        },
        {"jsonrpc": "2.0", "method": "initialized", "params": {}},
    ]
    for message in requests:
        proc.stdin.write(_frame(message))
        proc.stdin.flush()
    time.sleep(1.8)  # the noise thread runs during this
    for i in range(2, 7):
        proc.stdin.write(
            _frame({"jsonrpc": "2.0", "id": i, "method": "memlsp/status", "params": {}})
        )
    proc.stdin.write(_frame({"jsonrpc": "2.0", "id": 99, "method": "shutdown"}))
    proc.stdin.write(_frame({"jsonrpc": "2.0", "method": "exit"}))
    proc.stdin.flush()
    out, err = proc.communicate(timeout=60)
    messages = _parse_frames(out)
    answered = {m.get("id") for m in messages if "result" in m}
    assert {1, 2, 3, 4, 5, 6, 99} <= answered
    assert b"stray print from a library" in err  # it went to stderr instead
    assert b"stray bytes on fd 1" in err


def _ghost_config_home() -> Path:
    """A trusted user config naming a FIM model whose package is not installed.

    pytest-lsp fixes the server's environment when the module loads, so the folder is made here.
    """
    home = Path(tempfile.mkdtemp(prefix="memlsp-ghost-"))
    (home / "memlsp").mkdir()
    (home / "memlsp" / "config.yaml").write_text(
        textwrap.dedent(
            """
            models:
              ghost-coder:
                role: fim
                fim: {}
                source:
                  kind: parts
                  modules: [ghost_coder_part1]
                  packages: [ghost-coder-part1]
                file_name: ghost-coder.gguf
            agents:
              generator:
                model: ghost-coder
            """
        )
    )
    return home


@pytest_lsp.fixture(config=server_config(_ghost_config_home()))
async def ghost_client(lsp_client: LanguageClient):  # type: ignore[no-untyped-def]
    yield lsp_client
    await lsp_client.shutdown_session()


async def test_missing_model_says_what_to_install_and_server_stays_up(
    ghost_client: LanguageClient, tmp_path: Path
) -> None:
    await initialize(ghost_client, tmp_path)
    uri = open_doc(ghost_client, tmp_path / "a.py", "def add(a, b):\n    ")
    assert await inline(ghost_client, uri, 1, 4) is None
    for _ in range(50):
        if ghost_client.messages:
            break
        await asyncio.sleep(0.1)
    shown = [m.message for m in ghost_client.messages]
    assert any("pip install ghost-coder-part1" in m for m in shown), shown
    assert (await status(ghost_client))["pool"]["models"]["ghost-coder"]["last_error"]
    # A second failure is logged, not shown again.
    assert await inline(ghost_client, uri, 1, 4) is None
    await asyncio.sleep(0.3)
    assert len([m for m in ghost_client.messages if "ghost-coder-part1" in m.message]) == 1
    # The server is still up and switches to a working model live.
    ghost_client.workspace_did_change_configuration(
        lsp.DidChangeConfigurationParams(
            settings={"memlsp": {"agents": {"generator": {"model": "qwen2.5-coder-0.5b"}}}}
        )
    )
    text = await asyncio.wait_for(inline(ghost_client, uri, 1, 4), TIMEOUT)
    assert text is not None and "return" in text
