"""A raw JSON-RPC client for the real server over stdio, and a reference model of LSP text sync.

Shared by tests/unit/test_protocol_robustness.py, tests/stress/test_protocol_fuzz.py and
tests/benchmarks/bench_fuzz.py. The client writes bytes itself (so tests can send broken frames)
and hands back raw response messages (so they can be checked against the lsprotocol types).
The reference model is written from the LSP specification, independently of pygls: lines end at
"\\r\\n", "\\n" or "\\r" only, positions count code units of the negotiated encoding, a character
past the end of a line means the end of that line, a line past the last one means the end of the
document.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lsprotocol import converters
from lsprotocol import types as lsp

SERVER = [sys.executable, "-m", "memlsp.server.cli", "serve"]
FIM = "qwen2.5-coder-0.5b"
TIMEOUT = 300.0  # generous: model calls on a loaded 2-core machine took up to 100 s
_converter = converters.get_converter()


def frame(payload: dict[str, Any] | bytes) -> bytes:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


@dataclass
class RawServer:
    """One `memlsp serve` process; every byte on its stdout must belong to a frame."""

    proc: asyncio.subprocess.Process
    responses: dict[Any, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    unsolicited: list[dict[str, Any]] = field(default_factory=list)  # responses nobody awaits
    unframed: list[bytes] = field(default_factory=list)
    stderr_tail: bytearray = field(default_factory=bytearray)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def start(cls, config_home: Path, **env: str) -> RawServer:
        proc = await asyncio.create_subprocess_exec(
            *SERVER,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "XDG_CONFIG_HOME": str(config_home), "MEMLSP_TEST_HOOKS": "1"} | env,
            limit=64 << 20,
        )
        server = cls(proc)
        server._tasks = [
            asyncio.ensure_future(server._read_stdout()),
            asyncio.ensure_future(server._drain_stderr()),
        ]
        return server

    # -- writing ---------------------------------------------------------------------------

    async def write(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        await self.proc.stdin.drain()

    async def send(self, message: dict[str, Any]) -> None:
        await self.write(frame({"jsonrpc": "2.0", **message}))

    async def notify(self, method: str, params: Any = None) -> None:
        await self.send({"method": method, "params": params})

    def expect(self, request_id: Any) -> asyncio.Future[dict[str, Any]]:
        future = asyncio.get_running_loop().create_future()
        self.responses[request_id] = future
        return future

    async def request(
        self, method: str, params: Any = None, *, timeout: float = TIMEOUT
    ) -> dict[str, Any]:
        """The raw response message (with "result" or "error")."""
        request_id = next(self._ids)
        reply = self.expect(request_id)
        await self.send({"id": request_id, "method": method, "params": params})
        return await asyncio.wait_for(reply, timeout)

    # -- reading ---------------------------------------------------------------------------

    async def _read_stdout(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                header = await stdout.readuntil(b"\r\n\r\n")
                match = re.fullmatch(rb"Content-Length: (\d+)\r\n(?:[^\r\n]*\r\n)*\r\n", header)
                if match is None:
                    self.unframed.append(header)
                    continue
                body = await stdout.readexactly(int(match.group(1)))
                await self._dispatch(json.loads(body))

    async def _drain_stderr(self) -> None:
        stderr = self.proc.stderr
        assert stderr is not None
        while chunk := await stderr.read(65536):
            self.stderr_tail = (self.stderr_tail + chunk)[-20000:]

    async def _dispatch(self, message: dict[str, Any]) -> None:
        if "method" not in message:
            future = self.responses.pop(message.get("id"), None)
            if future is not None and not future.done():
                future.set_result(message)
            else:
                self.unsolicited.append(message)
            return
        if "id" in message:  # a request from the server: answer so nothing waits on us
            result: Any = None
            if message["method"] == "workspace/configuration":
                result = [None for _ in message["params"]["items"]]
            await self.send({"id": message["id"], "result": result})
            return
        self.notifications.append(message)

    # -- session ---------------------------------------------------------------------------

    async def initialize(
        self, root: Path, *, encodings: list[str] | None = None, **options: Any
    ) -> dict[str, Any]:
        capabilities: dict[str, Any] = {
            "textDocument": {"inlineCompletion": {}, "synchronization": {"didSave": True}},
        }
        if encodings is not None:
            capabilities["general"] = {"positionEncodings": encodings}
        reply = await self.request(
            "initialize",
            {
                "processId": os.getpid(),
                "rootUri": root.as_uri(),
                "workspaceFolders": [{"uri": root.as_uri(), "name": root.name}],
                "capabilities": capabilities,
                "initializationOptions": options or None,
            },
        )
        await self.notify("initialized", {})
        return reply

    async def open(self, uri: str, text: str, version: int = 1, language: str = "python") -> None:
        await self.notify(
            "textDocument/didOpen",
            {
                "textDocument": {
                    "uri": uri,
                    "languageId": language,
                    "version": version,
                    "text": text,
                }
            },
        )

    async def change(self, uri: str, version: int, *changes: dict[str, Any]) -> None:
        await self.notify(
            "textDocument/didChange",
            {"textDocument": {"uri": uri, "version": version}, "contentChanges": list(changes)},
        )

    async def document(self, uri: str, position: dict[str, int] | None = None) -> dict[str, Any]:
        """The server's copy of a document (the MEMLSP_TEST_HOOKS request)."""
        reply = await self.request("memlsp/debugDocument", {"uri": uri, "position": position})
        assert "result" in reply, reply
        return reply["result"]  # type: ignore[no-any-return]

    async def inline(self, uri: str, line: int, character: int) -> dict[str, Any]:
        return await self.request(
            "textDocument/inlineCompletion",
            {
                "textDocument": {"uri": uri},
                "position": {"line": line, "character": character},
                "context": {"triggerKind": 2},
            },
        )

    async def close(self) -> int:
        """shutdown, exit; the exit code (killed if it does not go within 30 s)."""
        with contextlib.suppress(Exception):
            await self.request("shutdown", timeout=30)
            await self.notify("exit")
        try:
            code = await asyncio.wait_for(self.proc.wait(), 30)
        except TimeoutError:
            self.proc.kill()
            code = await self.proc.wait()
        for task in self._tasks:
            task.cancel()
        return code


def check_response(method: str, message: dict[str, Any]) -> Any:
    """Structure a raw response into the method's lsprotocol response type (raises if it does not
    fit); an error response must be a well-formed JSON-RPC error."""
    if "error" in message:
        return _converter.structure(message, lsp.ResponseErrorMessage)
    response_type = lsp.METHOD_TO_TYPES[method][1]
    return _converter.structure(message, response_type).result


def inline_text(message: dict[str, Any]) -> str | None:
    """The first inline item's text of a raw inlineCompletion response; None when empty."""
    result = check_response("textDocument/inlineCompletion", message)
    items = result.items if isinstance(result, lsp.InlineCompletionList) else (result or [])
    if not items:
        return None
    text = items[0].insert_text
    return text if isinstance(text, str) else text.value


# -- reference model of LSP text synchronisation ----------------------------------------------

_BREAK = re.compile(r"\r\n|\r|\n")


def lsp_lines(text: str) -> list[tuple[int, int]]:
    """(start, end of content) offsets of every line; a final line break starts an empty line."""
    spans = []
    start = 0
    for line_break in _BREAK.finditer(text):
        spans.append((start, line_break.start()))
        start = line_break.end()
    spans.append((start, len(text)))
    return spans


def units(text: str, encoding: str) -> int:
    if encoding == "utf-8":
        return len(text.encode("utf-8"))
    if encoding == "utf-32":
        return len(text)
    return len(text.encode("utf-16-le")) // 2


def offset_at(text: str, line: int, character: int, encoding: str = "utf-16") -> int:
    """The code-point offset of a position, clamped as the specification says."""
    lines = lsp_lines(text)
    if line >= len(lines):
        return len(text)
    start, end = lines[line]
    taken = 0
    for offset in range(start, end):
        taken += units(text[offset], encoding)
        if taken > character:
            return offset
    return end


def position_at(text: str, offset: int, encoding: str = "utf-16") -> dict[str, int]:
    """The position of a code-point offset (which must not split a "\\r\\n")."""
    for number, (start, end) in enumerate(lsp_lines(text)):
        if start <= offset <= end:
            return {"line": number, "character": units(text[start:offset], encoding)}
    raise ValueError(f"offset {offset} is inside a line break")


def apply_change(text: str, change: dict[str, Any], encoding: str = "utf-16") -> str:
    if "range" not in change:
        return str(change["text"])
    span = change["range"]
    start = offset_at(text, span["start"]["line"], span["start"]["character"], encoding)
    end = offset_at(text, span["end"]["line"], span["end"]["character"], encoding)
    return text[:start] + change["text"] + text[max(start, end) :]


# -- the fuzzer: random didOpen/didChange sequences checked against the model ----------------

# Line breaks of every kind, characters outside the BMP (two UTF-16 units, four UTF-8 bytes),
# and characters str.splitlines() breaks at but LSP does not (form feed, NEL, U+2028, ...).
PIECES = [
    *"ab_x(): \t",
    "\n",
    "\r\n",
    "\r",
    "😀",
    "𝄞",
    "é",
    "中",
    "\x00",
    "\x0c",
    "\x0b",
    "\x1c",
    "\x85",
    "\u2028",
]
SPLITLINES_ONLY = {"\x0c", "\x0b", "\x1c", "\x85", "\u2028"}
PLAIN_PIECES = [p for p in PIECES if p not in SPLITLINES_ONLY]
FUZZ_OPTIONS: dict[str, Any] = {
    "agents": {
        "generator": {"model": FIM, "max_tokens": 8},
        "quality": {"enabled": False},
    },
    "memory": {"enabled": False},
}


class FuzzFailure(AssertionError):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


def _texts(pieces: list[str]) -> Any:
    from hypothesis import strategies as st

    return st.lists(st.sampled_from(pieces), max_size=30).map("".join)


def _position(data: Any, text: str, encoding: str) -> dict[str, int]:
    """A position at a character boundary, now and then past the end of its line or document."""
    from hypothesis import strategies as st

    lines = lsp_lines(text)
    line = data.draw(st.integers(0, len(lines)), label="line")
    if line == len(lines):  # past the last line
        return {
            "line": line + data.draw(st.integers(0, 2)),
            "character": data.draw(st.integers(0, 3)),
        }
    start, end = lines[line]
    ends = [units(text[start:offset], encoding) for offset in range(start, end + 1)]
    past = st.integers(ends[-1] + 1, ends[-1] + 3)
    character = data.draw(st.sampled_from(ends) | past, label="character")
    return {"line": line, "character": character}


def _range(data: Any, text: str, encoding: str) -> dict[str, Any]:
    start = _position(data, text, encoding)
    end = _position(data, text, encoding)
    if offset_at(text, **start, encoding=encoding) > offset_at(text, **end, encoding=encoding):
        start, end = end, start
    return {"start": start, "end": end}


def expected_cursor_offset(text: str, position: dict[str, int], encoding: str) -> int | None:
    """Where completion features cut the text; None past the last line (an out-of-sync client)."""
    if position["line"] >= len(lsp_lines(text)):
        return None
    return offset_at(text, position["line"], position["character"], encoding)


async def fuzz_document(
    server: RawServer,
    data: Any,
    uri: str,
    encoding: str,
    *,
    model_calls: bool,
    pieces: list[str] = PIECES,
) -> int:
    """Open a random document, change it at random, compare the server's copy after each
    notification; probe positions, code actions and (with ``model_calls``) completions, checking
    each response's type. Returns the number of checks; raises FuzzFailure on the first miss."""
    from hypothesis import strategies as st

    checks = 0
    text = data.draw(_texts(pieces), label="opened")
    version = 1
    await server.open(uri, text, version)
    try:
        for _ in range(data.draw(st.integers(1, 6), label="notifications")):
            changes = []
            for _ in range(data.draw(st.integers(1, 3), label="changes")):
                new_text = data.draw(_texts(pieces), label="new text")
                if data.draw(st.integers(0, 9), label="full") == 0:
                    change: dict[str, Any] = {"text": new_text}
                else:
                    change = {"range": _range(data, text, encoding), "text": new_text}
                changes.append(change)
                text = apply_change(text, change, encoding)
            version += 1
            await server.change(uri, version, *changes)
            position = _position(data, text, encoding)
            reply = await server.request("memlsp/debugDocument", {"uri": uri, "position": position})
            checks += 1
            if "result" not in reply or reply["result"] is None:
                raise FuzzFailure("no document", json.dumps(reply)[:300])
            got = reply["result"]
            if got["text"] != text:
                raise FuzzFailure("text", f"server {got['text']!r} != model {text!r}")
            if got["version"] != version:
                raise FuzzFailure("version", f"{got['version']} != {version}")
            want = expected_cursor_offset(text, position, encoding)
            if got.get("offset") != want:
                raise FuzzFailure(
                    "offset", f"{position} in {text!r}: {got.get('offset')} != {want}"
                )
            if data.draw(st.integers(0, 2), label="code action") == 0:
                checks += 1
                await _probe(
                    server,
                    "textDocument/codeAction",
                    {
                        "textDocument": {"uri": uri},
                        "range": _range(data, text, encoding),
                        "context": {"diagnostics": []},
                    },
                )
            if model_calls and data.draw(st.integers(0, 15), label="inline") == 0:
                position = _position(data, text, encoding)
                result = await _probe(
                    server,
                    "textDocument/inlineCompletion",
                    {
                        "textDocument": {"uri": uri},
                        "position": position,
                        "context": {"triggerKind": 2},
                    },
                )
                checks += 1
                _check_item_range(result, text, position, encoding)
    finally:
        await server.notify("textDocument/didClose", {"textDocument": {"uri": uri}})
    return checks


async def _probe(server: RawServer, method: str, params: dict[str, Any]) -> Any:
    """The response's result, structured into the method's lsprotocol type."""
    reply = await server.request(method, params)
    if "error" in reply:
        raise FuzzFailure("error response", f"{method}: {reply['error']}")
    try:
        return check_response(method, reply)
    except Exception as exc:
        raise FuzzFailure("response type", f"{method}: {exc!r} in {reply}") from exc


def _check_item_range(result: Any, text: str, position: dict[str, int], encoding: str) -> None:
    """An inline item sits at the cursor, clamped to the text, in the client's units."""
    want = expected_cursor_offset(text, position, encoding)
    items = result.items if isinstance(result, lsp.InlineCompletionList) else (result or [])
    if want is None or not items or items[0].range is None:
        return
    start = items[0].range.start
    got = {"line": start.line, "character": start.character}
    if got != position_at(text, want, encoding):
        raise FuzzFailure("item range", f"{got} for {position} in {text!r}")


# -- hostile frames and envelopes -----------------------------------------------------------

# Methods a random envelope may name: none that ends the session or loads a model.
ENVELOPE_METHODS = [
    "memlsp/status",
    "initialize",
    "textDocument/codeAction",
    "textDocument/didOpen",
    "textDocument/didChange",
    "$/cancelRequest",
    "$/memlsp/unreadableFrame",
    "no/such/method",
]


def json_values() -> Any:
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
    return st.recursive(
        scalars | st.text(max_size=12),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=12,
    )


def envelopes() -> Any:
    """JSON-RPC envelopes, mostly broken: any key missing or of any type, batches, scalars."""
    from hypothesis import strategies as st

    values = json_values()
    message = st.fixed_dictionaries(
        {},
        optional={
            "jsonrpc": st.sampled_from(["2.0", "2.0", "1.0", "", 2]) | values,
            "id": st.integers() | st.text(max_size=6) | values,
            "method": st.sampled_from(ENVELOPE_METHODS) | values,
            "params": values,
            "result": values,
            "error": values,
        },
    )
    return message | st.lists(message, max_size=3) | values


def _declared(data: Any, body: bytes) -> bytes:
    """A Content-Length header: right, short, long, huge, negative, not a number or absent."""
    from hypothesis import strategies as st

    kind = data.draw(
        st.sampled_from(["right", "right", "short", "long", "huge", "negative", "junk", "none"]),
        label="length",
    )
    length = {
        "right": str(len(body)),
        "short": str(max(1, len(body) - data.draw(st.integers(1, 40)))),
        "long": str(len(body) + data.draw(st.integers(1, 120))),
        "huge": str(data.draw(st.integers(1 << 30, 10**15))),
        "negative": str(-len(body)),
        "junk": data.draw(st.sampled_from(["", "abc", "1e3", "0x10", " 12 34", "9" * 30])),
    }.get(kind)
    if length is None:
        return b"Content-Type: application/vscode-jsonrpc\r\n\r\n"
    name = data.draw(st.sampled_from(["Content-Length", "content-length"]), label="name")
    return f"{name}: {length}\r\n\r\n".encode()


def hostile_bytes(data: Any) -> list[bytes]:
    """Broken frames, envelopes and garbage, cut into the pieces they are written in."""
    from hypothesis import strategies as st

    stream = b""
    for _ in range(data.draw(st.integers(1, 4), label="pieces")):
        kind = data.draw(st.sampled_from(["frame", "envelope", "garbage"]), label="kind")
        if kind == "garbage":
            stream += data.draw(st.binary(max_size=300), label="garbage")
            continue
        body = json.dumps(data.draw(envelopes(), label="envelope")).encode()
        stream += frame(body) if kind == "envelope" else _declared(data, body) + body
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=4), label="cuts"))
    bounds = [0, *cuts, len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(bounds) if b > a]


async def still_answers(server: RawServer, tries: int = 8, timeout: float = 30.0) -> None:
    """One of ``tries`` well-formed status requests is answered: a frame announcing more than it
    sent takes the next bytes as its body (as the protocol says), so a few may be consumed."""
    waiting = []
    for _ in range(tries):
        request_id = f"final-{next(server._ids)}"
        waiting.append(server.expect(request_id))
        await server.send({"id": request_id, "method": "memlsp/status", "params": {}})
    done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    assert done, f"no answer; exit code {server.proc.returncode}; {bytes(server.stderr_tail)!r}"
    assert any("result" in reply.result() for reply in done), [r.result() for r in done]
    assert server.proc.returncode is None
    for future in waiting:
        future.cancel()
